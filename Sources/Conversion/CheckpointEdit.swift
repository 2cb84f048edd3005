import Basics
import CheckpointIO

/// What to change about one tensor while a checkpoint is rewritten.
public struct TensorEdit: Sendable, Equatable {
    /// The output name (layers renumbered); nil keeps the name.
    public var name: String?
    /// Source rows to keep, in output order (outermost dimension of a matrix); nil: all.
    public var rows: [Int]?
    /// Source columns to keep, ascending (innermost dimension; a vector's elements); nil: all.
    public var columns: [Int]?
    /// Leave the tensor out.
    public var drop = false
    /// New contents (f32, in the source's layout), replacing the source's: trained weights.
    public var values: TensorValues?

    public init(name: String? = nil, rows: [Int]? = nil, columns: [Int]? = nil, drop: Bool = false, values: TensorValues? = nil) {
        self.name = name; self.rows = rows; self.columns = columns; self.drop = drop
        self.values = values
    }
}

/// f32 values that replace a tensor's contents when a checkpoint is rewritten. The
/// memory is borrowed: it must outlive the rewrite.
public final class TensorValues: @unchecked Sendable, Equatable {
    public let pointer: UnsafePointer<Float>
    public let count: Int
    /// Called with each element range once it is encoded (a streamed source drops its pages).
    public let done: (@Sendable (Range<Int>) -> Void)?
    public init(_ pointer: UnsafePointer<Float>, count: Int, done: (@Sendable (Range<Int>) -> Void)? = nil) {
        self.pointer = pointer; self.count = count; self.done = done
    }
    public static func == (a: TensorValues, b: TensorValues) -> Bool { a === b }
}

/// A structural rewrite of a checkpoint (pruning): per-tensor row and column selections,
/// renames and drops, plus the metadata that describes the new shape.
public struct CheckpointEdit: Sendable {
    /// By source tensor name. Tensors not named are copied as they are.
    public var tensors: [String: TensorEdit] = [:]
    /// GGUF keys to set (replacing keys of the same name).
    public var ggufMetadata: [MetadataEntry] = []
    /// Files to write beside safetensors output instead of the source's (e.g. config.json).
    public var files: [(name: String, contents: [UInt8])] = []
    /// Entries added to safetensors `__metadata__`.
    public var safetensorsMetadata: [(String, String)] = []

    public init() {}
}
