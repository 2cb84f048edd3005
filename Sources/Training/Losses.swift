import Basics
import CKernels
import LogitCache
import TensorMath
#if canImport(Glibc)
import Glibc
#endif

/// The distillation losses between a student's distribution and a teacher's record.
package enum KDLoss: String, Sendable, CaseIterable {
    /// KL(teacher ‖ student), Minitron's choice.
    case forwardKL = "forward-kl"
    /// KL(student ‖ teacher).
    case reverseKL = "reverse-kl"
    /// Jensen–Shannon divergence with equal weights.
    case jsd
    /// Total variation distance.
    case tvd

    var kernelKind: Int32 {
        switch self {
        case .forwardKL: return Int32(CKPT_KD_FORWARD)
        case .reverseKL: return Int32(CKPT_KD_REVERSE)
        case .jsd: return Int32(CKPT_KD_JSD)
        case .tvd: return Int32(CKPT_KD_TVD)
        }
    }

    /// Whether the loss's gradient from a `sample` record is unbiased for the full
    /// distribution's (only forward KL, whose gradient is that of the cross-entropy).
    package var unbiasedFromSamples: Bool { self == .forwardKL }

    /// Why a loss cannot be used with an encoding, or nil when it can.
    package func refusal(for encoding: LogitEncoding) -> String? {
        if case .sample = encoding, self == .reverseKL {
            return "reverse KL needs the teacher's probability wherever the student puts mass, and a sample cache gives zero to every id it did not draw; build a topk cache for it"
        }
        return nil
    }
}

/// Teacher targets for a run of records: listed ids with their target probabilities, and
/// the tail (target mass on every id not listed, as one bucket).
package struct KDTargets: Sendable {
    package var ids: [Int32] = []
    package var probabilities: [Float] = []
    package var offsets: [Int64] = [0]
    package var tails: [Float] = []
    package init() {}
    package var rows: Int { tails.count }

    /// Records `rows` of these targets, as targets of their own (rows renumbered from 0).
    package func rows(_ rows: Range<Int>) -> KDTargets {
        var sub = KDTargets()
        let a = Int(offsets[rows.lowerBound]), b = Int(offsets[rows.upperBound])
        sub.ids = Array(ids[a..<b])
        sub.probabilities = Array(probabilities[a..<b])
        sub.tails = Array(tails[rows])
        sub.offsets = offsets[rows.lowerBound...rows.upperBound].map { $0 - Int64(a) }
        return sub
    }

    /// topk: exp(log-probabilities) and the tail mass, renormalised to 1 (quantization
    /// leaves them a little off); sample: counts / draws with no tail.
    package mutating func append(_ c: LogitChunk, record r: Int, encoding: LogitEncoding) {
        let e = c.entries(r)
        switch encoding {
        case .topK:
            var z = 0.0
            for i in e { z += exp(Double(c.logprobs[i])) }
            let tail = c.tailLogprobs[r] == -.infinity ? 0 : exp(Double(c.tailLogprobs[r]))
            z += tail
            for i in e {
                ids.append(c.ids[i])
                probabilities.append(Float(exp(Double(c.logprobs[i])) / z))
            }
            tails.append(Float(tail / z))
        case let .sample(draws, _):
            for i in e {
                ids.append(c.ids[i])
                probabilities.append(Float(c.counts[i]) / Float(draws))
            }
            tails.append(0)
        }
        offsets.append(Int64(ids.count))
    }
}

/// The cross-entropy labels of rows `rows` of a sequence: each position's next token,
/// −1 (no label) for the last position.
package func nextTokenLabels(_ sequence: [Int32], rows: Range<Int>) -> [Int32] {
    rows.map { $0 + 1 < sequence.count ? sequence[$0 + 1] : -1 }
}

/// Computes losses and adds their gradients with respect to the student's logits; holds
/// the per-thread scratch the kernels need.
package final class LossKernels {
    package let vocab: Int
    private var scratch: FloatBuffer
    private var mask: [UInt8]

    package init(vocab: Int) {
        self.vocab = vocab
        let t = max(ThreadPool.threads, 1)
        scratch = FloatBuffer(count: t * vocab, zeroed: false)
        mask = [UInt8](repeating: 0, count: t * vocab)
    }

    private func ensureScratch() {
        let t = max(ThreadPool.threads, 1)
        if scratch.count < t * vocab {
            scratch = FloatBuffer(count: t * vocab, zeroed: false)
            mask = [UInt8](repeating: 0, count: t * vocab)
        }
    }

    /// Adds `scale` × d(loss)/d(logits) into `grad` (rows × vocab) and returns each row's loss.
    package func distillation(_ loss: KDLoss, logits: UnsafePointer<Float>, targets t: KDTargets, temperature: Double,
                             scale: Float, grad: UnsafeMutablePointer<Float>) -> [Double] {
        ensureScratch()
        var losses = [Double](repeating: 0, count: t.rows)
        mask.withUnsafeMutableBufferPointer { m in
            ckpt_kd_loss_rows(logits, Int64(t.rows), Int64(vocab), Float(1 / temperature), loss.kernelKind, t.ids, t.probabilities,
                              t.offsets, t.tails, scale, grad, &losses, scratch.pointer, m.baseAddress)
        }
        return losses
    }

    /// Cross-entropy against `labels` (−1 for none), adding `scale` × its gradient into `grad`.
    package func crossEntropy(logits: UnsafePointer<Float>, labels: [Int32], scale: Float, grad: UnsafeMutablePointer<Float>) -> [Double] {
        ensureScratch()
        var losses = [Double](repeating: 0, count: labels.count)
        ckpt_ce_loss_rows(logits, Int64(labels.count), Int64(vocab), labels, scale, grad, &losses, scratch.pointer)
        return losses
    }
}
