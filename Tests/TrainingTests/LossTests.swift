import Basics
import CKernels
import LogitCache
@testable import Training
import TensorMath
import XCTest

/// Every distillation loss's gradient against central finite differences of its value,
/// on records shaped as the cache gives them (top-k with a tail bucket, draws without).
final class LossTests: XCTestCase {
    let V = 40

    func makeTargets() -> KDTargets {
        var rng = SplitMix64(seed: 17)
        var t = KDTargets()
        // Row 0: top-8 of a peaked teacher plus its tail. Row 1: 6 ids from 32 draws.
        // Row 2: top-5 holding all the mass (no tail).
        var teacher = (0..<V).map { _ in Double(rng.next() % 1000) / 150 }
        let z = teacher.map { exp($0) }.reduce(0, +)
        teacher = teacher.map { exp($0) / z }
        let ranked = (0..<V).sorted { teacher[$0] > teacher[$1] }
        var kept = 0.0
        for id in ranked.prefix(8).sorted() { t.ids.append(Int32(id)); t.probabilities.append(Float(teacher[id])); kept += teacher[id] }
        t.tails.append(Float(1 - kept)); t.offsets.append(Int64(t.ids.count))
        for (id, count) in [(3, 10), (7, 9), (11, 6), (20, 4), (31, 2), (39, 1)] {
            t.ids.append(Int32(id)); t.probabilities.append(Float(count) / 32)
        }
        t.tails.append(0); t.offsets.append(Int64(t.ids.count))
        for (id, p) in [(0, 0.4), (5, 0.3), (9, 0.15), (13, 0.1), (25, 0.05)] { t.ids.append(Int32(id)); t.probabilities.append(Float(p)) }
        t.tails.append(0); t.offsets.append(Int64(t.ids.count))
        return t
    }

    func testGradientsMatchFiniteDifferences() {
        var rng = SplitMix64(seed: 5)
        let t = makeTargets()
        let rows = t.rows
        var z = (0..<(rows * V)).map { _ in Float(Int(rng.next() % 600) - 300) / 100 }
        let k = LossKernels(vocab: V)
        let temperature = 1.7
        for loss in KDLoss.allCases {
            // Reverse KL is undefined where the target is zero: only the row with a tail.
            let use = loss == .reverseKL ? [0] : Array(0..<rows)
            func total(_ zz: [Float]) -> Double {
                var g = [Float](repeating: 0, count: rows * V)
                let l = k.distillation(loss, logits: zz, targets: t, temperature: temperature, scale: 1, grad: &g)
                return use.reduce(0) { $0 + l[$1] }
            }
            var grad = [Float](repeating: 0, count: rows * V)
            let values = k.distillation(loss, logits: z, targets: t, temperature: temperature, scale: 1, grad: &grad)
            for r in use { XCTAssertTrue(values[r].isFinite && values[r] >= -1e-6, "\(loss) row \(r): \(values[r])") }
            let h: Float = loss == .tvd ? 1e-3 : 1e-2
            var worst = 0.0
            for r in use {
                for v in 0..<V {
                    let i = r * V + v
                    let keep = z[i]
                    z[i] = keep + h
                    let up = total(z)
                    z[i] = keep - h
                    let down = total(z)
                    z[i] = keep
                    let fd = (up - down) / Double(2 * h)
                    let err = abs(fd - Double(grad[i]))
                    worst = max(worst, err)
                    XCTAssertLessThan(err, 2e-3 + 1e-2 * abs(fd), "\(loss) row \(r) logit \(v): finite difference \(fd), gradient \(grad[i])")
                }
            }
        }
        // Forward KL from draws: exactly (softmax(z/T) − counts/draws) / T.
        var g = [Float](repeating: 0, count: rows * V)
        _ = k.distillation(.forwardKL, logits: z, targets: t, temperature: temperature, scale: 1, grad: &g)
        let row = (0..<V).map { Double(z[V + $0]) / temperature }
        let m = row.max()!
        let s = row.map { exp($0 - m) }
        let zsum = s.reduce(0, +)
        var target = [Double](repeating: 0, count: V)
        for i in Int(t.offsets[1])..<Int(t.offsets[2]) { target[Int(t.ids[i])] = Double(t.probabilities[i]) }
        for v in 0..<V { XCTAssertEqual(Double(g[V + v]), (s[v] / zsum - target[v]) / temperature, accuracy: 1e-6) }
    }

    func testCrossEntropyGradientAndValue() {
        var rng = SplitMix64(seed: 9)
        let rows = 3
        var z = (0..<(rows * V)).map { _ in Float(Int(rng.next() % 600) - 300) / 100 }
        let labels: [Int32] = [4, -1, 39]
        let k = LossKernels(vocab: V)
        var grad = [Float](repeating: 0, count: rows * V)
        let l = k.crossEntropy(logits: z, labels: labels, scale: 1, grad: &grad)
        XCTAssertEqual(l[1], 0)
        XCTAssertEqual(grad[V..<(2 * V)].map { abs($0) }.max(), 0)
        let row = (0..<V).map { Double(z[$0]) }
        let lse = log(row.map { exp($0) }.reduce(0, +))
        XCTAssertEqual(l[0], lse - row[4], accuracy: 1e-5)
        for i in [0, 4, 17, 2 * V + 39, 2 * V + 1] {
            let keep = z[i]
            var dummy = [Float](repeating: 0, count: rows * V)
            z[i] = keep + 1e-2
            let up = k.crossEntropy(logits: z, labels: labels, scale: 1, grad: &dummy).reduce(0, +)
            z[i] = keep - 1e-2
            let down = k.crossEntropy(logits: z, labels: labels, scale: 1, grad: &dummy).reduce(0, +)
            z[i] = keep
            XCTAssertEqual((up - down) / 2e-2, Double(grad[i]), accuracy: 1e-3)
        }
    }

    func testReverseKLIsRefusedWithDraws() {
        XCTAssertNotNil(KDLoss.reverseKL.refusal(for: .sample(draws: 64, seed: 0)))
        XCTAssertNil(KDLoss.reverseKL.refusal(for: .topK(k: 32)))
        XCTAssertNil(KDLoss.jsd.refusal(for: .sample(draws: 64, seed: 0)))
        XCTAssertFalse(KDLoss.jsd.unbiasedFromSamples)
        XCTAssertTrue(KDLoss.forwardKL.unbiasedFromSamples)
    }
}
