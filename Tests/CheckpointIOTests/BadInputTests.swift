import Basics
import CheckpointIO
import TestSupport
import XCTest

/// Opens `bytes` as the format its label names and expects a refusal naming the file
/// and containing every fragment.
func expectError(_ bytes: [UInt8], label: String, _ fragments: [String], file: StaticString = #filePath, line: UInt = #line) {
    do {
        let f = MappedFile(copying: bytes, label: label)
        if label.hasSuffix(".gguf") {
            _ = try GGUFFile(file: f)
        } else {
            _ = try SafetensorsFile(file: f)
        }
        XCTFail("\(label): accepted a malformed file", file: file, line: line)
    } catch let e as CheckpointError {
        let text = e.description
        XCTAssertTrue(text.hasPrefix(label), "message must name the file: \(text)", file: file, line: line)
        for frag in fragments {
            XCTAssertTrue(text.contains(frag), "'\(text)' lacks '\(frag)'", file: file, line: line)
        }
    } catch {
        XCTFail("unexpected error type \(error)", file: file, line: line)
    }
}

/// Every malformed-input case the readers must refuse with a clear message, never a trap.
final class BadInputTests: XCTestCase {
    // MARK: safetensors

    let f32x2 = SafetensorsTestTensor("w", dtype: "F32", shape: [2], data: floatBytes([1, 2]))

    func testSafetensorsTruncatedAndLengths() {
        expectError([], label: "empty.safetensors", ["0 bytes", "8-byte header length"])
        expectError([1, 2, 3], label: "short.safetensors", ["3 bytes"])
        let good = buildSafetensors([f32x2])
        expectError(Array(good.prefix(20)), label: "cut.safetensors", ["larger than the rest of the file"])
        var huge = good
        huge.replaceSubrange(0..<8, with: withUnsafeBytes(of: UInt64(1) << 62) { Array($0) })
        expectError(huge, label: "huge.safetensors", ["header length", "larger than the rest"])
        expectError(Array(good.dropLast(4)), label: "data.safetensors", ["truncated"])
    }

    func testSafetensorsHeaderNotJSONObject() {
        expectError(buildSafetensors([], headerOverride: "[1,2]"), label: "a.safetensors", ["does not start with '{'"])
        expectError(buildSafetensors([], headerOverride: "{\"w\": "), label: "b.safetensors", ["invalid", "end of JSON"])
        expectError(buildSafetensors([], headerOverride: "{\"w\":{\"dtype\":\"F32\"}} junk"), label: "c.safetensors", ["unexpected data after"])
    }

    func testSafetensorsRanges() {
        let a = SafetensorsTestTensor("a", dtype: "F32", shape: [2], data: floatBytes([1, 2]), offsetsJSON: "[0,8]")
        let b = SafetensorsTestTensor("b", dtype: "F32", shape: [2], data: floatBytes([1, 2]), offsetsJSON: "[4,12]")
        expectError(buildSafetensors([a, b]), label: "overlap.safetensors", ["tensor 'b'", "overlap tensor 'a'"])
        let gap = SafetensorsTestTensor("b", dtype: "F32", shape: [1], data: floatBytes([1, 2]), offsetsJSON: "[12,16]")
        expectError(buildSafetensors([a, gap]), label: "gap.safetensors", ["tensor 'b'", "bytes 8..<12", "unused"])
        let short = SafetensorsTestTensor("a", dtype: "F32", shape: [1], data: floatBytes([1, 2]), offsetsJSON: "[0,4]")
        expectError(buildSafetensors([short]), label: "cover.safetensors", ["cover 4 bytes", "holds 8"])
        let beyond = SafetensorsTestTensor("a", dtype: "F32", shape: [4], data: floatBytes([1, 2]), offsetsJSON: "[0,16]")
        expectError(buildSafetensors([beyond]), label: "beyond.safetensors", ["tensor 'a'", "run past the data section"])
        let backwards = SafetensorsTestTensor("a", dtype: "F32", shape: [0], data: [], offsetsJSON: "[8,0]")
        expectError(buildSafetensors([backwards]), label: "back.safetensors", ["end before they begin"])
        let notInts = SafetensorsTestTensor("a", dtype: "F32", shape: [2], data: floatBytes([1, 2]), offsetsJSON: "[0,-8]")
        expectError(buildSafetensors([notInts]), label: "neg.safetensors", ["data_offsets", "non-negative"])
    }

    func testSafetensorsTensorDescriptions() {
        expectError(buildSafetensors([SafetensorsTestTensor("w", dtype: "F33", shape: [2], data: floatBytes([1, 2]))]),
                    label: "dtype.safetensors", ["tensor 'w'", "unknown dtype 'F33'"])
        expectError(buildSafetensors([SafetensorsTestTensor("w", dtype: "F32", shape: [3], data: floatBytes([1, 2]))]),
                    label: "size.safetensors", ["tensor 'w'", "needs 12 bytes", "hold 8"])
        expectError(buildSafetensors([SafetensorsTestTensor("w", dtype: "F32", shape: [1 << 40, 1 << 40], data: floatBytes([1, 2]))]),
                    label: "overflow.safetensors", ["tensor 'w'", "64 bits"])
        expectError(buildSafetensors([SafetensorsTestTensor("w", dtype: "F4", shape: [3], data: [0, 0])]),
                    label: "bits.safetensors", ["tensor 'w'", "not a whole number of bytes"])
        expectError(buildSafetensors([], headerOverride: "{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,0]}}"),
                    label: "shape.safetensors", ["shape entry 1.5"])
        expectError(buildSafetensors([], headerOverride: "{\"w\":{\"shape\":[],\"data_offsets\":[0,0]}}"),
                    label: "missing.safetensors", ["missing or non-string 'dtype'"])
        expectError(buildSafetensors([], headerOverride: "{\"w\":3}"), label: "entry.safetensors", ["not an object"])
        expectError(buildSafetensors([], headerOverride: "{\"__metadata__\":{\"a\":1}}"), label: "meta.safetensors", ["'a'", "must be strings"])
    }

    func testSafetensorsDuplicateAndNonUTF8Names() {
        let header = "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}"
        expectError(buildSafetensors([], headerOverride: header), label: "dup.safetensors", ["duplicate key \"w\""])
        var bytes = buildSafetensors([], headerOverride: "{\"w\\u00e9X\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}")
        // Replace the escaped name with a raw invalid UTF-8 byte.
        let header2 = Array("{\"w\u{00FF}\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}".utf8)
        var raw = header2
        let i = raw.firstIndex(of: 0xC3)!
        raw.replaceSubrange(i...(i + 1), with: [0xFF, 0x20])
        bytes = []
        put(&bytes, UInt64(raw.count))
        bytes += raw
        expectError(bytes, label: "utf8.safetensors", ["not valid UTF-8"])
    }

    func testSafetensorsShardedSetErrors() throws {
        let dir = makeTemporaryDirectory()
        writeFile(dir + "/model-00001-of-00002.safetensors", buildSafetensors([f32x2]))
        writeFile(dir + "/model.safetensors.index.json", Array("""
        {"metadata": {"total_size": 16}, "weight_map": {"w": "model-00001-of-00002.safetensors", "v": "model-00002-of-00002.safetensors"}}
        """.utf8))
        XCTAssertThrowsError(try openCheckpoint(path: dir)) { e in
            XCTAssertTrue("\(e)".contains("model.safetensors.index.json"), "\(e)")
            XCTAssertTrue("\(e)".contains("'model-00002-of-00002.safetensors', which does not exist"), "\(e)")
        }
        writeFile(dir + "/model-00002-of-00002.safetensors", buildSafetensors([SafetensorsTestTensor("u", dtype: "F32", shape: [2], data: floatBytes([1, 2]))]))
        XCTAssertThrowsError(try openCheckpoint(path: dir)) { e in
            XCTAssertTrue("\(e)".contains("maps tensor 'v' to shard 'model-00002-of-00002.safetensors', but no shard has it"), "\(e)")
        }
        writeFile(dir + "/model.safetensors.index.json", Array("[1]".utf8))
        XCTAssertThrowsError(try openCheckpoint(path: dir)) { e in XCTAssertTrue("\(e)".contains("not a JSON object"), "\(e)") }
        writeFile(dir + "/model.safetensors.index.json", Array("{\"weight_map\": {\"w\": \"../etc/passwd\"}}".utf8))
        XCTAssertThrowsError(try openCheckpoint(path: dir)) { e in XCTAssertTrue("\(e)".contains("plain file name"), "\(e)") }
        writeFile(dir + "/model.safetensors.index.json", Array("{\"weight_map\": {\"w\": \"model-00001-of-00002.safetensors\", \"u\": \"model-00001-of-00002.safetensors\"}}".utf8))
        XCTAssertThrowsError(try openCheckpoint(path: dir)) { e in XCTAssertTrue("\(e)".contains("maps tensor 'u' to shard 'model-00001-of-00002.safetensors', but no shard has it"), "\(e)") }
    }

    func testSafetensorsDuplicateAcrossShards() throws {
        let dir = makeTemporaryDirectory()
        writeFile(dir + "/a.safetensors", buildSafetensors([f32x2]))
        writeFile(dir + "/b.safetensors", buildSafetensors([f32x2]))
        XCTAssertThrowsError(try openCheckpoint(path: dir)) { e in
            XCTAssertTrue("\(e)".contains("tensor 'w' is stored twice, in 'a.safetensors' and in 'b.safetensors'"), "\(e)")
        }
    }

    // MARK: GGUF

    func testGGUFHeaderErrors() {
        let good = GGUFTests.sampleBuilder().build()
        expectError(Array(good.prefix(10)), label: "short.gguf", ["shorter than a GGUF header"])
        var v1 = GGUFTests.sampleBuilder(); v1.version = 1
        expectError(v1.build(), label: "v1.gguf", ["version 1"])
        var v9 = GGUFTests.sampleBuilder(); v9.version = 9
        expectError(v9.build(), label: "v9.gguf", ["version 9 is unknown"])
        var be = GGUFTests.sampleBuilder(); be.version = UInt32(3).byteSwapped
        expectError(be.build(), label: "be.gguf", ["big-endian"])
        var tc = GGUFTests.sampleBuilder(); tc.tensorCountOverride = 1 << 60
        expectError(tc.build(), label: "tensors.gguf", ["claims 1152921504606846976 tensors"])
        var kc = GGUFTests.sampleBuilder(); kc.kvCountOverride = 1 << 60
        expectError(kc.build(), label: "kv.gguf", ["claims 1152921504606846976 metadata entries"])
        var kc2 = GGUFTests.sampleBuilder(); kc2.kvCountOverride = 40
        expectError(kc2.build(), label: "kv2.gguf", ["truncated"])
    }

    func testGGUFTruncatedAnywhere() {
        let good = GGUFTests.sampleBuilder().build()
        let parsed = try! GGUFFile(file: MappedFile(copying: good, label: "good.gguf"))
        let dataEnd = parsed.tensors.map { $0.offset + $0.byteCount }.max()!
        // Every prefix that cuts into the header or the tensor data must be refused cleanly.
        for n in 24..<dataEnd {
            do {
                _ = try GGUFFile(file: MappedFile(copying: good.prefix(n), label: "cut.gguf"))
                XCTFail("prefix of \(n) bytes accepted")
            } catch let e as CheckpointError {
                XCTAssertTrue(e.description.hasPrefix("cut.gguf: "), e.description)
            } catch {
                XCTFail("\(error)")
            }
        }
    }

    func testGGUFMetadataErrors() {
        var dup = GGUFTests.sampleBuilder(); dup.metadata.append(("u8", .u8(1)))
        expectError(dup.build(), label: "dup.gguf", ["key 'u8'", "appears twice"])
        var ty = GGUFTests.sampleBuilder(); ty.metadata = [("x", .u8(1))]
        var bytes = ty.build()
        // The value type sits after magic(4) version(4) counts(16) keylen(8) key(1).
        bytes.replaceSubrange(33..<37, with: [13, 0, 0, 0])
        expectError(bytes, label: "type.gguf", ["key 'x'", "unknown value type 13"])
        var arr = GGUFTests.sampleBuilder(); arr.metadata = [("big", .array(elementType: 4, [.u32(1)]))]
        var ab = arr.build()
        ab.replaceSubrange(41..<49, with: withUnsafeBytes(of: UInt64(1) << 61) { Array($0) })
        expectError(ab, label: "arr.gguf", ["key 'big'", "does not fit"])
        var bad = GGUFTests.sampleBuilder(); bad.metadata = [("b", .u8(7))]
        var bb = bad.build()
        bb[33] = 7 // type bool with value 7
        expectError(bb, label: "bool.gguf", ["key 'b'", "not 0 or 1"])
        var al = GGUFTests.sampleBuilder(); al.metadata.append(("general.alignment", .u32(48)))
        expectError(al.build(), label: "align.gguf", ["general.alignment", "power of two"])
        var key = GGUFTests.sampleBuilder(); key.metadata = [("k\u{00E9}", .u8(1))]
        var kb = key.build()
        kb[32] = 0xFF // break the UTF-8 of the key
        expectError(kb, label: "key.gguf", ["not valid UTF-8"])
        var deep = GGUFTests.sampleBuilder()
        var v = GGUFTestValue.array(elementType: 4, [.u32(1)])
        for _ in 0..<12 { v = .array(elementType: 9, [v]) }
        deep.metadata = [("deep", v)]
        expectError(deep.build(), label: "deep.gguf", ["nested deeper"])
    }

    func testGGUFTensorErrors() {
        func with(_ t: GGUFTestTensor) -> [UInt8] {
            var b = GGUFTests.sampleBuilder(); b.tensors = [t]; return b.build()
        }
        expectError(with(GGUFTestTensor("t", ne: [4], type: 77, data: [])), label: "type.gguf", ["tensor 't'", "unknown ggml type 77"])
        expectError(with(GGUFTestTensor("t", ne: [1, 1, 1, 1, 1], type: 0, data: floatBytes([1]))), label: "dims.gguf", ["tensor 't'", "5 dimensions"])
        expectError(with(GGUFTestTensor("t", ne: [1 << 40, 1 << 40], type: 0, data: [])), label: "ovf.gguf", ["tensor 't'", "overflow"])
        expectError(with(GGUFTestTensor("t", ne: [1 << 62, 8], type: 0, data: [])), label: "ovf2.gguf", ["tensor 't'", "overflow"])
        expectError(with(GGUFTestTensor("t", ne: [33], type: 2, data: [])), label: "block.gguf", ["tensor 't'", "not a multiple of Q4_0's block size 32"])
        expectError(with(GGUFTestTensor("t", ne: [16], type: 0, data: floatBytes([1]))), label: "short.gguf", ["tensor 't'", "runs past the data section"])
        expectError(with(GGUFTestTensor("t", ne: [1], type: 0, data: floatBytes([1]), offset: 4)), label: "align.gguf", ["tensor 't'", "not a multiple of the alignment"])
        expectError(with(GGUFTestTensor("t", ne: [1], type: 0, data: floatBytes([1]), offset: UInt64.max - 31)), label: "off.gguf", ["tensor 't'", "offset"])
        expectError(with(GGUFTestTensor(rawName: [0x66, 0xFF], ne: [1], type: 0, data: floatBytes([1]))), label: "name.gguf", ["tensor #0", "not valid UTF-8"])

        var dup = GGUFTests.sampleBuilder()
        dup.tensors = [GGUFTestTensor("t", ne: [1], type: 0, data: floatBytes([1])), GGUFTestTensor("t", ne: [1], type: 0, data: floatBytes([1]))]
        expectError(dup.build(), label: "dup.gguf", ["tensor 't'", "appears twice"])
        var overlap = GGUFTests.sampleBuilder()
        overlap.tensors = [GGUFTestTensor("a", ne: [16], type: 0, data: floatBytes(Array(repeating: 1, count: 16))),
                           GGUFTestTensor("b", ne: [8], type: 0, data: floatBytes(Array(repeating: 1, count: 8)), offset: 32)]
        expectError(overlap.build(), label: "overlap.gguf", ["tensor 'b'", "overlaps tensor 'a'"])
    }

    func testNotACheckpoint() throws {
        let dir = makeTemporaryDirectory()
        writeFile(dir + "/x.gguf", Array("hello world, not a model".utf8))
        XCTAssertThrowsError(try openCheckpoint(path: dir + "/x.gguf")) { e in
            XCTAssertTrue("\(e)".contains("does not start with the GGUF magic"), "\(e)")
        }
        XCTAssertThrowsError(try openCheckpoint(path: dir + "/nope.safetensors")) { e in
            XCTAssertEqual(e as? CheckpointError, .notFound(path: dir + "/nope.safetensors"))
        }
        XCTAssertThrowsError(try openCheckpoint(path: dir)) { e in
            XCTAssertTrue("\(e)".contains("no *.safetensors files"), "\(e)")
        }
    }
}

/// Cases found in review: each once trapped, over-allocated, or disagreed with the
/// reference readers.
final class ReviewedInputTests: XCTestCase {
    func testZeroDimensionCannotHideAnOverflow() {
        var b = GGUFBuilder()
        b.tensors = [GGUFTestTensor("t", ne: [0, 1 << 32, 1 << 32], type: 0, data: [])]
        expectError(b.build(), label: "zero.gguf", ["tensor 't'", "overflow"])
    }

    func testRemovedTypesVersionZeroAndFloatAlignment() {
        var b = GGUFBuilder()
        b.tensors = [GGUFTestTensor("t", ne: [32], type: 31, data: [UInt8](repeating: 0, count: 18))]
        expectError(b.build(), label: "removed.gguf", ["Q4_0_4_4", "removed from GGUF files"])
        var v0 = GGUFBuilder(); v0.version = 0
        expectError(v0.build(), label: "v0.gguf", ["version 0 is unknown"])
        var al = GGUFBuilder(); al.metadata = [("general.alignment", .f64(64))]
        expectError(al.build(), label: "align.gguf", ["general.alignment", "power of two"])
    }

    func testDataSectionPastTheEnd() {
        var b = GGUFBuilder()
        b.tensors = [GGUFTestTensor("empty", ne: [0], type: 0, data: [])]
        let bytes = b.build()
        // 61 bytes of header and tensor info, without the padding to 64: the data section
        // would start past the end.
        XCTAssertEqual(bytes.count, 64)
        expectError(Array(bytes.prefix(61)), label: "eof.gguf", ["past the end of the file"])
    }

    func testOverlongKey() {
        var b = GGUFBuilder()
        b.metadata = [(String(repeating: "k", count: 70_000), .u8(1))]
        expectError(b.build(), label: "key.gguf", ["70000 bytes long"])
    }

    func testCanonicallyEquivalentNamesAreDistinct() throws {
        let nfc = "caf\u{E9}", nfd = "cafe\u{301}"
        XCTAssertEqual(nfc, nfd, "Swift calls them equal; the formats do not")
        let st = buildSafetensors([SafetensorsTestTensor(nfc, dtype: "F32", shape: [1], data: floatBytes([1])),
                                   SafetensorsTestTensor(nfd, dtype: "F32", shape: [1], data: floatBytes([2]))])
        XCTAssertEqual(try SafetensorsFile(file: MappedFile(copying: st, label: "n.safetensors")).tensors.count, 2)
        var g = GGUFBuilder()
        g.tensors = [GGUFTestTensor(nfc, ne: [1], type: 0, data: floatBytes([1])), GGUFTestTensor(nfd, ne: [1], type: 0, data: floatBytes([2]))]
        XCTAssertEqual(try GGUFFile(file: MappedFile(copying: g.build(), label: "n.gguf")).tensors.count, 2)
    }

    func testSafetensorsNullMetadataAndNegativeZero() throws {
        let ok = buildSafetensors([], headerOverride: "{\"__metadata__\":null,\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}") + floatBytes([1])
        XCTAssertEqual(try SafetensorsFile(file: MappedFile(copying: ok, label: "null.safetensors")).tensors.count, 1)
        expectError(buildSafetensors([], headerOverride: "{\"w\":{\"dtype\":\"F32\",\"shape\":[-0],\"data_offsets\":[0,0]}}"),
                        label: "negzero.safetensors", ["shape entry -0"])
        let deep = "[" + Array(repeating: "1", count: 100).joined(separator: ",") + "]"
        expectError(buildSafetensors([], headerOverride: "{\"w\":{\"dtype\":\"F32\",\"shape\":\(deep),\"data_offsets\":[0,4]}}"),
                        label: "rank.safetensors", ["100 dimensions"])
    }
}
