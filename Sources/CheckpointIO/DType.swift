import Basics
/// Element types of safetensors files, as named by the `safetensors` package (0.8).
///
/// Sizes are in bits because F4 and F6 pack several elements per byte; a tensor's
/// element count times `bits` must be a whole number of bytes.
public enum SafetensorsDType: String, CaseIterable, Sendable {
    case BOOL, F4, F6_E2M3, F6_E3M2, U8, I8
    case F8_E5M2, F8_E4M3, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ
    case I16, U16, F16, BF16, I32, U32, F32, C64, F64, I64, U64

    /// Bits per element.
    public var bits: Int {
        switch self {
        case .F4: return 4
        case .F6_E2M3, .F6_E3M2: return 6
        case .BOOL, .U8, .I8, .F8_E5M2, .F8_E4M3, .F8_E8M0, .F8_E4M3FNUZ, .F8_E5M2FNUZ: return 8
        case .I16, .U16, .F16, .BF16: return 16
        case .I32, .U32, .F32: return 32
        case .C64, .F64, .I64, .U64: return 64
        }
    }
}

/// Element and block types of GGUF tensors: every `ggml_type` llama.cpp's `ggml.h`
/// and gguf-py define, with the block size (elements) and bytes per block that make
/// byte sizes exact even for types we cannot compute with.
public struct GGMLType: Hashable, Sendable, CustomStringConvertible {
    /// The numeric id stored in the file.
    public let id: UInt32
    /// The name llama.cpp and gguf-py use (`Q4_K`, `BF16`, …).
    public let name: String
    /// Elements per block (1 for plain scalar types).
    public let blockSize: Int
    /// Bytes per block.
    public let bytesPerBlock: Int
    /// True for ids that llama.cpp no longer accepts in files (the repacked
    /// Q4_0_4_4 family): recognised for a clear message, sizes still exact.
    public let removedFromFiles: Bool

    public var description: String { name }
    public var isQuantized: Bool { blockSize > 1 }

    /// The type with id `id`, or nil if no ggml version defined it.
    public static func withID(_ id: UInt32) -> GGMLType? {
        id < UInt32(table.count) ? table[Int(id)] : nil
    }

    /// The type named `name` (case-insensitive), or nil.
    public static func named(_ name: String) -> GGMLType? {
        let upper = name.uppercased()
        return table.first { $0?.name == upper } ?? nil
    }

    public static var all: [GGMLType] { table.compactMap { $0 } }

    public static let f32 = table[0]!, f16 = table[1]!, bf16 = table[30]!

    private init(_ id: UInt32, _ name: String, _ block: Int, _ bytes: Int, removed: Bool = false) {
        self.id = id; self.name = name; self.blockSize = block; self.bytesPerBlock = bytes
        self.removedFromFiles = removed
    }

    // Ids 4 and 5 (Q4_2, Q4_3) were removed from ggml before GGUF existed.
    private static let table: [GGMLType?] = [
        GGMLType(0, "F32", 1, 4),
        GGMLType(1, "F16", 1, 2),
        GGMLType(2, "Q4_0", 32, 18),
        GGMLType(3, "Q4_1", 32, 20),
        nil, nil,
        GGMLType(6, "Q5_0", 32, 22),
        GGMLType(7, "Q5_1", 32, 24),
        GGMLType(8, "Q8_0", 32, 34),
        // ggml-common.h: sizeof(block_q8_1) == 2*sizeof(ggml_half) + 32. (gguf-py 0.19
        // still says 40, from an older layout; Q8_1 never appears in files.)
        GGMLType(9, "Q8_1", 32, 36),
        GGMLType(10, "Q2_K", 256, 84),
        GGMLType(11, "Q3_K", 256, 110),
        GGMLType(12, "Q4_K", 256, 144),
        GGMLType(13, "Q5_K", 256, 176),
        GGMLType(14, "Q6_K", 256, 210),
        GGMLType(15, "Q8_K", 256, 292),
        GGMLType(16, "IQ2_XXS", 256, 66),
        GGMLType(17, "IQ2_XS", 256, 74),
        GGMLType(18, "IQ3_XXS", 256, 98),
        GGMLType(19, "IQ1_S", 256, 50),
        GGMLType(20, "IQ4_NL", 32, 18),
        GGMLType(21, "IQ3_S", 256, 110),
        GGMLType(22, "IQ2_S", 256, 82),
        GGMLType(23, "IQ4_XS", 256, 136),
        GGMLType(24, "I8", 1, 1),
        GGMLType(25, "I16", 1, 2),
        GGMLType(26, "I32", 1, 4),
        GGMLType(27, "I64", 1, 8),
        GGMLType(28, "F64", 1, 8),
        GGMLType(29, "IQ1_M", 256, 56),
        GGMLType(30, "BF16", 1, 2),
        GGMLType(31, "Q4_0_4_4", 32, 18, removed: true),
        GGMLType(32, "Q4_0_4_8", 32, 18, removed: true),
        GGMLType(33, "Q4_0_8_8", 32, 18, removed: true),
        GGMLType(34, "TQ1_0", 256, 54),
        GGMLType(35, "TQ2_0", 256, 66),
        GGMLType(36, "IQ4_NL_4_4", 32, 18, removed: true),
        GGMLType(37, "IQ4_NL_4_8", 32, 18, removed: true),
        GGMLType(38, "IQ4_NL_8_8", 32, 18, removed: true),
        GGMLType(39, "MXFP4", 32, 17),
        GGMLType(40, "NVFP4", 64, 36),
        GGMLType(41, "Q1_0", 128, 18),
    ]
}

/// The stored type of a tensor, in the vocabulary of the file it came from.
public enum TensorDType: Hashable, Sendable, CustomStringConvertible {
    case safetensors(SafetensorsDType)
    case gguf(GGMLType)

    /// The format's own name: `BF16`, `F32`, `Q4_1`, …
    public var name: String {
        switch self {
        case let .safetensors(t): return t.rawValue
        case let .gguf(t): return t.name
        }
    }

    public var description: String { name }

    /// The ggml type with the same element layout (safetensors F32, F16 and BF16 are
    /// ggml's), so one set of kernels reads both formats; nil for types ggml lacks.
    public var ggmlEquivalent: GGMLType? {
        switch self {
        case let .gguf(t): return t
        case .safetensors(.F32): return .f32
        case .safetensors(.F16): return .f16
        case .safetensors(.BF16): return .bf16
        case .safetensors: return nil
        }
    }

    /// Bytes needed for `elements` elements laid out as one row-major run, or nil when
    /// the count does not fill whole bytes or blocks (the caller reports why).
    public func byteCount(elements: Int) -> Int? {
        switch self {
        case let .safetensors(t):
            guard let bits = elements.multipliedOrNil(by: t.bits), bits % 8 == 0 else { return nil }
            return bits / 8
        case let .gguf(t):
            guard elements % t.blockSize == 0 else { return nil }
            return (elements / t.blockSize).multipliedOrNil(by: t.bytesPerBlock)
        }
    }
}
