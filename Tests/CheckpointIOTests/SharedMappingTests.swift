import Basics
import CheckpointIO
import TestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The mapped working-state file: released pages come back intact, zeroing reads as
/// zeros, and releasing really gives the memory back.
final class SharedMappingTests: XCTestCase {
    func residentKiB() throws -> Int { try XCTUnwrap(ProcessMemory.resident) / 1024 }

    func testReleasedPagesKeepTheirContentsAndLeaveResidentMemory() throws {
        let dir = makeTemporaryDirectory()
        let size = 64 << 20
        let m = try SharedMapping(creating: dir + "/state.bin", size: size)
        let words = m.base.assumingMemoryBound(to: UInt32.self)
        let before = try residentKiB()
        for i in 0..<(size / 4) { words[i] = UInt32(truncatingIfNeeded: i &* 2654435761) }
        let touched = try residentKiB()
        XCTAssertGreaterThan(touched - before, 48 << 10, "writing 64 MiB should make it resident")
        m.release()
        let released = try residentKiB()
        XCTAssertLessThan(released - before, 8 << 10, "released pages still resident")
        for i in stride(from: 0, to: size / 4, by: 997) { XCTAssertEqual(words[i], UInt32(truncatingIfNeeded: i &* 2654435761)) }
        // An odd range: whole pages inside it drop, the partial edges are zeroed too.
        m.zero(1000..<(3 << 20) + 8)
        XCTAssertEqual(words[249], UInt32(truncatingIfNeeded: 249 &* 2654435761))
        for i in [250, 1024, (3 << 20) / 4, (3 << 20) / 4 + 1] { XCTAssertEqual(words[i], 0, "word \(i)") }
        XCTAssertEqual(words[(3 << 20) / 4 + 2], UInt32(truncatingIfNeeded: ((3 << 20) / 4 + 2) &* 2654435761))
        try m.sync()
        let file = try FileSystem.readFile(dir + "/state.bin", limit: size)
        XCTAssertEqual(file.count, size)
        XCTAssertEqual(file[4 * 5000 ..< 4 * 5000 + 4], [0, 0, 0, 0])
        let w = (3 << 20) / 4 + 3, v = UInt32(truncatingIfNeeded: w &* 2654435761)
        XCTAssertEqual(Array(file[(4 * w)..<(4 * w + 4)]), [UInt8(v & 255), UInt8((v >> 8) & 255), UInt8((v >> 16) & 255), UInt8(v >> 24)])
    }
}
