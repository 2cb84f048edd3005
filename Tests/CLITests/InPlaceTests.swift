import Basics
import CheckpointIO
import Foundation
import TestSupport
import XCTest

/// Three shards of two f32 tensors each, plus an index and a config.
func makeThreeShardCheckpoint(_ dir: String) {
    mkdir(dir, 0o755)
    var map: [String] = []
    for s in 0..<3 {
        let name = "model-0000\(s + 1)-of-00003.safetensors"
        let tensors = (0..<2).map { t -> SafetensorsTestTensor in
            let values = (0..<64).map { Float(s * 1000 + t * 100 + $0) * 0.37 - 5 }
            return SafetensorsTestTensor("layers.\(s).w\(t)", dtype: "F32", shape: [8, 8], data: floatBytes(values))
        }
        writeFile(dir + "/" + name, buildSafetensors(tensors, metadata: ["format": "pt"]))
        map += tensors.map { "\"\($0.name)\": \"\(name)\"" }
    }
    writeFile(dir + "/model.safetensors.index.json", Array("{\"metadata\": {\"total_size\": 1536}, \"weight_map\": {\(map.joined(separator: ", "))}}".utf8))
    writeFile(dir + "/config.json", Array("{\"model_type\": \"llama\"}".utf8))
}

/// `ckpt convert --in-place`, killed (`_exit`, as kill -9) at every step it journals or
/// writes, must always leave a checkpoint that the next ckpt command completes into
/// exactly what an uninterrupted run writes.
final class InPlaceTests: XCTestCase {
    func makeShardedCheckpoint(_ dir: String) { makeThreeShardCheckpoint(dir) }

    func files(_ dir: String) throws -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        for name in try FileSystem.list(directory: dir) { out[name] = try FileSystem.readFile(dir + "/" + name) }
        return out
    }

    func testKilledAtEveryStepIsCompletedByTheNextCommand() throws {
        let root = makeTemporaryDirectory()
        let reference = root + "/reference"
        makeShardedCheckpoint(reference)
        XCTAssertEqual(try runCkpt(["convert", reference, "--in-place", "--dtype", "f16"], crashAfter: nil), 0)
        let expected = try files(reference)
        XCTAssertEqual(try openCheckpoint(path: reference).tensors.map(\.dtype.name), Array(repeating: "F16", count: 6))
        XCTAssertNil(expected[".ckpt-journal.json"])

        var crashes = 0
        for k in 1...40 {
            let dir = root + "/k\(k)"
            makeShardedCheckpoint(dir)
            let status = try runCkpt(["convert", dir, "--in-place", "--dtype", "f16"], crashAfter: k)
            if status == 0 {
                XCTAssertEqual(try files(dir), expected, "k=\(k): finished without a crash")
                break
            }
            XCTAssertEqual(status, 137, "k=\(k)")
            crashes += 1
            // Until it is finished, the library refuses to read the mixture.
            XCTAssertThrowsError(try openCheckpoint(path: dir), "k=\(k)") { e in
                XCTAssertTrue("\(e)".contains("in-place rewrite of this checkpoint was interrupted"), "\(e)")
            }
            // Any ckpt command finishes it.
            XCTAssertEqual(try runCkpt(["inspect", dir, "--json"], crashAfter: nil), 0, "k=\(k)")
            XCTAssertEqual(try files(dir), expected, "k=\(k): recovered checkpoint differs from an uninterrupted rewrite")
        }
        XCTAssertGreaterThanOrEqual(crashes, 15, "every shard passes five crash points")
    }

    /// Three GGUF splits (beside an unrelated file), rewritten in place split by split and
    /// killed at every crash point: the mixture is refused until the next command finishes
    /// it into exactly what an uninterrupted rewrite writes, `split.*` keys included.
    func testGGUFSplitSetKilledAtEveryStepIsCompletedByTheNextCommand() throws {
        func makeSplits(_ dir: String) {
            mkdir(dir, 0o755)
            for no in 0..<3 {
                var b = GGUFBuilder()
                b.metadata = [("split.no", .u16(UInt16(no))), ("split.count", .u16(3)), ("split.tensors.count", .i32(6))]
                if no == 0 { b.metadata.insert(("general.architecture", .string("llama")), at: 0) }
                b.tensors = (0..<2).map { t in
                    GGUFTestTensor("blk.\(no).w\(t)", ne: [32, 2], type: 0, data: floatBytes((0..<64).map { Float(no * 100 + t * 10 + $0) * 0.37 - 5 }))
                }
                writeFile(dir + "/m-0000\(no + 1)-of-00003.gguf", b.build())
            }
            writeFile(dir + "/notes.txt", Array("not part of the model".utf8))
        }
        let root = makeTemporaryDirectory()
        let reference = root + "/reference"
        makeSplits(reference)
        XCTAssertEqual(try runCkpt(["convert", reference + "/m-00002-of-00003.gguf", "--in-place", "--dtype", "q8_0"], crashAfter: nil), 0)
        let expected = try files(reference)
        let set = try GGUFCheckpoint(path: reference + "/m-00001-of-00003.gguf")
        XCTAssertEqual(set.tensors.map(\.dtype.name), Array(repeating: "Q8_0", count: 6))
        XCTAssertEqual(set.splits.map { $0.metadata["split.no"]?.intValue }, [0, 1, 2], "split keys kept")
        XCTAssertEqual(expected["notes.txt"], Array("not part of the model".utf8))
        XCTAssertNil(expected[".ckpt-journal.json"])

        var crashes = 0
        for k in 1...40 {
            let dir = root + "/k\(k)"
            makeSplits(dir)
            let status = try runCkpt(["convert", dir + "/m-00001-of-00003.gguf", "--in-place", "--dtype", "q8_0"], crashAfter: k)
            if status == 0 {
                XCTAssertEqual(try files(dir), expected, "k=\(k): finished without a crash")
                break
            }
            XCTAssertEqual(status, 137, "k=\(k)")
            crashes += 1
            if try FileSystem.kind(of: dir + "/.ckpt-journal.json") == .file {
                XCTAssertThrowsError(try GGUFCheckpoint(path: dir + "/m-00003-of-00003.gguf"), "k=\(k)") { e in
                    XCTAssertTrue("\(e)".contains("in-place rewrite of this checkpoint was interrupted"), "\(e)")
                }
            }
            XCTAssertEqual(try runCkpt(["inspect", dir + "/m-00003-of-00003.gguf", "--json"], crashAfter: nil), 0, "k=\(k)")
            XCTAssertEqual(try files(dir), expected, "k=\(k): recovered checkpoint differs from an uninterrupted rewrite")
        }
        XCTAssertGreaterThanOrEqual(crashes, 12, "every split passes several crash points")
    }

    func testSingleGGUFFileKilledMidRewriteIsUntouched() throws {
        let dir = makeTemporaryDirectory()
        var b = GGUFBuilder()
        b.metadata = [("general.architecture", .string("llama"))]
        b.tensors = (0..<3).map { GGUFTestTensor("w\($0)", ne: [32, 2], type: 0, data: floatBytes((0..<64).map { Float($0) / 7 })) }
        let original = b.build()
        writeFile(dir + "/m.gguf", original)
        XCTAssertEqual(try runCkpt(["convert", dir + "/m.gguf", "--in-place", "--dtype", "q8_0"], crashAfter: 2), 137)
        XCTAssertEqual(try FileSystem.readFile(dir + "/m.gguf"), original, "the original is intact")
        XCTAssertEqual(try FileSystem.list(directory: dir).count, 2, "a staging file is left by the kill")
        XCTAssertEqual(try runCkpt(["inspect", dir + "/m.gguf"], crashAfter: nil), 0)
        XCTAssertEqual(try FileSystem.list(directory: dir), ["m.gguf"], "the next command removes it")
        XCTAssertEqual(try runCkpt(["convert", dir + "/m.gguf", "--in-place", "--dtype", "q8_0"], crashAfter: nil), 0)
        XCTAssertEqual(try GGUFCheckpoint(path: dir + "/m.gguf").tensors.map(\.dtype.name), ["Q8_0", "Q8_0", "Q8_0"])
    }

    func testInPlaceUsage() throws {
        XCTAssertEqual(try runCkpt(["convert", smolLM2Path, "--in-place"]).status, 64)
        XCTAssertEqual(try runCkpt(["convert", smolLM2Path, "/tmp/x", "--in-place", "--dtype", "f16"]).status, 64)
        XCTAssertEqual(try runCkpt(["convert", smolLM2Path, "--in-place", "--dtype", "f16", "--shard-size", "1GB"]).status, 64)
    }
}

/// Cases found in review of the writer, convert and in-place code.
final class ReviewedConvertTests: XCTestCase {
    func testImpossibleInPlaceRewriteLeavesNoJournal() throws {
        let dir = makeTemporaryDirectory() + "/ck"
        makeThreeShardCheckpoint(dir)
        let r = try runCkpt(["convert", dir, "--in-place", "--dtype", "q8_0"])
        XCTAssertEqual(r.status, 69, r.stderr)
        XCTAssertTrue(r.stderr.contains("GGUF output only"), r.stderr)
        XCTAssertFalse(try FileSystem.list(directory: dir).contains(".ckpt-journal.json"))
        XCTAssertEqual(try runCkpt(["inspect", dir]).status, 0, "the checkpoint is still readable")
    }

    func testIntegerTensorsKeepTheirType() throws {
        let dir = makeTemporaryDirectory()
        var ids: [UInt8] = []
        for v: Int64 in [0, 1, 69_999, 1 << 40] { put(&ids, v) }
        writeFile(dir + "/m.safetensors", buildSafetensors([
            SafetensorsTestTensor("position_ids", dtype: "I64", shape: [4], data: ids),
            SafetensorsTestTensor("w", dtype: "F32", shape: [2], data: floatBytes([1, 2])),
        ]))
        XCTAssertEqual(try runCkpt(["convert", dir + "/m.safetensors", "--in-place", "--dtype", "f16"]).status, 0)
        let c = try openCheckpoint(path: dir + "/m.safetensors")
        XCTAssertEqual(c.tensor(named: "position_ids")?.dtype.name, "I64")
        XCTAssertEqual(c.tensor(named: "w")?.dtype.name, "F16")
        XCTAssertEqual(c.tensor(named: "position_ids")?.withBytes { Array($0) }, ids)
    }

    func testLlamaQueryBiasIsPermutedLikeItsRows() throws {
        let dir = makeTemporaryDirectory()
        var b = GGUFBuilder()
        b.metadata = [("general.architecture", .string("llama")), ("llama.attention.head_count", .u32(1)), ("llama.attention.head_count_kv", .u32(1))]
        b.tensors = [GGUFTestTensor("blk.0.attn_q.weight", ne: [1, 4], type: 0, data: floatBytes([0, 1, 2, 3])),
                     GGUFTestTensor("blk.0.attn_q.bias", ne: [4], type: 0, data: floatBytes([0, 1, 2, 3]))]
        writeFile(dir + "/q.gguf", b.build())
        XCTAssertEqual(try runCkpt(["convert", dir + "/q.gguf", dir + "/hf"]).status, 0)
        let c = try openCheckpoint(path: dir + "/hf")
        func values(_ name: String) -> [Float]? {
            c.tensor(named: name)?.withBytes { raw in (0..<4).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) } }
        }
        // GGUF rows [a0 b0 a1 b1] are HF rows [a0 a1 b0 b1]: 0, 2, 1, 3 for weight and bias alike.
        XCTAssertEqual(values("model.layers.0.self_attn.q_proj.weight"), [0, 2, 1, 3])
        XCTAssertEqual(values("model.layers.0.self_attn.q_proj.bias"), [0, 2, 1, 3])
    }

    func testForceReplacesADirectoryAndTrailingSlashes() throws {
        let dir = makeTemporaryDirectory()
        XCTAssertEqual(try runCkpt(["convert", smolLM2Path, dir + "/out/", "--dtype", "bf16"]).status, 0)
        let again = try runCkpt(["convert", smolLM2Path, dir + "/out/", "--dtype", "f16", "--force"])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertEqual(try FileSystem.list(directory: dir), ["out"], "no staging or old copy left")
        XCTAssertEqual(try openCheckpoint(path: dir + "/out").tensors.first?.dtype.name, "F16")
    }

    func testKilledDirectoryOutputStagingIsRemovedByTheNextCommand() throws {
        let dir = makeTemporaryDirectory()
        XCTAssertEqual(try runCkpt(["convert", smolLM2Path, dir + "/out", "--dtype", "bf16"], crashAfter: 3), 137)
        XCTAssertEqual(try FileSystem.list(directory: dir).count, 1, "the killed run left its staging directory")
        XCTAssertEqual(try runCkpt(["inspect", dir + "/out"]).status, 66)
        XCTAssertEqual(try FileSystem.list(directory: dir), [], "the next command on that path removed it")
    }
}
