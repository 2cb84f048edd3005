import Basics
import CheckpointIO
import Foundation
import TestSupport
import XCTest

/// Every writing command refuses an output that exists with the same code, 73 (sysexits
/// EX_CANTCREAT), and leaves it as it was: the code comes from the error's type, not its text.
final class ExitCodeTests: XCTestCase {
    func testAnExistingOutputIsRefusedWith73ByEveryCommand() throws {
        let dir = makeTemporaryDirectory()
        let model = fixturesPath + "/engine/tiny-llama.gguf", cache = fixturesPath + "/logits/tiny-topk.cache"
        let text = repositoryRoot + "/Formats/gguf.md"
        let old: [UInt8] = Array("keep me\n".utf8)
        writeFile(dir + "/out.gguf", old)
        writeFile(dir + "/out.cache", old)
        writeFile(dir + "/out-hf", old)
        let runs: [(args: [String], output: String, says: String)] = [
            (["convert", model, dir + "/out.gguf"], "out.gguf", "pass --force to replace it"),
            (["convert", model, dir + "/out-hf", "--to", "safetensors"], "out-hf", "pass --force to replace it"),
            (["prune", "--model", model, "--ffn", "64", "--method", "magnitude", "-o", dir + "/out.gguf"], "out.gguf", "pass --force"),
            (["logits", "build", "--model", model, "--file", text, "--seq", "16", "--sequences", "2", "-o", dir + "/out.cache"], "out.cache", "holds a different cache"),
            (["logits", "merge", cache, "-o", dir + "/out.cache"], "out.cache", "holds a different cache"),
            (["distill", "--student", model, "--cache", cache, "--steps", "1", "-o", dir + "/out.gguf"], "out.gguf", "pass --force"),
        ]
        for run in runs {
            let r = try runCkpt(run.args)
            XCTAssertEqual(r.status, 73, "\(run.args): \(r.stderr)")
            XCTAssertTrue(r.stderr.hasPrefix("Error: ") && r.stderr.contains(run.output) && r.stderr.contains(run.says), r.stderr)
            XCTAssertEqual(try FileSystem.readFile(dir + "/" + run.output), old, "\(run.args) left the output alone")
        }
        XCTAssertEqual(try FileSystem.list(directory: dir).sorted(), ["out-hf", "out.cache", "out.gguf"], "no staging left")
    }

    /// The other codes, one command each: a missing input (66), bad data (65), an
    /// unsupported architecture (69), a request the model cannot meet (64).
    func testEachKindOfFailureHasItsCode() throws {
        let dir = makeTemporaryDirectory()
        let model = fixturesPath + "/engine/tiny-llama.gguf"
        writeFile(dir + "/junk.gguf", Array("GGUF but not really".utf8))
        let text = repositoryRoot + "/Formats/gguf.md"
        let runs: [(args: [String], code: Int32, says: String)] = [
            (["eval", "--model", dir + "/missing.gguf", "--file", text], 66, "no such file"),
            (["eval", "--model", dir + "/junk.gguf", "--file", text], 65, "junk.gguf"),
            (["eval", "--model", model, "--file", text, "--ctx", "512"], 64, "(--ctx)"),
            (["eval", "--model", model, "--file", text, "--ctx", "2"], 64, "--ctx must be"),
            (["prune", "--model", model, "--ffn", "4096", "--method", "magnitude", "-o", dir + "/p.gguf"], 64, "not smaller"),
            (["prune", "--model", model, "--ffn", "64", "--method", "activation", "-o", dir + "/p.gguf"], 64, "(--importance STATS)"),
            (["importance", "--model", model, "--calib", text, "--samples", "2", "--seq", "16", "--shard", "3/2", "-o", dir + "/s.imp"], 64, "3/2"),
            (["distill", "--student", model, "--cache", fixturesPath + "/logits/tiny-topk.cache", "--steps", "1",
              "--memory-budget", "1M", "-o", dir + "/d.gguf"], 64, "--memory-budget"),
            (["inspect", dir + "/junk.gguf"], 65, "junk.gguf"),
            (["logits", "verify", dir + "/junk.gguf"], 65, "junk.gguf"),
            (["generate", "--model", dir + "/missing.gguf", "--prompt", "hi"], 66, "missing.gguf"),
            (["convert", model, dir + "/c.gguf", "--dtype", "q3_q"], 64, "q3_q"),
            (["prune", "--model", model, "--ffn", "64", "--method", "magnitude", "--in-place", "-o", dir + "/p.gguf"], 64, "takes no -o"),
            (["frobnicate"], 64, "frobnicate"),
        ]
        for run in runs {
            let r = try runCkpt(run.args)
            XCTAssertEqual(r.status, run.code, "\(run.args): \(r.stderr)")
            XCTAssertTrue(r.stderr.hasPrefix("Error: ") && r.stderr.contains(run.says), "\(run.args): \(r.stderr)")
        }
        XCTAssertEqual(try FileSystem.list(directory: dir), ["junk.gguf"], "nothing written")
    }
}
