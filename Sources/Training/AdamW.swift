import Basics
import CKernels
import TensorMath
#if canImport(Glibc)
import Glibc
#endif

/// Learning rate over a run: linear warm-up to `peak`, then cosine decay to `minimum`
/// at the last step (Minitron's schedule, with its steps scaled to the run).
package struct LearningRateSchedule: Sendable, Equatable {
    package var peak: Double
    package var minimum: Double
    package var warmup: Int
    package var steps: Int

    package init(peak: Double, minimum: Double, warmup: Int, steps: Int) {
        self.peak = peak; self.minimum = minimum; self.warmup = warmup; self.steps = steps
    }

    /// The rate for step `s`, counted from 1.
    package func rate(_ s: Int) -> Double {
        if warmup > 0 && s <= warmup { return peak * Double(s) / Double(warmup) }
        let span = max(steps - warmup, 1)
        let progress = min(max(Double(s - warmup) / Double(span), 0), 1)
        return minimum + 0.5 * (peak - minimum) * (1 + cos(Double.pi * progress))
    }
}

/// AdamW with decoupled weight decay (not applied to norms and biases) and clipping of
/// the global gradient norm. Its state is two f32 buffers the size of the weights, or with
/// `eightBit` a byte per moment plus one f32 scale per 256 (about 4× less memory), as
/// bitsandbytes' blockwise 8-bit optimizers keep it; in memory or streamed from files.
package final class AdamW {
    package var beta1: Float = 0.9
    package var beta2: Float = 0.95
    package var epsilon: Float = 1e-8
    package var weightDecay: Float = 0.1
    package var clip: Double = 1.0
    package private(set) var step = 0
    package let eightBit: Bool
    /// The state as named arrays, for checkpoints.
    package let state: [StateArray]
    /// The tensors updated: where each lies in the flat arrays, and whether it decays.
    package struct Segment: Sendable {
        package var offset: Int
        package var count: Int
        package var decays: Bool
        package init(offset: Int, count: Int, decays: Bool) { self.offset = offset; self.count = count; self.decays = decays }
    }
    package let segments: [Segment]
    private var blockOffsets: [Int] = []
    /// Elements updated at a time: a streamed state holds one such slice of each array.
    /// The same in memory, so both give the same sums.
    static let slice = 1 << 20

    /// State for a student's tensors: matrices decay, norms and biases do not.
    package convenience init(parameters: Int, slots: [TrainableDecoder.Slot] = [], eightBit: Bool = false, residence: StateResidence = .memory) throws {
        let segments = slots.isEmpty ? [Segment(offset: 0, count: parameters, decays: true)]
            : slots.map { Segment(offset: $0.offset, count: $0.count, decays: $0.shape.count >= 2) }
        try self.init(parameters: parameters, segments: segments, eightBit: eightBit, residence: residence)
    }

    /// State for `parameters` values in `segments`; its arrays' names start with `prefix`.
    package init(parameters: Int, segments: [Segment], eightBit: Bool = false, residence: StateResidence = .memory, prefix: String = "") throws {
        self.eightBit = eightBit
        self.segments = segments
        if eightBit {
            var blocks = 0
            for s in segments { blockOffsets.append(blocks); blocks += (s.count + Int(CKPT_STATE_BLOCK) - 1) / Int(CKPT_STATE_BLOCK) }
            state = [try StateArray(name: prefix + "adam_m.q8", byteCount: parameters, residence: residence, fill: 127),
                     try StateArray(name: prefix + "adam_m_scales.f32", byteCount: blocks * 4, residence: residence),
                     try StateArray(name: prefix + "adam_v.q8", byteCount: parameters, residence: residence, fill: 255),
                     try StateArray(name: prefix + "adam_v_scales.f32", byteCount: blocks * 4, residence: residence)]
        } else {
            state = [try StateArray(name: prefix + "adam_m.f32", byteCount: parameters * 4, residence: residence),
                     try StateArray(name: prefix + "adam_v.f32", byteCount: parameters * 4, residence: residence)]
        }
    }

    /// Bytes of optimizer state.
    package var stateBytes: Int { state.reduce(0) { $0 + $1.byteCount } }

    /// Bytes of state per parameter (for memory plans).
    package static func stateBytesPerParameter(eightBit: Bool) -> Double { eightBit ? 2 + 8 / Double(CKPT_STATE_BLOCK) : 8 }

    package struct Outcome: Sendable {
        package var gradientNorm: Double
        /// The gradients held NaN or Inf: no update was made.
        package var skipped: Bool
    }

    /// Restores the step count (from a checkpoint).
    package func setStep(_ s: Int) { step = s }

    /// Updates `model`'s weights from its gradients, at learning rate `lr`.
    package func update(_ model: TrainableDecoder, lr: Double) -> Outcome {
        defer { model.weightsChanged() }
        return update(weights: model.weights, grads: model.grads, lr: lr)
    }

    /// Updates `weights` from `grads`, at learning rate `lr`, a slice of each segment at a time.
    package func update(weights: StateArray, grads: StateArray, lr: Double) -> Outcome {
        var sumSquares = 0.0
        for at in stride(from: 0, to: grads.count, by: Self.slice) {
            let n = min(Self.slice, grads.count - at)
            sumSquares += ckpt_sum_squares(grads.pointer + at, Int64(n))
            grads.release(floats: at..<(at + n))
        }
        let norm = sumSquares.squareRoot()
        guard norm.isFinite else { return Outcome(gradientNorm: norm, skipped: true) }
        step += 1
        let scale = clip > 0 && norm > clip ? Float(clip / norm) : 1
        let block = Int(CKPT_STATE_BLOCK)
        for (k, slot) in segments.enumerated() {
            let decay = slot.decays ? weightDecay : 0
            for first in stride(from: 0, to: slot.count, by: Self.slice) {
                let n = min(Self.slice, slot.count - first), at = slot.offset + first
                let w = weights.pointer + at, g = grads.pointer + at
                if eightBit {
                    let b0 = blockOffsets[k] + first / block, nb = (n + block - 1) / block
                    let mq = state[0].raw.assumingMemoryBound(to: UInt8.self) + at
                    let ms = state[1].pointer + b0
                    let vq = state[2].raw.assumingMemoryBound(to: UInt8.self) + at
                    let vs = state[3].pointer + b0
                    ckpt_adamw_update_8bit(w, g, mq, ms, vq, vs, Int64(n), Float(lr), beta1, beta2, epsilon, decay, scale, Int64(step))
                    state[0].release(bytes: at..<(at + n)); state[2].release(bytes: at..<(at + n))
                    state[1].release(floats: b0..<(b0 + nb)); state[3].release(floats: b0..<(b0 + nb))
                } else {
                    ckpt_adamw_update(w, g, state[0].pointer + at, state[1].pointer + at, Int64(n), Float(lr), beta1, beta2, epsilon, decay, scale, Int64(step))
                    state[0].release(floats: at..<(at + n)); state[1].release(floats: at..<(at + n))
                }
                weights.release(floats: at..<(at + n))
                grads.release(floats: at..<(at + n))
            }
        }
        return Outcome(gradientNorm: norm, skipped: false)
    }
}
