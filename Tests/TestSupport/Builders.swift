import Basics
#if canImport(Glibc)
import Glibc
#endif
import CheckpointIO

// Byte-level builders for hand-made test vectors. They write the formats directly
// (not through ckpt's code), so a reader bug cannot hide behind a matching writer bug.

/// A GGUF metadata value to write.
public indirect enum GGUFTestValue {
    case u8(UInt8), i8(Int8), u16(UInt16), i16(Int16), u32(UInt32), i32(Int32)
    case f32(Float), bool(Bool), string(String), u64(UInt64), i64(Int64), f64(Double)
    /// Raw string bytes (for invalid UTF-8).
    case rawString([UInt8])
    case array(elementType: UInt32, [GGUFTestValue])

    var typeID: UInt32 {
        switch self {
        case .u8: return 0
        case .i8: return 1
        case .u16: return 2
        case .i16: return 3
        case .u32: return 4
        case .i32: return 5
        case .f32: return 6
        case .bool: return 7
        case .string, .rawString: return 8
        case .array: return 9
        case .u64: return 10
        case .i64: return 11
        case .f64: return 12
        }
    }
}

public struct GGUFTestTensor {
    public var name: [UInt8]
    public var ne: [UInt64]
    public var type: UInt32
    public var data: [UInt8]
    /// Overrides the computed (aligned, packed) offset.
    public var offset: UInt64?

    public init(_ name: String, ne: [UInt64], type: UInt32, data: [UInt8], offset: UInt64? = nil) {
        self.name = Array(name.utf8); self.ne = ne; self.type = type; self.data = data; self.offset = offset
    }

    public init(rawName: [UInt8], ne: [UInt64], type: UInt32, data: [UInt8]) {
        self.name = rawName; self.ne = ne; self.type = type; self.data = data; self.offset = nil
    }
}

/// Writes a little-endian GGUF file.
public struct GGUFBuilder {
    public var magic: [UInt8] = Array("GGUF".utf8)
    public var version: UInt32 = 3
    public var alignment = 32
    public var metadata: [(String, GGUFTestValue)] = []
    public var tensors: [GGUFTestTensor] = []
    /// Overrides the counts written in the header.
    public var tensorCountOverride: UInt64?
    public var kvCountOverride: UInt64?

    public init() {}

    public func build() -> [UInt8] {
        var out: [UInt8] = []
        out += magic
        put(&out, version)
        put(&out, tensorCountOverride ?? UInt64(tensors.count))
        put(&out, kvCountOverride ?? UInt64(metadata.count))
        for (k, v) in metadata {
            putString(&out, Array(k.utf8))
            put(&out, v.typeID)
            putValue(&out, v)
        }
        var offsets: [UInt64] = []
        var cursor: UInt64 = 0
        for t in tensors {
            offsets.append(t.offset ?? cursor)
            // Wrapping: tests write absurd offsets on purpose.
            cursor = (t.offset ?? cursor) &+ UInt64(t.data.count)
            cursor = (cursor &+ UInt64(alignment) &- 1) / UInt64(alignment) &* UInt64(alignment)
        }
        for (t, off) in zip(tensors, offsets) {
            putString(&out, t.name)
            put(&out, UInt32(t.ne.count))
            for d in t.ne { put(&out, d) }
            put(&out, t.type)
            put(&out, off)
        }
        while out.count % alignment != 0 { out.append(0) }
        let dataStart = out.count
        for (t, off) in zip(tensors, offsets) {
            guard off < 1 << 32 else { continue }
            let at = dataStart + Int(off)
            if out.count < at { out += [UInt8](repeating: 0, count: at - out.count) }
            if out.count > at { out.removeSubrange(at...) }
            out += t.data
        }
        while out.count % alignment != 0 { out.append(0) }
        return out
    }

    private func putValue(_ out: inout [UInt8], _ v: GGUFTestValue) {
        switch v {
        case let .u8(x): put(&out, x)
        case let .i8(x): put(&out, x)
        case let .u16(x): put(&out, x)
        case let .i16(x): put(&out, x)
        case let .u32(x): put(&out, x)
        case let .i32(x): put(&out, x)
        case let .f32(x): put(&out, x.bitPattern)
        case let .bool(x): out.append(x ? 1 : 0)
        case let .string(s): putString(&out, Array(s.utf8))
        case let .rawString(b): putString(&out, b)
        case let .u64(x): put(&out, x)
        case let .i64(x): put(&out, x)
        case let .f64(x): put(&out, x.bitPattern)
        case let .array(type, items):
            // A nested array element is written as its own (type, count, items), without a value-type tag.
            put(&out, type)
            put(&out, UInt64(items.count))
            for item in items { putValue(&out, item) }
        }
    }
}

public func put<T: FixedWidthInteger>(_ out: inout [UInt8], _ v: T) {
    withUnsafeBytes(of: v.littleEndian) { out += $0 }
}

public func putString(_ out: inout [UInt8], _ s: [UInt8]) {
    put(&out, UInt64(s.count))
    out += s
}

/// One tensor entry of a hand-written safetensors header.
public struct SafetensorsTestTensor {
    public var name: String
    public var dtype: String
    public var shape: [Int]
    public var data: [UInt8]
    /// Overrides `[begin, end]` (as JSON text) in the header.
    public var offsetsJSON: String?

    public init(_ name: String, dtype: String, shape: [Int], data: [UInt8], offsetsJSON: String? = nil) {
        self.name = name; self.dtype = dtype; self.shape = shape; self.data = data; self.offsetsJSON = offsetsJSON
    }
}

/// `s` with JSON's string escapes for quotes and backslashes (enough for test metadata).
func jsonEscaped(_ s: String) -> String {
    var out = ""
    for c in s {
        if c == "\\" || c == "\"" { out.append("\\") }
        out.append(c)
    }
    return out
}

/// Writes a safetensors file with tensors packed in the given order.
public func buildSafetensors(_ tensors: [SafetensorsTestTensor], metadata: [String: String] = [:], headerOverride: String? = nil) -> [UInt8] {
    var parts: [String] = []
    if !metadata.isEmpty {
        parts.append("\"__metadata__\":{" + metadata.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\"\(jsonEscaped($0.value))\"" }.joined(separator: ",") + "}")
    }
    var cursor = 0
    var data: [UInt8] = []
    for t in tensors {
        let offsets = t.offsetsJSON ?? "[\(cursor),\(cursor + t.data.count)]"
        parts.append("\"\(t.name)\":{\"dtype\":\"\(t.dtype)\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":\(offsets)}")
        cursor += t.data.count
        data += t.data
    }
    var header = Array((headerOverride ?? "{" + parts.joined(separator: ",") + "}").utf8)
    while header.count % 8 != 0 { header.append(0x20) }
    var out: [UInt8] = []
    put(&out, UInt64(header.count))
    return out + header + data
}

public func floatBytes(_ values: [Float]) -> [UInt8] {
    var out: [UInt8] = []
    for v in values { put(&out, v.bitPattern) }
    return out
}

/// Root of the repository (found from this file's path).
public let repositoryRoot: String = {
    var path = #filePath
    for _ in 0..<3 { path = FileSystem.directoryName(path) }
    return path
}()

/// The real SmolLM2 GGUF that `Tools/fetch_model` puts under `.cache/models/`.
public var smolLM2Path: String {
    FileSystem.join(repositoryRoot, ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

public var fixturesPath: String { FileSystem.join(repositoryRoot, "Tests/Fixtures") }

/// A fresh empty directory under /tmp, removed when the test process exits (tests write
/// converted models of hundreds of MB; none of it may outlive the run).
public func makeTemporaryDirectory(_ label: String = "ckpt-test") -> String {
    var template = Array("/tmp/\(label)-XXXXXX".utf8CString)
    let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    let path = String(cString: p!)
    TemporaryDirectories.register(path)
    return path
}

private enum TemporaryDirectories {
    // XCTest runs the tests of a process one after another; the lock covers the rest.
    nonisolated(unsafe) static var paths: [String] = []
    nonisolated(unsafe) static var lock = pthread_mutex_t()
    nonisolated(unsafe) static var installed = false

    static func register(_ path: String) {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        paths.append(path)
        if !installed {
            installed = true
            atexit { TemporaryDirectories.removeAll() }
        }
    }

    static func removeAll() {
        for p in paths { FileSystem.removeTree(p) }
        paths.removeAll()
    }
}

public func writeFile(_ path: String, _ bytes: [UInt8]) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    precondition(fd >= 0, "cannot create \(path)")
    bytes.withUnsafeBytes { b in
        var done = 0
        while done < b.count { done += write(fd, b.baseAddress! + done, b.count - done) }
    }
    close(fd)
}

/// Byte equality through memcmp (elementsEqual is byte-by-byte slow in debug builds).
public func sameBytes(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
    a.count == b.count && (a.count == 0 || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0)
}
