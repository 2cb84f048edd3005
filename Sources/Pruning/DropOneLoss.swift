import Basics
import Models

/// Importance by ablation: the held-out loss with one layer (or one head) removed, minus
/// the intact model's. Slower than activation statistics (one evaluation per unit) but
/// measures exactly what pruning does to the loss.
package enum DropOneLoss {
    /// Mean NLL over `chunks` chunks of `ctx` tokens of `tokens`, scored as `ckpt eval` scores.
    static func loss(_ stream: LayerStream, tokens: [Int32], ctx: Int, chunks: Int, bos: Int32?) throws -> Double {
        try Perplexity.evaluate(stream: stream, tokens: tokens, ctx: ctx, maxChunks: chunks, batch: chunks, bos: bos).nll
    }

    /// Loss increase when each layer alone is skipped.
    package static func layers(model: DecoderModel, tokens: [Int32], ctx: Int = 256, chunks: Int = 2, bos: Int32?,
                              progress: ((Int, Int) -> Void)? = nil) throws -> [Double] {
        let stream = LayerStream(model: model)
        let base = try loss(stream, tokens: tokens, ctx: ctx, chunks: chunks, bos: bos)
        var out: [Double] = []
        for l in 0..<model.spec.layers {
            stream.skipLayers = [l]
            out.append(try loss(stream, tokens: tokens, ctx: ctx, chunks: chunks, bos: bos) - base)
            progress?(l + 1, model.spec.layers)
        }
        return out
    }

    /// Loss increase when each query head alone is zeroed, per layer in `layers`.
    package static func heads(model: DecoderModel, layers: [Int], tokens: [Int32], ctx: Int = 256, chunks: Int = 2, bos: Int32?,
                             progress: ((Int, Int) -> Void)? = nil) throws -> [Int: [Double]] {
        let stream = LayerStream(model: model)
        let base = try loss(stream, tokens: tokens, ctx: ctx, chunks: chunks, bos: bos)
        var out: [Int: [Double]] = [:]
        let total = layers.count * model.spec.heads
        var done = 0
        for l in layers {
            var scores: [Double] = []
            for h in 0..<model.spec.heads {
                stream.maskedHeads = [l: [h]]
                scores.append(try loss(stream, tokens: tokens, ctx: ctx, chunks: chunks, bos: bos) - base)
                done += 1
                progress?(done, total)
            }
            out[l] = scores
        }
        return out
    }
}
