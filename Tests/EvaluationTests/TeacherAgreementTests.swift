import Basics
import CKernels
@testable import Evaluation
import Models
import TensorMath
import TestSupport
import XCTest

/// Agreement with a teacher: zero against itself, and against a student (the teacher
/// with a layer left out) the figures an independent float64 pass over both models'
/// logits computes.
final class TeacherAgreementTests: XCTestCase {
    let path = fixturesPath + "/engine/tiny-llama.gguf"

    func tokens(_ n: Int, vocab: Int) -> [Int32] {
        var rng = SplitMix64(seed: 11)
        return (0..<n).map { _ in Int32(rng.below(vocab)) }
    }

    func testAgainstItselfEverythingAgrees() throws {
        let model = try DecoderModel(path: path)
        let t = tokens(3 * 32, vocab: model.spec.vocab)
        let r = try TeacherAgreement.evaluate(teacher: LayerStream(model: model), student: LayerStream(model: model), tokens: t, ctx: 32, bos: nil)
        XCTAssertEqual(r.chunks, 3)
        XCTAssertEqual(r.tokens, 3 * (32 - 1 - 16))
        XCTAssertEqual(r.meanKL, 0, accuracy: 1e-6)
        XCTAssertEqual(r.maxKL, 0, accuracy: 1e-5)
        XCTAssertEqual(r.sameTop, 1)
        XCTAssertEqual(r.rmsDeltaP, 0, accuracy: 1e-6)
        XCTAssertEqual(r.pplRatio, 1, accuracy: 1e-6)
        let ppl = try Perplexity.evaluate(stream: LayerStream(model: model), tokens: t, ctx: 32, bos: nil)
        XCTAssertEqual(r.teacherPPL, ppl.ppl, accuracy: 1e-4 * ppl.ppl, "the same chunks and positions as perplexity")
    }

    func testFiguresMatchAnIndependentComputation() throws {
        let model = try DecoderModel(path: path)
        let teacher = LayerStream(model: model), student = LayerStream(model: model)
        student.skipLayers = [1]
        let ctx = 24, t = tokens(2 * ctx, vocab: model.spec.vocab)
        let r = try TeacherAgreement.evaluate(teacher: teacher, student: student, tokens: t, ctx: ctx, bos: 1)
        let V = model.spec.vocab
        func logProbs(_ s: LayerStream, _ chunk: [Int32]) throws -> [[Double]] {
            var out: [[Double]] = []
            try s.run([chunk], outputs: { _ in (ctx / 2)..<(ctx - 1) }) { _, _, l in
                for k in 0..<(l.count / V) {
                    let row = (0..<V).map { Double(l[k * V + $0]) }
                    let m = row.max()!, lse = m + log(row.map { exp($0 - m) }.reduce(0, +))
                    out.append(row.map { $0 - lse })
                }
            }
            return out
        }
        var kls: [Double] = [], same = 0, dp2 = 0.0, nllT = 0.0, nllS = 0.0
        for c in 0..<2 {
            var chunk = Array(t[(c * ctx)..<((c + 1) * ctx)])
            chunk[0] = 1
            let lt = try logProbs(teacher, chunk), ls = try logProbs(student, chunk)
            for k in lt.indices {
                kls.append(zip(lt[k], ls[k]).reduce(0) { $0 + exp($1.0) * ($1.0 - $1.1) })
                if lt[k].indices.max(by: { lt[k][$0] < lt[k][$1] }) == ls[k].indices.max(by: { ls[k][$0] < ls[k][$1] }) { same += 1 }
                let next = Int(chunk[ctx / 2 + k + 1])
                dp2 += pow(exp(ls[k][next]) - exp(lt[k][next]), 2)
                nllT -= lt[k][next]; nllS -= ls[k][next]
            }
        }
        let n = Double(kls.count)
        XCTAssertGreaterThan(r.meanKL, 1e-4, "leaving a layer out changes the distributions")
        XCTAssertEqual(r.meanKL, kls.reduce(0, +) / n, accuracy: 1e-5 * max(1, r.meanKL))
        XCTAssertEqual(r.maxKL, kls.max()!, accuracy: 1e-5 * max(1, r.maxKL))
        XCTAssertEqual(r.medianKL, kls.sorted()[kls.count / 2 - 1] / 2 + kls.sorted()[kls.count / 2] / 2, accuracy: 1e-5)
        XCTAssertEqual(r.sameTop, Double(same) / n)
        XCTAssertEqual(r.rmsDeltaP, (dp2 / n).squareRoot(), accuracy: 1e-6)
        XCTAssertEqual(r.studentPPL, exp(nllS / n), accuracy: 1e-4 * r.studentPPL)
        XCTAssertEqual(r.teacherPPL, exp(nllT / n), accuracy: 1e-4 * r.teacherPPL)
        XCTAssertLessThanOrEqual(r.medianKL, r.p99KL)
        XCTAssertLessThanOrEqual(r.p99KL, r.maxKL)
    }

    func testMismatchedVocabulariesAreRefused() throws {
        try XCTSkipUnless(FileSystem.kind(of: smolLM2Path) == .file, "run Tools/fetch_model first")
        let a = try DecoderModel(path: path), b = try DecoderModel(path: smolLM2Path)
        XCTAssertNotEqual(a.spec.vocab, b.spec.vocab)
        XCTAssertThrowsError(try TeacherAgreement.evaluate(teacher: LayerStream(model: a), student: LayerStream(model: b),
                                                           tokens: tokens(64, vocab: 16), ctx: 32, bos: nil)) { e in
            XCTAssertEqual(e as? TeacherAgreement.Failure, .vocabularies(teacher: a.spec.vocab, student: b.spec.vocab))
        }
    }
}
