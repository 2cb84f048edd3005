import Basics
import CKernels

/// Decodes stored tensor bytes to f32, a range of rows at a time, so callers can
/// stream a tensor of any size through a fixed buffer.
public enum TensorDecoder {
    /// Whether `dtype` can be decoded to f32 by this build.
    public static func canDecode(_ dtype: TensorDType) -> Bool {
        switch dtype {
        case let .safetensors(t):
            switch t {
            case .F4, .F6_E2M3, .F6_E3M2, .C64: return false
            default: return true
            }
        case let .gguf(t):
            switch t.name {
            case "F32", "F16", "BF16", "F64", "I8", "I16", "I32", "I64",
                 "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "IQ4_NL",
                 "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K":
                return true
            default:
                return false
            }
        }
    }

    /// Decodes rows `rows` of `view` (rows are the innermost dimension) into `out`,
    /// which must hold `rows.count * view.rowLength` floats.
    public static func decodeRows(_ view: TensorView, rows: Range<Int>, into out: UnsafeMutablePointer<Float>) throws {
        guard canDecode(view.dtype) else {
            throw CheckpointError.unsupported(path: view.file.path, reason: "tensor '\(view.name)': no f32 decoder for \(view.dtype.name) yet")
        }
        precondition(rows.lowerBound >= 0 && rows.upperBound <= view.rowCount, "row range outside tensor")
        let rowElements = view.rowLength
        guard let rowBytes = view.dtype.byteCount(elements: rowElements) else {
            throw CheckpointError.badTensor(path: view.file.path, tensor: view.name, reason: "rows are not a whole number of bytes")
        }
        let n = rows.count * rowElements
        let src = view.bytes.baseAddress! + rows.lowerBound * rowBytes
        decode(view.dtype, src: src, count: n, into: out)
    }

    /// Decodes `count` elements (whole blocks) starting at `src`.
    static func decode(_ dtype: TensorDType, src: UnsafeRawPointer, count n: Int, into out: UnsafeMutablePointer<Float>) {
        switch dtype {
        case let .gguf(t):
            let blocks = Int64(n / t.blockSize)
            switch t.name {
            case "F32": convert(src, out, n, Float.self)
            case "F16": ckpt_dequant_f16(src, out, Int64(n))
            case "BF16": ckpt_dequant_bf16(src, out, Int64(n))
            case "F64": convert(src, out, n, Double.self)
            case "I8": convert(src, out, n, Int8.self)
            case "I16": convert(src, out, n, Int16.self)
            case "I32": convert(src, out, n, Int32.self)
            case "I64": convert(src, out, n, Int64.self)
            case "Q4_0": ckpt_dequant_q4_0(src, out, blocks)
            case "Q4_1": ckpt_dequant_q4_1(src, out, blocks)
            case "Q5_0": ckpt_dequant_q5_0(src, out, blocks)
            case "Q5_1": ckpt_dequant_q5_1(src, out, blocks)
            case "Q8_0": ckpt_dequant_q8_0(src, out, blocks)
            case "IQ4_NL": ckpt_dequant_iq4_nl(src, out, blocks)
            case "Q2_K": ckpt_dequant_q2_k(src, out, blocks)
            case "Q3_K": ckpt_dequant_q3_k(src, out, blocks)
            case "Q4_K": ckpt_dequant_q4_k(src, out, blocks)
            case "Q5_K": ckpt_dequant_q5_k(src, out, blocks)
            case "Q6_K": ckpt_dequant_q6_k(src, out, blocks)
            default: preconditionFailure("canDecode admitted \(t.name)")
            }
        case let .safetensors(t):
            switch t {
            case .F32: convert(src, out, n, Float.self)
            case .F16: ckpt_dequant_f16(src, out, Int64(n))
            case .BF16: ckpt_dequant_bf16(src, out, Int64(n))
            case .F64: convert(src, out, n, Double.self)
            case .BOOL, .U8: convert(src, out, n, UInt8.self)
            case .I8: convert(src, out, n, Int8.self)
            case .I16: convert(src, out, n, Int16.self)
            case .U16: convert(src, out, n, UInt16.self)
            case .I32: convert(src, out, n, Int32.self)
            case .U32: convert(src, out, n, UInt32.self)
            case .I64: convert(src, out, n, Int64.self)
            case .U64: convert(src, out, n, UInt64.self)
            case .F8_E4M3, .F8_E5M2, .F8_E8M0, .F8_E4M3FNUZ, .F8_E5M2FNUZ:
                let table = Float8.table(for: t)
                let p = src.assumingMemoryBound(to: UInt8.self)
                for i in 0..<n { out[i] = table[Int(p[i])] }
            case .F4, .F6_E2M3, .F6_E3M2, .C64:
                preconditionFailure("canDecode admitted \(t.rawValue)")
            }
        }
    }

    private static func convert<T: FixedWidthInteger>(_ src: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>, _ n: Int, _: T.Type) {
        let size = MemoryLayout<T>.size
        for i in 0..<n { out[i] = Float(T(littleEndian: src.loadUnaligned(fromByteOffset: i * size, as: T.self))) }
    }

    private static func convert<T: BinaryFloatingPoint>(_ src: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>, _ n: Int, _: T.Type) {
        let size = MemoryLayout<T>.size
        for i in 0..<n { out[i] = Float(src.loadUnaligned(fromByteOffset: i * size, as: T.self)) }
    }
}

/// The 8-bit float formats of safetensors (OCP FP8, AMD's FNUZ variants, MX E8M0 scales),
/// decoded through 256-entry tables.
enum Float8 {
    static func table(for t: SafetensorsDType) -> [Float] {
        (0..<256).map { decode(UInt8($0), t) }
    }

    static func decode(_ b: UInt8, _ t: SafetensorsDType) -> Float {
        switch t {
        case .F8_E8M0:
            return b == 0xFF ? .nan : Float(sign: .plus, exponent: Int(b) - 127, significand: 1)
        case .F8_E4M3:
            if b & 0x7F == 0x7F { return .nan } // e4m3fn: no infinities
            return minifloat(b, expBits: 4, manBits: 3, bias: 7, ieeeSpecials: false)
        case .F8_E5M2:
            return minifloat(b, expBits: 5, manBits: 2, bias: 15, ieeeSpecials: true)
        case .F8_E4M3FNUZ:
            if b == 0x80 { return .nan } // FNUZ: the negative zero pattern is NaN
            return minifloat(b, expBits: 4, manBits: 3, bias: 8, ieeeSpecials: false)
        case .F8_E5M2FNUZ:
            if b == 0x80 { return .nan }
            return minifloat(b, expBits: 5, manBits: 2, bias: 16, ieeeSpecials: false)
        default:
            return .nan
        }
    }

    private static func minifloat(_ b: UInt8, expBits: Int, manBits: Int, bias: Int, ieeeSpecials: Bool) -> Float {
        let negative = b & 0x80 != 0
        let e = Int(b >> manBits) & ((1 << expBits) - 1)
        let m = Int(b) & ((1 << manBits) - 1)
        var v: Float
        if ieeeSpecials && e == (1 << expBits) - 1 {
            v = m == 0 ? .infinity : .nan
        } else if e == 0 {
            v = Float(m) * Float(sign: .plus, exponent: 1 - bias - manBits, significand: 1)
        } else {
            v = Float(sign: .plus, exponent: e - bias, significand: 1 + Float(m) / Float(1 << manBits))
        }
        if negative { v = -v }
        return v
    }
}
