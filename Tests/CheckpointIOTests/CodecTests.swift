import Basics
import CheckpointIO
import CKernels
import TensorMath
import TestSupport
import XCTest

final class CodecTests: XCTestCase {
    func testHalfPrecisionConversionsAreExact() {
        XCTAssertEqual(ckpt_f16_to_f32(0x3C00), 1)
        XCTAssertEqual(ckpt_f16_to_f32(0xC000), -2)
        XCTAssertEqual(ckpt_f16_to_f32(0x7BFF), 65504)
        XCTAssertEqual(ckpt_f16_to_f32(0x0001), Float(sign: .plus, exponent: -24, significand: 1), "smallest subnormal")
        XCTAssertEqual(ckpt_f16_to_f32(0x03FF), Float(0x3FF) * Float(sign: .plus, exponent: -24, significand: 1), "largest subnormal")
        XCTAssertEqual(ckpt_f16_to_f32(0x7C00), .infinity)
        XCTAssertTrue(ckpt_f16_to_f32(0x7E00).isNaN)
        XCTAssertEqual(ckpt_f16_to_f32(0x8000).sign, .minus)
        // Every f16 bit pattern against Swift's own Float16 conversion, where available.
        #if arch(x86_64) || arch(arm64)
        for bits in 0...UInt16.max {
            let ours = ckpt_f16_to_f32(bits)
            let ref = Float(Float16(bitPattern: bits))
            XCTAssertTrue(ours.bitPattern == ref.bitPattern || (ours.isNaN && ref.isNaN), "f16 \(bits)")
        }
        #endif
        XCTAssertEqual(ckpt_bf16_to_f32(0x3F80), 1)
        XCTAssertEqual(ckpt_bf16_to_f32(0xC0A0), -5)
    }

    /// Block decoders against `gguf.quants.dequantize` outputs (Tools/reference/make_fixtures.py),
    /// on the vector path this CPU has and on the scalar reference.
    func testBlockDecodersMatchGGUFPyBitForBit() throws {
        defer { ckpt_set_kernel_level(Int32(CKPT_LEVEL_AVX512)) }
        let names = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "IQ4_NL", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
        for level in [CKPT_LEVEL_AVX512, CKPT_LEVEL_SCALAR] {
            ckpt_set_kernel_level(Int32(level))
            for name in names {
                let type = try XCTUnwrap(GGMLType.named(name))
                let blocks = try FileSystem.readFile(fixturesPath + "/dequant/\(name).blocks")
                let expected = try FileSystem.readFile(fixturesPath + "/dequant/\(name).f32")
                XCTAssertEqual(blocks.count % type.bytesPerBlock, 0, name)
                let n = blocks.count / type.bytesPerBlock * type.blockSize
                XCTAssertEqual(expected.count, n * 4, name)
                let file = MappedFile(copying: blocks, label: name)
                let view = TensorView(name: name, dtype: .gguf(type), shape: [n], file: file, offset: 0, byteCount: blocks.count)
                var out = [Float](repeating: .nan, count: n)
                try out.withUnsafeMutableBufferPointer { try TensorDecoder.decodeRows(view, rows: 0..<1, into: $0.baseAddress!) }
                var mismatches = 0
                for i in 0..<n {
                    let e = expected.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self) }
                    if out[i].bitPattern != e { mismatches += 1 }
                }
                XCTAssertEqual(mismatches, 0, "\(name) (level \(level)): \(mismatches) of \(n) values differ from gguf-py")
            }
        }
    }

    func testDecodingRealModelRowsMatchesGGUFPy() throws {
        let c = try GGUFCheckpoint(path: smolLM2Path)
        let sample = try JSONParser.parse(FileSystem.readFile(fixturesPath + "/dequant/smollm2-sample.json"))
        let entries = try XCTUnwrap(sample["tensors"]?.arrayValue)
        XCTAssertFalse(entries.isEmpty)
        for e in entries {
            let name = try XCTUnwrap(e["name"]?.stringValue)
            let t = try XCTUnwrap(c.tensor(named: name))
            var row = [Float](repeating: 0, count: t.rowLength)
            for (key, index) in [("row_first", 0), ("row_last", t.rowCount - 1)] {
                try row.withUnsafeMutableBufferPointer { try TensorDecoder.decodeRows(t, rows: index..<(index + 1), into: $0.baseAddress!) }
                let hex = try XCTUnwrap(e[key]?.arrayValue).compactMap(\.stringValue)
                for (i, h) in hex.enumerated() {
                    XCTAssertEqual(row[i].bitPattern, UInt32(h.dropFirst(2), radix: 16), "\(name) \(key)[\(i)]")
                }
            }
            // Whole-tensor sum/min/max through the streamed statistics.
            var stats = TensorStatistics()
            var buffer = [Float](repeating: 0, count: t.rowLength * 64)
            var r = 0
            while r < t.rowCount {
                let end = min(t.rowCount, r + 64)
                try buffer.withUnsafeMutableBufferPointer { try TensorDecoder.decodeRows(t, rows: r..<end, into: $0.baseAddress!) }
                buffer.withUnsafeBufferPointer { stats.add($0.baseAddress!, count: (end - r) * t.rowLength) }
                r = end
            }
            XCTAssertEqual(stats.min, e["min"]?.doubleValue, name)
            XCTAssertEqual(stats.max, e["max"]?.doubleValue, name)
            let sum = try XCTUnwrap(e["sum"]?.doubleValue)
            XCTAssertEqual(stats.mean * Double(stats.count), sum, accuracy: 1e-6 * max(1, abs(sum)) + 1e-6, name)
        }
    }

    func testFloat8Tables() throws {
        func decode(_ dtype: SafetensorsDType, _ bytes: [UInt8]) throws -> [Float] {
            let f = MappedFile(copying: bytes, label: "f8")
            let v = TensorView(name: "x", dtype: .safetensors(dtype), shape: [bytes.count], file: f, offset: 0, byteCount: bytes.count)
            var out = [Float](repeating: 0, count: bytes.count)
            try out.withUnsafeMutableBufferPointer { try TensorDecoder.decodeRows(v, rows: 0..<1, into: $0.baseAddress!) }
            return out
        }
        // OCP FP8: E4M3FN max 448, E5M2 max 57344 and infinity.
        XCTAssertEqual(try decode(.F8_E4M3, [0x38, 0x7E, 0xFE, 0x01]), [1, 448, -448, Float(sign: .plus, exponent: -9, significand: 1)])
        XCTAssertTrue(try decode(.F8_E4M3, [0x7F])[0].isNaN)
        XCTAssertEqual(try decode(.F8_E5M2, [0x3C, 0x7B, 0x7C]), [1, 57344, .infinity])
        XCTAssertEqual(try decode(.F8_E8M0, [127, 130, 0]), [1, 8, Float(sign: .plus, exponent: -127, significand: 1)])
        XCTAssertTrue(try decode(.F8_E4M3FNUZ, [0x80])[0].isNaN)
        XCTAssertEqual(try decode(.F8_E4M3FNUZ, [0x40])[0], 1)
        XCTAssertEqual(try decode(.F8_E5M2FNUZ, [0x40])[0], 1)
    }

    func testStatisticsMergeAndNonFinite() {
        var whole = TensorStatistics()
        let values: [Float] = (0..<1000).map { Float($0 % 37) * 0.25 - 3 } + [.nan, .infinity, -.infinity]
        whole.add(values)
        var parts = TensorStatistics()
        for chunk in stride(from: 0, to: values.count, by: 97) {
            var s = TensorStatistics()
            s.add(Array(values[chunk..<min(values.count, chunk + 97)]))
            parts.merge(s)
        }
        XCTAssertEqual(whole.count, 1000)
        XCTAssertEqual(whole.nanCount, 1)
        XCTAssertEqual(whole.infCount, 2)
        XCTAssertEqual(whole.min, -3)
        XCTAssertEqual(whole.max, 6)
        let finite = values.prefix(1000).map(Double.init)
        let mean = finite.reduce(0, +) / 1000
        let std = (finite.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 1000).squareRoot()
        XCTAssertEqual(whole.mean, mean, accuracy: 1e-12)
        XCTAssertEqual(whole.standardDeviation, std, accuracy: 1e-12)
        XCTAssertEqual(parts.count, whole.count)
        XCTAssertEqual(parts.mean, whole.mean, accuracy: 1e-12)
        XCTAssertEqual(parts.standardDeviation, whole.standardDeviation, accuracy: 1e-12)
        XCTAssertEqual(parts.min, whole.min)
        XCTAssertEqual(parts.nanCount + parts.infCount, 3)
    }

    func testMappedFileErrorsAndAdvice() throws {
        XCTAssertThrowsError(try MappedFile(path: "/nonexistent/x")) { e in
            XCTAssertEqual(e as? CheckpointError, .notFound(path: "/nonexistent/x"))
        }
        XCTAssertThrowsError(try MappedFile(path: "/tmp")) { e in XCTAssertTrue("\(e)".contains("/tmp: map (it is a directory)"), "\(e)") }
        let dir = makeTemporaryDirectory()
        writeFile(dir + "/empty", [])
        XCTAssertEqual(try MappedFile(path: dir + "/empty").size, 0)
        writeFile(dir + "/data", [UInt8](repeating: 7, count: 100_000))
        let f = try MappedFile(path: dir + "/data")
        try f.advise(.sequential)
        try f.advise(.willNeed, range: 5000..<9000)
        try f.advise(.dontNeed, range: 4097..<70_000)
        XCTAssertEqual(f.bytes[60_000], 7, "pages dropped with DONTNEED fault back in from the file")
    }
}

/// The vectorised kernels against the scalar reference, on the same inputs.
final class KernelPathTests: XCTestCase {
    override func tearDown() { ckpt_set_kernel_level(Int32(CKPT_LEVEL_AVX512)) }

    func testStatisticsPathsAgree() {
        var rng = SystemRandomNumberGenerator()
        for n in [0, 1, 15, 16, 17, 1000, 4099] {
            var x = (0..<n).map { _ in Float.random(in: -3...3, using: &rng) }
            if n > 20 { x[3] = .nan; x[7] = .infinity; x[n - 1] = -.infinity; x[n - 2] = 1e30 }
            var a = ckpt_stats(), b = ckpt_stats()
            ckpt_stats_f32_scalar(x, Int64(n), &a)
            ckpt_stats_f32(x, Int64(n), &b)
            XCTAssertEqual(a.count, b.count, "n=\(n)")
            XCTAssertEqual(a.nan_count, b.nan_count)
            XCTAssertEqual(a.inf_count, b.inf_count)
            if n > 0 {
                XCTAssertEqual(a.min, b.min)
                XCTAssertEqual(a.max, b.max)
                XCTAssertEqual(a.mean, b.mean, accuracy: 1e-9 * max(1, abs(a.mean)))
                XCTAssertEqual(a.m2, b.m2, accuracy: 1e-9 * max(1, a.m2))
            }
        }
    }

    func testHalfDecodersPathsAgree() {
        // Every f16 and bf16 bit pattern, vector path against scalar (NaNs may differ in payload).
        let all = (0...UInt16.max).map { $0 }
        for decode in [ckpt_dequant_f16, ckpt_dequant_bf16] {
            var fast = [Float](repeating: 0, count: all.count), slow = fast
            ckpt_set_kernel_level(Int32(CKPT_LEVEL_AVX512))
            all.withUnsafeBytes { decode($0.baseAddress, &fast, Int64(all.count)) }
            ckpt_set_kernel_level(Int32(CKPT_LEVEL_SCALAR))
            all.withUnsafeBytes { decode($0.baseAddress, &slow, Int64(all.count)) }
            for i in all.indices where !(fast[i].isNaN && slow[i].isNaN) {
                XCTAssertEqual(fast[i].bitPattern, slow[i].bitPattern, "pattern \(i)")
            }
        }
        ckpt_set_kernel_level(Int32(CKPT_LEVEL_AVX512))
        print("kernel level compared against scalar: \(ckpt_kernel_level()) (0 scalar, 1 avx2, 2 avx512)")
    }
}

/// Encoders against gguf-py's `quants.quantize` (Tools/reference/make_fixtures.py).
final class QuantizerTests: XCTestCase {
    override func tearDown() { ckpt_set_kernel_level(Int32(CKPT_LEVEL_AVX512)) }

    func testEncodersMatchGGUFPyBitForBit() throws {
        let inputBytes = try FileSystem.readFile(fixturesPath + "/quant/input.f32")
        let input: [Float] = inputBytes.withUnsafeBytes { raw in (0..<(raw.count / 4)).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) } }
        XCTAssertEqual(input.count, 64 * 32)
        let encoders: [(String, Int, (UnsafePointer<Float>, UnsafeMutableRawPointer, Int64) -> Void)] = [
            ("F16", 2 * input.count, { ckpt_quant_f16($0, $1, $2 * 32) }),
            ("BF16", 2 * input.count, { ckpt_quant_bf16($0, $1, $2 * 32) }),
            ("Q8_0", 64 * 34, { ckpt_quant_q8_0($0, $1, $2) }),
            ("Q4_0", 64 * 18, { ckpt_quant_q4_0($0, $1, $2) }),
            ("Q4_1", 64 * 20, { ckpt_quant_q4_1($0, $1, $2) }),
            ("Q5_0", 64 * 22, { ckpt_quant_q5_0($0, $1, $2) }),
            ("Q5_1", 64 * 24, { ckpt_quant_q5_1($0, $1, $2) }),
        ]
        for level in [CKPT_LEVEL_SCALAR, CKPT_LEVEL_AVX512] {
            ckpt_set_kernel_level(Int32(level))
            for (name, size, encode) in encoders {
                let expected = try FileSystem.readFile(fixturesPath + "/quant/\(name).bin")
                XCTAssertEqual(expected.count, size, name)
                var out = [UInt8](repeating: 0xAA, count: size)
                input.withUnsafeBufferPointer { src in out.withUnsafeMutableBytes { encode(src.baseAddress!, $0.baseAddress!, 64) } }
                let firstDiff = zip(out, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset
                XCTAssertNil(firstDiff, "\(name) (level \(level)): first differing byte \(firstDiff ?? -1)")
            }
        }
    }

    func testHalfEncoderAgainstSwiftFloat16() {
        var rng = SystemRandomNumberGenerator()
        var values: [Float] = [0, -0, 1, -1, 65504, 65519.99, 65520, 1e9, -1e9, .infinity, -.infinity,
                               Float(sign: .plus, exponent: -24, significand: 1), Float(sign: .plus, exponent: -25, significand: 1),
                               Float(sign: .plus, exponent: -25, significand: 1.0000001), 6.1e-5, 5.96e-8, 2.98e-8]
        values += (0..<20000).map { _ in Float(bitPattern: UInt32.random(in: 0x3000_0000...0x4800_0000, using: &rng)) * (Bool.random() ? 1 : -1) }
        for v in values {
            XCTAssertEqual(ckpt_f32_to_f16(v), Float16(v).bitPattern, "\(v) (\(String(v.bitPattern, radix: 16)))")
        }
        XCTAssertTrue(Float16(bitPattern: ckpt_f32_to_f16(.nan)).isNaN)
        XCTAssertEqual(ckpt_f32_to_bf16(1.00390625), 0x3F80, "tie rounds to even")
        XCTAssertEqual(ckpt_f32_to_bf16(1.01171875), 0x3F82, "tie rounds to even (up)")
        XCTAssertTrue(Float(bitPattern: UInt32(ckpt_f32_to_bf16(.nan)) << 16).isNaN)
    }
}

final class KQuantEncoderTests: XCTestCase {
    /// Encodes and decodes `x` as `type`; returns the RMS error.
    func roundTripError(_ x: [Float], _ name: String, encode: (UnsafePointer<Float>, UnsafeMutableRawPointer, Int64) -> Void) throws -> Double {
        let type = try XCTUnwrap(GGMLType.named(name))
        let blocks = x.count / type.blockSize
        var bytes = [UInt8](repeating: 0, count: blocks * type.bytesPerBlock)
        x.withUnsafeBufferPointer { src in bytes.withUnsafeMutableBytes { encode(src.baseAddress!, $0.baseAddress!, Int64(blocks)) } }
        let file = MappedFile(copying: bytes, label: name)
        let view = TensorView(name: name, dtype: .gguf(type), shape: [x.count], file: file, offset: 0, byteCount: bytes.count)
        var y = [Float](repeating: .nan, count: x.count)
        try y.withUnsafeMutableBufferPointer { try TensorDecoder.decodeRows(view, rows: 0..<1, into: $0.baseAddress!) }
        return (zip(x, y).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +) / Double(x.count)).squareRoot()
    }

    func testKQuantErrorsOrderAsTheirBitsAndBeatTheirLegacyPeers() throws {
        var rng = SplitMix64(seed: 42)
        // Weight-like values: Gaussian with a few outliers, 16 super-blocks.
        let x: [Float] = (0..<(256 * 16)).map { i in
            let u1 = Double(rng.next() % 1_000_000 + 1) / 1_000_001, u2 = Double(rng.next() % 1_000_000) / 1_000_000
            let g = Float((-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)) * 0.02
            return i % 997 == 0 ? g * 12 : g
        }
        let q4k = try roundTripError(x, "Q4_K") { ckpt_quant_q4_k($0, $1, $2) }
        let q5k = try roundTripError(x, "Q5_K") { ckpt_quant_q5_k($0, $1, $2) }
        let q6k = try roundTripError(x, "Q6_K") { ckpt_quant_q6_k($0, $1, $2) }
        let q4_0 = try roundTripError(x, "Q4_0") { ckpt_quant_q4_0($0, $1, $2) }
        let q5_0 = try roundTripError(x, "Q5_0") { ckpt_quant_q5_0($0, $1, $2) }
        print("rms deviation: Q4_K \(q4k), Q4_0 \(q4_0), Q5_K \(q5k), Q5_0 \(q5_0), Q6_K \(q6k)")
        XCTAssertLessThan(q6k, q5k)
        XCTAssertLessThan(q5k, q4k)
        XCTAssertLessThan(q4k, q4_0 * 0.95, "the scale/min search must beat plain absmax")
        XCTAssertLessThan(q5k, q5_0)
        XCTAssertLessThan(q4k, 0.02 * 0.12, "about 12% of the values' spread")
    }

    func testKQuantDegenerateBlocks() throws {
        let zeros = [Float](repeating: 0, count: 256)
        XCTAssertEqual(try roundTripError(zeros, "Q4_K") { ckpt_quant_q4_k($0, $1, $2) }, 0)
        XCTAssertEqual(try roundTripError(zeros, "Q6_K") { ckpt_quant_q6_k($0, $1, $2) }, 0)
        let constant = [Float](repeating: 0.75, count: 256)
        XCTAssertLessThan(try roundTripError(constant, "Q5_K") { ckpt_quant_q5_k($0, $1, $2) }, 0.75 / 31)
        let tiny = [Float](repeating: 1e-20, count: 256)
        XCTAssertLessThan(try roundTripError(tiny, "Q6_K") { ckpt_quant_q6_k($0, $1, $2) }, 1e-19)
    }
}

/// `inspect --stats`'s scan: the same statistics whether a tensor streams through a buffer
/// larger than itself, a few rows at a time, or in block-aligned pieces of one long row.
final class StatisticsScanTests: XCTestCase {
    func testScanIsIndependentOfTheBuffer() throws {
        for path in ["/engine/tiny-llama.gguf", "/all-dtypes.safetensors", "/engine/tiny-qwen3-hf"] {
            let tensors = try openCheckpoint(path: fixturesPath + path).tensors
            var heard = 0
            let roomy = try TensorStatistics.scan(tensors) { done, _ in heard = done }
            XCTAssertEqual(heard, tensors.count)
            for elements in [1, 300, 4096] {
                let tight = try TensorStatistics.scan(tensors, bufferElements: elements)
                for (i, t) in tensors.enumerated() {
                    XCTAssertEqual(roomy[i] == nil, !TensorDecoder.canDecode(t.dtype) && t.elementCount > 0, t.name)
                    guard let a = roomy[i], let b = tight[i] else { continue }
                    XCTAssertEqual(a.count + a.nanCount + a.infCount, t.elementCount, "\(path) \(t.name)")
                    XCTAssertEqual(b.count, a.count, "\(path) \(t.name) with \(elements)")
                    XCTAssertEqual(b.min, a.min); XCTAssertEqual(b.max, a.max)
                    XCTAssertEqual(b.mean, a.mean, accuracy: 1e-9 * max(1, abs(a.mean)), "\(path) \(t.name)")
                    XCTAssertEqual(b.standardDeviation, a.standardDeviation, accuracy: 1e-9 * max(1, a.standardDeviation))
                }
            }
        }
    }
}
