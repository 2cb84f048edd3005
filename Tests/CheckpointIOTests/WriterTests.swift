import Basics
#if canImport(Glibc)
import Glibc
#endif
import CheckpointIO
import TestSupport
import XCTest

final class WriterTests: XCTestCase {
    func plan(_ name: String, _ dtype: TensorDType, _ shape: [Int]) throws -> TensorPlan {
        try TensorPlan(name: name, dtype: dtype, shape: shape)
    }

    func testGGUFRoundTripKeepsMetadataTypesAndArraysFromARealFile() throws {
        let source = try GGUFCheckpoint(path: smolLM2Path)
        let dir = makeTemporaryDirectory()
        let out = dir + "/copy.gguf"
        // Three real tensors, copied byte for byte, written in reverse order.
        let picked = ["token_embd.weight", "blk.0.attn_q.weight", "output_norm.weight"].map { source.tensor(named: $0)! }
        let plans = try picked.map { try TensorPlan(name: $0.name, dtype: $0.dtype, shape: $0.shape) }
        let writer = try CheckpointWriter(layout: .gguf(path: out, metadata: source.metadata), tensors: plans)
        for t in picked.reversed() {
            let bytes = t.bytes
            // In pieces, as a streaming producer would.
            var at = 0
            while at < bytes.count {
                let n = min(1 << 20, bytes.count - at)
                try writer.write(t.name, UnsafeRawBufferPointer(rebasing: bytes[at..<(at + n)]))
                at += n
            }
        }
        try writer.finish()
        let copy = try GGUFCheckpoint(path: out)
        XCTAssertEqual(copy.metadata, source.metadata, "every key, value and stored type survives")
        XCTAssertEqual(copy.tensors.map(\.name), picked.map(\.name))
        for (a, b) in zip(copy.tensors, picked) {
            XCTAssertEqual(a.shape, b.shape)
            XCTAssertEqual(a.dtype, b.dtype)
            XCTAssertTrue(sameBytes(a.bytes, b.bytes), a.name)
            XCTAssertEqual(a.offset % 32, 0)
        }
        XCTAssertEqual(try FileSystem.list(directory: dir), ["copy.gguf"], "no staging file left")
    }

    func testShardedSafetensorsWithIndex() throws {
        let dir = makeTemporaryDirectory()
        let out = dir + "/model"
        let plans = try [plan("a", .safetensors(.F32), [4, 4]), plan("b", .safetensors(.BF16), [8]), plan("c", .safetensors(.F32), [2, 4])]
        let writer = try CheckpointWriter(layout: .safetensorsDirectory(path: out, shardSize: 70, metadata: [("format", "pt")]), tensors: plans)
        try writer.addFile(named: "config.json", contents: Array("{}".utf8))
        let a = floatBytes((0..<16).map(Float.init)), b = [UInt8](repeating: 0x3F, count: 16), c = floatBytes([1, 2, 3, 4, 5, 6, 7, 8])
        for (name, bytes) in [("c", c), ("a", a), ("b", b)] { try bytes.withUnsafeBytes { try writer.write(name, $0) } }
        try writer.finish()
        XCTAssertEqual(try FileSystem.list(directory: out), ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json"])
        let ckpt = try XCTUnwrap(try openCheckpoint(path: out) as? SafetensorsCheckpoint)
        XCTAssertEqual(ckpt.tensors.map(\.name), ["a", "b", "c"])
        XCTAssertEqual(ckpt.files.count, 2)
        XCTAssertEqual(ckpt.indexMetadata["total_size"], .int64(16 * 4 + 16 + 32))
        XCTAssertTrue(ckpt.tensor(named: "c")!.bytes.elementsEqual(c))
        XCTAssertTrue(ckpt.tensor(named: "a")!.bytes.elementsEqual(a))
        XCTAssertEqual(ckpt.metadata["format"]?.stringValue, "pt")
    }

    func testIncompleteOutputIsNeverPublished() throws {
        let dir = makeTemporaryDirectory()
        let out = dir + "/m.safetensors"
        let writer = try CheckpointWriter(layout: .safetensorsFile(path: out, metadata: []), tensors: [plan("a", .safetensors(.F32), [4])])
        try floatBytes([1, 2]).withUnsafeBytes { try writer.write("a", $0) }
        XCTAssertThrowsError(try writer.finish()) { e in XCTAssertTrue("\(e)".contains("only 8 of 16 bytes"), "\(e)") }
        writer.abort()
        XCTAssertEqual(try FileSystem.list(directory: dir), [], "neither output nor staging file remains")

        let w2 = try CheckpointWriter(layout: .safetensorsFile(path: out, metadata: []), tensors: [plan("a", .safetensors(.F32), [1])])
        XCTAssertThrowsError(try floatBytes([1, 2]).withUnsafeBytes { try w2.write("a", $0) }) { e in XCTAssertTrue("\(e)".contains("more than its 4"), "\(e)") }
        XCTAssertThrowsError(try floatBytes([1]).withUnsafeBytes { try w2.write("zz", $0) }) { e in XCTAssertTrue("\(e)".contains("was not planned"), "\(e)") }
        _ = w2 // dropped without finish: deinit removes the staging file
    }

    func testDroppedWriterCleansUp() throws {
        let dir = makeTemporaryDirectory()
        do {
            let w = try CheckpointWriter(layout: .gguf(path: dir + "/x.gguf", metadata: []), tensors: [plan("a", .gguf(.named("F32")!), [4])])
            _ = w.remaining("a")
        }
        XCTAssertEqual(try FileSystem.list(directory: dir), [])
    }

    func testExistingDestinationRefusedUnlessOverwrite() throws {
        let dir = makeTemporaryDirectory()
        let out = dir + "/x.gguf"
        writeFile(out, Array("old".utf8))
        XCTAssertThrowsError(try CheckpointWriter(layout: .gguf(path: out, metadata: []), tensors: [])) { e in
            XCTAssertEqual(e as? CheckpointError, .outputExists(path: out))
            XCTAssertEqual((e as? CheckpointError)?.exitCode, .cannotCreate)
        }
        let w = try CheckpointWriter(layout: .gguf(path: out, metadata: [MetadataEntry(key: "general.architecture", value: .string("llama"))]),
                                     tensors: [plan("a", .gguf(.named("F32")!), [1])], overwrite: true)
        try floatBytes([5]).withUnsafeBytes { try w.write("a", $0) }
        try w.finish()
        XCTAssertEqual(try GGUFCheckpoint(path: out).tensor(named: "a")?.withBytes { $0.loadUnaligned(as: Float.self) }, 5)
        XCTAssertEqual(try FileSystem.list(directory: dir), ["x.gguf"])
    }

    func testPlanRejectsShapesThatDoNotFitTheType() {
        XCTAssertThrowsError(try TensorPlan(name: "w", dtype: .gguf(.named("Q4_0")!), shape: [2, 48])) { e in
            XCTAssertTrue("\(e)".contains("do not split into Q4_0 blocks of 32"), "\(e)")
        }
        XCTAssertThrowsError(try TensorPlan(name: "w", dtype: .safetensors(.F4), shape: [3])) { e in
            XCTAssertTrue("\(e)".contains("whole number of bytes"), "\(e)")
        }
    }

    func testMissingParentDirectory() {
        XCTAssertThrowsError(try CheckpointWriter(layout: .gguf(path: "/nonexistent-dir/x.gguf", metadata: []), tensors: [])) { e in
            XCTAssertTrue("\(e)".contains("/nonexistent-dir"), "\(e)")
        }
    }
}
