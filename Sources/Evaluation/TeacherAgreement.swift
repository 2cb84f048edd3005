import Basics
import CKernels
import Models
#if canImport(Glibc)
import Glibc
#endif

/// How closely a student (pruned, distilled or quantized) follows its teacher, token by
/// token, as llama.cpp's `llama-perplexity --kl-divergence` reports it: on the chunks
/// perplexity scores (non-overlapping chunks of `ctx`, BOS first when the model adds one,
/// positions ctx/2 … ctx−2), KL(teacher ‖ student) of the next-token distributions, how
/// often the two rank the same token first, the RMS of the change in the probability of
/// the right token, and both perplexities. Each chunk runs through the teacher, then the
/// student, each streamed layer by layer as its `LayerStream` is set; only one chunk's
/// teacher distributions (scored positions × vocab floats) are held.
package enum TeacherAgreement {
    package struct Result: Sendable {
        package var chunks: Int
        package var tokens: Int
        package var meanKL: Double, medianKL: Double, p99KL: Double, maxKL: Double
        /// Share of positions where both put the same token first.
        package var sameTop: Double
        /// √mean((p_student − p_teacher)²) of the probability of the token that came next.
        package var rmsDeltaP: Double
        package var teacherPPL: Double, studentPPL: Double
        package var pplRatio: Double { studentPPL / teacherPPL }
        package var seconds: Double
    }

    package enum Failure: UserFacingError, Sendable, Equatable {
        case vocabularies(teacher: Int, student: Int)

        package var description: String {
            switch self {
            case let .vocabularies(t, s): return "the teacher has \(t) tokens and the student \(s): their distributions cannot be compared"
            }
        }
        package var exitCode: ExitCode { .usage }
    }

    package static func evaluate(teacher: LayerStream, student: LayerStream, tokens: [Int32], ctx: Int, maxChunks: Int? = nil,
                                 bos: Int32?, progress: (Int, Int) -> Void = { _, _ in }) throws -> Result {
        let vocab = teacher.spec.vocab
        guard student.spec.vocab == vocab else { throw Failure.vocabularies(teacher: vocab, student: student.spec.vocab) }
        guard ctx >= 4 else { throw Perplexity.Failure.badContext(ctx: ctx) }
        for s in [teacher, student] where ctx > s.spec.contextLength {
            throw ModelError.contextTooLong(tokens: ctx, context: s.spec.contextLength)
        }
        var nChunks = tokens.count / ctx
        if let m = maxChunks { nChunks = min(nChunks, m) }
        guard nChunks > 0 else { throw Perplexity.Failure.tooFewTokens(have: tokens.count, ctx: ctx) }
        let first = ctx / 2, rows = ctx - 1 - first
        let t0 = monotonicSeconds()
        // One chunk's teacher log-probabilities, rows × vocab.
        var teacherLog = [Float](repeating: 0, count: rows * vocab)
        var kls: [Double] = [], same = 0, sumDP2 = 0.0, nllT = 0.0, nllS = 0.0
        kls.reserveCapacity(nChunks * rows)
        for c in 0..<nChunks {
            var chunk = Array(tokens[(c * ctx)..<((c + 1) * ctx)])
            if let bos { chunk[0] = bos }
            var teacherTop = [Int](repeating: 0, count: rows)
            try teacher.run([chunk], outputs: { _ in first..<(ctx - 1) }) { _, p0, logits in
                for r in 0..<(logits.count / vocab) {
                    let row = logits.baseAddress! + r * vocab, k = p0 - first + r
                    let lse = Float(ckpt_logsumexp(row, Int64(vocab)))
                    teacherLog.withUnsafeMutableBufferPointer { out in
                        for v in 0..<vocab { out[k * vocab + v] = row[v] - lse }
                    }
                    teacherTop[k] = argmax(row, vocab)
                    nllT -= Double(row[Int(chunk[p0 + r + 1])] - lse)
                }
            }
            try student.run([chunk], outputs: { _ in first..<(ctx - 1) }) { _, p0, logits in
                for r in 0..<(logits.count / vocab) {
                    let row = logits.baseAddress! + r * vocab, k = p0 - first + r
                    let lse = ckpt_logsumexp(row, Int64(vocab))
                    var kl = 0.0
                    teacherLog.withUnsafeBufferPointer { t in
                        let base = k * vocab
                        for v in 0..<vocab {
                            let lt = Double(t[base + v])
                            kl += exp(lt) * (lt - (Double(row[v]) - lse))
                        }
                    }
                    kls.append(max(kl, 0))
                    if argmax(row, vocab) == teacherTop[k] { same += 1 }
                    let next = Int(chunk[p0 + r + 1])
                    let ls = Double(row[next]) - lse
                    let dp = exp(ls) - exp(Double(teacherLog[k * vocab + next]))
                    sumDP2 += dp * dp
                    nllS -= ls
                }
            }
            progress(c + 1, nChunks)
        }
        let n = Double(kls.count)
        let sorted = kls.sorted()
        func quantile(_ q: Double) -> Double {
            // Linear between closest ranks (numpy's default, which llama.cpp's percentiles match closely).
            let x = q * (n - 1), lo = Int(x.rounded(.down)), hi = min(lo + 1, sorted.count - 1)
            return sorted[lo] + (sorted[hi] - sorted[lo]) * (x - Double(lo))
        }
        return Result(chunks: nChunks, tokens: kls.count, meanKL: kls.reduce(0, +) / n, medianKL: quantile(0.5), p99KL: quantile(0.99),
                      maxKL: sorted.last ?? 0, sameTop: Double(same) / n, rmsDeltaP: (sumDP2 / n).squareRoot(),
                      teacherPPL: exp(nllT / n), studentPPL: exp(nllS / n), seconds: monotonicSeconds() - t0)
    }

    static func argmax(_ row: UnsafePointer<Float>, _ n: Int) -> Int {
        var best = 0
        for i in 1..<n where row[i] > row[best] { best = i }
        return best
    }
}
