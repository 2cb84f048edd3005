import Basics
import CheckpointIO

/// What to change about one tensor while a checkpoint is rewritten.
package struct TensorEdit: Sendable, Equatable {
    /// The output name (layers renumbered); nil keeps the name.
    package var name: String?
    /// Source rows to keep, in output order (outermost dimension of a matrix); nil: all.
    package var rows: [Int]?
    /// Source columns to keep, ascending (innermost dimension; a vector's elements); nil: all.
    package var columns: [Int]?
    /// A stacked tensor ([experts, rows, cols]): the outer slices kept, in output order,
    /// each with its own rows and columns (instead of `rows` / `columns`); nil: all.
    package var slices: [SliceEdit]?
    /// Leave the tensor out.
    package var drop = false
    /// New contents (f32, in the source's layout), replacing the source's: trained weights.
    package var values: TensorValues?

    package init(name: String? = nil, rows: [Int]? = nil, columns: [Int]? = nil, slices: [SliceEdit]? = nil, drop: Bool = false,
                 values: TensorValues? = nil) {
        self.name = name; self.rows = rows; self.columns = columns; self.slices = slices; self.drop = drop
        self.values = values
    }
}

/// One outer slice of a stacked tensor kept by a `TensorEdit` (an expert of `*_exps`).
package struct SliceEdit: Sendable, Equatable {
    /// The source slice (expert index).
    package var source: Int
    /// Its rows kept, in output order; nil: all.
    package var rows: [Int]?
    /// Its columns kept, ascending; nil: all.
    package var columns: [Int]?

    package init(source: Int, rows: [Int]? = nil, columns: [Int]? = nil) {
        self.source = source; self.rows = rows; self.columns = columns
    }
}

/// f32 values that replace a tensor's contents when a checkpoint is rewritten. The
/// memory is borrowed: it must outlive the rewrite.
package final class TensorValues: @unchecked Sendable, Equatable {
    package let pointer: UnsafePointer<Float>
    package let count: Int
    /// Called with each element range once it is encoded (a streamed source drops its pages).
    package let done: (@Sendable (Range<Int>) -> Void)?
    package init(_ pointer: UnsafePointer<Float>, count: Int, done: (@Sendable (Range<Int>) -> Void)? = nil) {
        self.pointer = pointer; self.count = count; self.done = done
    }
    package static func == (a: TensorValues, b: TensorValues) -> Bool { a === b }
}

/// A structural rewrite of a checkpoint (pruning): per-tensor row and column selections,
/// renames and drops, plus the metadata that describes the new shape.
package struct CheckpointEdit: Sendable {
    /// By source tensor name. Tensors not named are copied as they are.
    package var tensors: [String: TensorEdit] = [:]
    /// GGUF keys to set (replacing keys of the same name).
    package var ggufMetadata: [MetadataEntry] = []
    /// Files to write beside safetensors output instead of the source's (e.g. config.json).
    package var files: [(name: String, contents: [UInt8])] = []
    /// Entries added to safetensors `__metadata__`.
    package var safetensorsMetadata: [(String, String)] = []

    package init() {}
}
