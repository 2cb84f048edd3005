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
        XCTAssertTrue(r.stderr.contains("warning: the GGUF tokenizer is not yet rebuilt"), r.stderr)

        let again = try runCkpt(["convert", smolLM2Path, dir + "/hf"])
        XCTAssertEqual(again.status, 74)
        XCTAssertTrue(again.stderr.contains("Error: \(dir)/hf: create output (it exists; pass --force to replace it)"), again.stderr)
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
