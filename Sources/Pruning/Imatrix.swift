import Basics
import CheckpointIO
import Models

/// Exports calibration statistics as llama.cpp's importance matrix (its GGUF form, as
/// `llama-imatrix` writes it), so the same calibration guides llama.cpp's quantizer: for
/// every weight matrix of every layer, `<weight>.in_sum2` (Σ over tokens of x_j² for each
/// input column j) and `<weight>.counts` (tokens), both F32.
package enum Imatrix {
    package static func write(_ s: ImportanceStats, to path: String, dataset: String, overwrite: Bool) throws {
        guard let arch = Architecture.gguf(s.shape.architecture) else {
            throw CheckpointError.unsupported(path: path, reason: "no GGUF names for architecture '\(s.shape.architecture)'")
        }
        if s.shape.experts > 0 {
            // llama.cpp's *_exps entries need Σx² of each expert's own routed inputs, which the statistics do not keep.
            throw CheckpointError.unsupported(path: path, reason: "an importance matrix for a mixture of \(s.shape.experts) experts (per-expert input sums) is not exported yet")
        }
        var entries: [(name: String, values: [Float])] = []
        for (i, l) in s.layers.enumerated() {
            let inputs: [(LayerTensor, ChannelSums)] = [
                (.attnQ, l.attentionInput), (.attnK, l.attentionInput), (.attnV, l.attentionInput),
                (.attnOutput, l.attentionChannels), (.mlpGate, l.mlpInput), (.mlpUp, l.mlpInput), (.mlpDown, l.neurons),
            ]
            for (part, sums) in inputs {
                guard let name = arch.ggufName(.layer(i, part)) else { continue }
                entries.append((name, sums.sumSquares.map { Float(FixedSum.double($0)) }))
            }
        }
        entries.sort { $0.name < $1.name }
        var plans: [TensorPlan] = []
        let f32 = TensorDType.gguf(GGMLType.f32)
        for e in entries {
            plans.append(try TensorPlan(name: e.name + ".in_sum2", dtype: f32, shape: [1, e.values.count]))
            plans.append(try TensorPlan(name: e.name + ".counts", dtype: f32, shape: [1, 1]))
        }
        let metadata: [MetadataEntry] = [
            MetadataEntry(key: "general.type", value: .string("imatrix")),
            MetadataEntry(key: "imatrix.datasets", value: .array(MetadataArray(values: [.string(dataset)], elementType: "string"))),
            MetadataEntry(key: "imatrix.chunk_count", value: .uint32(UInt32(clamping: s.samples))),
            MetadataEntry(key: "imatrix.chunk_size", value: .uint32(UInt32(clamping: s.sequenceLength))),
        ]
        let writer = try CheckpointWriter(layout: .gguf(path: path, metadata: metadata), tensors: plans, overwrite: overwrite)
        do {
            for e in entries {
                try e.values.withUnsafeBytes { try writer.write(e.name + ".in_sum2", $0) }
                let count = [Float(s.tokens)]
                try count.withUnsafeBytes { try writer.write(e.name + ".counts", $0) }
            }
            try writer.prepare()
            try writer.publish()
        } catch {
            writer.abort()
            throw error
        }
    }
}
