import Basics
import CheckpointIO
import Evaluation
import Models
import TensorMath

/// `ckpt eval --task mc`: a multiple-choice benchmark's accuracy, as lm-evaluation-harness
/// scores it.
enum EvalTaskCommand {
    static func run(_ args: ParsedArguments) throws {
        guard args.value("--task") == "mc" else {
            throw UsageError(message: "--task takes mc (multiple choice), not '\(args.value("--task") ?? "")'", command: "eval")
        }
        guard let modelPath = args.value("--model") else { throw UsageError(message: "eval needs --model", command: "eval") }
        guard let data = args.value("--data") else { throw UsageError(message: "--task mc needs --data <questions.jsonl>", command: "eval") }
        for perplexityOnly in ["--file", "--ctx", "--chunks", "--all-positions"] where args.value(perplexityOnly) != nil || args.flag(perplexityOnly) {
            throw UsageError(message: "\(perplexityOnly) is for perplexity; --task mc reads --data", command: "eval")
        }
        var settings = MultipleChoiceEval.Settings()
        if let f = args.value("--format") {
            guard let format = PromptFormat(rawValue: f) else { throw UsageError(message: "--format is mcf or cloze, not '\(f)'", command: "eval") }
            settings.format = format
        }
        settings.shots = try args.int("--shots", default: 0, min: 0)
        settings.limit = try args.optionalInt("--limit", min: 1)
        settings.every = try args.int("--every", default: 1, min: 1)
        let questionsPerPass = try args.int("--batch", default: Int.max, min: 1)
        let threads = try args.threads()
        _ = try args.size("--max-resident")  // a bad size is refused before anything is opened
        ThreadPool.setThreads(threads)
        if let out = args.value("--per-question"), !args.flag("--force"), try FileSystem.kind(of: out) != .missing {
            throw CheckpointError.outputExists(path: out)
        }

        let task = try MultipleChoiceTask.read(path: data)
        if !task.headerLines.isEmpty {
            Console.err("ckpt: \(data): skipped \(task.headerLines.count) header row(s) (values that are their keys' names) at line(s) \(task.headerLines.map(String.init).joined(separator: ", "))\n")
        }
        let model = try DecoderModel(path: modelPath)
        let stream = try args.layerStream(model)
        let scorer = ChoiceScorer(stream: stream, tokenizer: try Tokenizers.forModel(path: modelPath), questionsPerPass: questionsPerPass,
                                  sharesContext: !args.flag("--no-prefix-sharing"))
        let count = settings.questions(in: task.questions.count).count
        let bar = ProgressBar(label: "mc", total: count, totalBytes: 0)
        let t0 = monotonicSeconds()
        let result = try MultipleChoiceEval.run(task, scorer: scorer, settings: settings) { done, all in
            let rate = Double(done) / max(monotonicSeconds() - t0, 1e-9)
            bar.update(done: done, bytesDone: 0, force: done == all, detail: "\(formatFixed(rate, digits: 1)) questions/s")
        }
        bar.finish()
        if result.shortened > 0 {
            Console.err("ckpt: \(result.shortened) question(s) got fewer than \(settings.shots) examples, to fit the model's context of \(model.spec.contextLength)\n")
        }
        if let out = args.value("--per-question") {
            var text = ""
            for a in result.answers {
                var w = JSONWriter()
                w.beginObject()
                w.fields(ints: ["index": a.index, "choice": a.choice, "choice_norm": a.choiceNorm, "answer": a.correct])
                w.beginArray(key: "loglik")
                for l in a.logliks { w.double(l) }
                w.endArray()
                w.endObject()
                text += w.text + "\n"
            }
            try FileSystem.writeAtomically(out, Array(text.utf8))
        }
        let perSecond = Double(result.answers.count) / max(result.seconds, 1e-9)
        let o = result.overall
        if args.flag("--json") {
            var w = JSONWriter()
            w.beginObject()
            w.string("mc", key: "task")
            w.string(settings.format.rawValue, key: "format")
            w.fields(ints: ["shots": settings.shots, "n": o.n],
                     doubles: ["acc": o.acc, "acc_stderr": o.accStderr, "acc_norm": o.accNorm, "acc_norm_stderr": o.accNormStderr])
            w.beginObject(key: "subjects")
            for (subject, s) in result.subjects {
                w.beginObject(key: subject)
                w.fields(ints: ["n": s.n], doubles: ["acc": s.acc, "acc_norm": s.accNorm])
                w.endObject()
            }
            w.endObject()
            w.double(result.seconds, key: "seconds")
            w.double(perSecond, key: "questions_per_s")
            w.endObject()
            Console.out(w.text + "\n")
        } else {
            func pct(_ x: Double) -> String { formatFixed(100 * x, digits: 2) }
            var text = """
            model        \(modelPath) (\(model.spec.architecture), \(model.spec.layers) layers)
            task         \(data): \(o.n) questions, \(settings.format.rawValue), \(settings.shots)-shot
            acc          \(pct(o.acc)) ± \(pct(o.accStderr))
            acc_norm     \(pct(o.accNorm)) ± \(pct(o.accNormStderr))
            speed        \(formatFixed(perSecond, digits: 2)) questions/s (\(threads) threads, \(formatFixed(result.seconds, digits: 1)) s)

            """
            if result.subjects.count > 1 {
                text += "subject".padding(to: 40) + "n".leftPadding(to: 6) + "acc".leftPadding(to: 9) + "acc_norm".leftPadding(to: 10) + "\n"
                for (subject, s) in result.subjects {
                    text += (subject.isEmpty ? "(none)" : subject).padding(to: 40) + String(s.n).leftPadding(to: 6)
                        + pct(s.acc).leftPadding(to: 9) + pct(s.accNorm).leftPadding(to: 10) + "\n"
                }
            }
            Console.out(text)
        }
    }
}

/// `ckpt eval --model STUDENT --teacher T --file F`: agreement with a teacher.
enum EvalTeacherCommand {
    static func run(_ args: ParsedArguments) throws {
        guard let studentPath = args.value("--model") else { throw UsageError(message: "eval needs --model", command: "eval") }
        guard let teacherPath = args.value("--teacher") else { throw UsageError(message: "eval needs --teacher", command: "eval") }
        guard let file = args.value("--file") else { throw UsageError(message: "--teacher needs --file (the text both are compared on)", command: "eval") }
        let ctx = try args.int("--ctx", default: 512, min: 4)
        let maxChunks = try args.optionalInt("--chunks", min: 1)
        let threads = try args.threads()
        _ = try args.size("--max-resident")  // a bad size is refused before anything is opened
        ThreadPool.setThreads(threads)
        let teacher = try DecoderModel(path: teacherPath), student = try DecoderModel(path: studentPath)
        let (tokens, bos) = try textTokens(file, tokenizer: try Tokenizers.forModel(path: teacherPath))
        let total = min(tokens.count / ctx, maxChunks ?? Int.max)
        let bar = ProgressBar(label: "kl", total: total, totalBytes: 0)
        let r = try TeacherAgreement.evaluate(teacher: try args.layerStream(teacher), student: try args.layerStream(student), tokens: tokens, ctx: ctx,
                                              maxChunks: maxChunks, bos: bos) { done, all in bar.update(done: done, bytesDone: 0, force: done == all, detail: "chunks") }
        bar.finish()
        if args.flag("--json") {
            var w = JSONWriter()
            w.beginObject()
            w.fields(ints: ["chunks": r.chunks, "ctx": ctx, "tokens": r.tokens],
                     doubles: ["kl_mean": r.meanKL, "kl_median": r.medianKL, "kl_p99": r.p99KL, "kl_max": r.maxKL, "same_top": r.sameTop,
                               "rms_delta_p": r.rmsDeltaP, "teacher_ppl": r.teacherPPL, "ppl": r.studentPPL, "ppl_ratio": r.pplRatio,
                               "seconds": r.seconds])
            w.endObject()
            Console.out(w.text + "\n")
        } else {
            Console.out("""
            teacher      \(teacherPath)
            model        \(studentPath)
            text         \(file): \(r.chunks) chunks of \(ctx), \(r.tokens) tokens scored
            KL           mean \(formatFixed(r.meanKL, digits: 6)), median \(formatFixed(r.medianKL, digits: 6)), 99% \(formatFixed(r.p99KL, digits: 6)), max \(formatFixed(r.maxKL, digits: 6)) nats
            same top     \(formatFixed(100 * r.sameTop, digits: 2))%
            RMS Δp       \(formatFixed(100 * r.rmsDeltaP, digits: 3))%
            perplexity   \(formatFixed(r.studentPPL, digits: 4)) (teacher \(formatFixed(r.teacherPPL, digits: 4)), ratio \(formatFixed(r.pplRatio, digits: 4)))

            """)
        }
    }
}
