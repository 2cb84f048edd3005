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
/// the global gradient norm. Its state is two f32 buffers the size of the weights.
public final class AdamW {
    public var beta1: Float = 0.9
    public var beta2: Float = 0.95
    public var epsilon: Float = 1e-8
    public var weightDecay: Float = 0.1
    public var clip: Double = 1.0
    public private(set) var step = 0
    public let m: FloatBuffer
    public let v: FloatBuffer

    public init(parameters: Int) {
        m = FloatBuffer(count: parameters)
        v = FloatBuffer(count: parameters)
    }

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
        for slot in model.slots {
            let decay = slot.shape.count >= 2 ? weightDecay : 0
            ckpt_adamw_update(model.weights.pointer + slot.offset, model.grads.pointer + slot.offset, m.pointer + slot.offset,
                              v.pointer + slot.offset, Int64(slot.count), Float(lr), beta1, beta2, epsilon, decay, scale, Int64(step))
        }
        return Outcome(gradientNorm: norm, skipped: false)
    }
}
