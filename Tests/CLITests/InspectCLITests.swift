import Basics
import CheckpointIO
import Foundation
import TestSupport
import XCTest

/// Runs the built `ckpt` binary as a user would, on real and crafted files.
final class InspectCLITests: XCTestCase {
    func run(_ args: [String]) throws -> CLIResult { try runCkpt(args) }

    func json(_ r: CLIResult) throws -> JSONValue {
        try JSONParser.parse(Array(r.stdout.utf8))
    }

    func testHelpAndVersion() throws {
        let help = try run(["--help"])
        XCTAssertEqual(help.status, 0)
        XCTAssertTrue(help.stdout.contains("USAGE: ckpt <subcommand>"))
        XCTAssertTrue(help.stdout.contains("inspect"))
        for args in [["help", "inspect"], ["inspect", "--help"]] {
            let r = try run(args)
            XCTAssertEqual(r.status, 0, "\(args)")
            XCTAssertTrue(r.stdout.contains("USAGE: ckpt inspect <path>"), "\(args)")
            XCTAssertTrue(r.stdout.contains("--filter <glob>"), "\(args)")
        }
        let v = try run(["--version"])
        XCTAssertEqual(v.status, 0)
        XCTAssertTrue(v.stdout.hasPrefix("ckpt "))
    }

    func testUsageErrorsExit64() throws {
        for args in [["frobnicate"], ["inspect"], ["inspect", "a", "b"], ["inspect", "x", "--bogus"], ["inspect", "x", "--filter"], ["help", "nope"], []] {
            let r = try run(args)
            XCTAssertEqual(r.status, 64, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("Error: ") || args.isEmpty, "\(args): \(r.stderr)")
            XCTAssertEqual(r.stdout, "", "\(args)")
        }
    }

    func testDataErrorsNameTheFileAndExitNonZero() throws {
        let dir = makeTemporaryDirectory()
        let missing = try run(["inspect", dir + "/absent.gguf"])
        XCTAssertEqual(missing.status, 66)
        XCTAssertEqual(missing.stderr, "Error: \(dir)/absent.gguf: no such file or directory\n")

        var b = GGUFTests_sample()
        b.tensorCountOverride = 1 << 60
        writeFile(dir + "/bad.gguf", b.build())
        let bad = try run(["inspect", dir + "/bad.gguf", "--json"])
        XCTAssertEqual(bad.status, 65)
        XCTAssertTrue(bad.stderr.hasPrefix("Error: \(dir)/bad.gguf: malformed file: the header claims 1152921504606846976 tensors"), bad.stderr)
        XCTAssertEqual(bad.stdout, "", "no partial JSON on failure")

        var v1 = GGUFTests_sample()
        v1.version = 1
        writeFile(dir + "/v1.gguf", v1.build())
        XCTAssertEqual(try run(["inspect", dir + "/v1.gguf"]).status, 69)
    }

    func testJSONOnRealGGUF() throws {
        let r = try run(["inspect", smolLM2Path, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stderr, "")
        let j = try json(r)
        XCTAssertEqual(j["format"]?.stringValue, "gguf")
        XCTAssertEqual(j["metadata"]?["llama.block_count"], .number("30"))
        XCTAssertEqual(j["metadata"]?["tokenizer.ggml.tokens"], .object([("type", .string("string")), ("count", .number("49152"))]))
        let tensors = try XCTUnwrap(j["tensors"]?.arrayValue)
        XCTAssertEqual(tensors.count, 272)
        let emb = tensors[0]
        XCTAssertEqual(emb["name"]?.stringValue, "token_embd.weight")
        XCTAssertEqual(emb["dtype"]?.stringValue, "Q8_0")
        XCTAssertEqual(emb["shape"], .array([.number("49152"), .number("576")]))
        XCTAssertEqual(emb["offset"]?.nonNegativeInt, 1_785_664)
        XCTAssertEqual(emb["nbytes"]?.nonNegativeInt, 30_081_024)
        XCTAssertEqual(emb["file"]?.stringValue, smolLM2Path)
        XCTAssertEqual(j["config"]?["kv_heads"], .number("3"))

        let full = try json(try run(["inspect", smolLM2Path, "--json", "--full", "--filter", "nothing"]))
        XCTAssertEqual(full["metadata"]?["tokenizer.ggml.tokens"]?.arrayValue?.count, 49152)
        XCTAssertEqual(full["tensors"]?.arrayValue?.count, 0)
    }

    func testTableFilterAndStats() throws {
        let r = try run(["inspect", smolLM2Path, "--filter", "blk.0.attn_*", "--filter", "output_norm.weight", "--stats"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("GGUF v3, 272 tensors"))
        XCTAssertTrue(r.stdout.contains("heads          9 (3 KV)"))
        XCTAssertTrue(r.stdout.contains("6 of 272 tensors match"), r.stdout)
        let lines = r.stdout.split(separator: "\n")
        let q = try XCTUnwrap(lines.first { $0.hasPrefix("blk.0.attn_q.weight") })
        XCTAssertTrue(q.contains("Q4_1") && q.contains("[576, 576]") && q.contains("202.5 KiB"), String(q))
        XCTAssertFalse(lines.contains { $0.hasPrefix("blk.1.") })
    }

    func testStatsJSONCountsNonFiniteValues() throws {
        let dir = makeTemporaryDirectory()
        let values: [Float] = [1, 2, 3, .nan, .infinity, -4]
        let bf16: [UInt8] = [0x80, 0x3F, 0x00, 0x40] // 1, 2
        writeFile(dir + "/m.safetensors", buildSafetensors([
            SafetensorsTestTensor("x", dtype: "F32", shape: [2, 3], data: floatBytes(values)),
            SafetensorsTestTensor("y", dtype: "BF16", shape: [2], data: bf16),
            SafetensorsTestTensor("z", dtype: "F4", shape: [2], data: [0x21]),
        ]))
        let j = try json(try run(["inspect", dir + "/m.safetensors", "--json", "--stats"]))
        let t = try XCTUnwrap(j["tensors"]?.arrayValue)
        XCTAssertEqual(t[0]["stats"]?["nan"], .number("1"))
        XCTAssertEqual(t[0]["stats"]?["inf"], .number("1"))
        XCTAssertEqual(t[0]["stats"]?["min"], .number("-4"))
        XCTAssertEqual(t[0]["stats"]?["max"], .number("3"))
        XCTAssertEqual(t[0]["stats"]?["mean"]?.doubleValue, 0.5)
        XCTAssertEqual(t[1]["stats"]?["mean"]?.doubleValue, 1.5)
        XCTAssertEqual(t[2]["stats"], .null, "no F4 decoder yet: null, not a guess")
        XCTAssertEqual(j["format"]?.stringValue, "safetensors")
    }

    func testShardedDirectoryWithConfig() throws {
        let dir = makeTemporaryDirectory()
        writeFile(dir + "/model-00001-of-00002.safetensors", buildSafetensors([SafetensorsTestTensor("a", dtype: "BF16", shape: [2], data: [0, 0, 0, 0])], metadata: ["format": "pt"]))
        writeFile(dir + "/model-00002-of-00002.safetensors", buildSafetensors([SafetensorsTestTensor("b", dtype: "BF16", shape: [1], data: [0, 0])], metadata: ["format": "pt"]))
        writeFile(dir + "/model.safetensors.index.json", Array(#"{"metadata":{"total_size":6},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}"#.utf8))
        writeFile(dir + "/config.json", Array(#"{"model_type":"llama","num_hidden_layers":2,"hidden_size":8,"num_attention_heads":2,"num_key_value_heads":1,"vocab_size":10}"#.utf8))
        let j = try json(try run(["inspect", dir, "--json"]))
        XCTAssertEqual(j["tensors"]?.arrayValue?.compactMap { $0["name"]?.stringValue }, ["a", "b"])
        XCTAssertEqual(j["tensors"]?.arrayValue?.last?["file"]?.stringValue, dir + "/model-00002-of-00002.safetensors")
        XCTAssertEqual(j["index"]?["metadata"]?["total_size"], .number("6"))
        XCTAssertEqual(j["config"]?["layers"], .number("2"))
        XCTAssertEqual(j["metadata"]?["format"]?.stringValue, "pt")
        let table = try run(["inspect", dir])
        XCTAssertTrue(table.stdout.contains("safetensors, 2 files"), table.stdout)

        writeFile(dir + "/config.json", Array(#"{"num_hidden_layers":"two"}"#.utf8))
        let bad = try run(["inspect", dir])
        XCTAssertEqual(bad.status, 65)
        XCTAssertTrue(bad.stderr.contains("config.json: malformed file: not a usable config.json: num_hidden_layers: expected an integer"), bad.stderr)
    }
}

/// The same sample GGUF as the reader tests, rebuilt here (test targets cannot import each other).
func GGUFTests_sample() -> GGUFBuilder {
    var b = GGUFBuilder()
    b.metadata = [("general.architecture", .string("llama")), ("llama.block_count", .u32(1))]
    b.tensors = [GGUFTestTensor("w", ne: [4], type: 0, data: floatBytes([1, 2, 3, 4]))]
    return b
}

final class CLIEdgeTests: XCTestCase {
    func testHelpOnlyAsAnOption() throws {
        let r = try runCkpt(["inspect", "--", "-h"])
        XCTAssertEqual(r.status, 66, "after --, -h is a path: \(r.stderr)")
        let f = try runCkpt(["inspect", smolLM2Path, "--filter", "-h"])
        XCTAssertEqual(f.status, 0, f.stderr)
        XCTAssertTrue(f.stdout.contains("0 of 272 tensors match"), f.stdout)
    }

    func testFullStdoutIsAnIOError() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: ckptBinary)
        p.arguments = ["inspect", smolLM2Path, "--json"]
        p.standardOutput = FileHandle(forWritingAtPath: "/dev/full")
        let err = Pipe()
        p.standardError = err
        try p.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 74, text)
        XCTAssertTrue(text.contains("No space left on device"), text)
    }
}
