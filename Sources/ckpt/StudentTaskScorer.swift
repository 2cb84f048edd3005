import CKernels
import Evaluation
import Models
import Training

/// Scores a multiple-choice task with the student `ckpt distill` is training, through its
/// own forward pass (the f32 master weights, its products as set): each continuation
/// after its context from scratch, one sequence at a time, or one pass for a question
/// whose continuations are all one token (mcf's " A", " B", …).
final class StudentTaskScorer: ContinuationScorer {
    let student: TrainableDecoder
    let tokenizer: any Tokenizer
    let bos: Int32?

    init(student: TrainableDecoder, tokenizer: any Tokenizer) {
        self.student = student
        self.tokenizer = tokenizer
        bos = tokenizer.addsBOS ? tokenizer.files.bosID.map(Int32.init) : nil
    }

    var contextLength: Int { student.spec.contextLength }

    func request(context: String, continuations: [String]) -> ChoiceScorer.Request {
        ChoiceScorer.request(tokenizer: tokenizer, bos: bos, context: context, continuations: continuations)
    }

    func score(_ requests: [ChoiceScorer.Request], progress: (Int) -> Void) throws -> [[Double]] {
        var out: [[Double]] = []
        for (i, r) in requests.enumerated() {
            if r.continuations.allSatisfy({ $0.count == 1 }) {
                let rows = logProbabilities(r.context, from: r.context.count - 1)
                out.append(r.continuations.map { rows[0]($0[0]) })
            } else {
                out.append(r.continuations.map { cont in
                    // Row j of context + continuation (all but its last token) predicts token j + 1.
                    let rows = logProbabilities(r.context + cont.dropLast(), from: r.context.count - 1)
                    return cont.enumerated().reduce(0) { $0 + rows[$1.offset]($1.element) }
                })
            }
            progress(i + 1)
        }
        return out
    }

    /// For each row from `first` on, a lookup of log p(token) under that row's logits.
    private func logProbabilities(_ tokens: [Int32], from first: Int) -> [(Int32) -> Double] {
        let vocab = student.spec.vocab
        var rows: [(Int32) -> Double] = []
        _ = student.forwardBackward(tokens, backward: false) { r0, n, logits, _ in
            for r in 0..<n where r0 + r >= first {
                let row = Array(UnsafeBufferPointer(start: logits + r * vocab, count: vocab))
                let lse = Double(row.withUnsafeBufferPointer { ckpt_logsumexp($0.baseAddress!, Int64(vocab)) })
                rows.append { Double(row[Int($0)]) - lse }
            }
            return 0
        }
        return rows
    }
}
