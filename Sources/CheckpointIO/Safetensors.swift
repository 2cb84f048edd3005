import Basics
/// One safetensors file: an 8-byte little-endian header length, a JSON header, then
/// the data section. See `Formats/safetensors.md` for what is accepted.
public struct SafetensorsFile: Sendable {
    /// The `safetensors` package refuses headers above 100 MB; so do we.
    public static let maxHeaderLength = 100_000_000
    /// Dimensions read per tensor (no real tensor comes near; a hostile header could list millions).
    public static let maxRank = 64

    public let file: MappedFile
    /// Byte offset of the data section (8 + header length).
    public let dataStart: Int
    /// Tensors ordered by their position in the data section.
    public let tensors: [TensorView]
    /// `__metadata__`, in header order.
    public let metadata: [MetadataEntry]

    public init(file: MappedFile) throws {
        let path = file.path
        self.file = file
        guard file.size >= 8 else {
            throw CheckpointError.malformed(path: path, reason: "the file is \(file.size) bytes; a safetensors file starts with an 8-byte header length")
        }
        let headerLength = file.bytes.loadUnaligned(as: UInt64.self).littleEndian
        guard headerLength <= UInt64(file.size - 8) else {
            throw CheckpointError.malformed(path: path, reason: "header length \(headerLength) is larger than the rest of the file (\(file.size - 8) bytes): truncated, or not a safetensors file")
        }
        guard headerLength <= UInt64(Self.maxHeaderLength) else {
            throw CheckpointError.malformed(path: path, reason: "header length \(headerLength) exceeds the 100 MB limit of the safetensors format")
        }
        let n = Int(headerLength)
        dataStart = 8 + n
        let dataSize = file.size - dataStart
        let headerBytes = file.bytes(in: 8..<dataStart)
        if n == 0 || headerBytes[0] != UInt8(ascii: "{") {
            throw CheckpointError.unrecognizedFormat(path: path, reason: "the header does not start with '{' (a safetensors header is a JSON object)")
        }
        let header: JSONValue
        do {
            header = try JSONParser.parse(headerBytes)
        } catch {
            throw CheckpointError.malformed(path: path, reason: "the JSON header is invalid: \(error.reason) at byte \(8 + error.offset)")
        }
        guard let pairs = header.objectValue else {
            throw CheckpointError.malformed(path: path, reason: "the JSON header is not an object")
        }

        struct Entry { let name: String; let dtype: SafetensorsDType; let shape: [Int]; let begin: Int; let end: Int }
        var entries: [Entry] = []
        entries.reserveCapacity(pairs.count)
        var metadata: [MetadataEntry] = []
        for (name, info) in pairs {
            if name == "__metadata__" {
                if info == .null { continue } // the package reads it as an absent Option
                guard let items = info.objectValue else {
                    throw CheckpointError.badMetadata(path: path, key: "__metadata__", reason: "must be an object of strings")
                }
                for (k, v) in items {
                    guard let s = v.stringValue else {
                        throw CheckpointError.badMetadata(path: path, key: k, reason: "__metadata__ values must be strings")
                    }
                    metadata.append(MetadataEntry(key: k, value: .string(s)))
                }
                continue
            }
            func bad(_ reason: String) -> CheckpointError { .badTensor(path: path, tensor: name, reason: reason) }
            guard info.objectValue != nil else { throw bad("its header entry is not an object") }
            guard let dtypeName = info["dtype"]?.stringValue else { throw bad("missing or non-string 'dtype'") }
            guard let dtype = SafetensorsDType(rawValue: dtypeName) else {
                throw bad("unknown dtype '\(dtypeName)' (known: \(SafetensorsDType.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            guard let shapeItems = info["shape"]?.arrayValue else { throw bad("missing or non-array 'shape'") }
            guard shapeItems.count <= Self.maxRank else { throw bad("shape has \(shapeItems.count) dimensions (at most \(Self.maxRank) are read)") }
            var shape: [Int] = []
            shape.reserveCapacity(shapeItems.count)
            for d in shapeItems {
                guard let v = d.nonNegativeInt else { throw bad("shape entry \(jsonText(d)) is not a non-negative integer") }
                shape.append(v)
            }
            guard let offsets = info["data_offsets"]?.arrayValue, offsets.count == 2,
                  let begin = offsets[0].nonNegativeInt, let end = offsets[1].nonNegativeInt else {
                throw bad("'data_offsets' must be two non-negative integers [begin, end]")
            }
            guard begin <= end else { throw bad("data_offsets [\(begin), \(end)] end before they begin") }
            var elements = 1
            for d in shape {
                guard let e = elements.multipliedOrNil(by: d) else { throw bad("shape \(shape) has more elements than fit in 64 bits") }
                elements = e
            }
            guard let nbytes = TensorDType.safetensors(dtype).byteCount(elements: elements) else {
                if elements.multipliedOrNil(by: dtype.bits) == nil {
                    throw bad("shape \(shape) of \(dtype.rawValue) has more bits than fit in 64 bits")
                }
                throw bad("shape \(shape) of \(dtype.rawValue) (\(dtype.bits) bits each) is not a whole number of bytes")
            }
            guard end - begin == nbytes else {
                throw bad("shape \(shape) of \(dtype.rawValue) needs \(nbytes) bytes but data_offsets [\(begin), \(end)] hold \(end - begin)")
            }
            entries.append(Entry(name: name, dtype: dtype, shape: shape, begin: begin, end: end))
        }

        entries.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        var cursor = 0
        var previous: String?
        for e in entries {
            if e.begin < cursor {
                throw CheckpointError.badTensor(path: path, tensor: e.name, reason: "data_offsets [\(e.begin), \(e.end)] overlap tensor '\(previous ?? "")'")
            }
            if e.begin > cursor {
                throw CheckpointError.badTensor(path: path, tensor: e.name, reason: "data_offsets start at \(e.begin), leaving bytes \(cursor)..<\(e.begin) of the data section unused (offsets must cover it without gaps)")
            }
            if e.end > dataSize {
                throw CheckpointError.badTensor(path: path, tensor: e.name, reason: "data_offsets [\(e.begin), \(e.end)] run past the data section, which holds \(dataSize) bytes: the file is truncated")
            }
            cursor = e.end
            previous = e.name
        }
        if cursor != dataSize {
            let last = previous.map { ", the last being '\($0)'" } ?? ""
            throw CheckpointError.malformed(path: path, reason: "the tensors cover \(cursor) bytes\(last), but the data section holds \(dataSize): offsets must cover it exactly")
        }
        let start = dataStart
        self.tensors = entries.map {
            TensorView(name: $0.name, dtype: .safetensors($0.dtype), shape: $0.shape, file: file,
                       offset: start + $0.begin, byteCount: $0.end - $0.begin)
        }
        self.metadata = metadata
    }
}


/// A safetensors checkpoint: one file, or the shards of an HF sharded set (found
/// through `model.safetensors.index.json`, or all `*.safetensors` of a directory).
public final class SafetensorsCheckpoint: Checkpoint {
    public let format = CheckpointFormat.safetensors
    public let formatVersion = 0
    public let path: String
    public let files: [MappedFile]
    public let tensors: [TensorView]
    /// `__metadata__` of the first shard (HF writes the same one into every shard).
    public let metadata: [MetadataEntry]
    /// The index file, when the set was opened through one.
    public let indexPath: String?
    /// The index's own `metadata` object (e.g. `total_size`).
    public let indexMetadata: [MetadataEntry]

    /// One file.
    public init(file: MappedFile) throws {
        let st = try SafetensorsFile(file: file)
        path = file.path
        files = [file]
        tensors = st.tensors
        metadata = st.metadata
        indexPath = nil
        indexMetadata = []
    }

    /// The journal of an in-place rewrite in progress (see Formats/journal.md).
    public static let inPlaceJournalName = ".ckpt-journal.json"

    /// A directory: its index if it has exactly one, else every `*.safetensors` in it.
    /// A directory whose in-place rewrite was interrupted is refused: its shards may be a
    /// mixture of old and new until `ckpt` finishes the rewrite.
    public convenience init(directory: String) throws {
        let names = try FileSystem.list(directory: directory)
        if names.contains(Self.inPlaceJournalName) {
            throw CheckpointError.inconsistentSet(path: directory, reason: "an in-place rewrite of this checkpoint was interrupted (\(Self.inPlaceJournalName)); run any ckpt command on it to finish it")
        }
        let indexes = names.filter { $0.hasSuffix(".safetensors.index.json") }
        if indexes.count > 1 {
            throw CheckpointError.inconsistentSet(path: directory, reason: "the directory has several index files (\(indexes.joined(separator: ", "))); name the one to open")
        }
        if let index = indexes.first {
            try self.init(indexPath: FileSystem.join(directory, index))
            return
        }
        let shards = names.filter { $0.hasSuffix(".safetensors") }
        if shards.isEmpty {
            throw CheckpointError.unrecognizedFormat(path: directory, reason: "the directory holds no *.safetensors files and no *.safetensors.index.json")
        }
        try self.init(path: directory, shardPaths: shards.map { FileSystem.join(directory, $0) }, index: nil)
    }

    /// An HF index file with a `weight_map` from tensor names to shard file names.
    public convenience init(indexPath: String) throws {
        if try FileSystem.kind(of: FileSystem.join(FileSystem.directoryName(indexPath), Self.inPlaceJournalName)) == .file {
            throw CheckpointError.inconsistentSet(path: indexPath, reason: "an in-place rewrite of this checkpoint was interrupted (\(Self.inPlaceJournalName)); run any ckpt command on it to finish it")
        }
        let raw = try FileSystem.readFile(indexPath, limit: 64 << 20)
        let json: JSONValue
        do {
            json = try JSONParser.parse(raw)
        } catch {
            throw CheckpointError.malformed(path: indexPath, reason: "invalid JSON: \(error)")
        }
        guard json.objectValue != nil else {
            throw CheckpointError.malformed(path: indexPath, reason: "the index is not a JSON object")
        }
        guard let map = json["weight_map"]?.objectValue else {
            throw CheckpointError.malformed(path: indexPath, reason: "the index has no 'weight_map' object")
        }
        var shardOf: [(String, String)] = []
        var shardNames: [String] = []
        var firstTensorOf: [String: String] = [:]
        for (tensor, value) in map {
            guard let shard = value.stringValue else {
                throw CheckpointError.badTensor(path: indexPath, tensor: tensor, reason: "weight_map value is not a file name")
            }
            if shard.isEmpty || shard.contains("/") || shard == "." || shard == ".." {
                throw CheckpointError.badTensor(path: indexPath, tensor: tensor, reason: "shard name '\(shard)' must be a plain file name beside the index")
            }
            shardOf.append((tensor, shard))
            if firstTensorOf[shard] == nil {
                firstTensorOf[shard] = tensor
                shardNames.append(shard)
            }
        }
        shardNames.sort()
        let dir = FileSystem.directoryName(indexPath)
        for shard in shardNames {
            let p = FileSystem.join(dir, shard)
            if try FileSystem.kind(of: p) != .file {
                throw CheckpointError.inconsistentSet(path: indexPath, reason: "the index maps tensor '\(firstTensorOf[shard]!)' to shard '\(shard)', which does not exist in \(dir)")
            }
        }
        let indexMetadata: [MetadataEntry]
        switch json["metadata"] {
        case let .object(pairs)?: indexMetadata = pairs.map { MetadataEntry(key: $0.key, value: $0.value.metadataValue) }
        default: indexMetadata = []
        }
        try self.init(path: indexPath, shardPaths: shardNames.map { FileSystem.join(dir, $0) },
                      index: (indexPath, shardOf, indexMetadata))
    }

    private init(path: String, shardPaths: [String], index: (path: String, shardOf: [(String, String)], metadata: [MetadataEntry])?) throws {
        var files: [MappedFile] = []
        var tensors: [TensorView] = []
        var metadata: [MetadataEntry]?
        var seen: [ExactName: String] = [:]
        for shardPath in shardPaths {
            let st = try SafetensorsFile(file: try MappedFile(path: shardPath))
            files.append(st.file)
            if metadata == nil { metadata = st.metadata }
            let shardName = FileSystem.baseName(shardPath)
            for t in st.tensors {
                if let other = seen[ExactName(t.name)] {
                    throw CheckpointError.inconsistentSet(path: path, reason: "tensor '\(t.name)' is stored twice, in '\(other)' and in '\(shardName)'")
                }
                seen[ExactName(t.name)] = shardName
                tensors.append(t)
            }
        }
        if let index {
            for (tensor, shard) in index.shardOf where seen[ExactName(tensor)] != shard {
                let actual = seen[ExactName(tensor)].map { "it is in '\($0)'" } ?? "no shard has it"
                throw CheckpointError.inconsistentSet(path: index.path, reason: "the index maps tensor '\(tensor)' to shard '\(shard)', but \(actual)")
            }
        }
        self.path = path
        self.files = files
        self.tensors = tensors
        self.metadata = metadata ?? []
        self.indexPath = index?.path
        self.indexMetadata = index?.metadata ?? []
    }
}
