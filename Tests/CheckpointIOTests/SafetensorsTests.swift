import Basics
import CheckpointIO
import TestSupport
import XCTest

/// Compares views with a reference listing made by gguf-py or the safetensors package:
/// name, dtype, shape, absolute offset and size of every tensor, in order.
func assertMatchesListing(_ tensors: [TensorView], _ expected: [JSONValue], file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(tensors.count, expected.count, file: file, line: line)
    for (t, e) in zip(tensors, expected) {
        XCTAssertEqual(t.name, e["name"]?.stringValue, file: file, line: line)
        XCTAssertEqual(t.dtype.name, e["dtype"]?.stringValue, t.name, file: file, line: line)
        XCTAssertEqual(t.shape, e["shape"]?.arrayValue?.compactMap(\.nonNegativeInt), t.name, file: file, line: line)
        XCTAssertEqual(t.offset, e["offset"]?.nonNegativeInt, t.name, file: file, line: line)
        XCTAssertEqual(t.byteCount, e["nbytes"]?.nonNegativeInt, t.name, file: file, line: line)
    }
}

final class SafetensorsTests: XCTestCase {
    func testSingleFileLayoutAndMetadata() throws {
        let bytes = buildSafetensors([
            SafetensorsTestTensor("b", dtype: "BF16", shape: [2, 2], data: [0, 0x3F, 0, 0x40, 0, 0xC0, 0x80, 0x3F]),
            SafetensorsTestTensor("a", dtype: "F32", shape: [], data: floatBytes([7])),
            SafetensorsTestTensor("empty", dtype: "F16", shape: [0, 3], data: []),
        ], metadata: ["format": "pt"])
        let st = try SafetensorsFile(file: MappedFile(copying: bytes, label: "m.safetensors"))
        XCTAssertEqual(st.tensors.map(\.name), ["b", "a", "empty"], "file order is data order, not header order")
        XCTAssertEqual(st.tensors[0].shape, [2, 2])
        XCTAssertEqual(st.tensors[1].shape, [])
        XCTAssertEqual(st.tensors[1].elementCount, 1)
        XCTAssertEqual(st.tensors[0].offset, st.dataStart)
        XCTAssertEqual(st.tensors[1].offset, st.dataStart + 8)
        XCTAssertEqual(st.tensors[1].bytes.loadUnaligned(as: Float.self), 7)
        XCTAssertEqual(st.tensors[2].byteCount, 0)
        XCTAssertEqual(st.metadata, [MetadataEntry(key: "format", value: .string("pt"))])
    }

    func testSubByteDTypeSizes() {
        XCTAssertEqual(TensorDType.safetensors(.F4).byteCount(elements: 6), 3)
        XCTAssertNil(TensorDType.safetensors(.F4).byteCount(elements: 3))
        XCTAssertEqual(TensorDType.safetensors(.F6_E2M3).byteCount(elements: 4), 3)
        XCTAssertNil(TensorDType.safetensors(.F6_E3M2).byteCount(elements: 2))
        XCTAssertEqual(TensorDType.safetensors(.C64).byteCount(elements: 3), 24)
        XCTAssertEqual(SafetensorsDType.allCases.count, 22)
    }

    /// The fixture is written by the `safetensors` package itself (Tools/reference/make_fixtures.py);
    /// its listing was read back with the same package.
    func testEveryDTypeFileWrittenByTheSafetensorsPackage() throws {
        let path = fixturesPath + "/all-dtypes.safetensors"
        let c = try openCheckpoint(path: path)
        let listing = try JSONParser.parse(FileSystem.readFile(fixturesPath + "/all-dtypes.listing.json"))
        let expected = try XCTUnwrap(listing["tensors"]?.arrayValue)
        XCTAssertEqual(c.tensors.count, expected.count)
        assertMatchesListing(c.tensors, expected)
        let dtypes = Set(c.tensors.map(\.dtype.name))
        XCTAssertTrue(dtypes.isSuperset(of: ["BOOL", "U8", "I8", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64", "C64", "F8_E4M3", "F8_E5M2"]), "\(dtypes)")
    }

    func testShardedDirectoryAndIndex() throws {
        let dir = makeTemporaryDirectory()
        writeFile(dir + "/model-00001-of-00002.safetensors", buildSafetensors([
            SafetensorsTestTensor("embed", dtype: "F32", shape: [2, 2], data: floatBytes([1, 2, 3, 4])),
        ], metadata: ["format": "pt"]))
        writeFile(dir + "/model-00002-of-00002.safetensors", buildSafetensors([
            SafetensorsTestTensor("head", dtype: "F32", shape: [1], data: floatBytes([5])),
            SafetensorsTestTensor("norm", dtype: "F32", shape: [1], data: floatBytes([6])),
        ], metadata: ["format": "pt"]))
        writeFile(dir + "/model.safetensors.index.json", Array("""
        {"metadata": {"total_size": 28}, "weight_map": {"head": "model-00002-of-00002.safetensors",
         "embed": "model-00001-of-00002.safetensors", "norm": "model-00002-of-00002.safetensors"}}
        """.utf8))
        for path in [dir, dir + "/model.safetensors.index.json"] {
            let c = try XCTUnwrap(try openCheckpoint(path: path) as? SafetensorsCheckpoint)
            XCTAssertEqual(c.tensors.map(\.name), ["embed", "head", "norm"])
            XCTAssertEqual(c.files.count, 2)
            XCTAssertEqual(c.indexMetadata["total_size"], .int64(28))
            XCTAssertEqual(c.metadata["format"]?.stringValue, "pt")
            XCTAssertEqual(c.tensor(named: "norm")?.bytes.loadUnaligned(as: Float.self), 6)
            XCTAssertEqual(c.parameterCount, 6)
        }
    }
}

final class JSONTests: XCTestCase {
    func testExactNumbersEscapesAndOrder() throws {
        let v = try JSONParser.parse(Array(#"{"z": 18446744073709551615, "a": [1.5e3, -0, true, null], "s": "a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"}"#.utf8))
        XCTAssertEqual(v.objectValue?.map(\.key), ["z", "a", "s"])
        XCTAssertEqual(v["z"], .number("18446744073709551615"))
        XCTAssertEqual(v["a"]?.arrayValue?.first?.doubleValue, 1500)
        XCTAssertEqual(v["s"]?.stringValue, "a\"\\/\u{8}\u{c}\n\r\té😀")
    }

    func testRejections() {
        let cases: [(String, String)] = [
            (#"{"a":1,"a":2}"#, "duplicate key"),
            (#"{"a":01}"#, "expected ','"),
            (#"{"a":"\ud800"}"#, "lone high surrogate"),
            (#"{"a":"\udc00"}"#, "lone low surrogate"),
            (#"{"a":"\x"}"#, "invalid escape"),
            ("{\"a\":\"\u{1}\"}", "control character"),
            (#"{"a":1"#, "end of JSON"),
            (#"[1,]"#, "unexpected character"),
            (#"nul"#, "truncated literal"),
            (String(repeating: "[", count: 200) + String(repeating: "]", count: 200), "nesting deeper"),
        ]
        for (text, fragment) in cases {
            XCTAssertThrowsError(try JSONParser.parse(Array(text.utf8)), text) { e in
                XCTAssertTrue("\(e)".contains(fragment), "\(text): \(e)")
            }
        }
        XCTAssertThrowsError(try JSONParser.parse([0x22, 0xFF, 0x22])) { e in XCTAssertTrue("\(e)".contains("UTF-8")) }
    }

    struct Sample: Decodable, Equatable {
        let name: String
        let layers: Int
        let eps: Double
        let list: [Int]
        let inner: Inner?
        struct Inner: Decodable, Equatable { let flag: Bool }
    }

    func testDecodableOverJSONValue() throws {
        let s = try JSONValueDecoder().decode(Sample.self, from: Array(#"{"name":"x","layers":4.0,"eps":1e-5,"list":[1,2],"inner":{"flag":true}}"#.utf8))
        XCTAssertEqual(s, Sample(name: "x", layers: 4, eps: 1e-5, list: [1, 2], inner: .init(flag: true)))
        XCTAssertThrowsError(try JSONValueDecoder().decode(Sample.self, from: Array(#"{"name":"x","layers":"4","eps":1,"list":[]}"#.utf8))) { e in
            XCTAssertTrue((e as? DecodingError)?.readableDescription.contains("layers: expected an integer") == true, "\(e)")
        }
    }
}
