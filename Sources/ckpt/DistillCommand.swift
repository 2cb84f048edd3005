import Basics
#if canImport(Glibc)
import Glibc
#endif
import CheckpointIO
import Conversion
import Evaluation
import LogitCache
import Training
import Models
import Pruning
import TensorMath

/// `ckpt distill`: train a student against a teacher-logit cache.
enum DistillCommand {
    static let spec = CommandSpec(
        name: "distill",
        summary: "Train a (pruned) student to match a teacher, from a logit cache.",
        usage: "distill --student <model> --cache <cache> [--steps N | --tokens N] [--batch 4] [--lr 1e-4] [--loss forward-kl] [--ce-weight 0] [--memory-budget SIZE] [--checkpoint-every N] [--resume] [--log FILE.csv] [--eval-file F] [--eval-task Q.jsonl [--eval-task-limit N]] [--plot F.svg] -o <out>",
        discussion: """
        Reads the cache's sequences (chunks shuffled by --seed, a new order every pass)
        --batch at a time, runs the student forward and backward on f32 master weights,
        and takes an AdamW step (β 0.9/0.95, weight decay 0.1 on matrices, gradient norm
        clipped to 1; learning rate warmed up over --warmup steps, then cosine-decayed to
        --min-lr). Matrix products run in int8 (--matmul): the forward product and the
        input gradient with 8-bit operands in blocks of 32 and f32 accumulation, the
        weight gradient in f32. The loss is the distillation loss against the cache (forward KL by
        default; a topk cache's tail is one bucket; from a sample cache only forward KL
        has an unbiased gradient) mixed with --ce-weight of cross-entropy on the next
        tokens. A step whose loss or gradients are NaN or Inf is reported and skipped.
        --checkpoint-every N saves weights, optimizer state and the data position in
        <out>.checkpoints/; --resume continues from the newest whole one, to the same
        weights an uninterrupted run reaches. The student is written in its own format
        with the trained tensors as --dtype (f16 in GGUF, bf16 in safetensors by
        default). Supports llama, mistral, qwen2, qwen3, gemma2 and gemma3 students.

        --hidden-loss adds Minitron's intermediate-state loss, for students whose depth
        was cut: chosen student layers' outputs, each through a learned linear projection
        (started as the identity on the kept channels), against the outputs of teacher
        layers, from a live run of --teacher (the cache's teacher) on the same sequences.
        The default pairs come from the student's prune record.

        --memory-budget bounds the process's resident memory: the fastest arrangement
        whose estimate fits is used (said on stderr): everything in memory; each layer's
        activations recomputed in the backward pass from its saved input; weights,
        gradients and optimizer state in mapped files under <out>.checkpoints/live/, paged
        in a layer (an LM-head slice, an optimizer slice) at a time; or both. None of
        them change the numbers. A budget below the smallest arrangement is refused
        with the minimum it needs.
        """,
        options: [
            .init("--student", value: "model", help: "The student: GGUF, or HF safetensors directory (llama, mistral, qwen2, qwen3, gemma2, gemma3, nemotron, phi3, mixtral, qwen3moe, qwen2moe)."),
            .init("--cache", value: "cache", help: "Teacher-logit cache from `ckpt logits build` (same tokenizer)."),
            .init("--steps", value: "n", help: "Optimizer steps (default: one pass over the cache)."),
            .init("--tokens", value: "n", help: "Train on this many tokens instead of --steps (e.g. 2M)."),
            .init("--batch", value: "n", help: "Sequences per step (default 4)."),
            .init("--lr", value: "rate", help: "Peak learning rate (default 1e-4)."),
            .init("--min-lr", value: "rate", help: "Learning rate at the last step (default: --lr / 10)."),
            .init("--warmup", value: "n", help: "Warm-up steps (default: 5% of the steps, at most 100)."),
            .init("--loss", value: "kind", help: "forward-kl (default), reverse-kl, jsd or tvd."),
            .init("--temperature", value: "t", help: "Temperature of the student's softmax (default: the cache's)."),
            .init("--ce-weight", value: "w", help: "Weight of cross-entropy on the tokens, 0…1 (default 0)."),
            .init("--seed", value: "n", help: "Seed of the data order (default 0)."),
            .init("--matmul", value: "kind", help: "int8 (default): forward products and input gradients with 8-bit operands, f32 accumulation; f32: all in f32."),
            .init("--optimizer-state", value: "kind", help: "f32 (default) or 8bit: AdamW's moments in 8 bits per value, blockwise (about 4× less memory)."),
            .init("--memory-budget", value: "size", help: "Resident memory to stay within, e.g. 1G or 256M (default: none; everything in memory)."),
            .init("--teacher", value: "model", help: "The cache's teacher, run live for --hidden-loss."),
            .init("--hidden-loss", value: "kind", help: "Add an intermediate-state loss: cosine or mse between student and teacher layer outputs (through learned projections)."),
            .init("--hidden-weight", value: "w", help: "Weight of the intermediate-state loss (default 1)."),
            .init("--hidden-layers", value: "pairs", help: "student:teacher layer pairs, e.g. 11:23,23:29 (default: 4 student layers up to the last, with the teacher layers they were kept from)."),
            .init("--checkpoint-every", value: "n", help: "Save a checkpoint every n steps (default: 0, none)."),
            .init("--resume", help: "Continue from the newest checkpoint in <out>.checkpoints/."),
            .init("--log", value: "file.csv", help: "Write step, tokens, losses, learning rate, gradient norm, seconds, held-out perplexity per step."),
            .init("--eval-file", value: "file", help: "Held-out text: its perplexity (every position) is measured during training."),
            .init("--eval-every", value: "n", help: "Steps between held-out measurements (default: a tenth of the run)."),
            .init("--eval-chunks", value: "n", help: "Held-out sequences of the cache's length to score (default 4)."),
            .init("--eval-task", value: "file.jsonl", help: "A multiple-choice benchmark (as eval --task mc reads): the student's accuracy at the start, every --eval-every steps and at the end."),
            .init("--eval-task-limit", value: "n", help: "Questions of --eval-task scored each time (default 100)."),
            .init("--eval-task-format", value: "kind", help: "cloze (default) or mcf prompts for --eval-task."),
            .init("--plot", value: "file.svg|png", help: "Draw the training loss, held-out perplexity and task accuracy over steps (SVG, or PNG by the name)."),
            .init("--dtype", value: "type", help: "Trained tensors' type in the output: f16 (GGUF default), bf16 (safetensors default), f32, q8_0, …"),
            .init("--threads", value: "n", help: "Threads (default: all CPUs)."),
            .init("--force", help: "Replace an existing output."),
            .init("--json", help: "Print the result as one JSON object."),
            .init("-o", value: "out", help: "Output student."),
            .init("--output", value: "out", help: "Same as -o."),
        ],
        positionals: 0...0
    )

    static func run(_ args: ParsedArguments) throws {
        guard let studentPath = args.value("--student") else { throw UsageError(message: "distill needs --student", command: "distill") }
        guard let cachePath = args.value("--cache") else { throw UsageError(message: "distill needs --cache", command: "distill") }
        guard let out = args.output else { throw UsageError(message: "distill needs -o <out>", command: "distill") }
        ThreadPool.setThreads(try args.threads())
        func number(_ name: String, default d: Double) throws -> Double {
            guard let t = args.value(name) else { return d }
            guard let v = Double(t), v.isFinite, v >= 0 else { throw UsageError(message: "\(name) must be a non-negative number, not '\(t)'", command: "distill") }
            return v
        }
        guard let loss = KDLoss(rawValue: args.value("--loss") ?? "forward-kl") else {
            throw UsageError(message: "--loss must be one of \(KDLoss.allCases.map(\.rawValue).joined(separator: ", "))", command: "distill")
        }
        let ceWeight = try number("--ce-weight", default: 0)
        guard ceWeight <= 1 else { throw UsageError(message: "--ce-weight must be between 0 and 1", command: "distill") }
        let dtype = try args.value("--dtype").map { t -> DTypeChoice in
            guard let d = DTypeChoice.parse(t), d != .keep else { throw UsageError(message: "unknown --dtype '\(t)'", command: "distill") }
            return d
        }
        if try FileSystem.kind(of: out) != .missing && !args.flag("--force") {
            throw CheckpointError.outputExists(path: out)
        }

        let cache = try LogitCacheReader(path: cachePath)
        let model = try DecoderModel(path: studentPath)
        // The student must read the cache's token ids as the teacher did.
        let tokenizer = try Tokenizers.forModel(path: studentPath)
        let tid = TeacherText.tokenizerIdentity(tokenizer.files)
        if tid != cache.header.tokenizerIdentity {
            throw LogitCacheError.mismatch(path: cachePath, other: studentPath,
                                           reason: "the cache was built with tokenizer \(cache.header.tokenizerIdentity), the student's is \(tid)")
        }
        if loss != .forwardKL, case .sample = cache.header.encoding {
            Console.err("ckpt: note: \(loss.rawValue) from a sample cache is biased (only forward KL and cross-entropy have unbiased gradients from draws)\n")
        }
        let batch = try args.int("--batch", default: 4, min: 1)
        var budget: Int?
        if let t = args.value("--memory-budget") {
            guard let b = ConvertCommand.parseSize(t), b > 0 else {
                throw UsageError(message: "--memory-budget takes a size such as 1G, 256M or 512MiB, not '\(t)'", command: "distill")
            }
            budget = b
        }
        guard let products = TrainableDecoder.Products(rawValue: args.value("--matmul") ?? "int8") else {
            throw UsageError(message: "--matmul must be int8 or f32, not '\(args.value("--matmul") ?? "")'", command: "distill")
        }
        let eightBitState: Bool
        switch args.value("--optimizer-state") ?? "f32" {
        case "f32": eightBitState = false
        case "8bit": eightBitState = true
        case let other: throw UsageError(message: "--optimizer-state must be f32 or 8bit, not '\(other)'", command: "distill")
        }
        let checkpoints = out + ".checkpoints"
        let perStep = batch * cache.header.sequenceLength
        var steps = try args.optionalInt("--steps", min: 1)
        if let t = try args.size("--tokens") { steps = max(1, (t + perStep - 1) / perStep) }
        let total = steps ?? max(1, cache.sequenceCount / batch)
        let lr = try number("--lr", default: 1e-4)
        let warmup = try args.optionalInt("--warmup", min: 0) ?? min(100, total / 20)
        var settings = Distiller.Settings(steps: total, schedule: LearningRateSchedule(peak: lr, minimum: try number("--min-lr", default: lr / 10),
                                                                                      warmup: warmup, steps: total))
        settings.loss = loss
        settings.temperature = try number("--temperature", default: cache.header.temperature)
        guard settings.temperature > 0 else { throw UsageError(message: "--temperature must be positive", command: "distill") }
        settings.crossEntropyWeight = ceWeight
        settings.batch = batch
        guard let seed = UInt64(args.value("--seed") ?? "0") else { throw UsageError(message: "--seed must be a non-negative integer", command: "distill") }
        settings.seed = seed
        settings.checkpointEvery = try args.int("--checkpoint-every", default: 0, min: 0)
        settings.eightBitState = eightBitState
        var teacher: DecoderModel?
        var channels: [Int]?
        if let kindName = args.value("--hidden-loss") {
            guard let kind = HiddenStateSettings.Kind(rawValue: kindName) else {
                throw UsageError(message: "--hidden-loss must be cosine or mse, not '\(kindName)'", command: "distill")
            }
            guard let teacherPath = args.value("--teacher") else { throw UsageError(message: "--hidden-loss needs --teacher <model>", command: "distill") }
            let t = try DecoderModel(path: teacherPath)
            let record = try PruneRecord.read(from: model.checkpoint)
            var pairs = HiddenStateSettings.defaultPairs(studentLayers: model.spec.layers, teacherLayers: t.spec.layers, keptLayers: record?.keptLayers)
            if let text = args.value("--hidden-layers") {
                guard let p = HiddenStateSettings.parsePairs(text) else {
                    throw UsageError(message: "--hidden-layers takes student:teacher pairs such as 11:23,23:29, not '\(text)'", command: "distill")
                }
                pairs = p
            }
            settings.hidden = HiddenStateSettings(kind: kind, weight: try number("--hidden-weight", default: 1), pairs: pairs)
            Console.err("ckpt: hidden-state loss (\(kind.rawValue)) on student:teacher layers \(pairs.map(\.description).joined(separator: ","))\n")
            teacher = t
            channels = record?.hiddenKept
        } else if args.value("--hidden-weight") != nil || args.value("--hidden-layers") != nil {
            throw UsageError(message: "--hidden-weight and --hidden-layers go with --hidden-loss", command: "distill")
        }
        let plan = try MemoryPlan.choose(budget: budget, spec: model.spec, slots: try TrainableDecoder.slots(of: model),
                                         tokens: cache.header.sequenceLength, logitRows: 64, eightBitState: eightBitState,
                                         baseline: ProcessMemory.resident ?? 0, chunkBytes: MemoryPlan.cacheDataBytes(cache.header, batch: batch),
                                         extra: teacher.map { [("live teacher", MemoryPlan.teacherRunBytes($0, batch: batch, tokens: cache.header.sequenceLength,
                                                                                                  pairs: settings.hidden?.pairs.count ?? 0))] } ?? [],
                                         products: products)
        var residence = StateResidence.memory
        if plan.streamState {
            let live = FileSystem.join(checkpoints, "live")
            if try FileSystem.kind(of: checkpoints) != .directory { try FileSystem.makeDirectory(checkpoints) }
            FileSystem.removeTree(live)
            try FileSystem.makeDirectory(live)
            residence = .files(directory: live)
        }
        if budget != nil { Console.err("ckpt: memory plan: \(plan)\n") }
        let student = try TrainableDecoder(model: model, residence: residence, recomputeActivations: plan.recomputeActivations)
        student.products = products
        let distiller = try Distiller(student: student, cache: cache, settings: settings, stateResidence: residence, teacher: teacher, channels: channels)
        if args.flag("--resume") {
            if let r = try distiller.resume(from: checkpoints) {
                for s in r.skipped { Console.err("ckpt: skipped checkpoint \(s)\n") }
                Console.err(r.step > 0 ? "ckpt: resuming from step \(r.step) of \(total)\n" : "ckpt: no usable checkpoint in \(checkpoints); starting fresh\n")
            } else {
                Console.err("ckpt: no checkpoint in \(checkpoints); starting fresh\n")
            }
        }
        // Held-out sequences, made as the cache's are: BOS, then the text's tokens.
        var heldOut: [[Int32]] = []
        if let evalFile = args.value("--eval-file") {
            let bytes = try FileSystem.readFile(evalFile, limit: 1 << 32)
            let text = TeacherText(tokens: tokenizer.encode(bytes: bytes, special: false), length: cache.header.sequenceLength,
                                   bos: cache.header.bos, identity: "")
            if text.tokens.isEmpty { throw CheckpointError.malformed(path: evalFile, reason: "no tokens to score") }
            heldOut = (0..<min(try args.int("--eval-chunks", default: 4, min: 1), text.sequenceCount)).map { text.sequence($0) }
        }
        // A benchmark scored with the student itself as it trains.
        var taskEval: (task: MultipleChoiceTask, settings: MultipleChoiceEval.Settings, scorer: StudentTaskScorer)?
        if let data = args.value("--eval-task") {
            let task = try MultipleChoiceTask.read(path: data)
            guard let format = PromptFormat(rawValue: args.value("--eval-task-format") ?? "cloze") else {
                throw UsageError(message: "--eval-task-format is cloze or mcf", command: "distill")
            }
            let settings = MultipleChoiceEval.Settings(format: format, shots: 0, limit: try args.int("--eval-task-limit", default: 100, min: 1))
            taskEval = (task, settings, StudentTaskScorer(student: student, tokenizer: tokenizer))
        }
        var taskScores: [(step: Int, acc: Double, accNorm: Double)] = []
        var taskError: (any Error)?
        let startStep = distiller.optimizer.step
        var policy = TrainingRunPolicy()
        policy.heldOut = heldOut
        policy.evalEvery = try args.int("--eval-every", default: max(1, total / 10), min: 1)
        policy.checkpointDirectory = checkpoints
        policy.logPath = args.value("--log")
        let bar = ProgressBar(label: "distill", total: total, totalBytes: 0)
        let run = try distiller.run(policy) { event in
            switch event {
            case let .evaluationPoint(step):
                guard let t = taskEval, taskError == nil else { break }
                do {
                    let r = try MultipleChoiceEval.run(t.task, scorer: t.scorer, settings: t.settings)
                    taskScores.append((step, r.overall.acc, r.overall.accNorm))
                    Console.err("\nckpt: step \(step): \(t.settings.format.rawValue) accuracy on \(r.overall.n) questions \(formatFixed(100 * r.overall.acc, digits: 1))% (acc_norm \(formatFixed(100 * r.overall.accNorm, digits: 1))%)\n")
                } catch { taskError = error }
            case let .heldOut(step, ppl):
                if step == startStep { Console.err("ckpt: held-out perplexity at step \(step): \(formatFixed(ppl, digits: 3))\n") }
            case let .skipped(r):
                Console.err("\nckpt: step \(r.step): loss or gradients not finite (distillation \(r.distillationLoss), gradient norm \(r.gradientNorm)); step skipped\n")
            case let .step(r, rate):
                bar.update(done: r.step, bytesDone: 0, force: r.step == total,
                           detail: "\(Int(rate)) tok/s loss \(formatFixed(ceWeight < 1 ? r.distillationLoss : r.crossEntropy, digits: 4)) lr \(String(format: r.learningRate)) RSS \(formatBytes(currentResidentBytes()))")
            }
        }
        if let taskError { throw taskError }
        let tokens = run.tokens, first = run.first, last = run.last, skipped = run.skippedSteps
        bar.finish()
        if let plot = args.value("--plot") {
            try TrainingPlot.drawing(loss: run.loss, lossName: ceWeight < 1 ? "\(loss.rawValue) loss" : "cross-entropy",
                                     heldOut: run.heldOut.map { ($0.step, $0.perplexity) },
                                     task: taskScores.map { ($0.step, $0.acc) }, taskName: taskEval.map { "\($0.settings.format.rawValue) accuracy" } ?? "").write(to: plot)
        }
        let summary = try StudentWriter.write(student, source: model.checkpoint, to: out, dtype: dtype, overwrite: args.flag("--force"),
                                              metadata: [MetadataEntry(key: "ckpt.distill", value: .string("cache \(cache.header.teacherIdentity) steps \(total) loss \(loss.rawValue)"))])
        if case let .files(live) = residence { FileSystem.removeTree(live) }
        let seconds = run.seconds
        if args.flag("--json") {
            var w = JSONWriter()
            w.beginObject()
            w.int(total, key: "steps")
            w.int(tokens, key: "tokens")
            if let first { w.double(first.distillationLoss, key: "first_kd_loss"); w.double(first.crossEntropy, key: "first_ce_loss") }
            if let last { w.double(last.distillationLoss, key: "last_kd_loss"); w.double(last.crossEntropy, key: "last_ce_loss") }
            if settings.hidden != nil, let first, let last { w.double(first.hiddenLoss, key: "first_hidden_loss"); w.double(last.hiddenLoss, key: "last_hidden_loss") }
            w.int(skipped, key: "skipped_steps")
            w.int(distiller.optimizer.stateBytes, key: "optimizer_state_bytes")
            if let budget { w.int(budget, key: "memory_budget_bytes") }
            w.bool(plan.streamState, key: "streamed_state")
            w.bool(plan.recomputeActivations, key: "recomputed_activations")
            w.int(plan.total, key: "planned_bytes")
            if let h = run.heldOut.first { w.double(h.perplexity, key: "first_heldout_ppl") }
            if let h = run.heldOut.last { w.double(h.perplexity, key: "last_heldout_ppl") }
            if let f = taskScores.first, let l = taskScores.last {
                w.double(f.acc, key: "first_task_acc"); w.double(f.accNorm, key: "first_task_acc_norm")
                w.double(l.acc, key: "last_task_acc"); w.double(l.accNorm, key: "last_task_acc_norm")
            }
            w.double(seconds, key: "seconds")
            w.double(Double(tokens) / max(seconds, 1e-9), key: "tokens_per_s")
            if let peak = peakResidentBytes() { w.int(peak, key: "peak_rss_bytes") }
            w.endObject()
            Console.out(w.text + "\n")
        } else {
            Console.out("\(out): \(total) steps, \(formatCount(tokens)) tokens in \(formatDuration(seconds)) (\(formatFixed(Double(tokens) / max(seconds, 1e-9), digits: 1)) tokens/s); \(ceWeight < 1 ? "distillation" : "cross-entropy") loss \(first.map { formatFixed(ceWeight < 1 ? $0.distillationLoss : $0.crossEntropy, digits: 4) } ?? "-") → \(last.map { formatFixed(ceWeight < 1 ? $0.distillationLoss : $0.crossEntropy, digits: 4) } ?? "-"); \(formatBytes(summary.bytesWritten)) written\n")
        }
    }
}

/// Loss curves over steps as an SVG: the training loss per step, and the held-out
/// perplexity where it was measured.
enum TrainingPlot {
    /// The training loss over steps and, below it, held-out perplexity and a benchmark's accuracy.
    static func drawing(loss: [(step: Int, loss: Double)], lossName: String, heldOut: [(step: Int, ppl: Double)],
                        task: [(step: Int, acc: Double)] = [], taskName: String = "") -> Drawing {
        let w = 720.0, panel = 220.0, left = 60.0, right = 20.0, top = 30.0, gap = 60.0
        let panels = 1 + (heldOut.isEmpty ? 0 : 1) + (task.isEmpty ? 0 : 1)
        let h = top + Double(panels) * panel + Double(panels - 1) * gap + 40
        let maxStep = Double(max(loss.last?.step ?? 1, heldOut.last?.step ?? 1, task.last?.step ?? 1, 1))
        var d = Drawing(width: Int(w), height: Int(h))
        func draw(_ points: [(Double, Double)], title: String, y0: Double, color: Drawing.Color, markers: Bool) {
            let ys = points.map(\.1).filter(\.isFinite)
            guard let lo = ys.min(), let hi = ys.max() else { return }
            let span = hi > lo ? hi - lo : max(abs(hi), 1) * 0.1
            let (a, b) = (lo - 0.05 * span, hi + 0.05 * span)
            func x(_ v: Double) -> Double { left + (w - left - right) * v / maxStep }
            func y(_ v: Double) -> Double { y0 + panel - panel * (v - a) / (b - a) }
            d.text(left, y0 - 8, title, size: 13)
            d.shapes.append(.rect(x: left, y: y0, width: w - left - right, height: panel, fill: nil, stroke: Drawing.Color(hex: "#999999"), title: nil))
            for k in 0...4 {
                let v = a + (b - a) * Double(k) / 4
                d.text(left - 6, y(v) + 4, formatFixed(v, digits: 3), anchor: .end)
            }
            let pts = points.filter { $0.1.isFinite }.map { (x($0.0), y($0.1)) }
            d.shapes.append(.polyline(pts, stroke: color, width: 1.5))
            if markers { for p in pts { d.shapes.append(.circle(x: p.0, y: p.1, r: 3, fill: color, title: nil)) } }
            d.text(w - right, y0 + panel + 16, "step (of \(Int(maxStep)))", anchor: .end)
        }
        draw(loss.map { (Double($0.step), $0.loss) }, title: "training \(lossName) per token", y0: top, color: Drawing.Color(hex: "#1f77b4"), markers: false)
        if !heldOut.isEmpty {
            draw(heldOut.map { (Double($0.step), $0.ppl) }, title: "held-out perplexity (every position)", y0: top + panel + gap,
                 color: Drawing.Color(hex: "#d62728"), markers: true)
        }
        if !task.isEmpty {
            draw(task.map { (Double($0.step), 100 * $0.acc) }, title: "\(taskName) (%)", y0: top + Double(panels - 1) * (panel + gap),
                 color: Drawing.Color(hex: "#2ca02c"), markers: true)
        }
        return d
    }
}

extension String {
    /// A learning rate as 1.2e-04.
    init(format x: Double) {
        guard x > 0, x.isFinite else { self = "\(x)"; return }
        var e = 0, m = x
        while m < 1 { m *= 10; e -= 1 }
        while m >= 10 { m /= 10; e += 1 }
        self = "\(formatFixed(m, digits: 1))e\(e < 0 ? "-" : "+")\(abs(e) < 10 ? "0" : "")\(abs(e))"
    }
}
