import Basics
import CheckpointIO
import CKernels
import Models
import TensorMath

/// How a training run fits a memory budget: whether the weights, gradients and optimizer
/// moments stay in memory or stream from mapped files a layer at a time, and whether
/// each layer keeps its activations for the backward pass or recomputes them. The
/// fastest arrangement whose estimate fits is chosen; none change the numbers.
package struct MemoryPlan: Sendable, CustomStringConvertible {
    package var streamState: Bool
    package var recomputeActivations: Bool
    /// What the estimate is made of, largest first.
    package var parts: [(name: String, bytes: Int)]
    package var total: Int { parts.reduce(0) { $0 + $1.bytes } }

    package enum Failure: UserFacingError, Sendable {
        case budgetTooSmall(budget: Int, minimum: Int, parts: [(name: String, bytes: Int)])
        /// The budget is the caller's request, and it cannot be met.
        package var exitCode: ExitCode { .usage }
        package var description: String {
            switch self {
            case let .budgetTooSmall(budget, minimum, parts):
                return "a memory budget of \(mib(budget)) cannot hold one layer's training state and one sequence's activations: "
                    + "at least \(mib(minimum)) is needed (\(parts.map { "\($0.name) \(mib($0.bytes))" }.joined(separator: ", "))). "
                    + "Raise the budget, or shorten the sequences"
            }
        }
    }

    package var description: String {
        "\(streamState ? "weights, gradients and optimizer state streamed from files" : "training state in memory"), "
            + "\(recomputeActivations ? "activations recomputed per layer" : "activations kept"): about \(mib(total)) "
            + "(\(parts.map { "\($0.name) \(mib($0.bytes))" }.joined(separator: ", ")))"
    }

    /// The estimate for one arrangement. `baseline` is what the process holds before the
    /// student is loaded (runtime, tokenizer, cache index); `chunkBytes` one decoded cache
    /// chunk and a batch's targets.
    package static func estimate(spec s: DecoderSpec, slots: [TrainableDecoder.Slot], tokens T: Int, logitRows: Int, eightBitState: Bool,
                                baseline: Int, chunkBytes: Int, extra: [(String, Int)] = [], products: TrainableDecoder.Products = .f32,
                                streamState: Bool, recompute: Bool) -> MemoryPlan {
        let perParameter = 8 + AdamW.stateBytesPerParameter(eightBit: eightBitState)
        let parameters = slots.last.map { $0.offset + $0.count } ?? 0
        var state: Int
        if streamState {
            // The most held at once: one layer's weights and gradients (backward pass), one
            // vocabulary slice of the LM head and its gradients, or one optimizer slice of
            // weights, gradients and moments; plus pages at the edges.
            var layer: [Int: Int] = [:]
            for slot in slots { if let l = slot.role.layerIndex { layer[l, default: 0] += slot.count } }
            let biggestLayer = layer.values.max() ?? 0
            let headSlice = TrainableDecoder.defaultVocabSlice(hidden: s.hidden) * s.hidden
            state = max(8 * biggestLayer, 8 * headSlice, Int(Double(min(AdamW.slice, parameters)) * perParameter), StateArray.slice) + (1 << 20)
        } else {
            state = Int(Double(parameters) * perParameter)
        }
        // Transposed gradients (a layer's widest, or a block of logit rows by a vocabulary
        // slice), packed GEMM panels per thread, the loss kernels' rows per thread.
        let threads = max(ThreadPool.threads, 1)
        let transposed = max(T * max(s.hidden, s.qDim, s.ffn, s.sharedFFN), logitRows * min(s.vocab, TrainableDecoder.defaultVocabSlice(hidden: s.hidden)))
        // Attention's backward pass: per thread three blocks of 64 queries × T scores, and
        // every head's share of dK and dV.
        let attention = 4 * (threads * 3 * 64 * T + 2 * s.heads * T * s.headDim)
        let kernels = 4 * (transposed + threads * (Int(CKPT_PANEL_ROWS) * max(s.hidden, s.ffn, T) + 32)) + 4 * threads * s.vocab * 3 + attention
        // int8 products: quantized weights (a byte and 1/8 of a scale per value, by rows and
        // by columns), kept while the weights are unchanged, or one matrix at a time when
        // streamed; activations quantized for one product.
        var quantized = 0
        if products == .int8 {
            var biggest = TrainableDecoder.defaultVocabSlice(hidden: s.hidden) * s.hidden
            for slot in slots where slot.role.layerIndex != nil { biggest = max(biggest, slot.count) }
            quantized = Int(2.25 * Double(streamState ? biggest : parameters)) + Int(1.125 * Double(T * max(s.hidden, s.qDim, s.ffn)))
        }
        var parts = [("baseline", baseline), ("int8 copies", quantized), (streamState ? "state slices" : "weights, gradients and optimizer state", state),
                     ("activations", TrainableDecoder.Activations.bytes(spec: s, tokens: T, logitRows: logitRows, recompute: recompute)),
                     ("kernel and loss scratch", kernels), ("cache data", chunkBytes)] + extra
        // The allocator's slack and what is too small to list: measured peaks ran 5–12% over
        // the sum of the parts.
        parts.append(("allocator slack", parts.reduce(0) { $0 + $1.1 - ($1.0 == "baseline" ? $1.1 : 0) } / 8))
        return MemoryPlan(streamState: streamState, recomputeActivations: recompute, parts: parts.filter { $0.1 > 0 }.sorted { $0.1 > $1.1 })
    }

    /// The fastest arrangement that fits `budget` bytes (nil: no budget, everything in
    /// memory), or an error that gives the smallest budget that would do.
    package static func choose(budget: Int?, spec: DecoderSpec, slots: [TrainableDecoder.Slot], tokens: Int, logitRows: Int,
                              eightBitState: Bool, baseline: Int, chunkBytes: Int, extra: [(String, Int)] = [],
                              products: TrainableDecoder.Products = .f32) throws -> MemoryPlan {
        func plan(_ stream: Bool, _ recompute: Bool) -> MemoryPlan {
            estimate(spec: spec, slots: slots, tokens: tokens, logitRows: logitRows, eightBitState: eightBitState,
                     baseline: baseline, chunkBytes: chunkBytes, extra: extra, products: products, streamState: stream, recompute: recompute)
        }
        guard let budget else { return plan(false, false) }
        let plans = [plan(false, false), plan(false, true), plan(true, false), plan(true, true)]
        if let fits = plans.first(where: { $0.total <= budget }) { return fits }
        let smallest = plans.min { $0.total < $1.total }!
        throw Failure.budgetTooSmall(budget: budget, minimum: smallest.total, parts: smallest.parts)
    }
}

private func mib(_ bytes: Int) -> String {
    let m = Double(bytes) / Double(1 << 20)
    return m >= 100 ? "\(Int(m.rounded())) MiB" : "\(Double(Int(m * 10)) / 10) MiB"
}
