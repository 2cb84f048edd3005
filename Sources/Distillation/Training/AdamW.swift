import CKernels
import TensorMath
#if canImport(Glibc)
import Glibc
#endif

/// Learning rate over a run: linear warm-up to `peak`, then cosine decay to `minimum`
/// at the last step (Minitron's schedule, with its steps scaled to the run).
public struct LearningRateSchedule: Sendable, Equatable {
    public var peak: Double
    public var minimum: Double
    public var warmup: Int
    public var steps: Int

    public init(peak: Double, minimum: Double, warmup: Int, steps: Int) {
        self.peak = peak; self.minimum = minimum; self.warmup = warmup; self.steps = steps
    }

    /// The rate for step `s`, counted from 1.
    public func rate(_ s: Int) -> Double {
        if warmup > 0 && s <= warmup { return peak * Double(s) / Double(warmup) }
        let span = max(steps - warmup, 1)
        let progress = min(max(Double(s - warmup) / Double(span), 0), 1)
        return minimum + 0.5 * (peak - minimum) * (1 + cos(Double.pi * progress))
    }
}

/// AdamW with decoupled weight decay (not applied to norms and biases) and clipping of
/// the global gradient norm. Its state is two f32 buffers the size of the weights, or with
/// `eightBit` a byte per moment plus one f32 scale per 256 (about 4× less memory), as
/// bitsandbytes' blockwise 8-bit optimizers keep it.
public final class AdamW {
    public var beta1: Float = 0.9
    public var beta2: Float = 0.95
    public var epsilon: Float = 1e-8
    public var weightDecay: Float = 0.1
    public var clip: Double = 1.0
    public private(set) var step = 0
    public let eightBit: Bool
    /// The state as named byte buffers, for checkpoints.
    public let state: [(name: String, bytes: UnsafeMutableRawBufferPointer)]
    private var blockOffsets: [Int] = []

    public init(parameters: Int, slots: [TrainableDecoder.Slot] = [], eightBit: Bool = false) {
        self.eightBit = eightBit
        if eightBit {
            var blocks = 0
            for s in slots { blockOffsets.append(blocks); blocks += (s.count + Int(CKPT_STATE_BLOCK) - 1) / Int(CKPT_STATE_BLOCK) }
            func bytes(_ n: Int, _ fill: UInt8) -> UnsafeMutableRawBufferPointer {
                let b = UnsafeMutableRawBufferPointer.allocate(byteCount: max(n, 1), alignment: 64)
                b.initializeMemory(as: UInt8.self, repeating: fill)
                return UnsafeMutableRawBufferPointer(rebasing: b[0..<n])
            }
            state = [("adam_m.q8", bytes(parameters, 127)), ("adam_m_scales.f32", bytes(blocks * 4, 0)),
                     ("adam_v.q8", bytes(parameters, 255)), ("adam_v_scales.f32", bytes(blocks * 4, 0))]
        } else {
            func zeros(_ n: Int) -> UnsafeMutableRawBufferPointer {
                let b = UnsafeMutableRawBufferPointer.allocate(byteCount: max(n * 4, 4), alignment: 64)
                b.initializeMemory(as: UInt8.self, repeating: 0)
                return UnsafeMutableRawBufferPointer(rebasing: b[0..<(n * 4)])
            }
            state = [("adam_m.f32", zeros(parameters)), ("adam_v.f32", zeros(parameters))]
        }
    }

    deinit { for s in state { UnsafeMutableRawBufferPointer(start: s.bytes.baseAddress, count: s.bytes.count).deallocate() } }

    /// Bytes of optimizer state.
    public var stateBytes: Int { state.reduce(0) { $0 + $1.bytes.count } }

    public struct Outcome: Sendable {
        public var gradientNorm: Double
        /// The gradients held NaN or Inf: no update was made.
        public var skipped: Bool
    }

    /// Restores the step count (from a checkpoint).
    public func setStep(_ s: Int) { step = s }

    /// Updates `model`'s weights from its gradients, at learning rate `lr`.
    public func update(_ model: TrainableDecoder, lr: Double) -> Outcome {
        let norm = ckpt_sum_squares(model.grads.pointer, Int64(model.grads.count)).squareRoot()
        guard norm.isFinite else { return Outcome(gradientNorm: norm, skipped: true) }
        step += 1
        let scale = clip > 0 && norm > clip ? Float(clip / norm) : 1
        for (k, slot) in model.slots.enumerated() {
            let decay = slot.shape.count >= 2 ? weightDecay : 0
            let w = model.weights.pointer + slot.offset, g = model.grads.pointer + slot.offset
            if eightBit {
                let mq = state[0].bytes.baseAddress!.assumingMemoryBound(to: UInt8.self) + slot.offset
                let ms = state[1].bytes.baseAddress!.assumingMemoryBound(to: Float.self) + blockOffsets[k]
                let vq = state[2].bytes.baseAddress!.assumingMemoryBound(to: UInt8.self) + slot.offset
                let vs = state[3].bytes.baseAddress!.assumingMemoryBound(to: Float.self) + blockOffsets[k]
                ckpt_adamw_update_8bit(w, g, mq, ms, vq, vs, Int64(slot.count), Float(lr), beta1, beta2, epsilon, decay, scale, Int64(step))
            } else {
                let m = state[0].bytes.baseAddress!.assumingMemoryBound(to: Float.self) + slot.offset
                let v = state[1].bytes.baseAddress!.assumingMemoryBound(to: Float.self) + slot.offset
                ckpt_adamw_update(w, g, m, v, Int64(slot.count), Float(lr), beta1, beta2, epsilon, decay, scale, Int64(step))
            }
        }
        return Outcome(gradientNorm: norm, skipped: false)
    }
}
