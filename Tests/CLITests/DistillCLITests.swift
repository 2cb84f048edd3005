import Basics
import CheckpointIO
import Foundation
import TestSupport
import XCTest

/// The pipeline's last steps as a user runs them on a tiny model made here: prune, cache
/// the teacher, distill (killed and resumed), evaluate the result.
final class DistillCLITests: XCTestCase {
    let teacher = fixturesPath + "/engine/tiny-llama.gguf"
    let text = fixturesPath + "/logits/text.txt"

    func testPruneCacheDistillResumeEvaluate() throws {
        let dir = makeTemporaryDirectory()
        let student = dir + "/student.gguf"
        var r = try runCkpt(["prune", "--model", teacher, "--ffn", "64", "--method", "magnitude", "-o", student])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try runCkpt(["logits", "build", "--model", teacher, "--file", text, "--seq", "32", "--chunk-sequences", "6", "-o", dir + "/t.cache"])
        XCTAssertEqual(r.status, 0, r.stderr)
        // 27 sequences, 2 per step: steps 1–13 and 14–26 are two passes over the same data.
        let base = ["distill", "--student", student, "--cache", dir + "/t.cache", "--batch", "2", "--lr", "3e-3",
                    "--warmup", "1", "--checkpoint-every", "3", "--dtype", "f32"]
        let common = base + ["--steps", "26"]
        // Held-out measurements and the plot ride along; they must not change the training.
        r = try runCkpt(common + ["--json", "--log", dir + "/log.csv", "--eval-file", text, "--eval-every", "13", "--eval-chunks", "3",
                                  "--plot", dir + "/curves.svg", "-o", dir + "/whole.gguf"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let j = try JSONParser.parse(Array(r.stdout.utf8))
        XCTAssertNotNil(j["last_kd_loss"]?.doubleValue)
        let h0 = try XCTUnwrap(j["first_heldout_ppl"]?.doubleValue), h1 = try XCTUnwrap(j["last_heldout_ppl"]?.doubleValue)
        XCTAssertLessThan(h1, h0, r.stdout)
        let svg = String(decoding: try FileSystem.readFile(dir + "/curves.svg"), as: UTF8.self)
        XCTAssertTrue(svg.hasPrefix("<svg") && svg.contains("held-out perplexity") && svg.hasSuffix("</svg>\n"))
        let log = String(decoding: try FileSystem.readFile(dir + "/log.csv"), as: UTF8.self).split(separator: "\n")
        XCTAssertEqual(log.count, 27)
        XCTAssertTrue(log[0].hasPrefix("step,tokens,kd_loss"))
        XCTAssertEqual(log.filter { !$0.hasSuffix(",,") }.count, 3, "header and two held-out measurements (steps 13 and 26)")
        let kd = log.dropFirst().map { Double($0.split(separator: ",", omittingEmptySubsequences: false)[2])! }
        let pass1 = kd[0..<13].reduce(0, +) / 13, pass2 = kd[13..<26].reduce(0, +) / 13
        XCTAssertLessThan(pass2, 0.9 * pass1, "second pass over the same sequences: \(kd)")

        // Killed after step 7 (checkpoints at 3 and 6), resumed: the same file.
        XCTAssertEqual(try runCkpt(common + ["-o", dir + "/resumed.gguf"], crashAfter: 7), 137)
        XCTAssertEqual(try FileSystem.list(directory: dir + "/resumed.gguf.checkpoints").sorted(), ["step-00000003", "step-00000006"])
        XCTAssertEqual(try FileSystem.kind(of: dir + "/resumed.gguf"), .missing)
        r = try runCkpt(common + ["--resume", "-o", dir + "/resumed.gguf"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("resuming from step 6 of 26"), r.stderr)
        XCTAssertEqual(try FileSystem.readFile(dir + "/resumed.gguf"), try FileSystem.readFile(dir + "/whole.gguf"))
        // --resume with nothing to resume from says so and starts fresh.
        r = try runCkpt(base + ["--resume", "--steps", "2", "-o", dir + "/fresh.gguf"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("starting fresh"), r.stderr)

        // The student loads and scores text.
        r = try runCkpt(["eval", "--model", dir + "/whole.gguf", "--file", text, "--ctx", "32", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertNotNil(try JSONParser.parse(Array(r.stdout.utf8))["ppl"]?.doubleValue)
    }

    /// `--eval-task` scores the student as it trains with its own forward pass: at the start
    /// it answers exactly as `ckpt eval --task mc` answers on the same model, and at the end as
    /// eval answers on the model written (f32, so the same weights); the plot gains the curve.
    func testBenchmarkAccuracyDuringTraining() throws {
        let dir = makeTemporaryDirectory()
        // Short questions from the cached text (the tiny model's context is 256 bytes): which
        // of four words comes next, in the record form of HF's MMLU dumps.
        let words = String(decoding: try FileSystem.readFile(text), as: UTF8.self).split(separator: " ").map(String.init).filter { $0.count > 2 }
        var lines = ""
        for i in 0..<24 {
            let at = 3 * i, answer = i % 4
            func word(_ k: Int) -> String { words[(at + k) % words.count] }
            var choices = [word(7), word(9), word(11)]
            choices.insert(word(5), at: answer)
            var w = JSONWriter()
            w.beginObject()
            w.string((0..<5).map(word).joined(separator: " "), key: "question")
            w.beginArray(key: "choices"); for c in choices { w.string(c) }; w.endArray()
            w.int(answer, key: "answer")
            w.string("next word", key: "subject")
            w.endObject()
            lines += w.text + "\n"
        }
        let mmlu = dir + "/next.jsonl"
        writeFile(mmlu, Array(lines.utf8))
        var r = try runCkpt(["logits", "build", "--model", teacher, "--file", text, "--seq", "32", "-o", dir + "/t.cache"])
        XCTAssertEqual(r.status, 0, r.stderr)
        func evalTask(_ model: String) throws -> (acc: Double, accNorm: Double) {
            let e = try runCkpt(["eval", "--model", model, "--task", "mc", "--data", mmlu, "--format", "cloze", "--f32-activations", "--json"])
            XCTAssertEqual(e.status, 0, e.stderr)
            let j = try JSONParser.parse(Array(e.stdout.utf8))
            return (j["acc"]!.doubleValue!, j["acc_norm"]!.doubleValue!)
        }
        // The damaged student (a third of its FFN) changes its answers as it recovers.
        let student = dir + "/student.gguf"
        r = try runCkpt(["prune", "--model", teacher, "--ffn", "40", "--method", "random", "-o", student])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try runCkpt(["distill", "--student", student, "--cache", dir + "/t.cache", "--steps", "6", "--lr", "5e-3", "--warmup", "1", "--matmul", "f32",
                         "--dtype", "f32", "--eval-task", mmlu, "--eval-task-limit", "24", "--eval-every", "3", "--json", "--plot", dir + "/c.svg",
                         "-o", dir + "/out.gguf"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let j = try JSONParser.parse(Array(r.stdout.utf8))
        let before = try evalTask(student), after = try evalTask(dir + "/out.gguf")
        XCTAssertEqual(j["first_task_acc"]?.doubleValue, before.acc, r.stdout)
        XCTAssertEqual(j["first_task_acc_norm"]?.doubleValue, before.accNorm, r.stdout)
        XCTAssertEqual(j["last_task_acc"]?.doubleValue, after.acc, r.stdout)
        XCTAssertEqual(j["last_task_acc_norm"]?.doubleValue, after.accNorm, r.stdout)
        XCTAssertEqual(r.stderr.components(separatedBy: "cloze accuracy on 24 questions").count - 1, 3, "steps 0, 3 and 6: \(r.stderr)")
        let svg = String(decoding: try FileSystem.readFile(dir + "/c.svg"), as: UTF8.self)
        XCTAssertTrue(svg.contains("cloze accuracy (%)"), svg.prefix(300) + "")
        let bad = dir + "/bad.jsonl"
        writeFile(bad, Array("{\"question\": \"q\", \"choices\": [\"a\"], \"answer\": 0}\n".utf8))
        r = try runCkpt(["distill", "--student", student, "--cache", dir + "/t.cache", "--steps", "1", "--eval-task", bad, "-o", dir + "/x.gguf"])
        XCTAssertEqual(r.status, 65, r.stderr)
        XCTAssertTrue(r.stderr.contains("bad.jsonl"), r.stderr)
        XCTAssertEqual(try FileSystem.kind(of: dir + "/x.gguf"), .missing)
    }

    func testRefusesACacheFromAnotherTokenizer() throws {
        let dir = makeTemporaryDirectory()
        // SmolLM2's cache with the tiny llama as student: other vocabulary.
        var r = try runCkpt(["logits", "build", "--model", smolLM2Path, "--file", text, "--seq", "16", "--sequences", "1", "-o", dir + "/s.cache"])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try runCkpt(["distill", "--student", teacher, "--cache", dir + "/s.cache", "--steps", "1", "-o", dir + "/x.gguf"])
        XCTAssertEqual(r.status, 65)
        XCTAssertTrue(r.stderr.contains("tokenizer"), r.stderr)
        XCTAssertEqual(try FileSystem.kind(of: dir + "/x.gguf"), .missing)
        // Bad arguments: a usage error naming the option, nothing written.
        for (bad, says) in [(["--loss", "kl2"], "--loss"), (["--ce-weight", "2"], "--ce-weight"), (["--optimizer-state", "4bit"], "--optimizer-state"),
                            (["--dtype", "q3_z"], "--dtype"), (["--memory-budget", "lots"], "--memory-budget")] {
            r = try runCkpt(["distill", "--student", teacher, "--cache", fixturesPath + "/logits/tiny-topk.cache", "--steps", "1"] + bad + ["-o", dir + "/y.gguf"])
            XCTAssertEqual(r.status, 64, r.stderr)
            XCTAssertTrue(r.stderr.hasPrefix("Error:") && r.stderr.contains(says), r.stderr)
            XCTAssertEqual(try FileSystem.kind(of: dir + "/y.gguf"), .missing)
        }
    }

    /// A budget too small for even the leanest plan is refused before any work, naming the
    /// minimum; a budget that fits trains to the very same student as no budget.
    func testMemoryBudget() throws {
        let dir = makeTemporaryDirectory()
        let cache = fixturesPath + "/logits/tiny-topk.cache"
        var r = try runCkpt(["distill", "--student", teacher, "--cache", cache, "--steps", "2", "--memory-budget", "4M", "-o", dir + "/x.gguf"])
        XCTAssertEqual(r.status, 64, "a budget the run cannot meet is the caller's request, not a bug")
        XCTAssertTrue(r.stderr.contains("memory budget of 4.0 MiB") && r.stderr.contains("at least") && r.stderr.contains("(--memory-budget)"), r.stderr)
        XCTAssertEqual(try FileSystem.kind(of: dir + "/x.gguf"), .missing)
        r = try runCkpt(["distill", "--student", teacher, "--cache", cache, "--steps", "2", "-o", dir + "/a.gguf"])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try runCkpt(["distill", "--student", teacher, "--cache", cache, "--steps", "2", "--memory-budget", "1G", "--json", "-o", dir + "/b.gguf"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("memory plan: training state in memory"), r.stderr)
        XCTAssertTrue(r.stdout.contains("\"memory_budget_bytes\":1073741824"), r.stdout)
        XCTAssertEqual(try FileSystem.readFile(dir + "/a.gguf", limit: 1 << 30), try FileSystem.readFile(dir + "/b.gguf", limit: 1 << 30))
    }

    /// A depth-pruned student with the intermediate-state loss: the pairs come from its
    /// prune record, the hidden loss falls, and only the cache's teacher is accepted.
    func testHiddenStateLossOnADepthPrunedStudent() throws {
        let dir = makeTemporaryDirectory()
        let student = dir + "/student.gguf"
        var r = try runCkpt(["prune", "--model", teacher, "--drop-layers", "0", "-o", student])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try runCkpt(["logits", "build", "--model", teacher, "--file", text, "--seq", "32", "-o", dir + "/t.cache"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let base = ["distill", "--student", student, "--cache", dir + "/t.cache", "--batch", "2", "--lr", "3e-3", "--steps", "12", "--warmup", "1"]
        r = try runCkpt(base + ["--hidden-loss", "cosine", "--teacher", teacher, "--json", "-o", dir + "/out.gguf"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("student:teacher layers 0:1"), r.stderr)
        let j = try JSONParser.parse(Array(r.stdout.utf8))
        let first = try XCTUnwrap(j["first_hidden_loss"]?.doubleValue), last = try XCTUnwrap(j["last_hidden_loss"]?.doubleValue)
        XCTAssertLessThan(last, first, r.stdout)
        r = try runCkpt(base + ["--hidden-loss", "cosine", "--teacher", fixturesPath + "/engine/tiny-qwen2.gguf", "-o", dir + "/x.gguf"])
        XCTAssertEqual(r.status, 65)
        XCTAssertTrue(r.stderr.contains("not the teacher the cache was built from"), r.stderr)
        r = try runCkpt(base + ["--hidden-loss", "cosine", "-o", dir + "/x.gguf"])
        XCTAssertEqual(r.status, 64)
        XCTAssertTrue(r.stderr.contains("--teacher"), r.stderr)
        XCTAssertEqual(try FileSystem.kind(of: dir + "/x.gguf"), .missing)
    }

    /// --plot with a .png name draws the same curves as a PNG that decodes and holds them.
    func testPlotAsPNG() throws {
        let dir = makeTemporaryDirectory()
        let r = try runCkpt(["distill", "--student", teacher, "--cache", fixturesPath + "/logits/tiny-topk.cache", "--steps", "6", "--lr", "3e-3",
                             "--eval-file", text, "--eval-every", "2", "--plot", dir + "/curves.png", "-o", dir + "/out.gguf"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let png = try XCTUnwrap(decodeStoredPNG(try FileSystem.readFile(dir + "/curves.png", limit: 1 << 26)), "not a valid PNG")
        XCTAssertEqual(png.width, 720)
        XCTAssertEqual(png.height, 570, "two panels: loss and held-out perplexity")
        func count(_ c: (UInt8, UInt8, UInt8)) -> Int {
            stride(from: 0, to: png.rgb.count, by: 3).filter { png.rgb[$0] == c.0 && png.rgb[$0 + 1] == c.1 && png.rgb[$0 + 2] == c.2 }.count
        }
        XCTAssertGreaterThan(count((0x1f, 0x77, 0xb4)), 200, "the loss curve")
        XCTAssertGreaterThan(count((0xd6, 0x27, 0x28)), 100, "the held-out curve and its markers")
        XCTAssertGreaterThan(count((0, 0, 0)), 300, "labels")
        XCTAssertGreaterThan(count((255, 255, 255)), png.width * png.height / 2, "a white page")
    }
}
