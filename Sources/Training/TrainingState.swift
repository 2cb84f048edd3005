import Basics
import CheckpointIO
#if canImport(Glibc)
import Glibc
#endif

/// Where a trainer keeps its large arrays (master weights, gradients, optimizer moments):
/// in memory, or in files of a directory, mapped and paged in a slice at a time so the
/// process holds only the layer it is working on.
package enum StateResidence: Sendable, Equatable {
    case memory
    case files(directory: String)

    package var isStreamed: Bool { if case .files = self { return true } else { return false } }
}

/// One array of training state, in memory or in a mapped file (see `StateResidence`).
/// Code touches it through `raw`/`pointer` like any buffer, and calls `release` on the
/// slices it is done with: a no-op in memory, dropped pages when streamed.
package final class StateArray: @unchecked Sendable {
    // Sendable: kernels partition the bytes between threads; the storage lives until deinit.
    package let name: String
    package let byteCount: Int
    package let raw: UnsafeMutableRawPointer
    private let mapping: SharedMapping?

    /// `byteCount` bytes, each `fill`.
    package init(name: String, byteCount: Int, residence: StateResidence, fill: UInt8 = 0) throws {
        self.name = name
        self.byteCount = byteCount
        switch residence {
        case .memory:
            mapping = nil
            raw = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 1), alignment: 64)
            memset(raw, Int32(fill), byteCount)
        case let .files(directory):
            let m = try SharedMapping(creating: FileSystem.join(directory, name), size: byteCount)
            mapping = m
            raw = m.base
            if fill != 0 {
                // A slice at a time, so filling a large state never holds it all.
                var at = 0
                while at < byteCount {
                    let n = min(Self.slice, byteCount - at)
                    memset(raw + at, Int32(fill), n)
                    m.release(at..<(at + n))
                    at += n
                }
            }
        }
    }

    deinit { if mapping == nil { raw.deallocate() } }

    /// Bytes handled at a time by whole-array passes (fill, copy, checksum) when streamed.
    static let slice = 8 << 20

    package var isStreamed: Bool { mapping != nil }
    package var pointer: UnsafeMutablePointer<Float> { raw.assumingMemoryBound(to: Float.self) }
    /// Elements when the array holds f32 values.
    package var count: Int { byteCount / 4 }
    package var bytes: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: raw, count: byteCount) }

    package subscript(i: Int) -> Float {
        get { pointer[i] }
        set { pointer[i] = newValue }
    }

    /// Done with these bytes for now: a streamed array drops their pages.
    package func release(bytes range: Range<Int>) { mapping?.release(range) }
    /// Done with f32 elements `range`.
    package func release(floats range: Range<Int>) { mapping?.release((range.lowerBound * 4)..<(range.upperBound * 4)) }
    package func releaseAll() { mapping?.release() }

    /// Sets every byte to zero (a streamed array punches a hole rather than writing pages).
    package func zero() {
        if let mapping { mapping.zero() } else { memset(raw, 0, byteCount) }
    }

    /// Visits the bytes a slice at a time, releasing each slice after `body` (so a
    /// streamed array's pass stays one slice resident).
    package func forEachSlice(_ body: (UnsafeMutableRawBufferPointer) throws -> Void) rethrows {
        var at = 0
        repeat {
            let n = min(Self.slice, byteCount - at)
            try body(UnsafeMutableRawBufferPointer(start: raw + at, count: n))
            release(bytes: at..<(at + n))
            at += n
        } while at < byteCount
    }
}
