import Basics
/// A borrowed description of one stored tensor: what it is and where its bytes lie.
/// Creating or copying a view reads no tensor data.
public struct TensorView: Sendable {
    /// The tensor's name as stored in the file.
    public let name: String
    public let dtype: TensorDType
    /// Dimensions outermost first (row-major), for both formats. GGUF stores `ne[]`
    /// innermost first; it is reversed once, when the file is opened.
    public let shape: [Int]
    /// The mapped file holding the bytes.
    public let file: MappedFile
    /// Absolute byte offset of the first byte within `file`.
    public let offset: Int
    /// Number of bytes.
    public let byteCount: Int

    public init(name: String, dtype: TensorDType, shape: [Int], file: MappedFile, offset: Int, byteCount: Int) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.file = file
        self.offset = offset
        self.byteCount = byteCount
    }

    /// Number of elements (the product of `shape`; 1 for a scalar).
    public var elementCount: Int { shape.reduce(1, *) }

    /// Elements in the innermost dimension (a "row"); 1 for a scalar.
    public var rowLength: Int { shape.last ?? 1 }

    /// Number of rows: all dimensions but the innermost.
    public var rowCount: Int { shape.dropLast().reduce(1, *) }

    /// Indices `r` of the outermost dimension as a view of their bytes (whole rows, so
    /// whole quantization blocks): a fused projection's parts. The bytes must split evenly
    /// by the outermost dimension (they do for any tensor whose rows are whole blocks).
    public func slice(_ r: Range<Int>) -> TensorView {
        let stride = byteCount / max(shape.first ?? 1, 1)
        return TensorView(name: name, dtype: dtype, shape: [r.count] + shape.dropFirst(), file: file,
                          offset: offset + r.lowerBound * stride, byteCount: r.count * stride)
    }

    /// Each index of the outermost dimension as a tensor of one dimension fewer: the
    /// experts of GGUF's stacked [experts, rows, cols]. Nil when the bytes do not split evenly.
    public var outerSlices: [TensorView]? {
        guard let n = shape.first, n > 0, byteCount % n == 0 else { return nil }
        return (0..<n).map { i in
            let s = slice(i..<(i + 1))
            return TensorView(name: name, dtype: dtype, shape: Array(shape.dropFirst()), file: file, offset: s.offset, byteCount: s.byteCount)
        }
    }

    /// The stored bytes, borrowed from the mapping. Valid only while something holds
    /// `file` (this view, or its checkpoint): from a temporary, use `withBytes`.
    public var bytes: UnsafeRawBufferPointer { file.bytes(in: offset..<(offset + byteCount)) }

    /// Calls `body` with the stored bytes, keeping the mapping alive meanwhile.
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withExtendedLifetime(file) { try body(bytes) }
    }

    /// The GGUF `ne[]` order of `shape` (innermost first).
    public var ggmlDims: [Int] { shape.reversed() }
}

/// The on-disk family of a checkpoint.
public enum CheckpointFormat: String, Sendable {
    case safetensors
    case gguf
}

/// An opened checkpoint: one safetensors file, a sharded safetensors set, one GGUF
/// file or a GGUF split set, seen through the same read-only interface.
public protocol Checkpoint: AnyObject, Sendable {
    var format: CheckpointFormat { get }
    /// Format version (GGUF 2 or 3; 0 for safetensors, which has none).
    var formatVersion: Int { get }
    /// The path the user gave.
    var path: String { get }
    /// Every mapped file, in order (shards or splits).
    var files: [MappedFile] { get }
    /// Tensors in file order: by file, then by byte offset.
    var tensors: [TensorView] { get }
    /// Key/value metadata, in file order (GGUF key/values; safetensors `__metadata__`).
    var metadata: [MetadataEntry] { get }
}

extension Checkpoint {
    /// The tensor named `name`, or nil.
    public func tensor(named name: String) -> TensorView? {
        tensors.first { $0.name == name }
    }

    /// Total parameter count (elements of every tensor).
    public var parameterCount: Int { tensors.reduce(0) { $0 + $1.elementCount } }

    /// Total bytes of tensor data.
    public var tensorBytes: Int { tensors.reduce(0) { $0 + $1.byteCount } }
}

/// Opens whatever `path` names: a `.safetensors` file, a `*.safetensors.index.json`,
/// a directory of safetensors shards, a `.gguf` file or one file of a GGUF split set.
public func openCheckpoint(path: String) throws -> any Checkpoint {
    switch try FileSystem.kind(of: path) {
    case .missing:
        throw CheckpointError.notFound(path: path)
    case .directory:
        return try SafetensorsCheckpoint(directory: path)
    case .file:
        if path.hasSuffix(".index.json") {
            return try SafetensorsCheckpoint(indexPath: path)
        }
        let file = try MappedFile(path: path)
        let magic = file.size >= 4 ? Array(file.bytes[0..<4]) : []
        if magic == Array("GGUF".utf8) || magic == Array("FUGG".utf8) {
            return try GGUFCheckpoint(file: file)
        }
        if path.hasSuffix(".gguf") {
            throw CheckpointError.unrecognizedFormat(
                path: path, reason: "file ends in .gguf but does not start with the GGUF magic (found \(hexBytes(magic)))")
        }
        return try SafetensorsCheckpoint(file: file)
    }
}

func hexBytes(_ bytes: [UInt8]) -> String {
    bytes.isEmpty ? "an empty file" : bytes.map { b in
        let s = String(b, radix: 16)
        return s.count == 1 ? "0" + s : s
    }.joined(separator: " ")
}
