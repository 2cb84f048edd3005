import Basics
import CKernels
import Models
import TensorMath

/// What scores a multiple-choice task: a model's context length, the token split of a
/// question, and the summed log-probability of each continuation after its context.
/// `ChoiceScorer` is the engine's; `ckpt distill --eval-task` scores the student it trains.
package protocol ContinuationScorer: AnyObject {
    var contextLength: Int { get }
    func request(context: String, continuations: [String]) -> ChoiceScorer.Request
    func score(_ requests: [ChoiceScorer.Request], progress: (Int) -> Void) throws -> [[Double]]
}

/// Log-likelihoods of continuations after a shared context, as lm-evaluation-harness
/// defines them, computed with the context run once per question: each question's
/// context goes through the layers (many questions a pass) into its own KV cache, and
/// then every continuation of every question of the batch runs in one more pass against
/// its question's cache. A one-token continuation needs no second pass at all: its
/// log-probability is read off the context's last row of logits.
package final class ChoiceScorer: ContinuationScorer {
    /// One question as tokens: the context (BOS first when the model adds one) and the
    /// token ids of each continuation.
    package struct Request: Sendable, Equatable {
        package var context: [Int32]
        package var continuations: [[Int32]]
    }

    package let stream: LayerStream
    package let tokenizer: any Tokenizer
    let bos: Int32?
    /// Context tokens per pass through the layers (the KV caches of a batch hold this many
    /// positions, plus the continuations').
    package var tokensPerPass: Int
    /// At most this many questions per pass (1: no batching; for measuring what batching gives).
    package var questionsPerPass: Int
    /// False runs every continuation after its own copy of the context, as a scorer that
    /// shares no prefix would (for measuring what sharing gives); the scores are the same.
    package var sharesContext: Bool

    package init(stream: LayerStream, tokenizer: any Tokenizer, tokensPerPass: Int = 2048, questionsPerPass: Int = .max, sharesContext: Bool = true) {
        self.stream = stream
        self.tokenizer = tokenizer
        self.bos = tokenizer.addsBOS ? tokenizer.files.bosID.map(Int32.init) : nil
        self.tokensPerPass = tokensPerPass
        self.questionsPerPass = max(1, questionsPerPass)
        self.sharesContext = sharesContext
    }

    package var contextLength: Int { stream.spec.contextLength }

    package func request(context: String, continuations: [String]) -> Request {
        Self.request(tokenizer: tokenizer, bos: bos, context: context, continuations: continuations)
    }

    /// The token split lm-evaluation-harness uses: the continuation's ids are what
    /// tokenizing context + continuation adds after the context's own ids.
    package static func request(tokenizer: any Tokenizer, bos: Int32?, context: String, continuations: [String]) -> Request {
        let contextIDs = tokenizer.encode(context)
        let conts = continuations.map { c -> [Int32] in
            let whole = tokenizer.encode(context + c)
            var ids = Array(whole.dropFirst(contextIDs.count))
            // Never empty: a continuation the merge swallowed whole keeps its own ids.
            if ids.isEmpty { ids = tokenizer.encode(c) }
            return ids
        }
        return Request(context: (bos.map { [$0] } ?? []) + contextIDs, continuations: conts)
    }

    /// Every continuation's summed log-probability, per request, in order. Requests are
    /// taken in batches of about `tokensPerPass` context tokens, at most `questionsPerPass`.
    package func score(_ requests: [Request], progress: (Int) -> Void = { _ in }) throws -> [[Double]] {
        if sharesContext { return try scoreSharing(requests, progress: progress) }
        // One request per continuation, each with the whole context: nothing is shared.
        var singles: [Request] = [], owner: [Int] = []
        for (i, r) in requests.enumerated() {
            for cont in r.continuations {
                singles.append(Request(context: r.context, continuations: [cont]))
                owner.append(i)
            }
        }
        let scores = try scoreSharing(singles) { done in
            progress(done == singles.count ? requests.count : owner[done])
        }
        var out = requests.map { [Double](repeating: 0, count: $0.continuations.count) }
        var next = [Int](repeating: 0, count: requests.count)
        for (k, i) in owner.enumerated() {
            out[i][next[i]] = scores[k][0]
            next[i] += 1
        }
        return out
    }

    private func scoreSharing(_ requests: [Request], progress: (Int) -> Void) throws -> [[Double]] {
        var out: [[Double]] = []
        out.reserveCapacity(requests.count)
        var start = 0
        while start < requests.count {
            var end = start, tokens = 0
            while end < requests.count, end == start || (tokens + requests[end].context.count <= tokensPerPass && end - start < questionsPerPass) {
                tokens += requests[end].context.count
                end += 1
            }
            out += try scoreBatch(Array(requests[start..<end]))
            start = end
            progress(end)
        }
        return out
    }

    private func scoreBatch(_ batch: [Request]) throws -> [[Double]] {
        let s = stream.spec, vocab = s.vocab
        var logliks = batch.map { [Double](repeating: 0, count: $0.continuations.count) }
        let caches = batch.map { r in
            KVCache(spec: s, capacity: r.context.count + max(0, (r.continuations.map(\.count).max() ?? 1) - 1))
        }
        // Pass 1: the contexts; the last row of each scores every continuation's first token.
        // (Task prompts always hold text: MultipleChoiceTask refuses empty questions.)
        precondition(batch.allSatisfy { !$0.context.isEmpty && $0.continuations.allSatisfy { !$0.isEmpty } }, "empty context or continuation")
        try stream.run(batch.map(\.context), caches: caches, advance: true,
                       outputs: { i in (batch[i].context.count - 1)..<batch[i].context.count }) { i, _, row in
            let lse = ckpt_logsumexp(row.baseAddress!, Int64(vocab))
            for (c, cont) in batch[i].continuations.enumerated() { logliks[i][c] = Double(row[Int(cont[0])]) - lse }
        }
        // Pass 2: every continuation longer than one token, fed all but its last token
        // after its question's cached context; row j scores token j + 1.
        var sequences: [[Int32]] = [], seqCaches: [KVCache?] = [], owner: [(request: Int, choice: Int)] = []
        for (i, req) in batch.enumerated() {
            for (c, cont) in req.continuations.enumerated() where cont.count > 1 {
                sequences.append(Array(cont.dropLast()))
                seqCaches.append(caches[i])
                owner.append((i, c))
            }
        }
        guard !sequences.isEmpty else { return logliks }
        try stream.run(sequences, caches: seqCaches, advance: false, outputs: { k in
            let p0 = batch[owner[k].request].context.count
            return p0..<(p0 + sequences[k].count)
        }) { k, first, rows in
            let (i, c) = owner[k]
            let p0 = batch[i].context.count, cont = batch[i].continuations[c]
            let n = rows.count / vocab
            for r in 0..<n {
                let row = rows.baseAddress! + r * vocab
                let next = cont[first - p0 + r + 1]
                logliks[i][c] += Double(row[Int(next)]) - ckpt_logsumexp(row, Int64(vocab))
            }
        }
        return logliks
    }
}
