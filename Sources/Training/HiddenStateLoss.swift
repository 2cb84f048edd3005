import Basics
import CKernels
import CheckpointIO
import Models
import TensorMath
#if canImport(Glibc)
import Glibc
#endif

/// Minitron's intermediate-state loss: chosen student layers' outputs, through a learned
/// linear projection, matched to the outputs of teacher layers (cosine or mean squared
/// error), alongside the logit loss. Worth it when depth was cut, so a student layer
/// stands for several of the teacher's. The teacher's states come from a live teacher run
/// on the same sequences (a logit cache holds no hidden states).
package struct HiddenStateSettings: Sendable, Equatable {
    package enum Kind: String, Sendable, CaseIterable {
        /// 1 − cos(P·h_student, h_teacher) per position: blind to scale, which differs a lot
        /// between teacher and student hidden states.
        case cosine
        /// ‖P·h_student − h_teacher‖² / width per position.
        case mse
    }

    package struct Pair: Sendable, Equatable, CustomStringConvertible {
        package var student: Int
        package var teacher: Int
        package init(student: Int, teacher: Int) { self.student = student; self.teacher = teacher }
        package var description: String { "\(student):\(teacher)" }
    }

    package var kind: Kind = .cosine
    /// Weight of the hidden-state loss added to the logit loss.
    package var weight: Double = 1
    package var pairs: [Pair]

    package init(kind: Kind = .cosine, weight: Double = 1, pairs: [Pair]) {
        self.kind = kind; self.weight = weight; self.pairs = pairs
    }

    /// Up to `count` student layers evenly spaced and ending at the last, each paired with
    /// the teacher layer it came from (`keptLayers`, from the student's prune record) or,
    /// without one, the teacher layer at the same relative depth.
    package static func defaultPairs(studentLayers: Int, teacherLayers: Int, keptLayers: [Int]?, count: Int = 4) -> [Pair] {
        let k = max(1, min(count, studentLayers))
        var pairs: [Pair] = []
        for i in 0..<k {
            let s = (i + 1) * studentLayers / k - 1
            let t: Int
            if let kept = keptLayers, kept.count == studentLayers, kept.allSatisfy({ $0 < teacherLayers }) { t = kept[s] }
            else { t = (s + 1) * teacherLayers / studentLayers - 1 }
            if pairs.last?.student != s { pairs.append(Pair(student: s, teacher: t)) }
        }
        return pairs
    }

    /// "3:5,7:11" → pairs (student layer : teacher layer).
    package static func parsePairs(_ text: String) -> [Pair]? {
        var out: [Pair] = []
        for part in text.split(separator: ",") {
            let f = part.split(separator: ":")
            guard f.count == 2, let s = Int(f[0]), let t = Int(f[1]), s >= 0, t >= 0 else { return nil }
            out.append(Pair(student: s, teacher: t))
        }
        return out.isEmpty ? nil : out
    }

    var fingerprint: String { "hidden \(kind.rawValue) w\(weight) \(pairs.map(\.description).joined(separator: ","))" }
}

/// The learned projections of the hidden-state loss (one [teacher width × student width]
/// matrix per pair, trained with their own AdamW at the student's learning rate) and the
/// loss and gradient they give.
package final class HiddenStateAligner {
    package let settings: HiddenStateSettings
    package let studentWidth: Int
    package let teacherWidth: Int
    package let weights: StateArray
    package let grads: StateArray
    package let optimizer: AdamW
    private var projected: FloatBuffer
    private var dProjected: FloatBuffer

    /// Projections start as the identity on the channels the student kept: `channels[c]`
    /// is the teacher channel of student channel c (nil: the first channels).
    package init(settings: HiddenStateSettings, studentWidth: Int, teacherWidth: Int, channels: [Int]? = nil) throws {
        self.settings = settings
        self.studentWidth = studentWidth
        self.teacherWidth = teacherWidth
        let per = studentWidth * teacherWidth, n = per * settings.pairs.count
        weights = try StateArray(name: "projections.f32", byteCount: n * 4, residence: .memory)
        grads = try StateArray(name: "projections_grads.f32", byteCount: n * 4, residence: .memory)
        let map = channels.flatMap { $0.count == studentWidth && $0.allSatisfy({ $0 < teacherWidth }) ? $0 : nil }
        for k in 0..<settings.pairs.count {
            for c in 0..<min(studentWidth, teacherWidth) where map == nil { weights[k * per + c * studentWidth + c] = 1 }
            if let map { for c in 0..<studentWidth { weights[k * per + map[c] * studentWidth + c] = 1 } }
        }
        optimizer = try AdamW(parameters: n, segments: (0..<settings.pairs.count).map { AdamW.Segment(offset: $0 * per, count: per, decays: false) },
                              prefix: "projections_")
        projected = FloatBuffer(count: 0)
        dProjected = FloatBuffer(count: 0)
    }

    /// Loss of pair `k` on one sequence, summed over its `rows` positions: `hidden` is the
    /// student layer's output (rows × student width), `target` the teacher's (rows ×
    /// teacher width). Writes `scale` × the gradient with respect to `hidden` into `grad`
    /// and adds `scale` × the projection's gradient into `grads`.
    package func loss(pair k: Int, hidden: UnsafePointer<Float>, target: UnsafePointer<Float>, rows: Int, scale: Float,
                     grad: UnsafeMutablePointer<Float>) -> Double {
        let S = studentWidth, D = teacherWidth, per = S * D
        if projected.count < rows * D { projected = FloatBuffer(count: rows * D, zeroed: false); dProjected = FloatBuffer(count: rows * D, zeroed: false) }
        let p = weights.pointer + k * per
        ckpt_linear_forward(hidden, Int64(rows), Int64(S), p, Int64(D), projected.pointer)
        var total = 0.0
        for t in 0..<rows {
            let y = projected.pointer + t * D, g = target + t * D, dy = dProjected.pointer + t * D
            switch settings.kind {
            case .cosine:
                var yy = 0.0, gg = 0.0, yg = 0.0
                for i in 0..<D { yy += Double(y[i]) * Double(y[i]); gg += Double(g[i]) * Double(g[i]); yg += Double(y[i]) * Double(g[i]) }
                let ny = max(yy.squareRoot(), 1e-12), ng = max(gg.squareRoot(), 1e-12)
                let cosine = yg / (ny * ng)
                total += 1 - cosine
                // d(1 − cos)/dy = −(g / (|y||g|) − cos · y / |y|²)
                let a = Float(-1 / (ny * ng)) * scale, b = Float(cosine / yy) * scale
                for i in 0..<D { dy[i] = a * g[i] + b * y[i] }
            case .mse:
                var ss = 0.0
                let c = 2 * scale / Float(D)
                for i in 0..<D {
                    let e = y[i] - g[i]
                    ss += Double(e) * Double(e)
                    dy[i] = c * e
                }
                total += ss / Double(D)
            }
        }
        ckpt_linear_backward(dProjected.pointer, hidden, p, Int64(rows), Int64(S), Int64(D), grad, grads.pointer + k * per)
        return total
    }
}

/// A live teacher run for the hidden-state loss: the outputs of the paired teacher layers
/// for a batch of sequences, one layer of the teacher resident at a time.
package final class TeacherStates {
    package let stream: LayerStream
    package let layers: [Int]

    package init(model: DecoderModel, layers: [Int]) {
        stream = LayerStream(model: model, releaseLayers: true)
        stream.llamaCppRounding = false
        // Layers after the last one compared are never needed.
        stream.skipLayers = Set(((layers.max() ?? 0) + 1)..<max(model.spec.layers, (layers.max() ?? 0) + 1))
        self.layers = layers
    }

    /// For each sequence, each of `layers`' outputs (tokens × hidden).
    package func run(_ sequences: [[Int32]]) throws -> [[FloatBuffer]] {
        let width = stream.spec.hidden
        let out = sequences.map { seq in layers.map { _ in FloatBuffer(count: seq.count * width, zeroed: false) } }
        let wanted = Dictionary(uniqueKeysWithValues: layers.enumerated().map { ($1, $0) })
        var hooks = LayerHooks()
        hooks.layerOutput = { act in
            guard let k = wanted[act.layer] else { return }
            for (i, span) in act.sequences.enumerated() {
                memcpy(out[i][k].pointer, act.values.baseAddress! + span.start * width, span.count * width * 4)
            }
        }
        try stream.run(sequences, hooks: hooks)
        return out
    }
}
