import CKernels
import CheckpointIO
import Models
import TensorMath
#if canImport(Glibc)
import Glibc
#endif

/// A student being trained: f32 master weights of a llama-family decoder (llama,
/// mistral, qwen2) in one flat array with their gradients beside them (in memory or
/// streamed from files, see `StateResidence`), and the
/// forward and backward passes of one sequence, layer by layer, built from the
/// operations in backprop.c. Weights keep the file's layout (llama.cpp's Q/K row order
/// in GGUF, with the RoPE layout the engine uses for it), so they write back unchanged.
public final class TrainableDecoder {
    /// One trained tensor: where it lives in the flat buffers.
    public struct Slot: Sendable {
        public let role: TensorRole
        public let name: String
        public let shape: [Int]
        public let offset: Int
        public let count: Int
    }

    public enum Failure: Error, CustomStringConvertible, Sendable {
        case unsupported(String)
        public var description: String {
            switch self {
            case let .unsupported(why): return "distillation does not handle this student yet: \(why)"
            }
        }
    }

    public let spec: DecoderSpec
    public let slots: [Slot]
    public let weights: StateArray
    public let grads: StateArray
    public let tiedHead: Bool
    /// Recompute each layer's activations in the backward pass from its saved input,
    /// instead of keeping them all from the forward pass: memory for one layer's
    /// activations rather than every layer's, for about a third more compute.
    public let recomputeActivations: Bool
    private var index: [TensorRole: Int] = [:]
    /// Per layer, the f32 elements its tensors span in `weights` and `grads`.
    private var layerRanges: [Range<Int>] = []
    private var acts: Activations?

    /// Rows of logits computed at a time, bounding the logits buffer to rows × vocab.
    public var logitRows = 64

    /// Output rows of the LM head handled at a time: a slice of its weights (and their
    /// gradients) is what a streamed run holds. Set from the hidden size alone (16 MiB of
    /// f32 rows), so runs streamed or not compute the same sums in the same order.
    public var vocabSlice: Int

    static func defaultVocabSlice(hidden: Int) -> Int {
        let rows = max(Int(CKPT_PANEL_ROWS), (16 << 20) / max(hidden * 4, 1))
        return rows - rows % Int(CKPT_PANEL_ROWS)
    }

    /// A student's trained tensors, read from `model`; weights and gradients live as
    /// `residence` says.
    public init(model: DecoderModel, residence: StateResidence = .memory, recomputeActivations: Bool = false) throws {
        let s = model.spec
        if s.qkNorm { throw Failure.unsupported("\(s.architecture) normalises q and k (qwen3, gemma3)") }
        if s.postNorms { throw Failure.unsupported("\(s.architecture) has post-norms (gemma2, gemma3)") }
        if s.activation != .silu { throw Failure.unsupported("\(s.architecture)'s MLP gate is not SiLU") }
        if s.attentionSoftcap != 0 || s.finalSoftcap != 0 { throw Failure.unsupported("logit soft-capping") }
        if s.embeddingScale != 1 { throw Failure.unsupported("a scaled embedding") }
        if model.checkpoint.format == .safetensors && s.hfNormOffset != 0 { throw Failure.unsupported("norm weights stored with an offset") }
        spec = s
        self.recomputeActivations = recomputeActivations
        vocabSlice = Self.defaultVocabSlice(hidden: s.hidden)
        let slots = try Self.slots(of: model)
        self.slots = slots
        tiedHead = model.tensor(.lmHead) == nil
        let total = slots.last.map { $0.offset + $0.count } ?? 0
        weights = try StateArray(name: "weights.f32", byteCount: total * 4, residence: residence)
        grads = try StateArray(name: "grads.f32", byteCount: total * 4, residence: residence)
        layerRanges = Array(repeating: 0..<0, count: s.layers)
        for (i, slot) in slots.enumerated() {
            index[slot.role] = i
            if case let .layer(l, _) = slot.role {
                let r = layerRanges[l]
                layerRanges[l] = r.isEmpty ? slot.offset..<(slot.offset + slot.count) : min(r.lowerBound, slot.offset)..<max(r.upperBound, slot.offset + slot.count)
            }
            let t = model.tensor(slot.role)!
            try TensorDecoder.decodeRows(t, rows: 0..<t.rowCount, into: weights.pointer + slot.offset)
            weights.release(floats: slot.offset..<(slot.offset + slot.count))
            try? t.file.advise(.dontNeed, range: t.offset..<(t.offset + t.byteCount))
        }
    }

    /// The tensors a student trains, in the order they sit in the flat buffers.
    public static func slots(of model: DecoderModel) throws -> [Slot] {
        let s = model.spec
        var roles: [TensorRole] = [.embed]
        for i in 0..<s.layers {
            roles += [.layer(i, .attnNorm), .layer(i, .attnQ), .layer(i, .attnK), .layer(i, .attnV)]
            for b in [LayerTensor.attnQBias, .attnKBias, .attnVBias] where model.tensor(.layer(i, b)) != nil { roles.append(.layer(i, b)) }
            roles += [.layer(i, .attnOutput), .layer(i, .mlpNorm), .layer(i, .mlpGate), .layer(i, .mlpUp), .layer(i, .mlpDown)]
        }
        roles.append(.finalNorm)
        if model.tensor(.lmHead) != nil { roles.append(.lmHead) }
        var slots: [Slot] = []
        var at = 0
        for r in roles {
            guard let t = model.tensor(r) else { throw Failure.unsupported("no tensor for \(r)") }
            slots.append(Slot(role: r, name: t.name, shape: t.shape, offset: at, count: t.elementCount))
            at += t.elementCount
        }
        return slots
    }

    public var parameterCount: Int { weights.count }

    public func weight(_ r: TensorRole) -> UnsafeMutablePointer<Float> {
        let role = r == .lmHead && tiedHead ? .embed : r
        return weights.pointer + slots[index[role]!].offset
    }

    public func grad(_ r: TensorRole) -> UnsafeMutablePointer<Float> {
        let role = r == .lmHead && tiedHead ? .embed : r
        return grads.pointer + slots[index[role]!].offset
    }

    public func has(_ r: TensorRole) -> Bool { index[r] != nil }

    public func zeroGrads() { grads.zero() }

    /// Done with a layer for now: a streamed student drops its pages.
    private func release(layer l: Int, grads withGrads: Bool) {
        weights.release(floats: layerRanges[l])
        if withGrads { grads.release(floats: layerRanges[l]) }
    }

    private func release(_ r: TensorRole, grads withGrads: Bool) {
        let role = r == .lmHead && tiedHead ? .embed : r
        let slot = slots[index[role]!]
        weights.release(floats: slot.offset..<(slot.offset + slot.count))
        if withGrads { grads.release(floats: slot.offset..<(slot.offset + slot.count)) }
    }

    /// Receives rows `firstRow ..< firstRow + rows` of one sequence's logits, writes the
    /// loss's gradient with respect to them into `grad` (zeroed beforehand) and returns
    /// the loss summed over those rows.
    public typealias LossHead = (_ firstRow: Int, _ rows: Int, _ logits: UnsafePointer<Float>, _ grad: UnsafeMutablePointer<Float>) -> Double

    /// One decoder layer's activations for one sequence: what its backward pass reads.
    final class LayerActivations {
        let xn1, q, k, v, att, xmid, xn2, gate, up, act, rstd1, rstd2, probs: FloatBuffer
        init(spec s: DecoderSpec, tokens T: Int) {
            func buf(_ n: Int) -> FloatBuffer { FloatBuffer(count: n, zeroed: false) }
            xn1 = buf(T * s.hidden); q = buf(T * s.qDim); k = buf(T * s.kvDim); v = buf(T * s.kvDim)
            att = buf(T * s.qDim); xmid = buf(T * s.hidden); xn2 = buf(T * s.hidden)
            gate = buf(T * s.ffn); up = buf(T * s.ffn); act = buf(T * s.ffn)
            rstd1 = buf(T); rstd2 = buf(T); probs = buf(s.heads * T * T)
        }

        /// Bytes for `tokens` tokens.
        static func bytes(spec s: DecoderSpec, tokens T: Int) -> Int {
            4 * (T * (3 * s.hidden + 2 * s.qDim + 2 * s.kvDim + 3 * s.ffn + 2) + s.heads * T * T)
        }
    }

    /// What the forward pass leaves for the backward pass, for one sequence, and the
    /// work buffers of both.
    final class Activations {
        let tokens: Int
        /// Each layer's input (the residual stream before it).
        let xin: [FloatBuffer]
        /// Per layer, or one set reused when activations are recomputed.
        let layers: [LayerActivations]
        let xfin, xf, rstdF: FloatBuffer
        let ropeCos, ropeSin, ropeSinNeg: FloatBuffer
        // Work buffers.
        let dx, dxn, dtmp, dq, dk, dv, datt, dg, du, da: FloatBuffer
        let logits, dlogits: FloatBuffer

        init(spec s: DecoderSpec, tokens T: Int, logitRows: Int, recompute: Bool) {
            tokens = T
            xin = (0..<s.layers).map { _ in FloatBuffer(count: T * s.hidden, zeroed: false) }
            layers = (0..<(recompute ? 1 : s.layers)).map { _ in LayerActivations(spec: s, tokens: T) }
            xfin = FloatBuffer(count: T * s.hidden, zeroed: false); xf = FloatBuffer(count: T * s.hidden, zeroed: false)
            rstdF = FloatBuffer(count: T, zeroed: false)
            let half = s.ropeDims / 2
            ropeCos = FloatBuffer(count: T * half, zeroed: false); ropeSin = FloatBuffer(count: T * half, zeroed: false)
            ropeSinNeg = FloatBuffer(count: T * half, zeroed: false)
            for t in 0..<T {
                for i in 0..<half {
                    let a = Double(t) * s.ropeInvFreq[i]
                    ropeCos[t * half + i] = Float(cos(a)); ropeSin[t * half + i] = Float(sin(a)); ropeSinNeg[t * half + i] = -Float(sin(a))
                }
            }
            let wide = max(s.hidden, s.qDim, s.ffn)
            dx = FloatBuffer(count: T * s.hidden); dxn = FloatBuffer(count: T * wide); dtmp = FloatBuffer(count: T * wide)
            dq = FloatBuffer(count: T * s.qDim); dk = FloatBuffer(count: T * s.kvDim); dv = FloatBuffer(count: T * s.kvDim)
            datt = FloatBuffer(count: T * s.qDim); dg = FloatBuffer(count: T * s.ffn); du = FloatBuffer(count: T * s.ffn)
            da = FloatBuffer(count: T * s.ffn)
            logits = FloatBuffer(count: logitRows * s.vocab, zeroed: false); dlogits = FloatBuffer(count: logitRows * s.vocab)
        }

        /// Bytes the buffers take for `tokens` tokens.
        static func bytes(spec s: DecoderSpec, tokens T: Int, logitRows: Int, recompute: Bool) -> Int {
            let wide = max(s.hidden, s.qDim, s.ffn)
            let shared = T * (3 * s.hidden + 1 + 3 * (s.ropeDims / 2)) + T * (s.hidden + 2 * wide + 2 * s.qDim + 2 * s.kvDim + 3 * s.ffn)
                + 2 * logitRows * s.vocab
            return 4 * (s.layers * T * s.hidden + shared) + (recompute ? 1 : s.layers) * LayerActivations.bytes(spec: s, tokens: T)
        }
    }

    private func activations(_ T: Int) -> Activations {
        if let a = acts, a.tokens == T { return a }
        acts = nil
        let a = Activations(spec: spec, tokens: T, logitRows: logitRows, recompute: recomputeActivations)
        acts = a
        return a
    }

    private func window(_ layer: Int) -> Int32 {
        spec.slidingWindow > 0 && (spec.slidingLayers.isEmpty || spec.slidingLayers.contains(layer)) ? Int32(spec.slidingWindow) : 0
    }

    /// Layer `l` forward on one sequence: reads its input from `x` (the residual stream),
    /// leaves its output there, and what the backward pass needs in `la`.
    private func forwardLayer(_ l: Int, _ x: UnsafeMutablePointer<Float>, _ la: LayerActivations, _ a: Activations) {
        let s = spec, T = a.tokens, C = s.hidden, F = s.ffn, Q = s.qDim, KV = s.kvDim
        let neox: Int32 = s.ropeNeox ? 1 : 0
        ckpt_rmsnorm_forward(x, weight(.layer(l, .attnNorm)), Int64(T), Int64(C), s.normEps, la.xn1.pointer, la.rstd1.pointer)
        ckpt_linear_forward(la.xn1.pointer, Int64(T), Int64(C), weight(.layer(l, .attnQ)), Int64(Q), la.q.pointer)
        ckpt_linear_forward(la.xn1.pointer, Int64(T), Int64(C), weight(.layer(l, .attnK)), Int64(KV), la.k.pointer)
        ckpt_linear_forward(la.xn1.pointer, Int64(T), Int64(C), weight(.layer(l, .attnV)), Int64(KV), la.v.pointer)
        addBias(.layer(l, .attnQBias), la.q.pointer, T, Q)
        addBias(.layer(l, .attnKBias), la.k.pointer, T, KV)
        addBias(.layer(l, .attnVBias), la.v.pointer, T, KV)
        ckpt_rope(la.q.pointer, Int64(Q), Int64(T), Int32(s.heads), Int32(s.headDim), Int32(s.ropeDims), a.ropeCos.pointer, a.ropeSin.pointer, neox)
        ckpt_rope(la.k.pointer, Int64(KV), Int64(T), Int32(s.kvHeads), Int32(s.headDim), Int32(s.ropeDims), a.ropeCos.pointer, a.ropeSin.pointer, neox)
        ckpt_attention_forward(la.q.pointer, la.k.pointer, la.v.pointer, Int64(T), Int32(s.heads), Int32(s.kvHeads), Int32(s.headDim),
                               s.attentionScale, window(l), la.att.pointer, la.probs.pointer)
        ckpt_linear_forward(la.att.pointer, Int64(T), Int64(Q), weight(.layer(l, .attnOutput)), Int64(C), a.dtmp.pointer)
        add(a.dtmp.pointer, into: x, T * C)
        memcpy(la.xmid.pointer, x, T * C * 4)
        ckpt_rmsnorm_forward(x, weight(.layer(l, .mlpNorm)), Int64(T), Int64(C), s.normEps, la.xn2.pointer, la.rstd2.pointer)
        ckpt_linear_forward(la.xn2.pointer, Int64(T), Int64(C), weight(.layer(l, .mlpGate)), Int64(F), la.gate.pointer)
        ckpt_linear_forward(la.xn2.pointer, Int64(T), Int64(C), weight(.layer(l, .mlpUp)), Int64(F), la.up.pointer)
        ckpt_silu_mul(la.gate.pointer, la.up.pointer, la.act.pointer, Int64(T * F))
        ckpt_linear_forward(la.act.pointer, Int64(T), Int64(F), weight(.layer(l, .mlpDown)), Int64(C), a.dtmp.pointer)
        add(a.dtmp.pointer, into: x, T * C)
    }

    /// Layer `l` backward on one sequence: `dx` holds the gradient at its output and
    /// leaves with the gradient at its input; weight gradients are added into `grads`.
    private func backwardLayer(_ l: Int, _ dx: UnsafeMutablePointer<Float>, _ la: LayerActivations, _ a: Activations) {
        let s = spec, T = a.tokens, C = s.hidden, F = s.ffn, Q = s.qDim, KV = s.kvDim
        let neox: Int32 = s.ropeNeox ? 1 : 0
        // MLP: x_out = x_mid + down(silu(gate) · up).
        ckpt_linear_backward(dx, la.act.pointer, weight(.layer(l, .mlpDown)), Int64(T), Int64(F), Int64(C), a.da.pointer, grad(.layer(l, .mlpDown)))
        ckpt_swiglu_backward(a.da.pointer, la.gate.pointer, la.up.pointer, Int64(T * F), a.dg.pointer, a.du.pointer)
        ckpt_linear_backward(a.dg.pointer, la.xn2.pointer, weight(.layer(l, .mlpGate)), Int64(T), Int64(C), Int64(F), a.dxn.pointer, grad(.layer(l, .mlpGate)))
        ckpt_linear_backward(a.du.pointer, la.xn2.pointer, weight(.layer(l, .mlpUp)), Int64(T), Int64(C), Int64(F), a.dtmp.pointer, grad(.layer(l, .mlpUp)))
        add(a.dtmp.pointer, into: a.dxn.pointer, T * C)
        ckpt_rmsnorm_backward(a.dxn.pointer, la.xmid.pointer, weight(.layer(l, .mlpNorm)), la.rstd2.pointer, Int64(T), Int64(C), a.dtmp.pointer, grad(.layer(l, .mlpNorm)))
        add(a.dtmp.pointer, into: dx, T * C)
        // Attention: x_mid = x_in + o(attention(rope(q), rope(k), v)).
        ckpt_linear_backward(dx, la.att.pointer, weight(.layer(l, .attnOutput)), Int64(T), Int64(Q), Int64(C), a.datt.pointer, grad(.layer(l, .attnOutput)))
        ckpt_attention_backward(a.datt.pointer, la.q.pointer, la.k.pointer, la.v.pointer, la.probs.pointer, Int64(T), Int32(s.heads),
                                Int32(s.kvHeads), Int32(s.headDim), s.attentionScale, window(l), a.dq.pointer, a.dk.pointer, a.dv.pointer)
        ckpt_rope(a.dq.pointer, Int64(Q), Int64(T), Int32(s.heads), Int32(s.headDim), Int32(s.ropeDims), a.ropeCos.pointer, a.ropeSinNeg.pointer, neox)
        ckpt_rope(a.dk.pointer, Int64(KV), Int64(T), Int32(s.kvHeads), Int32(s.headDim), Int32(s.ropeDims), a.ropeCos.pointer, a.ropeSinNeg.pointer, neox)
        biasGrad(.layer(l, .attnQBias), a.dq.pointer, T, Q)
        biasGrad(.layer(l, .attnKBias), a.dk.pointer, T, KV)
        biasGrad(.layer(l, .attnVBias), a.dv.pointer, T, KV)
        ckpt_linear_backward(a.dq.pointer, la.xn1.pointer, weight(.layer(l, .attnQ)), Int64(T), Int64(C), Int64(Q), a.dxn.pointer, grad(.layer(l, .attnQ)))
        ckpt_linear_backward(a.dk.pointer, la.xn1.pointer, weight(.layer(l, .attnK)), Int64(T), Int64(C), Int64(KV), a.dtmp.pointer, grad(.layer(l, .attnK)))
        add(a.dtmp.pointer, into: a.dxn.pointer, T * C)
        ckpt_linear_backward(a.dv.pointer, la.xn1.pointer, weight(.layer(l, .attnV)), Int64(T), Int64(C), Int64(KV), a.dtmp.pointer, grad(.layer(l, .attnV)))
        add(a.dtmp.pointer, into: a.dxn.pointer, T * C)
        ckpt_rmsnorm_backward(a.dxn.pointer, a.xin[l].pointer, weight(.layer(l, .attnNorm)), la.rstd1.pointer, Int64(T), Int64(C), a.dtmp.pointer, grad(.layer(l, .attnNorm)))
        add(a.dtmp.pointer, into: dx, T * C)
    }

    /// Runs one sequence forward and (unless `backward` is false) backward, adding its
    /// gradients into `grads`; returns the loss the head reports, summed over positions.
    public func forwardBackward(_ tokens: [Int32], backward: Bool = true, loss head: LossHead) -> Double {
        let s = spec, T = tokens.count, C = s.hidden
        let a = activations(T)
        // Forward.
        let x = a.dx  // the residual stream, reused as dx in the backward pass
        let embed = weight(.embed)
        for (t, id) in tokens.enumerated() { memcpy(x.pointer + t * C, embed + Int(id) * C, C * 4) }
        release(.embed, grads: false)
        for l in 0..<s.layers {
            memcpy(a.xin[l].pointer, x.pointer, T * C * 4)
            forwardLayer(l, x.pointer, a.layers[recomputeActivations ? 0 : l], a)
            release(layer: l, grads: false)
        }
        memcpy(a.xfin.pointer, x.pointer, T * C * 4)
        ckpt_rmsnorm_forward(x.pointer, weight(.finalNorm), Int64(T), Int64(C), s.normEps, a.xf.pointer, a.rstdF.pointer)

        // LM head and loss, a block of rows at a time (each a slice of the vocabulary at a
        // time); its backward pass right away.
        let V = s.vocab, headWeight = weight(.lmHead), headGrad = grad(.lmHead), slice = vocabSlice
        var total = 0.0
        var r0 = 0
        while r0 < T {
            let n = min(logitRows, T - r0)
            for v0 in stride(from: 0, to: V, by: slice) {
                let nv = min(slice, V - v0)
                ckpt_linear_forward_strided(a.xf.pointer + r0 * C, Int64(n), Int64(C), headWeight + v0 * C, Int64(nv), a.logits.pointer + v0, Int64(V), 0)
                weights.release(floats: (headWeight - weights.pointer + v0 * C)..<(headWeight - weights.pointer + (v0 + nv) * C))
            }
            memset(a.dlogits.pointer, 0, n * V * 4)
            total += head(r0, n, a.logits.pointer, a.dlogits.pointer)
            if backward {
                for v0 in stride(from: 0, to: V, by: slice) {
                    let nv = min(slice, V - v0)
                    ckpt_linear_backward_strided(a.dlogits.pointer + v0, Int64(V), a.xf.pointer + r0 * C, headWeight + v0 * C, Int64(n), Int64(C), Int64(nv),
                                                 a.dxn.pointer + r0 * C, v0 == 0 ? 0 : 1, headGrad + v0 * C)
                    let at = headWeight - weights.pointer + v0 * C
                    weights.release(floats: at..<(at + nv * C))
                    grads.release(floats: at..<(at + nv * C))
                }
            }
            r0 += n
        }
        if !backward { return total }
        // Backward.
        let dx = a.dx
        ckpt_rmsnorm_backward(a.dxn.pointer, a.xfin.pointer, weight(.finalNorm), a.rstdF.pointer, Int64(T), Int64(C), dx.pointer, grad(.finalNorm))
        for l in (0..<s.layers).reversed() {
            let la = a.layers[recomputeActivations ? 0 : l]
            if recomputeActivations {
                // The layer's forward again from its saved input, into a scratch residual.
                memcpy(a.xfin.pointer, a.xin[l].pointer, T * C * 4)
                forwardLayer(l, a.xfin.pointer, la, a)
            }
            backwardLayer(l, dx.pointer, la, a)
            release(layer: l, grads: true)
        }
        let dembed = grad(.embed)
        for (t, id) in tokens.enumerated() { add(dx.pointer + t * C, into: dembed + Int(id) * C, C) }
        release(.embed, grads: true)
        return total
    }

    private func addBias(_ r: TensorRole, _ y: UnsafeMutablePointer<Float>, _ T: Int, _ n: Int) {
        guard has(r) else { return }
        let b = weight(r)
        for t in 0..<T { add(b, into: y + t * n, n) }
    }

    private func biasGrad(_ r: TensorRole, _ dy: UnsafeMutablePointer<Float>, _ T: Int, _ n: Int) {
        guard has(r) else { return }
        let g = grad(r)
        for t in 0..<T { add(dy + t * n, into: g, n) }
    }

    @inline(__always) private func add(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, _ n: Int) {
        for i in 0..<n { y[i] += x[i] }
    }
}
