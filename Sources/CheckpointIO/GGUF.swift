import Basics
/// The value types of GGUF metadata (gguf.md, `gguf_metadata_value_type`).
public enum GGUFValueType: UInt32, Sendable {
    case uint8 = 0, int8, uint16, int16, uint32, int32, float32, bool, string, array, uint64, int64, float64

    /// Bytes per value for fixed-size types; nil for string and array.
    var fixedSize: Int? {
        switch self {
        case .uint8, .int8, .bool: return 1
        case .uint16, .int16: return 2
        case .uint32, .int32, .float32: return 4
        case .uint64, .int64, .float64: return 8
        case .string, .array: return nil
        }
    }

    public var name: String {
        switch self {
        case .uint8: return "uint8"
        case .int8: return "int8"
        case .uint16: return "uint16"
        case .int16: return "int16"
        case .uint32: return "uint32"
        case .int32: return "int32"
        case .float32: return "float32"
        case .bool: return "bool"
        case .string: return "string"
        case .array: return "array"
        case .uint64: return "uint64"
        case .int64: return "int64"
        case .float64: return "float64"
        }
    }
}

/// A GGUF array left in the mapped file: validated when the file was opened,
/// decoded only on request.
struct GGUFArrayRef: Sendable, Equatable {
    let file: MappedFile
    let elementType: GGUFValueType
    let count: Int
    /// Offset of the first element.
    let start: Int
    /// Offset just past the last element.
    let end: Int

    static func == (a: GGUFArrayRef, b: GGUFArrayRef) -> Bool {
        a.file === b.file && a.start == b.start && a.end == b.end
    }

    func decodeAll() -> [MetadataValue] {
        var r = ByteReader(file.bytes(in: 0..<end), offset: start)
        var out: [MetadataValue] = []
        out.reserveCapacity(reservation(count))
        for _ in 0..<count {
            // Cannot fail: the same bytes were walked by `GGUFFile.init`.
            guard let v = try? GGUFFile.decodeValue(elementType, &r, file: file) else { break }
            out.append(v)
        }
        return out
    }

    func maxInteger() -> Int? {
        var r = ByteReader(file.bytes(in: 0..<end), offset: start)
        var best: Int?
        for _ in 0..<count {
            let v: Int?
            switch elementType {
            case .uint8: v = (try? r.read(UInt8.self)).map(Int.init)
            case .int8: v = (try? r.read(Int8.self)).map(Int.init)
            case .uint16: v = (try? r.read(UInt16.self)).map(Int.init)
            case .int16: v = (try? r.read(Int16.self)).map(Int.init)
            case .uint32: v = (try? r.read(UInt32.self)).map(Int.init)
            case .int32: v = (try? r.read(Int32.self)).map(Int.init)
            case .uint64: v = (try? r.read(UInt64.self)).flatMap { Int(exactly: $0) }
            case .int64: v = (try? r.read(Int64.self)).map(Int.init)
            default: return nil
            }
            if let v { best = max(best ?? v, v) }
        }
        return best
    }

    func decodeStrings() -> [String]? {
        guard elementType == .string else { return nil }
        var r = ByteReader(file.bytes(in: 0..<end), offset: start)
        var out: [String] = []
        out.reserveCapacity(reservation(count))
        for _ in 0..<count {
            guard let n = try? r.read(UInt64.self), let len = Int(exactly: n), let raw = try? r.readBytes(len) else { break }
            out.append(decodeUTF8Lossy(raw))
        }
        return out
    }
}

/// One GGUF file (version 2 or 3): header, key/values, tensor infos, aligned data.
/// See `Formats/gguf.md` for the layout and every check made here.
public struct GGUFFile: Sendable {
    public static let defaultAlignment = 32
    /// ggml's GGML_MAX_DIMS.
    public static let maxDimensions = 4
    /// Nested arrays deeper than this are refused (the format allows them; no writer uses them).
    public static let maxArrayDepth = 8
    /// Longest key or tensor name read (llama.cpp itself stops tensor names at 63 bytes).
    public static let maxNameLength = 65_536
    /// Longest string value decoded when the file is opened (chat templates run to tens of KiB).
    public static let maxStringLength = 64 << 20

    public let file: MappedFile
    public let version: Int
    public let metadata: [MetadataEntry]
    /// Tensors in the order of their infos in the header.
    public let tensors: [TensorView]
    public let alignment: Int
    /// Absolute offset of the data section.
    public let dataStart: Int

    public init(file: MappedFile) throws {
        let path = file.path
        var r = ByteReader(file.bytes)
        func truncated(_ what: String) -> CheckpointError {
            .malformed(path: path, reason: "the file ends (at byte \(file.size)) inside \(what): truncated")
        }
        guard file.size >= 24 else {
            throw CheckpointError.malformed(path: path, reason: "the file is \(file.size) bytes, shorter than a GGUF header (24 bytes)")
        }
        let magic = try! r.read(UInt32.self)
        let rawVersion = try! r.read(UInt32.self)
        if magic == 0x4755_4746 { // "FUGG"
            throw CheckpointError.unsupported(path: path, reason: "big-endian GGUF (magic 'FUGG') is not supported")
        }
        guard magic == 0x4655_4747 else { // "GGUF"
            throw CheckpointError.unrecognizedFormat(path: path, reason: "no GGUF magic")
        }
        if rawVersion & 0xFFFF == 0 && (1...3).contains(rawVersion.byteSwapped) {
            throw CheckpointError.unsupported(path: path, reason: "big-endian GGUF (version \(rawVersion.byteSwapped) stored big-endian) is not supported")
        }
        switch rawVersion {
        case 2, 3: break
        case 1: throw CheckpointError.unsupported(path: path, reason: "GGUF version 1 (32-bit counts) is not supported; convert the model again with a current llama.cpp")
        default: throw CheckpointError.unsupported(path: path, reason: "GGUF version \(rawVersion) is unknown (versions 2 and 3 are read)")
        }
        version = Int(rawVersion)
        let tensorCount = try! r.read(UInt64.self)
        let kvCount = try! r.read(UInt64.self)
        // Smallest possible entries: a key/value is 8 (key length) + 4 (type) + 1 (value)
        // bytes; a tensor info is 8 (name length) + 4 (dims) + 4 (type) + 8 (offset).
        // Counts that could not fit in the file are refused before anything is allocated.
        if kvCount > UInt64(r.remaining / 13) {
            throw CheckpointError.malformed(path: path, reason: "the header claims \(kvCount) metadata entries, more than a \(file.size)-byte file can hold")
        }
        if tensorCount > UInt64(r.remaining / 24) {
            throw CheckpointError.malformed(path: path, reason: "the header claims \(tensorCount) tensors, more than a \(file.size)-byte file can hold")
        }

        /// A key or tensor name: length-checked against the file and the cap, valid UTF-8.
        func readName(_ what: String) throws -> String {
            let n = try r.read(UInt64.self)
            guard n <= UInt64(r.remaining) else { throw truncated(what) }
            guard n <= UInt64(Self.maxNameLength) else {
                throw CheckpointError.malformed(path: path, reason: "\(what) is \(n) bytes long (at most \(Self.maxNameLength) are read)")
            }
            guard let name = decodeUTF8(try r.readBytes(Int(n))) else {
                throw CheckpointError.malformed(path: path, reason: "\(what) is not valid UTF-8")
            }
            return name
        }

        var metadata: [MetadataEntry] = []
        metadata.reserveCapacity(reservation(Int(kvCount)))
        var keys = Set<ExactName>()
        for i in 0..<Int(kvCount) {
            let key: String
            do {
                key = try readName("the name of metadata entry #\(i)")
            } catch is ByteReader.Overrun {
                throw truncated("metadata entry #\(i)")
            }
            guard keys.insert(ExactName(key)).inserted else {
                throw CheckpointError.badMetadata(path: path, key: key, reason: "the key appears twice")
            }
            do {
                let rawType = try r.read(UInt32.self)
                guard let type = GGUFValueType(rawValue: rawType) else {
                    throw CheckpointError.badMetadata(path: path, key: key, reason: "unknown value type \(rawType)")
                }
                let value = try Self.parseValue(type, &r, file: file, key: key, depth: 0)
                metadata.append(MetadataEntry(key: key, value: value))
            } catch is ByteReader.Overrun {
                throw truncated("the value of metadata key '\(key)'")
            }
        }
        self.metadata = metadata

        var alignment = Self.defaultAlignment
        if let a = metadata["general.alignment"] {
            let integer: Int?
            switch a {
            case .float32, .float64: integer = nil
            default: integer = a.intValue
            }
            guard let v = integer, v > 0, v & (v - 1) == 0, v <= 1 << 30 else {
                throw CheckpointError.badMetadata(path: path, key: "general.alignment", reason: "must be a power of two, found \(a)")
            }
            alignment = v
        }
        self.alignment = alignment

        struct Info { let name: String; let dims: [Int]; let type: GGMLType; let offset: Int; let nbytes: Int }
        var infos: [Info] = []
        infos.reserveCapacity(reservation(Int(tensorCount)))
        var names = Set<ExactName>()
        for i in 0..<Int(tensorCount) {
            var name = "#\(i)"
            do {
                name = try readName("the name of tensor #\(i)")
                func bad(_ reason: String) -> CheckpointError { .badTensor(path: path, tensor: name, reason: reason) }
                guard names.insert(ExactName(name)).inserted else { throw bad("the name appears twice") }
                let nDims = try r.read(UInt32.self)
                guard nDims <= UInt32(Self.maxDimensions) else { throw bad("\(nDims) dimensions, more than ggml's maximum of \(Self.maxDimensions)") }
                var dims: [Int] = []
                var elements = 1
                var nonZeroProduct = 1
                for _ in 0..<Int(nDims) {
                    let d = try r.read(UInt64.self)
                    // The product of the non-zero dimensions must fit too: views multiply the
                    // shape outermost first, and a zero late in ne[] must not hide an overflow.
                    guard let di = Int(exactly: d), let e = elements.multipliedOrNil(by: di),
                          let nz = nonZeroProduct.multipliedOrNil(by: max(di, 1)) else {
                        throw bad("dimension \(d) makes the element count overflow 64 bits")
                    }
                    dims.append(di)
                    elements = e
                    nonZeroProduct = nz
                }
                let rawType = try r.read(UInt32.self)
                guard let type = GGMLType.withID(rawType) else { throw bad("unknown ggml type \(rawType)") }
                if type.removedFromFiles {
                    throw CheckpointError.unsupported(path: path, reason: "tensor '\(name)' has type \(type.name) (\(rawType)), which llama.cpp removed from GGUF files (it repacks Q4_0/IQ4_NL at load time instead); quantize the model again")
                }
                let rawOffset = try r.read(UInt64.self)
                guard let offset = Int(exactly: rawOffset) else { throw bad("offset \(rawOffset) is beyond any file size") }
                let rowLength = dims.first ?? 1
                guard rowLength % type.blockSize == 0 else {
                    throw bad("row length \(rowLength) is not a multiple of \(type.name)'s block size \(type.blockSize)")
                }
                guard let nbytes = TensorDType.gguf(type).byteCount(elements: elements) else {
                    throw bad("\(elements) elements of \(type.name) overflow 64 bits of bytes")
                }
                guard offset % alignment == 0 else { throw bad("offset \(offset) is not a multiple of the alignment \(alignment)") }
                infos.append(Info(name: name, dims: dims, type: type, offset: offset, nbytes: nbytes))
            } catch is ByteReader.Overrun {
                throw truncated("the description of tensor '\(name)'")
            }
        }

        let headerEnd = r.offset
        dataStart = (headerEnd + alignment - 1) / alignment * alignment
        if !infos.isEmpty && dataStart > file.size {
            throw CheckpointError.malformed(path: path, reason: "the data section would start at byte \(dataStart), past the end of the file (\(file.size) bytes): truncated")
        }
        let dataSize = max(0, file.size - dataStart)
        var byOffset = infos.indices.sorted { (infos[$0].offset, infos[$0].nbytes) < (infos[$1].offset, infos[$1].nbytes) }
        var cursor = 0
        var previous: String?
        for i in byOffset {
            let t = infos[i]
            if t.offset < cursor {
                throw CheckpointError.badTensor(path: path, tensor: t.name, reason: "its data (offset \(t.offset), \(t.nbytes) bytes) overlaps tensor '\(previous ?? "")'")
            }
            guard let end = t.offset.addingOrNil(t.nbytes), end <= dataSize else {
                throw CheckpointError.badTensor(path: path, tensor: t.name, reason: "its data (offset \(t.offset), \(t.nbytes) bytes) runs past the data section, which holds \(dataSize) bytes: the file is truncated")
            }
            if t.nbytes > 0 { cursor = end; previous = t.name }
        }
        byOffset.removeAll()
        let start = dataStart
        tensors = infos.map {
            TensorView(name: $0.name, dtype: .gguf($0.type), shape: $0.dims.reversed(), file: file,
                       offset: start + $0.offset, byteCount: $0.nbytes)
        }
        self.file = file
    }

    static func parseValue(_ type: GGUFValueType, _ r: inout ByteReader, file: MappedFile, key: String, depth: Int) throws -> MetadataValue {
        if type == .array {
            guard depth < maxArrayDepth else {
                throw CheckpointError.badMetadata(path: file.path, key: key, reason: "arrays nested deeper than \(maxArrayDepth) levels")
            }
            let rawElem = try r.read(UInt32.self)
            guard let elem = GGUFValueType(rawValue: rawElem) else {
                throw CheckpointError.badMetadata(path: file.path, key: key, reason: "unknown array element type \(rawElem)")
            }
            let rawCount = try r.read(UInt64.self)
            // Every element takes at least one byte (a string at least eight).
            let minSize = elem.fixedSize ?? (elem == .string ? 8 : 12)
            guard rawCount <= UInt64(r.remaining / minSize) else {
                throw CheckpointError.badMetadata(path: file.path, key: key, reason: "array of \(rawCount) \(elem.name) values does not fit in the \(r.remaining) bytes left in the file")
            }
            let count = Int(rawCount)
            let start = r.offset
            if let size = elem.fixedSize {
                try r.skip(count * size)
                if elem == .bool {
                    for i in 0..<count where r.bytes[start + i] > 1 {
                        throw CheckpointError.badMetadata(path: file.path, key: key, reason: "element \(i) of a bool array is \(r.bytes[start + i]), not 0 or 1")
                    }
                }
            } else if elem == .string {
                for _ in 0..<count {
                    let n = try r.read(UInt64.self)
                    guard n <= UInt64(r.remaining) else { throw ByteReader.Overrun(offset: r.offset, needed: Int(clamping: n), available: r.remaining) }
                    try r.skip(Int(n))
                }
            } else {
                for _ in 0..<count {
                    _ = try parseValue(.array, &r, file: file, key: key, depth: depth + 1)
                }
            }
            return .array(MetadataArray(gguf: GGUFArrayRef(file: file, elementType: elem, count: count, start: start, end: r.offset)))
        }
        let v = try decodeValue(type, &r, file: file)
        if case .bool = v {
            let b = r.bytes[r.offset - 1]
            if b > 1 { throw CheckpointError.badMetadata(path: file.path, key: key, reason: "bool value is \(b), not 0 or 1") }
        }
        return v
    }

    /// Decodes one value of a type at the reader; arrays recurse through `parseValue`.
    static func decodeValue(_ type: GGUFValueType, _ r: inout ByteReader, file: MappedFile) throws -> MetadataValue {
        switch type {
        case .uint8: return .uint8(try r.read(UInt8.self))
        case .int8: return .int8(try r.read(Int8.self))
        case .uint16: return .uint16(try r.read(UInt16.self))
        case .int16: return .int16(try r.read(Int16.self))
        case .uint32: return .uint32(try r.read(UInt32.self))
        case .int32: return .int32(try r.read(Int32.self))
        case .uint64: return .uint64(try r.read(UInt64.self))
        case .int64: return .int64(try r.read(Int64.self))
        case .float32: return .float32(try r.readFloat())
        case .float64: return .float64(try r.readDouble())
        case .bool: return .bool(try r.read(UInt8.self) != 0)
        case .string:
            let n = try r.read(UInt64.self)
            guard n <= UInt64(r.remaining) else { throw ByteReader.Overrun(offset: r.offset, needed: Int(clamping: n), available: r.remaining) }
            guard n <= UInt64(maxStringLength) else {
                throw CheckpointError.malformed(path: file.path, reason: "a string value of \(n) bytes at byte \(r.offset) (at most \(maxStringLength) are read)")
            }
            return .string(decodeUTF8Lossy(try r.readBytes(Int(n))))
        case .array:
            return try parseValue(.array, &r, file: file, key: "", depth: 1)
        }
    }
}

/// A GGUF checkpoint: one file, or every file of a split set
/// (`name-00001-of-00003.gguf`, with `split.no`/`split.count` keys).
public final class GGUFCheckpoint: Checkpoint {
    public let format = CheckpointFormat.gguf
    public let formatVersion: Int
    public let path: String
    public let splits: [GGUFFile]
    public let tensors: [TensorView]
    /// The key/values of the first split (the others repeat only `split.*`).
    public let metadata: [MetadataEntry]
    public var files: [MappedFile] { splits.map(\.file) }

    public convenience init(path: String) throws {
        try self.init(file: try MappedFile(path: path))
    }

    /// One file of a split set on its own: its tensors and its own key/values (`split.*`
    /// included), without looking for the other splits. For rewriting splits one at a time.
    public init(singleFile file: MappedFile) throws {
        let only = try GGUFFile(file: file)
        path = file.path
        splits = [only]
        tensors = only.tensors
        metadata = only.metadata
        formatVersion = only.version
    }

    public init(file: MappedFile) throws {
        let first = try GGUFFile(file: file)
        self.path = file.path
        let splitCount = first.metadata["split.count"]?.intValue ?? 1
        guard splitCount > 1 else {
            splits = [first]
            tensors = first.tensors
            metadata = first.metadata
            formatVersion = first.version
            return
        }
        guard splitCount <= 9999 else {
            throw CheckpointError.badMetadata(path: file.path, key: "split.count", reason: "\(splitCount) splits is more than the 5-digit file naming allows")
        }
        // llama.cpp names splits "%s-%05d-of-%05d.gguf".
        let name = FileSystem.baseName(file.path)
        let suffix = "-of-" + pad5(splitCount) + ".gguf"
        guard name.hasSuffix(suffix), name.count > suffix.count + 6,
              name.dropLast(suffix.count).suffix(6).first == "-" else {
            throw CheckpointError.inconsistentSet(path: file.path, reason: "split.count is \(splitCount) but the file name does not end in '-NNNNN\(suffix)', so the other splits cannot be found")
        }
        let prefix = String(name.dropLast(suffix.count + 6))
        let dir = FileSystem.directoryName(file.path)
        // Split by split under a journal, an interrupted in-place rewrite leaves old and new
        // splits side by side: refuse the mixture until a ckpt command finishes it.
        let journal = FileSystem.join(dir, SafetensorsCheckpoint.inPlaceJournalName)
        if try FileSystem.kind(of: journal) == .file, (try? FileSystem.readFile(journal, limit: 16 << 20))
            .map({ String(decoding: $0, as: UTF8.self).contains("\"" + prefix + "-") }) ?? true {
            throw CheckpointError.inconsistentSet(path: file.path, reason: "an in-place rewrite of this checkpoint was interrupted (\(SafetensorsCheckpoint.inPlaceJournalName)); run any ckpt command on it to finish it")
        }
        var splits: [GGUFFile] = []
        for i in 0..<splitCount {
            let p = FileSystem.join(dir, prefix + "-" + pad5(i + 1) + suffix)
            let split: GGUFFile
            if FileSystem.baseName(p) == name {
                split = first
            } else {
                guard try FileSystem.kind(of: p) == .file else {
                    throw CheckpointError.inconsistentSet(path: file.path, reason: "split \(i + 1) of \(splitCount), '\(p)', is missing")
                }
                split = try GGUFFile(file: try MappedFile(path: p))
            }
            let no = split.metadata["split.no"]?.intValue
            let count = split.metadata["split.count"]?.intValue
            guard no == i, count == splitCount else {
                throw CheckpointError.inconsistentSet(path: split.file.path, reason: "expected split.no \(i) of split.count \(splitCount), found \(no.map(String.init) ?? "none") of \(count.map(String.init) ?? "none")")
            }
            splits.append(split)
        }
        var seen: [ExactName: String] = [:]
        var tensors: [TensorView] = []
        for s in splits {
            for t in s.tensors {
                if let other = seen[ExactName(t.name)] {
                    throw CheckpointError.inconsistentSet(path: s.file.path, reason: "tensor '\(t.name)' is stored twice, here and in '\(other)'")
                }
                seen[ExactName(t.name)] = s.file.path
                tensors.append(t)
            }
        }
        if let expected = splits[0].metadata["split.tensors.count"]?.intValue, expected != tensors.count {
            throw CheckpointError.inconsistentSet(path: splits[0].file.path, reason: "split.tensors.count says \(expected) tensors but the splits hold \(tensors.count)")
        }
        self.splits = splits
        self.tensors = tensors
        self.metadata = splits[0].metadata
        self.formatVersion = splits[0].version
    }
}
