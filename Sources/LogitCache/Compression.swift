import Basics
import CLZ4
import CZstd

/// Whole-buffer compression with the system zstd and lz4 libraries. The logit cache
/// compresses each chunk independently with one of these.
package enum CompressionCodec: String, Sendable, CaseIterable {
    case zstd, lz4

    package struct Failure: UserFacingError, Sendable {
        package let description: String
        package var exitCode: ExitCode { .dataError }
    }

    /// Compresses `input`; `level` is zstd's level (1…22) or, for lz4, 0 for the fast
    /// compressor and 1…12 for lz4hc.
    package func compress(_ input: [UInt8], level: Int = 3) throws -> [UInt8] {
        switch self {
        case .zstd:
            let bound = ZSTD_compressBound(input.count)
            var out = [UInt8](repeating: 0, count: bound)
            let n = out.withUnsafeMutableBytes { dst in
                input.withUnsafeBytes { src in
                    ZSTD_compress(dst.baseAddress, bound, src.baseAddress, input.count, Int32(level))
                }
            }
            if ZSTD_isError(n) != 0 { throw Failure(description: "zstd: " + String(cString: ZSTD_getErrorName(n))) }
            out.removeSubrange(n...)
            return out
        case .lz4:
            guard input.count <= Int(LZ4_MAX_INPUT_SIZE) else { throw Failure(description: "lz4: input larger than 2 GB") }
            let bound = Int(LZ4_compressBound(Int32(input.count)))
            var out = [UInt8](repeating: 0, count: bound)
            let n = out.withUnsafeMutableBytes { dst in
                input.withUnsafeBytes { src -> Int32 in
                    let s = src.baseAddress?.assumingMemoryBound(to: CChar.self)
                    let d = dst.baseAddress?.assumingMemoryBound(to: CChar.self)
                    return level > 0
                        ? LZ4_compress_HC(s, d, Int32(input.count), Int32(bound), Int32(level))
                        : LZ4_compress_default(s, d, Int32(input.count), Int32(bound))
                }
            }
            if n <= 0 && !input.isEmpty { throw Failure(description: "lz4: compression failed") }
            out.removeSubrange(Int(n)...)
            return out
        }
    }

    /// Decompresses into exactly `originalSize` bytes (the container stores it).
    package func decompress(_ input: UnsafeRawBufferPointer, originalSize: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: originalSize)
        switch self {
        case .zstd:
            let n = out.withUnsafeMutableBytes { dst in
                ZSTD_decompress(dst.baseAddress, originalSize, input.baseAddress, input.count)
            }
            if ZSTD_isError(n) != 0 { throw Failure(description: "zstd: " + String(cString: ZSTD_getErrorName(n))) }
            if n != originalSize { throw Failure(description: "zstd: decompressed \(n) bytes, expected \(originalSize)") }
        case .lz4:
            guard input.count <= Int(Int32.max), originalSize <= Int(Int32.max) else {
                throw Failure(description: "lz4: block larger than 2 GB")
            }
            let n = out.withUnsafeMutableBytes { dst in
                LZ4_decompress_safe(input.baseAddress?.assumingMemoryBound(to: CChar.self),
                                    dst.baseAddress?.assumingMemoryBound(to: CChar.self),
                                    Int32(input.count), Int32(originalSize))
            }
            if n < 0 || Int(n) != originalSize { throw Failure(description: "lz4: corrupt input (decoded \(n) of \(originalSize) bytes)") }
        }
        return out
    }
}
