import Basics
import CKernels
import CheckpointIO
import LogitCache
@testable import Training
import Models
import TensorMath
import TestSupport
import XCTest

/// The intermediate-state loss: its gradients by finite differences (projection, student
/// hidden state, and through the whole student), the default layer pairs, and training
/// with it against a live teacher, resumed bit for bit.
final class HiddenStateTests: XCTestCase {
    func random(_ n: Int, seed: UInt64, scale: Float = 1) -> [Float] {
        var rng = SplitMix64(seed: seed)
        return (0..<n).map { _ in (Float(Int(rng.next() % 2001)) / 1000 - 1) * scale }
    }

    func testLossGradientsMatchFiniteDifferences() throws {
        let S = 6, D = 9, T = 5
        for kind in HiddenStateSettings.Kind.allCases {
            let settings = HiddenStateSettings(kind: kind, weight: 1, pairs: [.init(student: 0, teacher: 0), .init(student: 1, teacher: 2)])
            let a = try HiddenStateAligner(settings: settings, studentWidth: S, teacherWidth: D, channels: [0, 2, 3, 5, 7, 8])
            // Identity on the kept channels to start with.
            XCTAssertEqual(a.weights[2 * S + 1], 1)
            XCTAssertEqual(a.weights[1 * S + 1], 0)
            let noise = random(2 * S * D, seed: 3, scale: 0.3)
            for i in 0..<noise.count { a.weights[i] += noise[i] }
            var h = random(T * S, seed: 5, scale: 2)
            let target = random(T * D, seed: 7, scale: 3)
            func loss(_ h: [Float]) -> Double {
                var g = [Float](repeating: 0, count: T * S)
                return a.loss(pair: 1, hidden: h, target: target, rows: T, scale: 0, grad: &g)
            }
            a.grads.zero()
            var dh = [Float](repeating: 0, count: T * S)
            _ = a.loss(pair: 1, hidden: h, target: target, rows: T, scale: 1, grad: &dh)
            XCTAssertEqual((0..<(S * D)).map { a.grads[$0] }.filter { $0 != 0 }.count, 0, "pair 0's projection got gradient")
            for i in 0..<(T * S) {
                let keep = h[i]
                h[i] = keep + 1e-3; let up = loss(h)
                h[i] = keep - 1e-3; let down = loss(h)
                h[i] = keep
                let fd = (up - down) / 2e-3
                XCTAssertEqual(Double(dh[i]), fd, accuracy: 2e-3 + 1e-2 * abs(fd), "\(kind) dh[\(i)]")
            }
            for i in stride(from: S * D, to: 2 * S * D, by: 5) {
                let keep = a.weights[i]
                a.weights[i] = keep + 1e-3; let up = loss(h)
                a.weights[i] = keep - 1e-3; let down = loss(h)
                a.weights[i] = keep
                let fd = (up - down) / 2e-3
                XCTAssertEqual(Double(a.grads[i]), fd, accuracy: 2e-3 + 1e-2 * abs(fd), "\(kind) dP[\(i)]")
            }
        }
    }

    func testStudentGradientsThroughAHiddenHead() throws {
        let model = try DecoderModel(path: fixturesPath + "/engine/tiny-llama.gguf")
        let student = try TrainableDecoder(model: model)
        let C = student.spec.hidden
        let tokens: [Int32] = [1, 17, 200, 45, 9, 130, 77, 3]
        let a = try HiddenStateAligner(settings: HiddenStateSettings(pairs: [.init(student: 0, teacher: 0)]), studentWidth: C, teacherWidth: C)
        let target = random(tokens.count * C, seed: 11, scale: 2)
        let hiddenHead: TrainableDecoder.HiddenHead = { layer, h, g in
            XCTAssertEqual(layer, 0)
            return a.loss(pair: 0, hidden: h, target: target, rows: tokens.count, scale: 1, grad: g)
        }
        // Only the hidden loss: the LM head contributes nothing.
        let head: TrainableDecoder.LossHead = { _, _, _, _ in 0 }
        student.zeroGrads()
        _ = student.forwardBackward(tokens, hiddenLayers: [0], hidden: hiddenHead, loss: head)
        let analytic = Array(UnsafeBufferPointer(start: student.grads.pointer, count: student.grads.count))
        var rng = SplitMix64(seed: 2)
        var nonzero = 0
        for slot in student.slots {
            for _ in 0..<3 {
                let i = slot.offset + Int(rng.next() % UInt64(slot.count))
                let keep = student.weights[i]
                student.weights[i] = keep + 1e-2
                let up = student.forwardBackward(tokens, backward: false, hiddenLayers: [0], hidden: hiddenHead, loss: head)
                student.weights[i] = keep - 1e-2
                let down = student.forwardBackward(tokens, backward: false, hiddenLayers: [0], hidden: hiddenHead, loss: head)
                student.weights[i] = keep
                let fd = (up - down) / 2e-2
                XCTAssertEqual(Double(analytic[i]), fd, accuracy: 2e-3 + 2e-2 * abs(fd), "\(slot.name)")
                if case .layer(1, _) = slot.role { XCTAssertEqual(analytic[i], 0, "layer 1 is after the hidden loss") }
                if analytic[i] != 0 { nonzero += 1 }
            }
        }
        XCTAssertGreaterThan(nonzero, 10)
    }

    func testDefaultPairs() {
        // A student that kept teacher layers 0, 1, 4, 5, 8, 9 of 10.
        XCTAssertEqual(HiddenStateSettings.defaultPairs(studentLayers: 6, teacherLayers: 10, keptLayers: [0, 1, 4, 5, 8, 9], count: 3).map(\.description),
                       ["1:1", "3:5", "5:9"])
        // No prune record: the same relative depth.
        XCTAssertEqual(HiddenStateSettings.defaultPairs(studentLayers: 4, teacherLayers: 8, keptLayers: nil).map(\.description),
                       ["0:1", "1:3", "2:5", "3:7"])
        XCTAssertEqual(HiddenStateSettings.parsePairs("3:5,7:11")?.map(\.description), ["3:5", "7:11"])
        XCTAssertNil(HiddenStateSettings.parsePairs("3-5"))
    }
}

/// Training with the hidden-state loss against a live teacher, on DistillerTests' tiny setup.
extension DistillerTests {
    func testTrainingWithALiveTeacherResumesBitIdentically() throws {
        let t = self
        let dir = makeTemporaryDirectory()
        let cache = try t.makeCache(dir, encoding: .topK(k: 8))
        let teacher = try DecoderModel(path: DistillerTests.teacherPath)
        var settings = t.settings(steps: 8)
        settings.hidden = HiddenStateSettings(kind: .cosine, weight: 2, pairs: [.init(student: 0, teacher: 0), .init(student: 1, teacher: 1)])

        let (_, a) = try damagedStudent()
        let straight = try Distiller(student: a, cache: cache, settings: settings, teacher: teacher)
        var hidden: [Double] = []
        for _ in 0..<8 { hidden.append(try straight.step().hiddenLoss) }
        XCTAssertGreaterThan(hidden[0], 0)
        XCTAssertLessThan(hidden.suffix(2).reduce(0, +), hidden.prefix(2).reduce(0, +), "\(hidden)")

        let (_, b) = try t.damagedStudent()
        let first = try Distiller(student: b, cache: cache, settings: settings, teacher: teacher)
        for _ in 0..<3 { _ = try first.step() }
        try first.saveCheckpoint(in: dir + "/ck")
        let (_, c) = try t.damagedStudent()
        let resumed = try Distiller(student: c, cache: cache, settings: settings, teacher: teacher)
        XCTAssertEqual(try resumed.resume(from: dir + "/ck")?.step, 3)
        for _ in 0..<5 { _ = try resumed.step() }
        XCTAssertTrue(memcmp(a.weights.pointer, c.weights.pointer, a.weights.count * 4) == 0, "weights differ after resuming")
        XCTAssertTrue(memcmp(straight.aligner!.weights.raw, resumed.aligner!.weights.raw, straight.aligner!.weights.byteCount) == 0, "projections differ")

        // Another model as the teacher is refused.
        let other = try DecoderModel(path: fixturesPath + "/engine/tiny-qwen2.gguf")
        let (_, d) = try t.damagedStudent()
        XCTAssertThrowsError(try Distiller(student: d, cache: cache, settings: settings, teacher: other)) { e in
            XCTAssertTrue("\(e)".contains("not the teacher"), "\(e)")
        }
        settings.hidden?.pairs = [.init(student: 0, teacher: 7)]
        XCTAssertThrowsError(try Distiller(student: d, cache: cache, settings: settings, teacher: teacher)) { e in
            XCTAssertTrue("\(e)".contains("out of range"), "\(e)")
        }
    }
}
