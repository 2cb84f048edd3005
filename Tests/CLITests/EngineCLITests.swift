import Basics
import CheckpointIO
import Foundation
import TestSupport
import XCTest

/// `ckpt eval`, `generate` and `tokenize` as a user runs them: real model, JSON output,
/// and every bad input the engine promises a clear error for.
final class EngineCLITests: XCTestCase {
    func run(_ args: [String]) throws -> CLIResult { try runCkpt(args) }

    var tinyLlama: String { fixturesPath + "/engine/tiny-llama.gguf" }

    func textFile(_ text: String) -> String {
        let path = makeTemporaryDirectory() + "/text.txt"
        writeFile(path, Array(text.utf8))
        return path
    }

    /// The corpus-like text of the Formats docs: plenty of tokens, inside the repository.
    var formatsText: String {
        let docs = ["gguf.md", "safetensors.md", "journal.md", "tokenizer.md"]
        let text = docs.compactMap { try? FileSystem.readFile(repositoryRoot + "/Formats/" + $0) }.map { String(decoding: $0, as: UTF8.self) }.joined(separator: "\n")
        return textFile(text)
    }

    func testEvalOnSmolLM2PrintsOneJSONObject() throws {
        try XCTSkipUnless(FileSystem.kind(of: smolLM2Path) == .file, "run Tools/fetch_model first")
        let r = try run(["eval", "--model", smolLM2Path, "--file", formatsText, "--ctx", "128", "--chunks", "2", "--threads", "2", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, "stdout holds one JSON line")
        let json = try JSONParser.parse(Array(lines[0].utf8))
        let ppl = try XCTUnwrap(json["ppl"]?.doubleValue), nll = try XCTUnwrap(json["nll"]?.doubleValue)
        XCTAssertEqual(ppl, Foundation.exp(nll), accuracy: 1e-6 * ppl)
        XCTAssertTrue((2..<200).contains(ppl), "a real model on English prose: ppl \(ppl)")
        XCTAssertEqual(json["tokens"]?.nonNegativeInt, 2 * (128 - 1 - 64), "positions ctx/2 … ctx-2 of each chunk")
        XCTAssertGreaterThan(try XCTUnwrap(json["tokens_per_s"]?.doubleValue), 0)
        XCTAssertGreaterThan(try XCTUnwrap(json["peak_rss_bytes"]?.nonNegativeInt), 1 << 20)
        // Streaming gives the same numbers in less memory.
        let s = try run(["eval", "--model", smolLM2Path, "--file", formatsText, "--ctx", "128", "--chunks", "2", "--max-resident", "1M", "--json"])
        XCTAssertEqual(s.status, 0, s.stderr)
        let sj = try JSONParser.parse(Array(s.stdout.utf8))
        XCTAssertEqual(sj["streamed"], .bool(true))
        XCTAssertEqual(try XCTUnwrap(sj["ppl"]?.doubleValue), ppl, accuracy: 1e-9 * ppl)
    }

    func testGenerateChatIsGreedyAndDeterministic() throws {
        try XCTSkipUnless(FileSystem.kind(of: smolLM2Path) == .file, "run Tools/fetch_model first")
        let args = ["generate", "--model", smolLM2Path, "--chat", "--prompt", "What is the capital of France?", "--temperature", "0", "--max-tokens", "12"]
        let a = try run(args), b = try run(args)
        XCTAssertEqual(a.status, 0, a.stderr)
        XCTAssertEqual(a.stdout, b.stdout)
        XCTAssertTrue(a.stdout.contains("Paris"), a.stdout)
        XCTAssertTrue(a.stderr.contains("tokens/s"))
    }

    func testBadInputsGetClearErrors() throws {
        let empty = textFile("")
        var r = try run(["eval", "--model", tinyLlama, "--file", empty])
        XCTAssertEqual(r.status, 65)
        XCTAssertTrue(r.stderr.contains("empty"), r.stderr)

        r = try run(["eval", "--model", tinyLlama, "--file", textFile("too short"), "--ctx", "64"])
        XCTAssertEqual(r.status, 65)
        XCTAssertTrue(r.stderr.contains("fewer than one chunk"), r.stderr)

        r = try run(["eval", "--model", tinyLlama, "--file", formatsText, "--ctx", "1024"])
        XCTAssertEqual(r.status, 64, "the context asked for is the caller's")
        XCTAssertTrue(r.stderr.contains("longer than the model's context of 256 (--ctx)"), r.stderr)

        for bad in [["--threads", "0"], ["--ctx", "2"], ["--chunks", "-1"], ["--max-resident", "lots"]] {
            r = try run(["eval", "--model", tinyLlama, "--file", formatsText] + bad)
            XCTAssertEqual(r.status, 64, "\(bad): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(bad[0]), r.stderr)
        }

        // A file whose architecture the engine does not run.
        let dir = makeTemporaryDirectory()
        writeFile(dir + "/config.json", Array(#"{"model_type": "mamba", "num_hidden_layers": 2, "hidden_size": 8}"#.utf8))
        writeFile(dir + "/model.safetensors", buildSafetensors([SafetensorsTestTensor("x", dtype: "F32", shape: [2], data: floatBytes([1, 2]))]))
        r = try run(["eval", "--model", dir, "--file", formatsText])
        XCTAssertEqual(r.status, 69)
        XCTAssertTrue(r.stderr.contains("architecture 'mamba'"), r.stderr)

        r = try run(["generate", "--model", tinyLlama, "--prompt", "hi", "--chat"])
        XCTAssertEqual(r.status, 69, "no chat template: \(r.stderr)")
        XCTAssertTrue(r.stderr.contains("chat template"), r.stderr)

        r = try run(["generate", "--model", tinyLlama, "--prompt", "hi", "--top-p", "2"])
        XCTAssertEqual(r.status, 64)
    }

    func testTokenizeSpecialParsesControlTokens() throws {
        try XCTSkipUnless(FileSystem.kind(of: smolLM2Path) == .file, "run Tools/fetch_model first")
        let plain = try run(["tokenize", "--model", smolLM2Path, "--text", "<|im_start|>user", "--json"])
        let special = try run(["tokenize", "--model", smolLM2Path, "--text", "<|im_start|>user", "--special", "--json"])
        XCTAssertEqual(plain.status, 0, plain.stderr)
        let p = try XCTUnwrap(JSONParser.parse(Array(plain.stdout.utf8))["ids"]?.arrayValue)
        let s = try XCTUnwrap(JSONParser.parse(Array(special.stdout.utf8))["ids"]?.arrayValue)
        XCTAssertEqual(s.first?.nonNegativeInt, 1, "<|im_start|> is id 1 in SmolLM2")
        XCTAssertGreaterThan(p.count, s.count, "as plain text it is several tokens")
    }
}
