import Basics
import CKernels
import CheckpointIO
import TensorMath

/// Runs batches of token sequences through a decoder one layer at a time, straight from
/// the mapped checkpoint: layer i's weights are paged in, every token of the batch goes
/// through them, and (in streaming mode) their pages are dropped before layer i+1. Peak
/// memory is one layer's weights plus the batch's activations, whatever the model's size.
public final class LayerStream {
    public let model: DecoderModel
    /// Drop each layer's pages after use (for models larger than the memory to spare).
    public var releaseLayers: Bool
    /// Round activations the way llama.cpp does (8-bit blocks before quantized weights,
    /// f16 or bf16 before such weights, f16 keys and values), to reproduce its numbers.
    /// Off: f32 throughout, slightly more accurate.
    public var llamaCppRounding = true
    /// Layers left out of the forward pass (drop-one-layer importance, depth what-ifs).
    public var skipLayers: Set<Int> = []
    /// Per layer, query heads whose outputs are zeroed before the output projection
    /// (drop-one-head importance).
    public var maskedHeads: [Int: Set<Int>] = [:]
    private var activations: LayerActivations?
    private var layerCache: [Int: LayerWeights] = [:]
    /// The final norm and the LM head's working buffers, sized for `rows` positions per pass.
    private struct HeadBuffers {
        let rows: Int
        let norm, normed, out: FloatBuffer
        let normBias: FloatBuffer?
        let scratch: MatmulScratch
    }
    private var headBuffers: HeadBuffers?

    public init(model: DecoderModel, releaseLayers: Bool = false) {
        self.model = model
        self.releaseLayers = releaseLayers
    }

    public var spec: DecoderSpec { model.spec }

    /// Which positions of which sequence want logits; nil: none (hooks only).
    public typealias OutputRequest = (_ sequence: Int) -> Range<Int>?
    /// Receives logits rows: the sequence, its first position, and `positions × vocab` floats.
    public typealias LogitsConsumer = (_ sequence: Int, _ firstPosition: Int, _ logits: UnsafeBufferPointer<Float>) throws -> Void

    /// Runs `sequences` (or their continuation after the tokens already in `cache`) through
    /// every layer, calling `hooks`, then computes logits for the positions `outputs` asks
    /// for, handing them to `consume` a slice at a time.
    public func run(_ sequences: [[Int32]], hooks: LayerHooks? = nil, cache: KVCache? = nil,
                    outputs: OutputRequest? = nil, consume: LogitsConsumer? = nil) throws {
        precondition(cache == nil || sequences.count == 1, "a KV cache holds one sequence")
        try run(sequences, caches: sequences.map { _ in cache }, advance: true, hooks: hooks, outputs: outputs, consume: consume)
    }

    /// Runs each sequence as the continuation of the prefix held in its cache (nil: from
    /// position 0, no cache). One cache may be given to several sequences when `advance`
    /// is false: each attends to the cached prefix and to itself only, and the cache is left
    /// holding the prefix (scoring several answers to one question after its context ran
    /// once). With `advance`, every cache grows by its sequence and must be distinct.
    public func run(_ sequences: [[Int32]], caches: [KVCache?], advance: Bool, hooks: LayerHooks? = nil,
                    outputs: OutputRequest? = nil, consume: LogitsConsumer? = nil) throws {
        precondition(caches.count == sequences.count, "one cache (or nil) a sequence")
        let s = spec
        var spans: [SequenceSpan] = []
        var total = 0
        for (seq, cache) in zip(sequences, caches) {
            let p0 = cache?.count ?? 0
            if p0 + seq.count > s.contextLength { throw ModelError.contextTooLong(tokens: p0 + seq.count, context: s.contextLength) }
            if let cache, p0 + seq.count > cache.capacity { throw ModelError.contextTooLong(tokens: p0 + seq.count, context: cache.capacity) }
            for t in seq where t < 0 || Int(t) >= s.vocab { throw ModelError.tokenOutOfVocabulary(id: t, vocab: s.vocab) }
            spans.append(SequenceSpan(start: total, count: seq.count, position0: p0))
            total += seq.count
        }
        if advance {
            let distinct = Set(caches.compactMap { $0.map(ObjectIdentifier.init) })
            precondition(distinct.count == caches.compactMap({ $0 }).count, "caches that grow must be distinct")
        }
        guard total > 0 else { return }
        let maxKeys = (caches.compactMap { $0?.capacity }.max() ?? 0) + (sequences.map(\.count).max() ?? 0)
        let a: LayerActivations
        if let have = activations, have.tokens >= total, have.matmul.threads >= ThreadPool.threads, have.attentionScratch.count >= ThreadPool.threads * Int(ckpt_attention_scratch_floats(Int64(maxKeys), Int32(s.headDim))) {
            a = have
        } else {
            a = LayerActivations(spec: s, tokens: total, maxKeys: maxKeys)
            activations = a
        }
        a.llamaCppRounding = llamaCppRounding
        a.fillRope(spec: s, spans: spans)
        try embed(sequences, into: a.x)

        for i in 0..<s.layers where !skipLayers.contains(i) {
            let w = try layerWeights(i)
            if releaseLayers, i + 1 < s.layers {
                for (file, range) in model.layerRanges(i + 1) { try? file.advise(.willNeed, range: range) }
            }
            a.maskedHeads = maskedHeads[i] ?? []
            DecoderLayer.forward(spec: s, weights: w, index: i, a: a, n: total, spans: spans, caches: caches, hooks: hooks)
            if releaseLayers {
                for (file, range) in model.layerRanges(i) { try file.advise(.dontNeed, range: range) }
                layerCache[i] = nil
            }
        }
        if advance { for (cache, seq) in zip(caches, sequences) { cache?.advance(by: seq.count) } }
        guard let outputs, let consume else { return }
        try logits(a, spans: spans, outputs: outputs, consume: consume)
    }

    private func layerWeights(_ i: Int) throws -> LayerWeights {
        if let w = layerCache[i] { return w }
        let w = try LayerWeights(model: model, layer: i)
        if !releaseLayers { layerCache[i] = w }
        return w
    }

    private func embed(_ sequences: [[Int32]], into x: FloatBuffer) throws {
        let s = spec, e = model.tensor(.embed)!
        var row = 0
        for seq in sequences {
            for t in seq {
                try TensorDecoder.decodeRows(e, rows: Int(t)..<(Int(t) + 1), into: x.pointer + row * s.hidden)
                row += 1
            }
        }
        if s.embeddingScale != 1 { ckpt_scale(x.pointer, s.embeddingScale, Int64(row * s.hidden)) }
        if releaseLayers { try e.file.advise(.dontNeed, range: e.offset..<(e.offset + e.byteCount)) }
    }

    /// Rows of logits computed per pass over the LM head: bounds the logits buffer
    /// (rows × vocab floats) while reading the head's weights few times.
    public static let logitRowsPerPass = 128
    /// LM-head rows multiplied, then released, at a time when streaming.
    static let headRowsPerRange = 4096

    private func logits(_ a: LayerActivations, spans: [SequenceSpan], outputs: OutputRequest,
                        consume: LogitsConsumer) throws {
        let s = spec
        let head = model.matrix(.lmHead)
        let wanted = spans.indices.map { outputs($0)?.count ?? 0 }.max() ?? 0
        let slice = min(Self.logitRowsPerPass, max(wanted, 1))
        // Kept between runs: generation asks for one row of logits per token.
        if headBuffers == nil || headBuffers!.rows < slice || headBuffers!.scratch.threads < ThreadPool.threads {
            headBuffers = HeadBuffers(
                rows: slice,
                norm: try model.vector(.finalNorm, offset: model.checkpoint.format == .safetensors ? s.hfNormOffset : 0)!,
                normed: FloatBuffer(count: slice * s.hidden, zeroed: false), out: FloatBuffer(count: slice * s.vocab, zeroed: false),
                normBias: try model.vector(.finalNormBias), scratch: MatmulScratch(maxColumns: s.hidden))
        }
        let (norm, normBias, normed, out, scratch) = (headBuffers!.norm, headBuffers!.normBias, headBuffers!.normed, headBuffers!.out, headBuffers!.scratch)
        for (si, span) in spans.enumerated() {
            guard let want = outputs(si), !want.isEmpty else { continue }
            precondition(want.lowerBound >= span.position0 && want.upperBound <= span.position0 + span.count, "logits asked for positions not in the batch")
            var p = want.lowerBound
            while p < want.upperBound {
                let n = min(slice, want.upperBound - p)
                let row = span.start + (p - span.position0)
                DecoderLayer.normRows(s, a.x.pointer + row * s.hidden, norm, normBias, into: normed.pointer, rows: n)
                if releaseLayers {
                    // The head can be as large as a layer or larger: stream it in row ranges too.
                    let view = model.lmHeadView
                    let rowBytes = view.byteCount / max(view.rowCount, 1)
                    var r0 = 0
                    while r0 < head.rows {
                        let nr = min(Self.headRowsPerRange, head.rows - r0)
                        let part = WeightMatrix(ggmlType: head.ggmlType, base: head.base + r0 * rowBytes, rowBytes: rowBytes,
                                                rows: nr, columns: head.columns)
                        Kernels.matmul(part, normed.pointer, ldx: s.hidden, tokens: n, into: out.pointer + r0, ldy: s.vocab,
                                       scratch: scratch, llamaCppRounding: llamaCppRounding)
                        let start = view.offset + r0 * rowBytes
                        try view.file.advise(.dontNeed, range: start..<(start + nr * rowBytes))
                        r0 += nr
                    }
                } else {
                    Kernels.matmul(head, normed.pointer, ldx: s.hidden, tokens: n, into: out.pointer, ldy: s.vocab, scratch: scratch,
                                   llamaCppRounding: llamaCppRounding)
                }
                if s.finalSoftcap > 0 { ckpt_softcap(out.pointer, Int64(n * s.vocab), s.finalSoftcap) }
                try consume(si, p, UnsafeBufferPointer(start: out.pointer, count: n * s.vocab))
                p += n
            }
        }
        if releaseLayers {
            let h = model.lmHeadView
            try h.file.advise(.dontNeed, range: h.offset..<(h.offset + h.byteCount))
        }
    }
}
