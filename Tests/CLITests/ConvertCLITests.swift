import Basics
import CheckpointIO
import Foundation
import TestSupport
import XCTest

final class ConvertCLITests: XCTestCase {
    func testConvertWithJSONSummaryAndExistingDestination() throws {
        let dir = makeTemporaryDirectory()
        let r = try runCkpt(["convert", smolLM2Path, dir + "/hf", "--dtype", "bf16", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let j = try JSONParser.parse(Array(r.stdout.utf8))
        XCTAssertEqual(j["tensors"], JSONValue.number("272"))
        XCTAssertEqual(j["format"]?.stringValue, "safetensors")
        XCTAssertEqual(j["bytes_written"]?.nonNegativeInt, 134_515_008 * 2)
        XCTAssertFalse(r.stderr.contains("warning"), r.stderr)
        XCTAssertTrue(try FileSystem.list(directory: dir + "/hf").contains("tokenizer.json"))

        let again = try runCkpt(["convert", smolLM2Path, dir + "/hf"])
        XCTAssertEqual(again.status, 73)
        XCTAssertTrue(again.stderr.contains("Error: \(dir)/hf: the output exists and is left as it is; pass --force to replace it"), again.stderr)
        let forced = try runCkpt(["convert", smolLM2Path, dir + "/hf", "--dtype", "f16", "--force"])
        XCTAssertEqual(forced.status, 0, forced.stderr)
        XCTAssertEqual(try openCheckpoint(path: dir + "/hf").tensors.first?.dtype.name, "F16")
        XCTAssertEqual(try FileSystem.list(directory: dir), ["hf"], "no staging or old copy left")
    }

    func testUsageErrors() throws {
        for (args, fragment) in [
            (["convert", smolLM2Path, "/tmp/x", "--dtype", "q9_9"], "unknown --dtype 'q9_9'"),
            (["convert", smolLM2Path, "/tmp/x", "--to", "onnx"], "--to takes safetensors or gguf"),
            (["convert", smolLM2Path, "/tmp/x", "--to", "gguf"], "must end in .gguf"),
            (["convert", smolLM2Path, "/tmp/x", "--shard-size", "lots"], "--shard-size takes a size"),
            (["convert", smolLM2Path], "takes an input and an output (or --in-place)"),
        ] {
            let r = try runCkpt(args)
            XCTAssertEqual(r.status, 64, "\(args)")
            XCTAssertTrue(r.stderr.contains(fragment), "\(args): \(r.stderr)")
        }
    }

    func testReadOnlyOrMissingDestination() throws {
        let ro = try runCkpt(["convert", smolLM2Path, "/sys/ckpt-test.gguf"])
        XCTAssertEqual(ro.status, 73, ro.stderr)
        XCTAssertTrue(ro.stderr.contains("Permission denied") || ro.stderr.contains("Read-only"), ro.stderr)
        let missing = try runCkpt(["convert", smolLM2Path, "/nonexistent-dir/x.gguf"])
        XCTAssertEqual(missing.status, 73, missing.stderr)
        XCTAssertTrue(missing.stderr.contains("/nonexistent-dir"), missing.stderr)
    }

    /// A checkpoint no name map knows (sentence-transformers BERT) reshards and converts
    /// with its names kept, byte for byte.
    func testBERTStyleCheckpointReshardsWithoutLoss() throws {
        let dir = makeTemporaryDirectory()
        mkdir(dir + "/bert", 0o755)
        let names = ["embeddings.word_embeddings.weight", "embeddings.LayerNorm.weight", "encoder.layer.0.attention.self.query.weight",
                     "encoder.layer.0.attention.self.query.bias", "pooler.dense.weight"]
        let tensors = names.enumerated().map { i, n in
            SafetensorsTestTensor(n, dtype: "F32", shape: [4, 8], data: floatBytes((0..<32).map { Float(i * 100 + $0) / 3 }))
        }
        writeFile(dir + "/bert/model.safetensors", buildSafetensors(tensors, metadata: ["format": "pt"]))
        writeFile(dir + "/bert/config.json", Array(#"{"model_type": "bert", "hidden_size": 8}"#.utf8))
        writeFile(dir + "/bert/modules.json", Array("[]".utf8))
        let r = try runCkpt(["convert", dir + "/bert", dir + "/resharded", "--shard-size", "300"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let a = try openCheckpoint(path: dir + "/bert"), b = try openCheckpoint(path: dir + "/resharded")
        XCTAssertEqual(b.files.count, 3, "128-byte tensors in shards of at most 300 bytes: 2, 2, 1")
        XCTAssertEqual(b.tensors.map(\.name), a.tensors.map(\.name))
        for (x, y) in zip(a.tensors, b.tensors) { XCTAssertTrue(sameBytes(x.bytes, y.bytes), x.name) }
        XCTAssertTrue(try FileSystem.list(directory: dir + "/resharded").contains("modules.json"))
        let refused = try runCkpt(["convert", dir + "/bert", dir + "/bert.gguf"])
        XCTAssertEqual(refused.status, 69, "a GGUF with HF names and no architecture loads nowhere: \(refused.stderr)")
        XCTAssertTrue(refused.stderr.contains("architecture 'bert' has no name map") && refused.stderr.contains("--keep-names"), refused.stderr)
        XCTAssertEqual(try FileSystem.kind(of: dir + "/bert.gguf"), .missing)
        let g = try runCkpt(["convert", dir + "/bert", dir + "/bert.gguf", "--keep-names"])
        XCTAssertEqual(g.status, 0, g.stderr)
        XCTAssertTrue(g.stderr.contains("has no name map: tensor names are kept"), g.stderr)
        XCTAssertEqual(try GGUFCheckpoint(path: dir + "/bert.gguf").tensors.map(\.name), names)
    }

    /// A write that fails mid-stream (here a file-size limit, as a full disk would) is
    /// reported with the file and errno text, and leaves nothing behind.
    func testWriteFailureLeavesNothing() throws {
        let dir = makeTemporaryDirectory()
        let r = try runCkpt(["convert", smolLM2Path, dir + "/out", "--dtype", "f32"], wrapper: ["/usr/bin/prlimit", "--fsize=20000000"])
        XCTAssertEqual(r.status, 74, r.stderr)
        XCTAssertTrue(r.stderr.contains("Error: ") && r.stderr.contains("File too large"), r.stderr)
        XCTAssertEqual(try FileSystem.list(directory: dir), [], "the staging directory was removed")
    }
}

final class TokenizeCLITests: XCTestCase {
    func testTokenizeGGUFAndConvertedHFDirectoryAlike() throws {
        // llama.cpp: tokenize("Hello world, it's 2026!", add_bos=False, special=False)
        let expected = "19556 905 28 357 506 216 34 32 34 38 17\n"
        let g = try runCkpt(["tokenize", "--model", smolLM2Path, "--text", "Hello world, it's 2026!"])
        XCTAssertEqual(g.status, 0, g.stderr)
        XCTAssertEqual(g.stdout, expected)
        let dir = makeTemporaryDirectory()
        XCTAssertEqual(try runCkpt(["convert", smolLM2Path, dir + "/hf", "--dtype", "bf16"]).status, 0)
        let h = try runCkpt(["tokenize", "--model", dir + "/hf", "--text", "Hello world, it's 2026!"])
        XCTAssertEqual(h.stdout, expected, h.stderr)
        let j = try JSONParser.parse(Array(try runCkpt(["tokenize", "--model", smolLM2Path, "--text", "Hi there", "--json"]).stdout.utf8))
        XCTAssertEqual(j["pieces"], .array([.string("Hi"), .string("Ġthere")]))
    }

    func testTokenizeErrors() throws {
        XCTAssertEqual(try runCkpt(["tokenize", "--model", smolLM2Path]).status, 64)
        XCTAssertEqual(try runCkpt(["tokenize", "--text", "x"]).status, 64)
        let dir = makeTemporaryDirectory()
        var b = GGUFBuilder()
        b.metadata = [("tokenizer.ggml.model", .string("llama"))]
        writeFile(dir + "/sp.gguf", b.build())
        let sp = try runCkpt(["tokenize", "--model", dir + "/sp.gguf", "--text", "x"])
        XCTAssertEqual(sp.status, 69, sp.stderr)
        XCTAssertTrue(sp.stderr.contains("has no tokens"), "a SentencePiece vocabulary without its tokens: \(sp.stderr)")
    }
}
