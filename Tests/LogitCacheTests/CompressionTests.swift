import LogitCache
import XCTest

/// The system zstd and lz4 codecs the cache compresses chunks with: round trips at
/// several levels, and a corrupted or truncated frame refused, not decoded into garbage.
final class CompressionTests: XCTestCase {
    func testCompressionRoundTrips() throws {
        let text = Array(String(repeating: "the teacher runs once; ", count: 500).utf8) + (0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 13) }
        for codec in CompressionCodec.allCases {
            for level in codec == .zstd ? [1, 3, 19] : [0, 9] {
                let packed = try codec.compress(text, level: level)
                XCTAssertLessThan(packed.count, text.count, "\(codec) \(level)")
                let unpacked = try packed.withUnsafeBytes { try codec.decompress($0, originalSize: text.count) }
                XCTAssertEqual(unpacked, text, "\(codec) \(level)")
            }
            let packed = try codec.compress(text)
            var corrupt = packed
            corrupt[corrupt.count / 2] ^= 0xFF
            corrupt.removeLast(3)
            XCTAssertThrowsError(try corrupt.withUnsafeBytes { try codec.decompress($0, originalSize: text.count) }, "\(codec)")
        }
    }
}
