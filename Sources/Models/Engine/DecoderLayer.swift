import Basics
import CKernels
import CheckpointIO
import TensorMath

/// One decoder layer's weights, borrowed from the mapping (matrices) or decoded to f32
/// (norms and biases, a few KB).
struct LayerWeights {
    let q, k, v, o: WeightMatrix
    /// The dense MLP (nil in a mixture of experts); gate is nil for an ungated MLP (nemotron).
    let up, down: WeightMatrix?
    let gate: WeightMatrix?
    let mixture: MixtureWeights?
    let attnNorm, mlpNorm: FloatBuffer
    /// LayerNorm biases (nemotron).
    let attnNormBias, mlpNormBias: FloatBuffer?
    let postAttnNorm, postMlpNorm: FloatBuffer?
    let qNorm, kNorm: FloatBuffer?
    let qBias, kBias, vBias, oBias, upBias, downBias: FloatBuffer?

    init(model m: DecoderModel, layer i: Int) throws {
        let off = m.checkpoint.format == .safetensors ? m.spec.hfNormOffset : 0
        q = m.matrix(.layer(i, .attnQ)); k = m.matrix(.layer(i, .attnK)); v = m.matrix(.layer(i, .attnV))
        o = m.matrix(.layer(i, .attnOutput))
        if m.spec.isMixtureOfExperts {
            gate = nil; up = nil; down = nil
            mixture = try MixtureWeights(model: m, layer: i)
        } else {
            gate = m.spec.gatedMLP ? m.matrix(.layer(i, .mlpGate)) : nil; up = m.matrix(.layer(i, .mlpUp)); down = m.matrix(.layer(i, .mlpDown))
            mixture = nil
        }
        attnNorm = try m.vector(.layer(i, .attnNorm), offset: off)!
        mlpNorm = try m.vector(.layer(i, .mlpNorm), offset: off)!
        attnNormBias = try m.vector(.layer(i, .attnNormBias))
        mlpNormBias = try m.vector(.layer(i, .mlpNormBias))
        postAttnNorm = m.spec.postNorms ? try m.vector(.layer(i, .postAttnNorm), offset: off) : nil
        postMlpNorm = m.spec.postNorms ? try m.vector(.layer(i, .postMlpNorm), offset: off) : nil
        qNorm = m.spec.qkNorm ? try m.vector(.layer(i, .attnQNorm), offset: off) : nil
        kNorm = m.spec.qkNorm ? try m.vector(.layer(i, .attnKNorm), offset: off) : nil
        qBias = try m.vector(.layer(i, .attnQBias))
        kBias = try m.vector(.layer(i, .attnKBias))
        vBias = try m.vector(.layer(i, .attnVBias))
        oBias = try m.vector(.layer(i, .attnOutputBias))
        upBias = try m.vector(.layer(i, .mlpUpBias))
        downBias = try m.vector(.layer(i, .mlpDownBias))
    }
}

/// A mixture-of-experts MLP's weights: the router, each expert's gated MLP, and the
/// shared expert with its sigmoid gate (qwen2moe).
struct MixtureWeights {
    let router: WeightMatrix
    let experts: [(gate: WeightMatrix, up: WeightMatrix, down: WeightMatrix)]
    let shared: (gate: WeightMatrix, up: WeightMatrix, down: WeightMatrix)?
    let sharedRouter: FloatBuffer?

    init(model m: DecoderModel, layer i: Int) throws {
        router = m.matrix(.layer(i, .moeRouter))
        experts = (0..<m.spec.experts).map { e in
            (m.matrix(.expert(i, e, .mlpGate)), m.matrix(.expert(i, e, .mlpUp)), m.matrix(.expert(i, e, .mlpDown)))
        }
        shared = m.spec.sharedFFN > 0
            ? (m.matrix(.layer(i, .sharedGate)), m.matrix(.layer(i, .sharedUp)), m.matrix(.layer(i, .sharedDown))) : nil
        sharedRouter = try m.vector(.layer(i, .sharedRouter))
    }
}

/// A run of consecutive tokens of the batch that form one sequence (or its continuation
/// after `position0` cached tokens).
public struct SequenceSpan: Sendable, Equatable {
    public let start: Int
    public let count: Int
    public let position0: Int
    public var rows: Range<Int> { start..<(start + count) }
}

/// Activations of a batch of tokens as a decoder layer works through them. Buffers hold
/// one row per token; sized once for the largest batch and reused by every layer.
final class LayerActivations {
    let tokens: Int
    let x, xn, q, k, v, att, proj, gate, up, act: FloatBuffer
    /// Mixture of experts: router logits, one expert's gathered input rows and output rows.
    let routerLogits, expertIn, expertOut: FloatBuffer
    let ropeCos, ropeSin, ropeCosLocal, ropeSinLocal: FloatBuffer
    let attentionScratch: FloatBuffer
    let matmul: MatmulScratch
    /// Round activations as llama.cpp does (8-bit blocks before quantized weights, f16 K/V).
    var llamaCppRounding = true
    /// Query heads of the current layer whose outputs are zeroed (drop-one-head studies).
    var maskedHeads: Set<Int> = []

    init(spec s: DecoderSpec, tokens t: Int, maxKeys: Int) {
        tokens = t
        x = FloatBuffer(count: t * s.hidden); xn = FloatBuffer(count: t * s.hidden)
        q = FloatBuffer(count: t * s.qDim); k = FloatBuffer(count: t * s.kvDim); v = FloatBuffer(count: t * s.kvDim)
        att = FloatBuffer(count: t * s.qDim); proj = FloatBuffer(count: t * s.hidden)
        let f = max(s.ffn, s.sharedFFN)
        gate = FloatBuffer(count: t * f); up = FloatBuffer(count: t * f); act = FloatBuffer(count: t * f)
        routerLogits = FloatBuffer(count: t * s.experts)
        expertIn = FloatBuffer(count: s.isMixtureOfExperts ? t * s.hidden : 0)
        expertOut = FloatBuffer(count: s.isMixtureOfExperts ? t * s.hidden : 0)
        let half = s.ropeDims / 2
        ropeCos = FloatBuffer(count: t * half); ropeSin = FloatBuffer(count: t * half)
        ropeCosLocal = FloatBuffer(count: t * half); ropeSinLocal = FloatBuffer(count: t * half)
        attentionScratch = FloatBuffer(count: ThreadPool.threads * Int(ckpt_attention_scratch_floats(Int64(max(maxKeys, 1)), Int32(s.headDim))), zeroed: false)
        matmul = MatmulScratch(maxColumns: max(s.hidden, s.ffn, s.qDim, s.sharedFFN))
    }

    /// cos/sin of every token's position times each inverse frequency.
    func fillRope(spec s: DecoderSpec, spans: [SequenceSpan]) {
        let half = s.ropeDims / 2
        for span in spans {
            for j in 0..<span.count {
                let p = Double(span.position0 + j), row = (span.start + j) * half
                for i in 0..<half {
                    let a = p * s.ropeInvFreq[i], b = p * s.ropeInvFreqLocal[i]
                    ropeCos[row + i] = Float(cos(a)) * s.ropeAttentionFactor; ropeSin[row + i] = Float(sin(a)) * s.ropeAttentionFactor
                    ropeCosLocal[row + i] = Float(cos(b)) * s.ropeAttentionFactorLocal; ropeSinLocal[row + i] = Float(sin(b)) * s.ropeAttentionFactorLocal
                }
            }
        }
    }
}

/// Keys and values of earlier positions, per layer, for generation.
public final class KVCache: @unchecked Sendable {
    public let capacity: Int
    public private(set) var count = 0
    let keys: [FloatBuffer]
    let values: [FloatBuffer]

    public init(spec: DecoderSpec, capacity: Int) {
        self.capacity = capacity
        keys = (0..<spec.layers).map { _ in FloatBuffer(count: capacity * spec.kvDim, zeroed: false) }
        values = (0..<spec.layers).map { _ in FloatBuffer(count: capacity * spec.kvDim, zeroed: false) }
    }

    func advance(by n: Int) { count += n }
    public func reset() { count = 0 }
}

/// What a hook sees: one activation of every token of the batch, `width` floats a row.
public struct LayerActivation {
    public let layer: Int
    public let width: Int
    public let values: UnsafeBufferPointer<Float>
    public let sequences: [SequenceSpan]
}

/// Read-only observers of a layer's internals (for importance statistics and teacher
/// passes). Each is called once per layer with the whole batch.
public struct LayerHooks {
    /// The residual stream entering the layer.
    public var layerInput: ((LayerActivation) -> Void)?
    /// The normed input of attention (what Q, K and V are computed from).
    public var attentionInput: ((LayerActivation) -> Void)?
    /// Attention's per-head outputs, [heads × head_dim] a row: the input of the output projection.
    public var headOutputs: ((LayerActivation) -> Void)?
    /// The normed input of the MLP.
    public var mlpInput: ((LayerActivation) -> Void)?
    /// act(gate) × up: the input of the down projection.
    public var mlpIntermediate: ((LayerActivation) -> Void)?
    /// The residual stream leaving the layer.
    public var layerOutput: ((LayerActivation) -> Void)?
    /// A mixture of experts' routing: per token, the weight each expert's output is
    /// given ([experts] a row; 0 for the experts not chosen). Called before any expert runs.
    public var expertRouting: ((LayerActivation) -> Void)?
    /// Each expert that ran: the rows routed to it, its activations before its down
    /// projection and its outputs (before the routing weight).
    public var expertActivations: ((ExpertActivation) -> Void)?

    public init() {}
}

/// What the `expertActivations` hook sees of one expert in one layer.
public struct ExpertActivation {
    public let layer: Int
    public let expert: Int
    /// Batch rows routed to this expert, ascending; row j of the buffers below is token rows[j].
    public let rows: [Int]
    /// act(gate) × up, `ffn` floats a row.
    public let intermediate: UnsafeBufferPointer<Float>
    public let ffn: Int
    /// The expert's output, hidden floats a row, before the routing weight.
    public let output: UnsafeBufferPointer<Float>
    public let hidden: Int
    public let sequences: [SequenceSpan]
}

/// How a mixture of experts routes tokens, as the engine and training both do.
public enum ExpertRouter {
    /// Turns each token's router logits (rows of `experts`) into their softmax, in place,
    /// and appends the token to its `chosen` most probable experts' lists with the weight
    /// its output gets (renormalised over the chosen when the family does). The most
    /// probable first, ties to the lower index (torch.topk's order on ties is
    /// unspecified): one pass with a k-long insertion list, not a sort of all experts.
    public static func route(_ logits: UnsafeMutablePointer<Float>, tokens n: Int, experts E: Int, chosen K: Int, renormalise: Bool,
                             into routed: inout [[(row: Int, weight: Float)]]) {
        var chosen: [Int] = []
        chosen.reserveCapacity(K + 1)
        for t in 0..<n {
            let p = logits + t * E
            var top = -Float.infinity
            for e in 0..<E { top = max(top, p[e]) }
            var sum: Float = 0
            for e in 0..<E { p[e] = expf(p[e] - top); sum += p[e] }
            for e in 0..<E { p[e] /= sum }
            chosen.removeAll(keepingCapacity: true)
            for e in 0..<E {
                if chosen.count == K && !(p[e] > p[chosen[K - 1]]) { continue }
                var i = chosen.count
                while i > 0 && p[e] > p[chosen[i - 1]] { i -= 1 }
                chosen.insert(e, at: i)
                if chosen.count > K { chosen.removeLast() }
            }
            var kept: Float = 0
            for e in chosen { kept += p[e] }
            for e in chosen { routed[e].append((t, renormalise ? p[e] / kept : p[e])) }
        }
    }
}

enum DecoderLayer {
    /// Runs the tokens in `a.x` (rows `0..<n`) through layer `index`, updating `a.x` in place.
    static func forward(spec s: DecoderSpec, weights w: LayerWeights, index: Int, a: LayerActivations, n: Int,
                        spans: [SequenceSpan], caches: [KVCache?], hooks: LayerHooks?) {
        let H = s.hidden, Q = s.qDim, KV = s.kvDim, F = s.ffn
        func view(_ b: FloatBuffer, _ width: Int) -> LayerActivation {
            LayerActivation(layer: index, width: width, values: UnsafeBufferPointer(start: b.pointer, count: n * width), sequences: spans)
        }
        hooks?.layerInput?(view(a.x, H))

        // Attention block.
        normRows(s, a.x, w.attnNorm, w.attnNormBias, into: a.xn, rows: n)
        hooks?.attentionInput?(view(a.xn, H))
        Kernels.matmul(w.q, a.xn.pointer, ldx: H, tokens: n, into: a.q.pointer, ldy: Q, scratch: a.matmul, llamaCppRounding: a.llamaCppRounding)
        Kernels.matmul(w.k, a.xn.pointer, ldx: H, tokens: n, into: a.k.pointer, ldy: KV, scratch: a.matmul, llamaCppRounding: a.llamaCppRounding)
        Kernels.matmul(w.v, a.xn.pointer, ldx: H, tokens: n, into: a.v.pointer, ldy: KV, scratch: a.matmul, llamaCppRounding: a.llamaCppRounding)
        if let b = w.qBias { addRowBias(a.q, b, rows: n) }
        if let b = w.kBias { addRowBias(a.k, b, rows: n) }
        if let b = w.vBias { addRowBias(a.v, b, rows: n) }
        if let qn = w.qNorm, let kn = w.kNorm {
            ckpt_rmsnorm(a.q.pointer, Int64(s.headDim), qn.pointer, a.q.pointer, Int64(s.headDim), Int64(n * s.heads), Int64(s.headDim), s.normEps)
            ckpt_rmsnorm(a.k.pointer, Int64(s.headDim), kn.pointer, a.k.pointer, Int64(s.headDim), Int64(n * s.kvHeads), Int64(s.headDim), s.normEps)
        }
        let sliding = s.slidingLayers.contains(index)
        let (cosT, sinT) = sliding ? (a.ropeCosLocal, a.ropeSinLocal) : (a.ropeCos, a.ropeSin)
        ckpt_rope(a.q.pointer, Int64(Q), Int64(n), Int32(s.heads), Int32(s.headDim), Int32(s.ropeDims), cosT.pointer, sinT.pointer, s.ropeNeox ? 1 : 0)
        ckpt_rope(a.k.pointer, Int64(KV), Int64(n), Int32(s.kvHeads), Int32(s.headDim), Int32(s.ropeDims), cosT.pointer, sinT.pointer, s.ropeNeox ? 1 : 0)
        if a.llamaCppRounding {
            // llama.cpp's KV cache holds f16, and Q meets K as f16.
            ckpt_round_activations(1, a.q.pointer, Int64(Q), Int64(n), Int64(Q), a.q.pointer, Int64(Q))
            ckpt_round_activations(1, a.k.pointer, Int64(KV), Int64(n), Int64(KV), a.k.pointer, Int64(KV))
            ckpt_round_activations(1, a.v.pointer, Int64(KV), Int64(n), Int64(KV), a.v.pointer, Int64(KV))
        }
        let window = sliding ? Int32(s.slidingWindow) : 0
        for (si, span) in spans.enumerated() {
            let qp = a.q.pointer + span.start * Q, op = a.att.pointer + span.start * Q
            if let cache = caches[si] {
                // Write this span's keys and values after the cached ones, attend over both.
                // Spans are done one after another, so several may continue one prefix:
                // each overwrites the slots after it, then attends, before the next.
                let kc = cache.keys[index].pointer, vc = cache.values[index].pointer
                (kc + span.position0 * KV).update(from: a.k.pointer + span.start * KV, count: span.count * KV)
                (vc + span.position0 * KV).update(from: a.v.pointer + span.start * KV, count: span.count * KV)
                ckpt_attention(qp, Int64(Q), kc, Int64(KV), vc, Int64(KV), op, Int64(Q), Int64(span.count), Int64(span.position0),
                               Int64(span.position0 + span.count), Int32(s.heads), Int32(s.kvHeads), Int32(s.headDim),
                               s.attentionScale, window, s.attentionSoftcap, a.llamaCppRounding ? 1 : 0, a.attentionScratch.pointer)
            } else {
                precondition(span.position0 == 0, "a continuation needs a KV cache")
                ckpt_attention(qp, Int64(Q), a.k.pointer + span.start * KV, Int64(KV), a.v.pointer + span.start * KV, Int64(KV),
                               op, Int64(Q), Int64(span.count), 0, Int64(span.count), Int32(s.heads), Int32(s.kvHeads),
                               Int32(s.headDim), s.attentionScale, window, s.attentionSoftcap, a.llamaCppRounding ? 1 : 0, a.attentionScratch.pointer)
            }
        }
        for h in a.maskedHeads where h >= 0 && h < s.heads {
            for t in 0..<n { (a.att.pointer + t * Q + h * s.headDim).update(repeating: 0, count: s.headDim) }
        }
        hooks?.headOutputs?(view(a.att, Q))
        Kernels.matmul(w.o, a.att.pointer, ldx: Q, tokens: n, into: a.proj.pointer, ldy: H, scratch: a.matmul, llamaCppRounding: a.llamaCppRounding)
        if let b = w.oBias { addRowBias(a.proj, b, rows: n) }
        if let pn = w.postAttnNorm {
            Kernels.rmsNorm(a.proj.pointer, ldx: H, weight: pn.pointer, into: a.proj.pointer, ldy: H, rows: n, width: H, eps: s.normEps)
        }
        ckpt_add(a.x.pointer, a.proj.pointer, Int64(n * H))

        // MLP block.
        normRows(s, a.x, w.mlpNorm, w.mlpNormBias, into: a.xn, rows: n)
        hooks?.mlpInput?(view(a.xn, H))
        if let mixture = w.mixture {
            mixtureOfExperts(spec: s, mixture, a: a, n: n, layer: index, spans: spans, hooks: hooks)
        } else if let up = w.up, let down = w.down {
            gatedMLP(spec: s, a.xn.pointer, rows: n, width: s.ffn, gate: w.gate, up: up, down: down, upBias: w.upBias, downBias: w.downBias,
                     a: a, into: a.proj.pointer, intermediate: hooks?.mlpIntermediate.map { hook in { hook(view(a.act, s.ffn)) } })
        }
        if let pn = w.postMlpNorm {
            Kernels.rmsNorm(a.proj.pointer, ldx: H, weight: pn.pointer, into: a.proj.pointer, ldy: H, rows: n, width: H, eps: s.normEps)
        }
        ckpt_add(a.x.pointer, a.proj.pointer, Int64(n * H))
        hooks?.layerOutput?(view(a.x, H))
    }

    /// act(x·gateᵀ) · (x·upᵀ) · downᵀ (act(x·upᵀ) ungated) of `rows` rows of `x`, hidden
    /// wide, through `width` neurons, into `y`: the dense MLP, each expert, the shared
    /// expert. `intermediate` sees the activations before the down projection (in `a.act`).
    private static func gatedMLP(spec s: DecoderSpec, _ x: UnsafePointer<Float>, rows r: Int, width f: Int, gate: WeightMatrix?,
                                 up: WeightMatrix, down: WeightMatrix, upBias: FloatBuffer? = nil, downBias: FloatBuffer? = nil,
                                 a: LayerActivations, into y: UnsafeMutablePointer<Float>, intermediate: (() -> Void)? = nil) {
        let H = s.hidden
        if let gate {
            Kernels.matmul(gate, x, ldx: H, tokens: r, into: a.gate.pointer, ldy: f, scratch: a.matmul, llamaCppRounding: a.llamaCppRounding)
        }
        Kernels.matmul(up, x, ldx: H, tokens: r, into: a.up.pointer, ldy: f, scratch: a.matmul, llamaCppRounding: a.llamaCppRounding)
        if let b = upBias { addRowBias(a.up.pointer, b, rows: r) }
        switch s.activation {
        case .silu: ckpt_silu_mul(a.gate.pointer, a.up.pointer, a.act.pointer, Int64(r * f))
        case .geluTanh: ckpt_gelu_tanh_mul(a.gate.pointer, a.up.pointer, a.act.pointer, Int64(r * f))
        case .reluSquared: ckpt_relu_squared(a.up.pointer, a.act.pointer, Int64(r * f))
        }
        intermediate?()
        Kernels.matmul(down, a.act.pointer, ldx: f, tokens: r, into: y, ldy: H, scratch: a.matmul, llamaCppRounding: a.llamaCppRounding)
        if let b = downBias { addRowBias(y, b, rows: r) }
    }

    /// The experts' MLP of the normed rows `a.xn` into `a.proj`: per token, the softmax of
    /// the router's logits, its `expertsUsed` largest (renormalised when the family does),
    /// and the sum of those experts' outputs so weighted; each expert runs once on all the
    /// rows routed to it. Then the shared expert, scaled by its sigmoid gate, is added.
    static func mixtureOfExperts(spec s: DecoderSpec, _ m: MixtureWeights, a: LayerActivations, n: Int,
                                 layer: Int = 0, spans: [SequenceSpan] = [], hooks: LayerHooks? = nil) {
        let H = s.hidden, F = s.ffn, E = s.experts, K = s.expertsUsed
        Kernels.matmul(m.router, a.xn.pointer, ldx: H, tokens: n, into: a.routerLogits.pointer, ldy: E, scratch: a.matmul, llamaCppRounding: a.llamaCppRounding)
        var routed = [[(row: Int, weight: Float)]](repeating: [], count: E)
        ExpertRouter.route(a.routerLogits.pointer, tokens: n, experts: E, chosen: K, renormalise: s.expertWeightsNorm, into: &routed)
        if let hook = hooks?.expertRouting {
            var weights = [Float](repeating: 0, count: n * E)
            for (e, rows) in routed.enumerated() { for r in rows { weights[r.row * E + e] = r.weight } }
            weights.withUnsafeBufferPointer { hook(LayerActivation(layer: layer, width: E, values: $0, sequences: spans)) }
        }
        a.proj.pointer.update(repeating: 0, count: n * H)
        func run(_ e: Int, _ rows: ArraySlice<(row: Int, weight: Float)>) {
            for (j, r) in rows.enumerated() { (a.expertIn.pointer + j * H).update(from: a.xn.pointer + r.row * H, count: H) }
            let x = m.experts[e]
            gatedMLP(spec: s, a.expertIn.pointer, rows: rows.count, width: F, gate: x.gate, up: x.up, down: x.down, a: a, into: a.expertOut.pointer)
            if let hook = hooks?.expertActivations {
                // a.act still holds this expert's intermediate (the next expert overwrites it).
                hook(ExpertActivation(layer: layer, expert: e, rows: rows.map(\.row),
                                      intermediate: UnsafeBufferPointer(start: a.act.pointer, count: rows.count * F), ffn: F,
                                      output: UnsafeBufferPointer(start: a.expertOut.pointer, count: rows.count * H), hidden: H, sequences: spans))
            }
            for (j, r) in rows.enumerated() {
                let y = a.proj.pointer + r.row * H, o = a.expertOut.pointer + j * H
                for c in 0..<H { y[c] += r.weight * o[c] }
            }
        }
        for (e, rows) in routed.enumerated() where !rows.isEmpty {
            if hooks?.expertActivations == nil {
                run(e, rows[...])
            } else {
                // Statistics are summed per sample and must not depend on which samples share
                // a batch, but a product's rounding depends on how many rows it has (few rows
                // take another kernel): so each sample's tokens meet the expert apart. Rows
                // are in token order, so a sample's rows are a contiguous run.
                var i = 0
                for span in spans {
                    let first = i
                    while i < rows.count && rows[i].row < span.start + span.count { i += 1 }
                    if i > first { run(e, rows[first..<i]) }
                }
            }
        }
        if let sh = m.shared {
            gatedMLP(spec: s, a.xn.pointer, rows: n, width: s.sharedFFN, gate: sh.gate, up: sh.up, down: sh.down, a: a, into: a.expertOut.pointer)
            for t in 0..<n {
                var g: Float = 1
                if let sr = m.sharedRouter {
                    var d: Float = 0
                    let x = a.xn.pointer + t * H
                    for c in 0..<H { d += x[c] * sr[c] }
                    g = 1 / (1 + expf(-d))
                }
                let y = a.proj.pointer + t * H, o = a.expertOut.pointer + t * H
                for c in 0..<H { y[c] += g * o[c] }
            }
        }
    }

    /// The family's pre-norm over `rows` rows of hidden width.
    static func normRows(_ s: DecoderSpec, _ x: FloatBuffer, _ weight: FloatBuffer, _ bias: FloatBuffer?, into y: FloatBuffer, rows: Int) {
        normRows(s, x.pointer, weight, bias, into: y.pointer, rows: rows)
    }

    static func normRows(_ s: DecoderSpec, _ x: UnsafePointer<Float>, _ weight: FloatBuffer, _ bias: FloatBuffer?,
                         into y: UnsafeMutablePointer<Float>, rows: Int) {
        switch s.norm {
        case .rms:
            Kernels.rmsNorm(x, ldx: s.hidden, weight: weight.pointer, into: y, ldy: s.hidden, rows: rows, width: s.hidden, eps: s.normEps)
        case .layer:
            ckpt_layernorm(x, Int64(s.hidden), weight.pointer, bias?.pointer, y, Int64(s.hidden), Int64(rows), Int64(s.hidden), s.normEps)
        }
    }

    private static func addRowBias(_ y: FloatBuffer, _ b: FloatBuffer, rows: Int) { addRowBias(y.pointer, b, rows: rows) }

    private static func addRowBias(_ y: UnsafeMutablePointer<Float>, _ b: FloatBuffer, rows: Int) {
        for r in 0..<rows { ckpt_add(y + r * b.count, b.pointer, Int64(b.count)) }
    }
}

#if canImport(Glibc)
import Glibc
#endif
