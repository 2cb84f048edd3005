import Basics
import CheckpointIO
import Conversion
import Models
import TensorMath

/// Writes a trained student in its source's format: every tensor replaced by its f32
/// master weights encoded as `dtype` (default f16 in GGUF, bf16 in safetensors, so a few
/// hundred steps of small updates are not rounded away; GGUF keeps norms and biases F32),
/// with the source's metadata and tokenizer.
package enum StudentWriter {
    package static func write(_ student: TrainableDecoder, source: any Checkpoint, to output: String, dtype: DTypeChoice? = nil,
                             overwrite: Bool = false, metadata: [MetadataEntry] = []) throws -> ConversionSummary {
        var edit = CheckpointEdit()
        // Norms of a student read with an offset go back without it, from copies.
        var copies: [FloatBuffer] = []
        for slot in student.slots {
            let weights = student.weights, at = slot.offset
            if slot.isNorm && student.normOffset != 0 {
                let c = FloatBuffer(count: slot.count, zeroed: false)
                for i in 0..<slot.count { c[i] = weights[at + i] - student.normOffset }
                copies.append(c)
                edit.tensors[slot.name] = TensorEdit(values: TensorValues(c.pointer, count: slot.count))
                continue
            }
            edit.tensors[slot.name] = TensorEdit(values: TensorValues(weights.pointer + at, count: slot.count) { r in
                weights.release(floats: (at + r.lowerBound)..<(at + r.upperBound))
            })
        }
        edit.ggufMetadata = metadata
        if source.format == .safetensors {
            edit.safetensorsMetadata = metadata.compactMap { e in e.value.stringValue.map { (e.key, $0) } }
        }
        var options = ConversionOptions(target: source.format)
        options.dtype = dtype ?? (source.format == .gguf ? .f16 : .bf16)
        options.overwrite = overwrite
        options.edit = edit
        return try withExtendedLifetime((student, copies)) {
            try Converter(source: source, output: output, options: options).run()
        }
    }
}
