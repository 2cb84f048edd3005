import Basics
import CheckpointIO
import TestSupport
import XCTest

final class GGUFTests: XCTestCase {
    /// A small file with every metadata value type, nested arrays, and tensors of a
    /// plain and a block type.
    static func sampleBuilder(version: UInt32 = 3) -> GGUFBuilder {
        var b = GGUFBuilder()
        b.version = version
        b.metadata = [
            ("general.architecture", .string("llama")),
            ("u8", .u8(200)), ("i8", .i8(-5)), ("u16", .u16(65000)), ("i16", .i16(-300)),
            ("u32", .u32(4_000_000_000)), ("i32", .i32(-2_000_000)), ("f32", .f32(1e-5)),
            ("bool", .bool(true)), ("u64", .u64(1 << 40)), ("i64", .i64(-(1 << 40))), ("f64", .f64(0.125)),
            ("strings", .array(elementType: 8, [.string("a"), .string("ü"), .string("")])),
            ("nested", .array(elementType: 9, [.array(elementType: 4, [.u32(1), .u32(2)]), .array(elementType: 8, [.string("x")])])),
            ("llama.block_count", .u32(2)),
            ("llama.embedding_length", .u32(64)),
            ("llama.attention.head_count", .u32(4)),
        ]
        b.tensors = [
            GGUFTestTensor("norm", ne: [3], type: 0, data: floatBytes([1, 2, 3])),
            // Q8_0: 2 rows of 64 elements = 2 blocks per row, 34 bytes each.
            GGUFTestTensor("blk.0.w", ne: [64, 2], type: 8, data: [UInt8](repeating: 0, count: 4 * 34)),
        ]
        return b
    }

    func open(_ bytes: [UInt8], label: String = "test.gguf") throws -> GGUFFile {
        try GGUFFile(file: MappedFile(copying: bytes, label: label))
    }

    func testReadsEveryValueTypeAndTensorLayout() throws {
        for version: UInt32 in [2, 3] {
            let g = try open(Self.sampleBuilder(version: version).build())
            XCTAssertEqual(g.version, Int(version))
            XCTAssertEqual(g.metadata["u8"], .uint8(200))
            XCTAssertEqual(g.metadata["i8"], .int8(-5))
            XCTAssertEqual(g.metadata["u16"], .uint16(65000))
            XCTAssertEqual(g.metadata["i16"], .int16(-300))
            XCTAssertEqual(g.metadata["u32"], .uint32(4_000_000_000))
            XCTAssertEqual(g.metadata["i32"], .int32(-2_000_000))
            XCTAssertEqual(g.metadata["f32"], .float32(1e-5))
            XCTAssertEqual(g.metadata["bool"], .bool(true))
            XCTAssertEqual(g.metadata["u64"], .uint64(1 << 40))
            XCTAssertEqual(g.metadata["i64"], .int64(-(1 << 40)))
            XCTAssertEqual(g.metadata["f64"], .float64(0.125))
            XCTAssertEqual(g.metadata["strings"]?.arrayValue?.strings(), ["a", "ü", ""])
            let nested = try XCTUnwrap(g.metadata["nested"]?.arrayValue)
            XCTAssertEqual(nested.elementType, "array")
            XCTAssertEqual(nested.count, 2)
            let inner = nested.values()
            XCTAssertEqual(inner[0].arrayValue?.values(), [.uint32(1), .uint32(2)])
            XCTAssertEqual(inner[1].arrayValue?.strings(), ["x"])

            XCTAssertEqual(g.tensors.map(\.name), ["norm", "blk.0.w"])
            XCTAssertEqual(g.tensors[0].shape, [3])
            XCTAssertEqual(g.tensors[1].shape, [2, 64], "GGUF ne [64, 2] is shape [2, 64] outermost-first")
            XCTAssertEqual(g.tensors[1].dtype.name, "Q8_0")
            XCTAssertEqual(g.tensors[1].byteCount, 4 * 34)
            XCTAssertEqual(g.tensors[0].offset % 32, 0)
            XCTAssertEqual(g.tensors[1].offset - g.tensors[0].offset, 32, "12 bytes of F32 padded to the 32-byte alignment")
            let norm = g.tensors[0].bytes
            XCTAssertEqual(norm.loadUnaligned(fromByteOffset: 8, as: Float.self), 3)
        }
    }

    func testCustomAlignment() throws {
        var b = Self.sampleBuilder()
        b.alignment = 64
        b.metadata.append(("general.alignment", .u32(64)))
        let g = try open(b.build())
        XCTAssertEqual(g.alignment, 64)
        XCTAssertEqual(g.dataStart % 64, 0)
        XCTAssertEqual(g.tensors[1].offset - g.tensors[0].offset, 64)
    }

    func testEveryGGMLTypeHasExactSizes() {
        // Spot checks against ggml-common.h's static_asserts.
        let expected: [String: (Int, Int)] = [
            "F32": (1, 4), "F16": (1, 2), "BF16": (1, 2), "Q4_0": (32, 18), "Q4_1": (32, 20), "Q5_0": (32, 22),
            "Q5_1": (32, 24), "Q8_0": (32, 34), "Q8_1": (32, 36), "Q2_K": (256, 84), "Q3_K": (256, 110),
            "Q4_K": (256, 144), "Q5_K": (256, 176), "Q6_K": (256, 210), "Q8_K": (256, 292),
            "IQ2_XXS": (256, 66), "IQ2_XS": (256, 74), "IQ3_XXS": (256, 98), "IQ1_S": (256, 50),
            "IQ4_NL": (32, 18), "IQ3_S": (256, 110), "IQ2_S": (256, 82), "IQ4_XS": (256, 136),
            "IQ1_M": (256, 56), "TQ1_0": (256, 54), "TQ2_0": (256, 66), "MXFP4": (32, 17),
            "I8": (1, 1), "I16": (1, 2), "I32": (1, 4), "I64": (1, 8), "F64": (1, 8),
        ]
        for (name, (block, bytes)) in expected {
            let t = GGMLType.named(name)
            XCTAssertEqual(t?.blockSize, block, name)
            XCTAssertEqual(t?.bytesPerBlock, bytes, name)
        }
        XCTAssertNil(GGMLType.withID(4), "Q4_2 was removed before GGUF")
        XCTAssertEqual(GGMLType.withID(31)?.removedFromFiles, true)
        XCTAssertEqual(Set(GGMLType.all.map(\.id)).count, GGMLType.all.count)
    }

    func testSplitSetOpensFromAnySplit() throws {
        let dir = makeTemporaryDirectory()
        func split(_ no: UInt16, _ tensors: [GGUFTestTensor], total: Int32) -> [UInt8] {
            var b = GGUFBuilder()
            b.metadata = [("split.no", .u16(no)), ("split.count", .u16(2)), ("split.tensors.count", .i32(total))]
            if no == 0 { b.metadata.insert(("general.architecture", .string("llama")), at: 0) }
            b.tensors = tensors
            return b.build()
        }
        writeFile(dir + "/m-00001-of-00002.gguf", split(0, [GGUFTestTensor("a", ne: [2], type: 0, data: floatBytes([1, 2]))], total: 2))
        writeFile(dir + "/m-00002-of-00002.gguf", split(1, [GGUFTestTensor("b", ne: [1], type: 0, data: floatBytes([3]))], total: 2))
        for name in ["m-00001-of-00002.gguf", "m-00002-of-00002.gguf"] {
            let c = try GGUFCheckpoint(path: dir + "/" + name)
            XCTAssertEqual(c.tensors.map(\.name), ["a", "b"])
            XCTAssertEqual(c.files.count, 2)
            XCTAssertEqual(c.metadata["general.architecture"]?.stringValue, "llama")
            XCTAssertEqual(c.tensor(named: "b")?.bytes.loadUnaligned(as: Float.self), 3)
        }
        unlink(dir + "/m-00002-of-00002.gguf")
        XCTAssertThrowsError(try GGUFCheckpoint(path: dir + "/m-00001-of-00002.gguf")) { e in
            XCTAssertTrue("\(e)".contains("split 2 of 2"), "\(e)")
            XCTAssertTrue("\(e)".contains("is missing"), "\(e)")
        }
    }

    func testRealModelMatchesGGUFPyListing() throws {
        let c = try GGUFCheckpoint(path: smolLM2Path)
        let fixture = try JSONParser.parse(FileSystem.readFile(fixturesPath + "/smollm2-q4_1.listing.json"))
        let expected = try XCTUnwrap(fixture["tensors"]?.arrayValue)
        XCTAssertEqual(c.tensors.count, 272)
        XCTAssertEqual(c.tensors.count, expected.count)
        assertMatchesListing(c.tensors, expected)
        XCTAssertEqual(c.formatVersion, fixture["version"]?.nonNegativeInt)
        XCTAssertEqual(c.metadata["tokenizer.ggml.tokens"]?.arrayValue?.count, 49152)
        XCTAssertEqual(c.metadata["tokenizer.ggml.merges"]?.arrayValue?.count, 48900)
        let tokens = try XCTUnwrap(c.metadata["tokenizer.ggml.tokens"]?.arrayValue?.strings())
        XCTAssertEqual(tokens.count, 49152)
        XCTAssertEqual(tokens[1], "<|im_start|>")
    }
}
