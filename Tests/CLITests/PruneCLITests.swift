import Basics
import CheckpointIO
import Foundation
import TestSupport
import XCTest

/// `ckpt importance` and `ckpt prune` as a user runs them, on the tiny fixture models.
final class PruneCLITests: XCTestCase {
    var tinyLlama: String { fixturesPath + "/engine/tiny-llama.gguf" }
    var calib: String { repositoryRoot + "/Formats/gguf.md" }

    /// Four shards as four processes, merged, are byte-identical to one run.
    func testShardedImportanceMergesToTheSameFile() throws {
        let dir = makeTemporaryDirectory()
        let common = ["importance", "--model", tinyLlama, "--calib", calib, "--samples", "8", "--seq", "32", "--threads", "2"]
        let whole = try runCkpt(common + ["-o", dir + "/whole.imp"])
        XCTAssertEqual(whole.status, 0, whole.stderr)
        for i in 0..<4 {
            let r = try runCkpt(common + ["--shard", "\(i)/4", "--batch", "1", "-o", dir + "/s\(i).imp"])
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        let m = try runCkpt(["importance", "merge", dir + "/s2.imp", dir + "/s0.imp", dir + "/s3.imp", dir + "/s1.imp", "-o", dir + "/merged.imp"])
        XCTAssertEqual(m.status, 0, m.stderr)
        XCTAssertEqual(try FileSystem.readFile(dir + "/merged.imp"), try FileSystem.readFile(dir + "/whole.imp"))
        let again = try runCkpt(["importance", "merge", dir + "/s0.imp", dir + "/s0.imp", "-o", dir + "/bad.imp"])
        XCTAssertEqual(again.status, 65, again.stderr)
        XCTAssertTrue(again.stderr.contains("s0.imp") && again.stderr.contains("both cover"), again.stderr)
        let show = try runCkpt(["importance", "show", dir + "/whole.imp", "--json", "--plot", dir + "/p.svg"])
        XCTAssertEqual(show.status, 0, show.stderr)
        let json = try JSONParser.parse(Array(show.stdout.utf8))
        XCTAssertEqual(json["layers"]?.arrayValue?.count, 2)
        XCTAssertEqual(json["layers"]?.arrayValue?.first?["heads"]?.arrayValue?.count, 4)
        let svg = String(decoding: try FileSystem.readFile(dir + "/p.svg"), as: UTF8.self)
        XCTAssertTrue(svg.hasPrefix("<svg") && svg.contains("<title>layer 1 head 3: "), svg.prefix(200) + "")
        // The same picture as a PNG: 2 layers × 4 heads of heatmap cells, the curve in red.
        XCTAssertEqual(try runCkpt(["importance", "show", dir + "/whole.imp", "--plot", dir + "/p.png"]).status, 0)
        let png = try XCTUnwrap(decodeStoredPNG(try FileSystem.readFile(dir + "/p.png", limit: 1 << 26)), "not a valid PNG")
        XCTAssertEqual(png.height, 50 + 2 * 14 + 60)
        let red = stride(from: 0, to: png.rgb.count, by: 3).filter { png.rgb[$0] == 0xc0 && png.rgb[$0 + 1] == 0x39 && png.rgb[$0 + 2] == 0x2b }.count
        XCTAssertGreaterThan(red, 20, "Block Influence points")
        let yellow = stride(from: 0, to: png.rgb.count, by: 3).filter { png.rgb[$0] == 253 && png.rgb[$0 + 1] == 231 && png.rgb[$0 + 2] == 37 }.count
        XCTAssertGreaterThanOrEqual(yellow, 2 * 13 * 13, "each layer's most important head is a yellow cell")
        let short = try runCkpt(["importance", "--model", tinyLlama, "--calib", calib, "--samples", "100000", "--seq", "64", "-o", dir + "/x.imp"])
        XCTAssertEqual(short.status, 65)
        XCTAssertTrue(short.stderr.contains("fewer than"), short.stderr)
        XCTAssertEqual(try FileSystem.kind(of: dir + "/x.imp"), .missing)
    }

    /// A mixture of experts through importance, show and `prune --experts` as a user runs
    /// them: the plan drops the experts with the least routing mass, the output has 3
    /// experts a layer and evaluates; `--experts` on a dense model and `importance export`
    /// of a mixture are refused by name, with nothing written.
    func testMixtureOfExpertsImportanceAndExpertPruning() throws {
        let dir = makeTemporaryDirectory()
        let model = fixturesPath + "/engine/tiny-qwen2moe.gguf"
        let imp = try runCkpt(["importance", "--model", model, "--calib", calib, "--samples", "4", "--seq", "32", "--threads", "2", "-o", dir + "/moe.imp"])
        XCTAssertEqual(imp.status, 0, imp.stderr)
        let show = try runCkpt(["importance", "show", dir + "/moe.imp", "--json"])
        XCTAssertEqual(show.status, 0, show.stderr)
        let layers = try XCTUnwrap(try JSONParser.parse(Array(show.stdout.utf8))["layers"]?.arrayValue)
        let routing = layers.map { $0["experts"]!.arrayValue!.map { $0.doubleValue! } }
        XCTAssertEqual(routing.map(\.count), [4, 4])
        XCTAssertEqual(layers[0]["neurons"]?.arrayValue?.count, 4 * 32, "every expert's neurons")
        let text = try runCkpt(["importance", "show", dir + "/moe.imp", "--expert-metric", "output"])
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertTrue(text.stdout.contains("experts by output"), text.stdout)
        let dry = try runCkpt(["prune", "--model", model, "--importance", dir + "/moe.imp", "--experts", "3", "--ffn", "24", "--dry-run"])
        XCTAssertEqual(dry.status, 0, dry.stderr)
        for (l, scores) in routing.enumerated() {
            let least = scores.indices.min { scores[$0] < scores[$1] }!
            XCTAssertTrue(dry.stdout.contains("layer \(l): experts dropped \(least)\n"), dry.stdout)
        }
        XCTAssertTrue(dry.stdout.contains("experts 4 → 3, ffn 32 → 24"), dry.stdout)
        let out = dir + "/p.gguf"
        let p = try runCkpt(["prune", "--model", model, "--importance", dir + "/moe.imp", "--experts", "3", "--ffn", "24", "-o", out])
        XCTAssertEqual(p.status, 0, p.stderr)
        let info = try runCkpt(["inspect", out, "--json"])
        XCTAssertTrue(info.stdout.contains("\"qwen2moe.expert_count\"") && info.stdout.contains("\"qwen2moe.expert_feed_forward_length\""), info.stdout.prefix(400) + "")
        let eval = try runCkpt(["eval", "--model", out, "--file", calib, "--ctx", "32", "--chunks", "2", "--json"])
        XCTAssertEqual(eval.status, 0, eval.stderr)
        let metric = try runCkpt(["prune", "--model", model, "--importance", dir + "/moe.imp", "--experts", "3", "--expert-metric", "bogus", "-o", dir + "/m.gguf"])
        XCTAssertEqual(metric.status, 64)
        XCTAssertTrue(metric.stderr.contains("Error:") && metric.stderr.contains("--expert-metric"), metric.stderr)
        XCTAssertEqual(try FileSystem.kind(of: dir + "/m.gguf"), .missing)
        let dense = try runCkpt(["prune", "--model", tinyLlama, "--method", "magnitude", "--experts", "1", "-o", dir + "/d.gguf"])
        XCTAssertEqual(dense.status, 64)
        XCTAssertTrue(dense.stderr.contains("dense MLP"), dense.stderr)
        XCTAssertEqual(try FileSystem.kind(of: dir + "/d.gguf"), .missing)
        let export = try runCkpt(["importance", "export", dir + "/moe.imp", "--imatrix", dir + "/m.gguf"])
        XCTAssertEqual(export.status, 69, export.stderr)
        XCTAssertTrue(export.stderr.contains("experts"), export.stderr)
        XCTAssertEqual(try FileSystem.kind(of: dir + "/m.gguf"), .missing)
    }

    func testPruneWritesALoadableModelAndRefusesBadTargets() throws {
        let dir = makeTemporaryDirectory()
        XCTAssertEqual(try runCkpt(["importance", "--model", tinyLlama, "--calib", calib, "--samples", "4", "--seq", "32", "-o", dir + "/s.imp"]).status, 0)
        let dry = try runCkpt(["prune", "--model", tinyLlama, "--importance", dir + "/s.imp", "--ffn", "64", "--heads-per-group", "1", "--dry-run"])
        XCTAssertEqual(dry.status, 0, dry.stderr)
        XCTAssertTrue(dry.stdout.contains("ffn 128 → 64") && dry.stdout.contains("heads 4 → 2"), dry.stdout)
        let p = try runCkpt(["prune", "--model", tinyLlama, "--importance", dir + "/s.imp", "--ffn", "64", "--layers", "1", "-o", dir + "/p.gguf"])
        XCTAssertEqual(p.status, 0, p.stderr)
        let listing = try JSONParser.parse(Array(try runCkpt(["inspect", dir + "/p.gguf", "--json"]).stdout.utf8))
        XCTAssertEqual(listing["config"]?["layers"]?.nonNegativeInt, 1)
        XCTAssertEqual(listing["config"]?["intermediate_size"]?.nonNegativeInt, 64)
        let e = try runCkpt(["eval", "--model", dir + "/p.gguf", "--file", calib, "--ctx", "64", "--chunks", "2", "--json"])
        XCTAssertEqual(e.status, 0, e.stderr)

        let bad: [([String], String)] = [
            (["--ffn", "128"], "not smaller"),
            (["--heads", "3"], "do not split evenly"),
            (["--drop-layers", "0-1"], "every layer"),
            (["--drop-layers", "7"], "--drop-layers"),
            (["--hidden", "0", "--method", "random"], "not smaller"),
            (["--ffn", "64", "--agg", "median"], "--agg"),
            ([], "nothing to prune"),
        ]
        for (extra, message) in bad {
            let r = try runCkpt(["prune", "--model", tinyLlama, "--importance", dir + "/s.imp", "-o", dir + "/bad.gguf"] + extra)
            XCTAssertEqual(r.status, 64, "\(extra): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(message), "\(extra): \(r.stderr)")
            XCTAssertEqual(try FileSystem.kind(of: dir + "/bad.gguf"), .missing, "nothing written")
        }
        let other = try runCkpt(["prune", "--model", fixturesPath + "/engine/tiny-qwen2.gguf", "--importance", dir + "/s.imp", "--ffn", "64", "-o", dir + "/bad.gguf"])
        XCTAssertEqual(other.status, 65, other.stderr)
        XCTAssertTrue(other.stderr.contains("another model"), other.stderr)
        let noStats = try runCkpt(["prune", "--model", tinyLlama, "--ffn", "64", "-o", dir + "/bad.gguf"])
        XCTAssertEqual(noStats.status, 64, noStats.stderr)
        XCTAssertTrue(noStats.stderr.contains("--importance"), noStats.stderr)
    }

    /// `--in-place` on a shard directory (given as the directory or its index)
    /// swaps in the same tensors and config as pruning to a new path; a directory holding
    /// what the swap would not carry is refused, untouched.
    func testInPlacePruneOfAShardDirectory() throws {
        let dir = makeTemporaryDirectory()
        let hf = fixturesPath + "/engine/tiny-llama-hf"
        let prune = ["--method", "magnitude", "--ffn", "64", "--layers", "1"]
        XCTAssertEqual(try runCkpt(["convert", hf, dir + "/src", "--shard-size", "100KB"]).status, 0)
        XCTAssertEqual(try runCkpt(["prune", "--model", dir + "/src"] + prune + ["-o", dir + "/expected"]).status, 0)
        let expected = try openCheckpoint(path: dir + "/expected")
        let expectedConfig = try FileSystem.readFile(dir + "/expected/config.json")
        for target in ["", "/model.safetensors.index.json"] {
            let m = dir + "/m\(target.count)"
            XCTAssertEqual(try runCkpt(["convert", hf, m, "--shard-size", "100KB"]).status, 0)
            XCTAssertEqual(try openCheckpoint(path: m).files.count, 5)
            let r = try runCkpt(["prune", "--model", m + target, "--in-place"] + prune)
            XCTAssertEqual(r.status, 0, r.stderr)
            let got = try openCheckpoint(path: m)
            XCTAssertEqual(got.tensors.map(\.name), expected.tensors.map(\.name), target)
            for (x, y) in zip(got.tensors, expected.tensors) { XCTAssertTrue(sameBytes(x.bytes, y.bytes), "\(target): \(x.name)") }
            XCTAssertEqual(try FileSystem.readFile(m + "/config.json"), expectedConfig, target)
            XCTAssertEqual(try FileSystem.list(directory: dir).filter { $0.hasPrefix(".") }, [], "no staging left beside")
        }
        let guarded = dir + "/guarded"
        XCTAssertEqual(try runCkpt(["convert", hf, guarded, "--shard-size", "100KB"]).status, 0)
        mkdir(guarded + "/original", 0o755)
        let before = try FileSystem.list(directory: guarded).sorted()
        let r = try runCkpt(["prune", "--model", guarded, "--in-place"] + prune)
        XCTAssertEqual(r.status, 69, r.stderr)
        XCTAssertTrue(r.stderr.contains("original") && r.stderr.contains("move them out"), r.stderr)
        XCTAssertEqual(try FileSystem.list(directory: guarded).sorted(), before)
        XCTAssertEqual(try openCheckpoint(path: guarded).files.count, 5, "untouched")
    }

    /// An in-place prune of a shard directory killed (as kill -9) at every crash point it
    /// passes leaves the old set or the new one, whole, and the next command clears the
    /// staging the kill left beside it.
    func testInPlacePruneOfAShardDirectoryKilledAtEveryStep() throws {
        let dir = makeTemporaryDirectory()
        let hf = fixturesPath + "/engine/tiny-llama-hf"
        let prune = ["--method", "magnitude", "--ffn", "64", "--layers", "1"]
        XCTAssertEqual(try runCkpt(["convert", hf, dir + "/old", "--shard-size", "100KB"]).status, 0)
        XCTAssertEqual(try runCkpt(["convert", hf, dir + "/new", "--shard-size", "100KB"]).status, 0)
        XCTAssertEqual(try runCkpt(["prune", "--model", dir + "/new", "--in-place"] + prune).status, 0)
        let old = try openCheckpoint(path: dir + "/old"), new = try openCheckpoint(path: dir + "/new")
        var sawOld = false, sawNew = false
        for k in 1...20 {
            let m = dir + "/k\(k)"
            XCTAssertEqual(try runCkpt(["convert", hf, m, "--shard-size", "100KB"]).status, 0)
            let status = try runCkpt(["prune", "--model", m, "--in-place"] + prune, crashAfter: k)
            XCTAssertTrue(status == 0 || status == 137, "k=\(k): status \(status)")
            XCTAssertEqual(try runCkpt(["inspect", m, "--json"]).status, 0, "k=\(k): readable after the kill")
            let got = try openCheckpoint(path: m)
            let reference = got.tensors.count == old.tensors.count ? old : new
            XCTAssertEqual(got.tensors.map(\.name), reference.tensors.map(\.name), "k=\(k)")
            for (x, y) in zip(got.tensors, reference.tensors) { XCTAssertTrue(sameBytes(x.bytes, y.bytes), "k=\(k): \(x.name)") }
            if reference === new { sawNew = true } else { sawOld = true }
            XCTAssertEqual(try FileSystem.list(directory: dir).filter { $0.hasPrefix(".") }, [], "k=\(k): staging cleared")
            if status == 0 { break }
        }
        XCTAssertTrue(sawOld && sawNew, "kills landed both before and after the swap")
    }
}
