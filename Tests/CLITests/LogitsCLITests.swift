import Basics
import CheckpointIO
import Foundation
import TestSupport
import XCTest

/// `ckpt logits` as a user runs it: the committed test vectors, a build killed after each
/// chunk and restarted, sharded builds merged, corruption and bad input.
final class LogitsCLITests: XCTestCase {
    let model = fixturesPath + "/engine/tiny-llama.gguf"
    let text = fixturesPath + "/logits/text.txt"

    /// The fixtures' records, as the independent Python reader decoded them
    /// (Tools/reference/make_logit_cache_fixtures.sh), equal ckpt's dump line for line.
    func testDumpAgreesWithTheIndependentReader() throws {
        for e in ["topk", "sample"] {
            let cache = fixturesPath + "/logits/tiny-\(e).cache"
            let r = try runCkpt(["logits", "dump", cache, "--jsonl"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let expected = String(decoding: try FileSystem.readFile(fixturesPath + "/logits/tiny-\(e).jsonl"), as: UTF8.self)
            XCTAssertEqual(r.stdout, expected, e)
            let v = try runCkpt(["logits", "verify", cache])
            XCTAssertEqual(v.status, 0, v.stderr)
            XCTAssertTrue(v.stdout.contains("OK: 4 chunks, 27 sequences"), v.stdout)
        }
        // A range as a JSON array.
        let r = try runCkpt(["logits", "dump", fixturesPath + "/logits/tiny-topk.cache", "--range", "3:5"])
        guard case let .array(items)? = try? JSONParser.parse(Array(r.stdout.utf8)) else { return XCTFail(r.stdout) }
        XCTAssertEqual(Set(items.compactMap { $0["seq"]?.nonNegativeInt }), [3, 4])
        XCTAssertEqual(items.count, 64)
    }

    func testKilledBuildResumesToTheSameBytes() throws {
        let dir = makeTemporaryDirectory()
        let common = ["logits", "build", "--model", model, "--file", text, "--seq", "32", "--draws", "8", "--chunk-sequences", "5"]
        XCTAssertEqual(try runCkpt(common + ["-o", dir + "/whole.cache"]).status, 0)
        let whole = try FileSystem.readFile(dir + "/whole.cache")
        for k in 1...5 {
            let out = dir + "/k\(k).cache"
            XCTAssertEqual(try runCkpt(common + ["-o", out], crashAfter: k), 137, "crash after chunk \(k)")
            XCTAssertEqual(try FileSystem.kind(of: out), .missing, "no cache where the user expects a whole one")
            XCTAssertEqual(try FileSystem.kind(of: out + ".partial"), .file)
            let resumed = try runCkpt(common + ["-o", out])
            XCTAssertEqual(resumed.status, 0, resumed.stderr)
            XCTAssertTrue(resumed.stderr.contains("resuming"), resumed.stderr)
            XCTAssertEqual(try FileSystem.readFile(out), whole, "killed after chunk \(k), resumed")
        }
    }

    func testShardsThenMergeEqualTheUnshardedBuild() throws {
        let dir = makeTemporaryDirectory()
        let common = ["logits", "build", "--model", model, "--file", text, "--seq", "32", "--encoding", "topk", "--k", "8", "--chunk-sequences", "3"]
        XCTAssertEqual(try runCkpt(common + ["-o", dir + "/whole.cache"]).status, 0)
        var parts: [String] = []
        for i in 0..<4 {
            let p = dir + "/part\(i).cache"
            let r = try runCkpt(common + ["--shard", "\(i)/4", "-o", p])
            XCTAssertEqual(r.status, 0, r.stderr)
            parts.append(p)
        }
        let m = try runCkpt(["logits", "merge"] + parts + ["-o", dir + "/merged.cache"])
        XCTAssertEqual(m.status, 0, m.stderr)
        XCTAssertEqual(try FileSystem.readFile(dir + "/merged.cache"), try FileSystem.readFile(dir + "/whole.cache"))
        let inspect = try runCkpt(["logits", "inspect", dir + "/merged.cache", "--json"])
        let j = try JSONParser.parse(Array(inspect.stdout.utf8))
        XCTAssertEqual(j["sequences"]?.nonNegativeInt, 27)
        XCTAssertEqual(j["tokens"]?.nonNegativeInt, 855)
    }

    func testCorruptionAndBadInputFailClearly() throws {
        let dir = makeTemporaryDirectory()
        var bytes = try FileSystem.readFile(fixturesPath + "/logits/tiny-topk.cache")
        bytes[bytes.count / 2] ^= 0x10
        writeFile(dir + "/bad.cache", bytes)
        let v = try runCkpt(["logits", "verify", dir + "/bad.cache"])
        XCTAssertEqual(v.status, 65)
        XCTAssertTrue(v.stdout.contains("FAILED") && v.stdout.contains("checksum mismatch"), v.stdout)
        let d = try runCkpt(["logits", "dump", dir + "/bad.cache", "--jsonl"])
        XCTAssertEqual(d.status, 65)
        XCTAssertTrue(d.stderr.contains("bad.cache: chunk"), d.stderr)

        let k = try runCkpt(["logits", "build", "--model", model, "--file", text, "--encoding", "topk", "--k", "300", "-o", dir + "/k.cache"])
        XCTAssertEqual(k.status, 64)
        XCTAssertTrue(k.stderr.contains("top-300 is more ids than the vocabulary has (256)"), k.stderr)
        writeFile(dir + "/empty.txt", [])
        let e = try runCkpt(["logits", "build", "--model", model, "--file", dir + "/empty.txt", "-o", dir + "/e.cache"])
        XCTAssertEqual(e.status, 65)
        XCTAssertTrue(e.stderr.contains("empty.txt") && e.stderr.contains("empty"), e.stderr)
        XCTAssertEqual(try FileSystem.list(directory: dir).sorted(), ["bad.cache", "empty.txt"])
        // Merging caches of different teachers is refused.
        let other = try runCkpt(["logits", "build", "--model", fixturesPath + "/engine/tiny-qwen2.gguf", "--tokenizer", model, "--file", text,
                                 "--seq", "32", "--encoding", "topk", "--k", "8", "--chunk-sequences", "8", "--shard", "1/4", "-o", dir + "/q.cache"])
        XCTAssertEqual(other.status, 0, other.stderr)
        let m = try runCkpt(["logits", "merge", fixturesPath + "/logits/tiny-topk.cache", dir + "/q.cache", "-o", dir + "/m.cache"])
        XCTAssertEqual(m.status, 65)
        XCTAssertTrue(m.stderr.contains("teacher"), m.stderr)
        XCTAssertEqual(try FileSystem.kind(of: dir + "/m.cache"), .missing)
    }

    func testFullDiskStopsCleanlyAndTheBuildResumes() throws {
        let dir = makeTemporaryDirectory()
        let common = ["logits", "build", "--model", model, "--file", text, "--seq", "32", "--encoding", "topk", "--k", "8", "--chunk-sequences", "4"]
        XCTAssertEqual(try runCkpt(common + ["-o", dir + "/whole.cache"]).status, 0)
        let out = dir + "/full.cache"
        // Room for the header and a few chunks, not for all of them.
        let r = try runCkpt(common + ["-o", out], wrapper: ["/usr/bin/prlimit", "--fsize=6000"])
        XCTAssertEqual(r.status, 74, r.stderr)
        XCTAssertTrue(r.stderr.contains("full.cache.partial") && r.stderr.contains("File too large"), r.stderr)
        XCTAssertEqual(try FileSystem.kind(of: out), .missing)
        let again = try runCkpt(common + ["-o", out])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stderr.contains("resuming"), again.stderr)
        XCTAssertEqual(try FileSystem.readFile(out), try FileSystem.readFile(dir + "/whole.cache"))
    }
}
