import Basics
import CKernels
import CheckpointIO
import Models
import TensorMath
#if canImport(Glibc)
import Glibc
#endif

/// How faithful a cache is to its teacher: random positions recomputed with the teacher
/// (and optionally a student) and compared with the full distribution.
package enum CacheFidelity {
    package struct Report: Sendable {
        package var positions = 0
        /// topk: mean KL(teacher ‖ reconstruction with the tail spread uniformly over the
        /// ids not kept). Not defined for sample (unsampled ids get no mass).
        package var klMean: Double?
        /// Mean teacher probability mass on the ids the record lists.
        package var coveredMass = 0.0
        /// Fraction of positions whose most probable teacher id holds the record's top value
        /// (top log-probability, or most draws; quantization can tie several ids there).
        package var top1Agreement = 0.0
        /// topk: mean |stored − exact| log-probability over the kept ids.
        package var logprobErrorMean: Double?
        /// sample: mean total-variation distance between counts/draws and the teacher.
        package var totalVariationMean: Double?
        /// With a student: the cross-entropy loss (same gradient as forward KL) estimated
        /// from the record minus its exact value over the full distribution, in nats.
        package var lossBias: Double?
        package var lossSpread: Double?
        /// With a student: ‖ĝ − g‖ / ‖g‖ and cos(ĝ, g) for the gradient with respect to the
        /// student's logits, averaged over positions; and the mean of ⟨ĝ − g, g⟩ / ‖g‖²
        /// (systematic over- or under-shoot along the true gradient).
        package var gradientRelativeError: Double?
        package var gradientCosine: Double?
        package var gradientProjectionBias: Double?

        package func write(_ w: inout JSONWriter, key: String) {
            w.beginObject(key: key)
            w.int(positions, key: "positions")
            if let klMean { w.double(klMean, key: "kl_mean") }
            w.double(coveredMass, key: "covered_mass")
            w.double(top1Agreement, key: "top1_agreement")
            if let logprobErrorMean { w.double(logprobErrorMean, key: "logprob_abs_error_mean") }
            if let totalVariationMean { w.double(totalVariationMean, key: "total_variation_mean") }
            if let lossBias { w.double(lossBias, key: "loss_bias") }
            if let lossSpread { w.double(lossSpread, key: "loss_spread") }
            if let gradientRelativeError { w.double(gradientRelativeError, key: "grad_relative_error") }
            if let gradientCosine { w.double(gradientCosine, key: "grad_cosine") }
            if let gradientProjectionBias { w.double(gradientProjectionBias, key: "grad_projection_bias") }
            w.endObject()
        }

        package var text: String {
            func f(_ x: Double) -> String {
                let s = "\(Double(Int((x * 1e5).rounded())) / 1e5)"
                return s
            }
            var s = "teacher check over \(positions) random positions:\n"
            s += "  mass on listed ids   \(f(coveredMass))\n  top-1 agreement      \(f(top1Agreement))\n"
            if let klMean { s += "  KL(teacher ‖ cache)  \(f(klMean)) nats (tail spread uniformly)\n" }
            if let logprobErrorMean { s += "  |log-prob error|     \(f(logprobErrorMean)) nats (mean over kept ids)\n" }
            if let totalVariationMean { s += "  TV(teacher, counts)  \(f(totalVariationMean))\n" }
            if let lossBias, let lossSpread { s += "  student loss error   bias \(f(lossBias)), spread \(f(lossSpread)) nats\n" }
            if let gradientRelativeError, let gradientCosine, let gradientProjectionBias {
                s += "  student gradient     relative error \(f(gradientRelativeError)), cosine \(f(gradientCosine)), projection bias \(f(gradientProjectionBias))\n"
            }
            return s
        }
    }

    package static func measure(reader: LogitCacheReader, teacher: LayerStream, student: LayerStream?, positions: Int, seed: UInt64) throws -> Report {
        let h = reader.header
        let V = h.vocab
        guard teacher.model.identity == h.teacherIdentity else {
            throw LogitCacheError.mismatch(path: reader.path, other: teacher.model.path, reason: "the cache was built by teacher \(h.teacherIdentity), this model is \(teacher.model.identity)")
        }
        if let student, student.spec.vocab != V {
            throw LogitCacheError.mismatch(path: reader.path, other: student.model.path, reason: "the student's vocabulary has \(student.spec.vocab) tokens, the cache's \(V)")
        }
        // Whole random sequences (a position's logits need its whole prefix run anyway),
        // the last one cut to a random subset so that exactly `positions` are checked.
        var rng = SplitMix64(seed: seed)
        var order = Array(h.sequences)
        rng.shuffle(&order)
        var report = Report()
        var kl = 0.0, covered = 0.0, top1 = 0.0, lpErr = 0.0, lpCount = 0, tv = 0.0
        var lossErrors: [Double] = [], gradRel = 0.0, gradCos = 0.0, gradProj = 0.0
        let invT = 1 / h.temperature
        for s in order where report.positions < positions {
            guard let ci = reader.chunkIndex(forSequence: s) else { continue }
            let chunk = try reader.chunk(ci)
            let si = s - chunk.firstSequence
            let start = chunk.sequenceStarts[si], n = chunk.sequenceLengths[si]
            let tokens = Array(chunk.tokens[start..<(start + n)])
            var all = Array(0..<n)
            rng.shuffle(&all)
            let picks = Array(all.prefix(positions - report.positions)).sorted()
            let last = picks.max()! + 1
            let prefix = Array(tokens[0..<last])
            func logitsAt(_ stream: LayerStream) throws -> [Int: [Float]] {
                var out: [Int: [Float]] = [:]
                let want = Set(picks)
                try stream.run([prefix], outputs: { _ in 0..<last }) { _, p0, rows in
                    for r in 0..<(rows.count / V) where want.contains(p0 + r) {
                        out[p0 + r] = Array(rows[(r * V)..<((r + 1) * V)])
                    }
                }
                return out
            }
            let tl = try logitsAt(teacher)
            let sl = try student.map { try logitsAt($0) }
            for p in picks {
                let pLog = logSoftmax(tl[p]!, invT)
                let rec = start + p
                let e = chunk.entries(rec)
                let ids = e.map { Int(chunk.ids[$0]) }
                var mass = 0.0
                for id in ids { mass += exp(pLog[id]) }
                covered += mass
                let argmax = pLog.indices.max { pLog[$0] < pLog[$1] }!
                // The record's estimate of the teacher distribution over its ids plus a tail.
                var q = [Double](repeating: 0, count: ids.count)
                var tail = 0.0
                switch h.encoding {
                case .topK:
                    var z = 0.0
                    for (j, i) in e.enumerated() { q[j] = exp(Double(chunk.logprobs[i])); z += q[j] }
                    tail = exp(Double(chunk.tailLogprobs[rec]))
                    z += tail
                    for j in q.indices { q[j] /= z }
                    tail /= z
                    // Quantization can tie the top ids: the teacher's argmax agrees when it holds the top value.
                    let top = e.map { chunk.logprobs[$0] }.max()!
                    if e.contains(where: { Int(chunk.ids[$0]) == argmax && chunk.logprobs[$0] == top }) { top1 += 1 }
                    for i in e { lpErr += abs(Double(chunk.logprobs[i]) - pLog[Int(chunk.ids[i])]); lpCount += 1 }
                    // KL(p ‖ q): kept ids use q, every other id tail / (V − k).
                    let rest = V - ids.count
                    let tailEach = rest > 0 ? tail / Double(rest) : 0
                    var inSet = [Bool](repeating: false, count: V)
                    for id in ids { inSet[id] = true }
                    var d = 0.0
                    for (j, id) in ids.enumerated() { let pv = exp(pLog[id]); if pv > 0 { d += pv * (pLog[id] - log(max(q[j], 1e-300))) } }
                    for v in 0..<V where !inSet[v] { let pv = exp(pLog[v]); if pv > 0 { d += pv * (pLog[v] - log(max(tailEach, 1e-300))) } }
                    kl += d
                case let .sample(draws, _):
                    for (j, i) in e.enumerated() { q[j] = Double(chunk.counts[i]) / Double(draws) }
                    let top = e.map { chunk.counts[$0] }.max()!
                    if e.contains(where: { Int(chunk.ids[$0]) == argmax && chunk.counts[$0] == top }) { top1 += 1 }
                    var d = 1.0 - mass
                    for (j, id) in ids.enumerated() { d += abs(q[j] - exp(pLog[id])) }
                    tv += d / 2
                }
                guard let sl else { continue }
                let sLog = logSoftmax(sl[p]!, invT)
                // Exact cross-entropy and gradient g = s − p.
                var loss = 0.0, g = [Double](repeating: 0, count: V)
                for v in 0..<V { let pv = exp(pLog[v]); loss -= pv * sLog[v]; g[v] = exp(sLog[v]) - pv }
                // From the record: ĝ = s − target; topk's tail bucket shares its target
                // mass over the other ids in proportion to the student's own probabilities.
                var est = 0.0, gh = (0..<V).map { exp(sLog[$0]) }
                var keptS = 0.0
                for (j, id) in ids.enumerated() { est -= q[j] * sLog[id]; gh[id] -= q[j]; keptS += exp(sLog[id]) }
                if case .topK = h.encoding, tail > 0 {
                    let sTail = max(1 - keptS, 1e-300)
                    est -= tail * log(sTail)
                    var inSet = [Bool](repeating: false, count: V)
                    for id in ids { inSet[id] = true }
                    for v in 0..<V where !inSet[v] { gh[v] -= tail * exp(sLog[v]) / sTail }
                }
                lossErrors.append(est - loss)
                var diff2 = 0.0, gg = 0.0, hh = 0.0, gh2 = 0.0, proj = 0.0
                for v in 0..<V {
                    let d = gh[v] - g[v]
                    diff2 += d * d; gg += g[v] * g[v]; hh += gh[v] * gh[v]; gh2 += gh[v] * g[v]; proj += d * g[v]
                }
                if gg > 0 {
                    gradRel += (diff2 / gg).squareRoot()
                    gradCos += gh2 / max((gg * hh).squareRoot(), 1e-300)
                    gradProj += proj / gg
                }
            }
            report.positions += picks.count
        }
        let n = Double(max(report.positions, 1))
        report.coveredMass = covered / n
        report.top1Agreement = top1 / n
        if case .topK = h.encoding {
            report.klMean = kl / n
            report.logprobErrorMean = lpErr / Double(max(lpCount, 1))
        } else {
            report.totalVariationMean = tv / n
        }
        if !lossErrors.isEmpty {
            let m = lossErrors.reduce(0, +) / Double(lossErrors.count)
            report.lossBias = m
            report.lossSpread = (lossErrors.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(max(lossErrors.count - 1, 1))).squareRoot()
            report.gradientRelativeError = gradRel / n
            report.gradientCosine = gradCos / n
            report.gradientProjectionBias = gradProj / n
        }
        return report
    }

    /// log softmax(x · invT) in double.
    static func logSoftmax(_ x: [Float], _ invT: Double) -> [Double] {
        var m = -Double.infinity
        for v in x { m = max(m, Double(v) * invT) }
        var z = 0.0
        for v in x { z += exp(Double(v) * invT - m) }
        let lse = m + log(z)
        return x.map { Double($0) * invT - lse }
    }
}
