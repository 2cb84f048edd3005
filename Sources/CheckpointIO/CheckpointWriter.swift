import Basics
import CSystem
#if canImport(Glibc)
import Glibc
#endif

/// One tensor a writer will receive, declared before any data so every header can be
/// written first and every tensor lands at a known offset, in whatever order it comes.
public struct TensorPlan: Sendable {
    public let name: String
    public let dtype: TensorDType
    /// Outermost first.
    public let shape: [Int]
    public let byteCount: Int

    public init(name: String, dtype: TensorDType, shape: [Int]) throws {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        var elements = 1
        for d in shape {
            guard d >= 0, let e = elements.multipliedOrNil(by: d) else {
                throw CheckpointError.badTensor(path: "(output)", tensor: name, reason: "shape \(shape) overflows")
            }
            elements = e
        }
        if case let .gguf(t) = dtype, (shape.last ?? 1) % t.blockSize != 0 {
            throw CheckpointError.badTensor(path: "(output)", tensor: name,
                reason: "rows of \(shape.last ?? 1) elements do not split into \(t.name) blocks of \(t.blockSize)")
        }
        guard let n = dtype.byteCount(elements: elements) else {
            throw CheckpointError.badTensor(path: "(output)", tensor: name, reason: "\(elements) elements of \(dtype.name) are not a whole number of bytes")
        }
        byteCount = n
    }
}

/// Where and how a checkpoint is written.
public enum OutputLayout: Sendable {
    /// A directory in the HF layout: `model.safetensors`, or `model-0000i-of-0000N.safetensors`
    /// shards of at most `shardSize` bytes of tensor data plus `model.safetensors.index.json`.
    case safetensorsDirectory(path: String, shardSize: Int, metadata: [(String, String)])
    /// One `.safetensors` file.
    case safetensorsFile(path: String, metadata: [(String, String)])
    /// One GGUF (version 3) file with these key/values, in order.
    case gguf(path: String, metadata: [MetadataEntry])
}

/// Streams a checkpoint to disk and publishes it atomically.
///
/// Everything is written into a staging file or directory beside the destination
/// (same file system), each file fsynced, then renamed into place and the parent
/// directory fsynced: a crash at any point leaves either no output or a complete one,
/// never a half-written file under the expected name. Tensors may arrive in any order;
/// each one's bytes must arrive in order (row blocks, front to back).
public final class CheckpointWriter {
    private struct Slot {
        let file: Int
        let offset: Int
        let byteCount: Int
        var written = 0
    }

    public let destination: String
    private let staging: String
    private let stagingIsDirectory: Bool
    private var files: [OutputFile] = []
    private var slots: [String: Slot] = [:]
    private let order: [String]
    private var extraFiles: [String] = []
    private var finished = false
    private var prepared = false
    /// Final paths of the files written, for reporting.
    public private(set) var outputFiles: [String] = []

    /// Plans the layout, creates the staging files and writes every header.
    /// - Parameter overwrite: replace an existing destination (otherwise refuse).
    public init(layout: OutputLayout, tensors: [TensorPlan], overwrite: Bool = false) throws {
        var seen = Set<String>()
        for t in tensors where !seen.insert(t.name).inserted {
            throw CheckpointError.badTensor(path: "(output)", tensor: t.name, reason: "planned twice")
        }
        order = tensors.map(\.name)
        let dest: String
        switch layout {
        case let .safetensorsDirectory(path, _, _): dest = path
        case let .safetensorsFile(path, _), let .gguf(path, _): dest = path
        }
        destination = dest
        if !overwrite, try FileSystem.kind(of: dest) != .missing {
            throw CheckpointError.outputExists(path: dest)
        }
        let parent = FileSystem.directoryName(dest)
        guard try FileSystem.kind(of: parent) == .directory else {
            throw CheckpointError.cannotCreate(path: parent, operation: "write output into", errno: ENOENT)
        }
        staging = FileSystem.join(parent, ".\(FileSystem.baseName(dest)).ckpt-staging-\(getpid())")
        FileSystem.removeTree(staging)

        switch layout {
        case let .safetensorsDirectory(_, shardSize, metadata):
            stagingIsDirectory = true
            try FileSystem.makeDirectory(staging)
            let shards = Self.assignShards(tensors, limit: shardSize)
            var weightMap: [(String, String)] = []
            for (i, shard) in shards.enumerated() {
                let name = shards.count == 1 ? "model.safetensors"
                    : "model-\(pad5(i + 1))-of-\(pad5(shards.count)).safetensors"
                try openSafetensors(FileSystem.join(staging, name), tensors: shard, metadata: metadata)
                outputFiles.append(FileSystem.join(dest, name))
                weightMap += shard.map { ($0.name, name) }
            }
            if shards.count > 1 {
                var w = JSONWriter(pretty: true)
                w.beginObject()
                w.beginObject(key: "metadata")
                w.int(tensors.reduce(0) { $0 + $1.byteCount }, key: "total_size")
                w.endObject()
                w.beginObject(key: "weight_map")
                for (t, f) in weightMap.sorted(by: { $0.0 < $1.0 }) { w.string(f, key: t) }
                w.endObject()
                w.endObject()
                try addFile(named: "model.safetensors.index.json", contents: Array((w.text + "\n").utf8))
            }
        case let .safetensorsFile(_, metadata):
            stagingIsDirectory = false
            try openSafetensors(staging, tensors: tensors, metadata: metadata)
            outputFiles.append(dest)
        case let .gguf(_, metadata):
            stagingIsDirectory = false
            try openGGUF(staging, tensors: tensors, metadata: metadata)
            outputFiles.append(dest)
        }
    }

    deinit { if !finished { abort() } }

    /// HF's greedy rule: start a new shard when the next tensor would pass the limit.
    static func assignShards(_ tensors: [TensorPlan], limit: Int) -> [[TensorPlan]] {
        var shards: [[TensorPlan]] = [[]]
        var size = 0
        for t in tensors {
            if size + t.byteCount > limit && !shards[shards.count - 1].isEmpty {
                shards.append([])
                size = 0
            }
            shards[shards.count - 1].append(t)
            size += t.byteCount
        }
        return shards
    }

    private func openSafetensors(_ path: String, tensors: [TensorPlan], metadata: [(String, String)]) throws {
        var w = JSONWriter()
        w.beginObject()
        if !metadata.isEmpty {
            w.beginObject(key: "__metadata__")
            for (k, v) in metadata { w.string(v, key: k) }
            w.endObject()
        }
        var offset = 0
        for t in tensors {
            w.beginObject(key: t.name)
            w.string(t.dtype.name, key: "dtype")
            w.raw("[" + t.shape.map(String.init).joined(separator: ",") + "]", key: "shape")
            w.raw("[\(offset),\(offset + t.byteCount)]", key: "data_offsets")
            w.endObject()
            offset += t.byteCount
        }
        w.endObject()
        var header = Array(w.text.utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        var prefix: [UInt8] = []
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { prefix += $0 }
        let file = try OutputFile(creating: path)
        let dataStart = 8 + header.count
        try file.setSize(dataStart + offset)
        try (prefix + header).withUnsafeBytes { try file.write($0, at: 0) }
        files.append(file)
        offset = dataStart
        for t in tensors {
            slots[t.name] = Slot(file: files.count - 1, offset: offset, byteCount: t.byteCount)
            offset += t.byteCount
        }
    }

    private func openGGUF(_ path: String, tensors: [TensorPlan], metadata: [MetadataEntry]) throws {
        let alignment = metadata["general.alignment"]?.intValue ?? GGUFFile.defaultAlignment
        var h = GGUFEncoder()
        h.bytes += Array("GGUF".utf8)
        h.u32(3)
        h.u64(UInt64(tensors.count))
        h.u64(UInt64(metadata.count))
        for e in metadata {
            h.string(e.key)
            try h.typedValue(e.value, key: e.key)
        }
        var offsets: [Int] = []
        var cursor = 0
        for t in tensors {
            offsets.append(cursor)
            cursor = (cursor + t.byteCount + alignment - 1) / alignment * alignment
        }
        for (t, off) in zip(tensors, offsets) {
            guard case let .gguf(type) = t.dtype else {
                throw CheckpointError.badTensor(path: path, tensor: t.name, reason: "\(t.dtype.name) is not a GGUF type")
            }
            h.string(t.name)
            h.u32(UInt32(t.shape.count))
            for d in t.shape.reversed() { h.u64(UInt64(d)) }
            h.u32(type.id)
            h.u64(UInt64(off))
        }
        while h.bytes.count % alignment != 0 { h.bytes.append(0) }
        let dataStart = h.bytes.count
        let file = try OutputFile(creating: path)
        try file.setSize(dataStart + cursor)
        try h.bytes.withUnsafeBytes { try file.write($0, at: 0) }
        files.append(file)
        for (t, off) in zip(tensors, offsets) {
            slots[t.name] = Slot(file: 0, offset: dataStart + off, byteCount: t.byteCount)
        }
    }

    /// Adds a small file (config.json, tokenizer.json, …) to a directory output.
    public func addFile(named name: String, contents: [UInt8]) throws {
        guard stagingIsDirectory else {
            throw CheckpointError.unsupported(path: destination, reason: "extra files need a directory output")
        }
        try FileSystem.writeNewFile(FileSystem.join(staging, name), contents)
        extraFiles.append(name)
        outputFiles.append(FileSystem.join(destination, name))
    }

    /// Adds a file copied as it is from `path` (a tokenizer model, a large side file).
    public func addFile(named name: String, copying path: String) throws {
        guard stagingIsDirectory else {
            throw CheckpointError.unsupported(path: destination, reason: "extra files need a directory output")
        }
        let size = try MappedFile(path: path).size
        let out = try OutputFile(creating: FileSystem.join(staging, name))
        if size > 0 { try out.copy(from: path, sourceOffset: 0, count: size, to: 0) }
        try out.sync()
        try out.close()
        extraFiles.append(name)
        outputFiles.append(FileSystem.join(destination, name))
    }

    /// The next bytes of tensor `name` (each tensor front to back).
    public func write(_ name: String, _ bytes: UnsafeRawBufferPointer) throws {
        guard var slot = slots[name] else {
            throw CheckpointError.badTensor(path: destination, tensor: name, reason: "was not planned for this output")
        }
        guard slot.written + bytes.count <= slot.byteCount else {
            throw CheckpointError.badTensor(path: destination, tensor: name, reason: "received \(slot.written + bytes.count) bytes, more than its \(slot.byteCount)")
        }
        try files[slot.file].write(bytes, at: slot.offset + slot.written)
        slot.written += bytes.count
        slots[name] = slot
    }

    /// The next `count` bytes of tensor `name`, copied by the kernel from another file
    /// (a tensor whose bytes do not change: resharding, GGUF ⇄ safetensors in the same dtype).
    public func copy(_ name: String, from source: MappedFile, sourceOffset: Int, count: Int) throws {
        guard var slot = slots[name] else {
            throw CheckpointError.badTensor(path: destination, tensor: name, reason: "was not planned for this output")
        }
        guard slot.written + count <= slot.byteCount else {
            throw CheckpointError.badTensor(path: destination, tensor: name, reason: "received \(slot.written + count) bytes, more than its \(slot.byteCount)")
        }
        try files[slot.file].copy(from: source, sourceOffset: sourceOffset, count: count, to: slot.offset + slot.written)
        slot.written += count
        slots[name] = slot
    }

    /// Bytes still expected for `name`.
    public func remaining(_ name: String) -> Int {
        slots[name].map { $0.byteCount - $0.written } ?? 0
    }

    /// Checks every tensor arrived whole, syncs, and renames the output into place.
    public func finish() throws {
        try prepare()
        try publish()
    }

    /// Checks every tensor arrived whole and makes the staged output durable, without
    /// publishing it yet (an in-place rewrite journals this point).
    public func prepare() throws {
        guard !prepared else { return }
        for name in order where remaining(name) != 0 {
            throw CheckpointError.badTensor(path: destination, tensor: name, reason: "only \(slots[name]!.written) of \(slots[name]!.byteCount) bytes were written")
        }
        for f in files {
            try f.sync()
            try f.close()
        }
        if stagingIsDirectory { try FileSystem.syncDirectory(staging) }
        prepared = true
    }

    /// The staged output, complete and durable after `prepare()`.
    public var stagedPath: String { staging }

    /// Renames the prepared output into place and syncs the parent directory.
    public func publish() throws {
        try prepare()
        let parent = FileSystem.directoryName(destination)
        if !stagingIsDirectory {
            // rename(2) replaces an existing file atomically: the old file or the new one.
            try FileSystem.rename(staging, destination)
        } else if try FileSystem.kind(of: destination) != .missing {
            // --force on a directory: swap old and new in one step, then delete the old one
            // (now under the staging name). Without RENAME_EXCHANGE, move the old one aside
            // and put it back if publishing fails.
            CrashPoint.hit("directory output staged")
            if ckpt_rename_exchange(staging, destination) == 0 {
                try FileSystem.syncDirectory(parent)
                CrashPoint.hit("directory output exchanged")
                FileSystem.removeTree(staging)
            } else {
                let old = FileSystem.join(parent, ".\(FileSystem.baseName(destination)).ckpt-old-\(getpid())")
                FileSystem.removeTree(old)
                try FileSystem.rename(destination, old)
                do {
                    try FileSystem.rename(staging, destination)
                } catch {
                    try? FileSystem.rename(old, destination)
                    throw error
                }
                FileSystem.removeTree(old)
            }
        } else {
            try FileSystem.rename(staging, destination)
        }
        try FileSystem.syncDirectory(parent)
        finished = true
    }

    /// Removes everything staged. Called on any failure (and by deinit), so an error
    /// such as a full disk leaves nothing behind.
    public func abort() {
        finished = true
        for f in files { try? f.close() }
        FileSystem.removeTree(staging)
    }
}

/// Little-endian GGUF encoding of header fields and metadata values.
struct GGUFEncoder {
    var bytes: [UInt8] = []

    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func string(_ s: String) {
        u64(UInt64(s.utf8.count))
        bytes += s.utf8
    }

    mutating func typedValue(_ v: MetadataValue, key: String) throws {
        guard let t = v.ggufType else {
            throw CheckpointError.badMetadata(path: "(output)", key: key, reason: "a \(v.typeName) cannot be stored in GGUF")
        }
        u32(t.rawValue)
        try value(v, key: key)
    }

    mutating func value(_ v: MetadataValue, key: String) throws {
        switch v {
        case let .uint8(x): bytes.append(x)
        case let .int8(x): bytes.append(UInt8(bitPattern: x))
        case let .uint16(x): withUnsafeBytes(of: x.littleEndian) { bytes += $0 }
        case let .int16(x): withUnsafeBytes(of: x.littleEndian) { bytes += $0 }
        case let .uint32(x): u32(x)
        case let .int32(x): withUnsafeBytes(of: x.littleEndian) { bytes += $0 }
        case let .uint64(x): u64(x)
        case let .int64(x): withUnsafeBytes(of: x.littleEndian) { bytes += $0 }
        case let .float32(x): u32(x.bitPattern)
        case let .float64(x): u64(x.bitPattern)
        case let .bool(x): bytes.append(x ? 1 : 0)
        case let .string(s): string(s)
        case let .array(a):
            if case let .gguf(ref) = a.storage {
                // Copied as stored: a 262k-entry vocabulary is one memcpy.
                u32(ref.elementType.rawValue)
                u64(UInt64(ref.count))
                bytes += ref.file.bytes(in: ref.start..<ref.end)
                return
            }
            let values = a.values()
            guard let first = values.first else {
                u32(GGUFValueType(name: a.elementType)?.rawValue ?? GGUFValueType.uint8.rawValue)
                u64(0)
                return
            }
            guard let t = first.ggufType, values.allSatisfy({ $0.ggufType == t }) else {
                throw CheckpointError.badMetadata(path: "(output)", key: key, reason: "a GGUF array needs elements of one type")
            }
            u32(t.rawValue)
            u64(UInt64(values.count))
            // Nested arrays are written as (type, count, items), without a value-type tag.
            for e in values { try value(e, key: key) }
        case .object, .null:
            throw CheckpointError.badMetadata(path: "(output)", key: key, reason: "a \(v.typeName) cannot be stored in GGUF")
        }
    }
}

extension GGUFValueType {
    init?(name: String) {
        switch name {
        case "uint8": self = .uint8
        case "int8": self = .int8
        case "uint16": self = .uint16
        case "int16": self = .int16
        case "uint32": self = .uint32
        case "int32": self = .int32
        case "float32": self = .float32
        case "bool": self = .bool
        case "string": self = .string
        case "array": self = .array
        case "uint64": self = .uint64
        case "int64": self = .int64
        case "float64": self = .float64
        default: return nil
        }
    }
}

func pad5(_ n: Int) -> String {
    let s = String(n)
    return String(repeating: "0", count: max(0, 5 - s.count)) + s
}
