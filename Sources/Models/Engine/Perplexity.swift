import Basics
import CKernels
import CheckpointIO
#if canImport(Glibc)
import Glibc
#endif

/// Perplexity the way llama.cpp's `llama-perplexity` computes it, so the two can be
/// compared number for number: the whole text tokenized once, cut into non-overlapping
/// chunks of `ctx` tokens, the first token of each chunk replaced by BOS when the model
/// adds one, and each chunk scored on its second half (positions ctx/2 … ctx−2, each
/// predicting the next token).
public enum Perplexity {
    public struct Result: Sendable {
        public var chunks: Int
        public var ctx: Int
        /// Tokens scored (chunks × (ctx − 1 − ctx/2)).
        public var scored: Int
        /// Mean negative log-likelihood of the scored tokens, in nats.
        public var nll: Double
        public var ppl: Double { exp(nll) }
        /// Seconds spent in forward passes (tokenizing and loading excluded).
        public var forwardSeconds: Double
        /// chunks × ctx / forwardSeconds, as llama-perplexity reports it.
        public var tokensPerSecond: Double { forwardSeconds > 0 ? Double(chunks * ctx) / forwardSeconds : 0 }
        /// Per-chunk perplexities (of the running mean, as llama-perplexity prints them).
        public var runningPPL: [Double]
    }

    public enum Failure: UserFacingError, Sendable {
        case tooFewTokens(have: Int, ctx: Int)
        case badContext(ctx: Int)

        public var description: String {
            switch self {
            case let .tooFewTokens(have, ctx):
                return "the text has \(have) tokens, fewer than one chunk of \(ctx) (a longer text or a shorter context would do)"
            case let .badContext(ctx):
                return "a context of \(ctx) tokens is too small: a chunk needs at least 4"
            }
        }

        public var exitCode: ExitCode {
            switch self {
            case .tooFewTokens: return .dataError
            case .badContext: return .usage
            }
        }
    }

    /// Scores `tokens`. `batch` chunks go through each layer together (weights read once
    /// per batch). `progress(chunksDone, chunksTotal)` is called after every batch.
    /// With `allPositions`, logits are computed at every position of a chunk and positions
    /// 0 … ctx−2 are scored (a teacher pass's work, for comparison).
    public static func evaluate(stream: LayerStream, tokens: [Int32], ctx: Int, maxChunks: Int? = nil, batch: Int = 1,
                                bos: Int32?, allPositions: Bool = false, progress: ((Int, Int, Double) -> Void)? = nil) throws -> Result {
        guard ctx >= 4 else { throw Failure.badContext(ctx: ctx) }
        if ctx > stream.spec.contextLength { throw ModelError.contextTooLong(tokens: ctx, context: stream.spec.contextLength) }
        var nChunks = tokens.count / ctx
        if let m = maxChunks { nChunks = min(nChunks, m) }
        guard nChunks > 0 else { throw Failure.tooFewTokens(have: tokens.count, ctx: ctx) }
        let first = allPositions ? 0 : ctx / 2
        var nll = 0.0, count = 0, seconds = 0.0
        var running: [Double] = []
        var c = 0
        while c < nChunks {
            let nb = min(max(batch, 1), nChunks - c)
            var seqs: [[Int32]] = []
            for j in 0..<nb {
                var chunk = Array(tokens[((c + j) * ctx)..<((c + j + 1) * ctx)])
                if let bos { chunk[0] = bos }
                seqs.append(chunk)
            }
            var chunkNLL = [Double](repeating: 0, count: nb)
            let t0 = monotonicSeconds()
            try stream.run(seqs, outputs: { _ in first..<(allPositions ? ctx : ctx - 1) }) { seq, p0, logits in
                let v = stream.spec.vocab
                let rows = logits.count / v
                for r in 0..<rows where p0 + r + 1 < ctx {
                    let row = logits.baseAddress! + r * v
                    let next = Int(seqs[seq][p0 + r + 1])
                    chunkNLL[seq] += ckpt_logsumexp(row, Int64(v)) - Double(row[next])
                }
            }
            seconds += monotonicSeconds() - t0
            for j in 0..<nb {
                nll += chunkNLL[j]
                count += ctx - 1 - first
                running.append(exp(nll / Double(count)))
            }
            c += nb
            progress?(c, nChunks, seconds)
        }
        return Result(chunks: nChunks, ctx: ctx, scored: count, nll: nll / Double(count), forwardSeconds: seconds, runningPPL: running)
    }
}
