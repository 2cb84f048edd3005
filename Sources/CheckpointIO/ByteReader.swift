import Basics
/// A bounds-checked little-endian cursor over borrowed bytes.
///
/// Every read checks the remaining length first, so a parser built on it cannot read
/// past the end of a truncated or lying file; it throws `ByteReader.Overrun` instead,
/// which the format parsers turn into an error that names the file and the field.
struct ByteReader {
    struct Overrun: Error {
        let offset: Int
        let needed: Int
        let available: Int
    }

    let bytes: UnsafeRawBufferPointer
    private(set) var offset: Int

    init(_ bytes: UnsafeRawBufferPointer, offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    var remaining: Int { bytes.count - offset }

    mutating func require(_ n: Int) throws(Overrun) {
        if n < 0 || n > remaining { throw Overrun(offset: offset, needed: n, available: remaining) }
    }

    mutating func skip(_ n: Int) throws(Overrun) {
        try require(n)
        offset += n
    }

    mutating func read<T: FixedWidthInteger>(_: T.Type) throws(Overrun) -> T {
        try require(MemoryLayout<T>.size)
        let v = bytes.loadUnaligned(fromByteOffset: offset, as: T.self)
        offset += MemoryLayout<T>.size
        return T(littleEndian: v)
    }

    mutating func readFloat() throws(Overrun) -> Float {
        Float(bitPattern: try read(UInt32.self))
    }

    mutating func readDouble() throws(Overrun) -> Double {
        Double(bitPattern: try read(UInt64.self))
    }

    /// Reads `n` bytes as a borrowed slice.
    mutating func readBytes(_ n: Int) throws(Overrun) -> UnsafeRawBufferPointer {
        try require(n)
        let slice = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + n)])
        offset += n
        return slice
    }
}

/// Upper bound for reserving capacity from a count read from a file: the count is
/// checked against the file size, but sparse files make size free.
func reservation(_ count: Int) -> Int { min(count, 4096) }

extension Int {
    /// `self * other`, or nil on overflow.
    func multipliedOrNil(by other: Int) -> Int? {
        let (r, o) = multipliedReportingOverflow(by: other)
        return o ? nil : r
    }

    /// `self + other`, or nil on overflow.
    func addingOrNil(_ other: Int) -> Int? {
        let (r, o) = addingReportingOverflow(other)
        return o ? nil : r
    }
}
