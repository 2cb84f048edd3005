import CKernels
import CheckpointIO
import Models
import TensorMath
#if canImport(Glibc)
import Glibc
#endif

/// A student being trained: f32 master weights of a llama-family decoder (llama,
/// mistral, qwen2) in one flat buffer with their gradients beside them, and the
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
    public let weights: FloatBuffer
    public let grads: FloatBuffer
    public let tiedHead: Bool
    private var index: [TensorRole: Int] = [:]
    private var acts: Activations?

    /// Rows of logits computed at a time, bounding the logits buffer to rows × vocab.
    public var logitRows = 64

    public init(model: DecoderModel) throws {
        let s = model.spec
        if s.qkNorm { throw Failure.unsupported("\(s.architecture) normalises q and k (qwen3, gemma3)") }
        if s.postNorms { throw Failure.unsupported("\(s.architecture) has post-norms (gemma2, gemma3)") }
        if s.activation != .silu { throw Failure.unsupported("\(s.architecture)'s MLP gate is not SiLU") }
        if s.attentionSoftcap != 0 || s.finalSoftcap != 0 { throw Failure.unsupported("logit soft-capping") }
        if s.embeddingScale != 1 { throw Failure.unsupported("a scaled embedding") }
        if model.checkpoint.format == .safetensors && s.hfNormOffset != 0 { throw Failure.unsupported("norm weights stored with an offset") }
        spec = s
        var roles: [TensorRole] = [.embed]
        for i in 0..<s.layers {
            roles += [.layer(i, .attnNorm), .layer(i, .attnQ), .layer(i, .attnK), .layer(i, .attnV)]
            for b in [LayerTensor.attnQBias, .attnKBias, .attnVBias] where model.tensor(.layer(i, b)) != nil { roles.append(.layer(i, b)) }
            roles += [.layer(i, .attnOutput), .layer(i, .mlpNorm), .layer(i, .mlpGate), .layer(i, .mlpUp), .layer(i, .mlpDown)]
        }
        roles.append(.finalNorm)
        tiedHead = model.tensor(.lmHead) == nil
        if !tiedHead { roles.append(.lmHead) }
        var slots: [Slot] = []
        var at = 0
        for r in roles {
            guard let t = model.tensor(r) else { throw Failure.unsupported("no tensor for \(r)") }
            slots.append(Slot(role: r, name: t.name, shape: t.shape, offset: at, count: t.elementCount))
            at += t.elementCount
        }
        self.slots = slots
        weights = FloatBuffer(count: at, zeroed: false)
        grads = FloatBuffer(count: at)
        for (i, slot) in slots.enumerated() {
            index[slot.role] = i
            let t = model.tensor(slot.role)!
            try TensorDecoder.decodeRows(t, rows: 0..<t.rowCount, into: weights.pointer + slot.offset)
        }
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

    public func zeroGrads() { memset(grads.pointer, 0, grads.count * MemoryLayout<Float>.size) }

    /// Receives rows `firstRow ..< firstRow + rows` of one sequence's logits, writes the
    /// loss's gradient with respect to them into `grad` (zeroed beforehand) and returns
    /// the loss summed over those rows.
    public typealias LossHead = (_ firstRow: Int, _ rows: Int, _ logits: UnsafePointer<Float>, _ grad: UnsafeMutablePointer<Float>) -> Double

    /// What the backward pass needs of the forward pass, per layer, for one sequence.
    final class Activations {
        let tokens: Int
        let xin, xn1, q, k, v, att, xmid, xn2, gate, up, act: [FloatBuffer]
        let rstd1, rstd2: [FloatBuffer]
        let probs: [FloatBuffer]
        let xfin, xf, rstdF: FloatBuffer
        let ropeCos, ropeSin, ropeSinNeg: FloatBuffer
        // Work buffers.
        let dx, dxn, dtmp, dq, dk, dv, datt, dg, du, da: FloatBuffer
        let logits, dlogits: FloatBuffer

        init(spec s: DecoderSpec, tokens T: Int, logitRows: Int) {
            tokens = T
            func per(_ n: Int) -> [FloatBuffer] { (0..<s.layers).map { _ in FloatBuffer(count: n, zeroed: false) } }
            xin = per(T * s.hidden); xn1 = per(T * s.hidden); q = per(T * s.qDim); k = per(T * s.kvDim); v = per(T * s.kvDim)
            att = per(T * s.qDim); xmid = per(T * s.hidden); xn2 = per(T * s.hidden)
            gate = per(T * s.ffn); up = per(T * s.ffn); act = per(T * s.ffn)
            rstd1 = per(T); rstd2 = per(T); probs = per(s.heads * T * T)
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
    }

    private func activations(_ T: Int) -> Activations {
        if let a = acts, a.tokens == T { return a }
        let a = Activations(spec: spec, tokens: T, logitRows: logitRows)
        acts = a
        return a
    }

    private func window(_ layer: Int) -> Int32 {
        spec.slidingWindow > 0 && (spec.slidingLayers.isEmpty || spec.slidingLayers.contains(layer)) ? Int32(spec.slidingWindow) : 0
    }

    /// Runs one sequence forward and (unless `backward` is false) backward, adding its
    /// gradients into `grads`; returns the loss the head reports, summed over positions.
    public func forwardBackward(_ tokens: [Int32], backward: Bool = true, loss head: LossHead) -> Double {
        let s = spec, T = tokens.count, C = s.hidden, F = s.ffn, Q = s.qDim, KV = s.kvDim
        let a = activations(T)
        let neox: Int32 = s.ropeNeox ? 1 : 0
        // Forward.
        let x = a.dx  // the residual stream, reused as dx in the backward pass
        let embed = weight(.embed)
        for (t, id) in tokens.enumerated() { memcpy(x.pointer + t * C, embed + Int(id) * C, C * 4) }
        for l in 0..<s.layers {
            memcpy(a.xin[l].pointer, x.pointer, T * C * 4)
            ckpt_rmsnorm_forward(x.pointer, weight(.layer(l, .attnNorm)), Int64(T), Int64(C), s.normEps, a.xn1[l].pointer, a.rstd1[l].pointer)
            ckpt_linear_forward(a.xn1[l].pointer, Int64(T), Int64(C), weight(.layer(l, .attnQ)), Int64(Q), a.q[l].pointer)
            ckpt_linear_forward(a.xn1[l].pointer, Int64(T), Int64(C), weight(.layer(l, .attnK)), Int64(KV), a.k[l].pointer)
            ckpt_linear_forward(a.xn1[l].pointer, Int64(T), Int64(C), weight(.layer(l, .attnV)), Int64(KV), a.v[l].pointer)
            addBias(.layer(l, .attnQBias), a.q[l].pointer, T, Q)
            addBias(.layer(l, .attnKBias), a.k[l].pointer, T, KV)
            addBias(.layer(l, .attnVBias), a.v[l].pointer, T, KV)
            ckpt_rope(a.q[l].pointer, Int64(Q), Int64(T), Int32(s.heads), Int32(s.headDim), Int32(s.ropeDims), a.ropeCos.pointer, a.ropeSin.pointer, neox)
            ckpt_rope(a.k[l].pointer, Int64(KV), Int64(T), Int32(s.kvHeads), Int32(s.headDim), Int32(s.ropeDims), a.ropeCos.pointer, a.ropeSin.pointer, neox)
            ckpt_attention_forward(a.q[l].pointer, a.k[l].pointer, a.v[l].pointer, Int64(T), Int32(s.heads), Int32(s.kvHeads), Int32(s.headDim),
                                   s.attentionScale, window(l), a.att[l].pointer, a.probs[l].pointer)
            ckpt_linear_forward(a.att[l].pointer, Int64(T), Int64(Q), weight(.layer(l, .attnOutput)), Int64(C), a.dtmp.pointer)
            add(a.dtmp.pointer, into: x.pointer, T * C)
            memcpy(a.xmid[l].pointer, x.pointer, T * C * 4)
            ckpt_rmsnorm_forward(x.pointer, weight(.layer(l, .mlpNorm)), Int64(T), Int64(C), s.normEps, a.xn2[l].pointer, a.rstd2[l].pointer)
            ckpt_linear_forward(a.xn2[l].pointer, Int64(T), Int64(C), weight(.layer(l, .mlpGate)), Int64(F), a.gate[l].pointer)
            ckpt_linear_forward(a.xn2[l].pointer, Int64(T), Int64(C), weight(.layer(l, .mlpUp)), Int64(F), a.up[l].pointer)
            ckpt_silu_mul(a.gate[l].pointer, a.up[l].pointer, a.act[l].pointer, Int64(T * F))
            ckpt_linear_forward(a.act[l].pointer, Int64(T), Int64(F), weight(.layer(l, .mlpDown)), Int64(C), a.dtmp.pointer)
            add(a.dtmp.pointer, into: x.pointer, T * C)
        }
        memcpy(a.xfin.pointer, x.pointer, T * C * 4)
        ckpt_rmsnorm_forward(x.pointer, weight(.finalNorm), Int64(T), Int64(C), s.normEps, a.xf.pointer, a.rstdF.pointer)

        // LM head and loss, a block of rows at a time; its backward pass right away.
        let V = s.vocab, headWeight = weight(.lmHead), headGrad = grad(.lmHead)
        var total = 0.0
        var r0 = 0
        while r0 < T {
            let n = min(logitRows, T - r0)
            ckpt_linear_forward(a.xf.pointer + r0 * C, Int64(n), Int64(C), headWeight, Int64(V), a.logits.pointer)
            memset(a.dlogits.pointer, 0, n * V * 4)
            total += head(r0, n, a.logits.pointer, a.dlogits.pointer)
            if backward { ckpt_linear_backward(a.dlogits.pointer, a.xf.pointer + r0 * C, headWeight, Int64(n), Int64(C), Int64(V), a.dxn.pointer + r0 * C, headGrad) }
            r0 += n
        }
        if !backward { return total }
        // Backward.
        let dx = a.dx
        ckpt_rmsnorm_backward(a.dxn.pointer, a.xfin.pointer, weight(.finalNorm), a.rstdF.pointer, Int64(T), Int64(C), dx.pointer, grad(.finalNorm))
        for l in (0..<s.layers).reversed() {
            // MLP: x_out = x_mid + down(silu(gate) · up).
            ckpt_linear_backward(dx.pointer, a.act[l].pointer, weight(.layer(l, .mlpDown)), Int64(T), Int64(F), Int64(C), a.da.pointer, grad(.layer(l, .mlpDown)))
            ckpt_swiglu_backward(a.da.pointer, a.gate[l].pointer, a.up[l].pointer, Int64(T * F), a.dg.pointer, a.du.pointer)
            ckpt_linear_backward(a.dg.pointer, a.xn2[l].pointer, weight(.layer(l, .mlpGate)), Int64(T), Int64(C), Int64(F), a.dxn.pointer, grad(.layer(l, .mlpGate)))
            ckpt_linear_backward(a.du.pointer, a.xn2[l].pointer, weight(.layer(l, .mlpUp)), Int64(T), Int64(C), Int64(F), a.dtmp.pointer, grad(.layer(l, .mlpUp)))
            add(a.dtmp.pointer, into: a.dxn.pointer, T * C)
            ckpt_rmsnorm_backward(a.dxn.pointer, a.xmid[l].pointer, weight(.layer(l, .mlpNorm)), a.rstd2[l].pointer, Int64(T), Int64(C), a.dtmp.pointer, grad(.layer(l, .mlpNorm)))
            add(a.dtmp.pointer, into: dx.pointer, T * C)
            // Attention: x_mid = x_in + o(attention(rope(q), rope(k), v)).
            ckpt_linear_backward(dx.pointer, a.att[l].pointer, weight(.layer(l, .attnOutput)), Int64(T), Int64(Q), Int64(C), a.datt.pointer, grad(.layer(l, .attnOutput)))
            ckpt_attention_backward(a.datt.pointer, a.q[l].pointer, a.k[l].pointer, a.v[l].pointer, a.probs[l].pointer, Int64(T), Int32(s.heads),
                                    Int32(s.kvHeads), Int32(s.headDim), s.attentionScale, window(l), a.dq.pointer, a.dk.pointer, a.dv.pointer)
            ckpt_rope(a.dq.pointer, Int64(Q), Int64(T), Int32(s.heads), Int32(s.headDim), Int32(s.ropeDims), a.ropeCos.pointer, a.ropeSinNeg.pointer, neox)
            ckpt_rope(a.dk.pointer, Int64(KV), Int64(T), Int32(s.kvHeads), Int32(s.headDim), Int32(s.ropeDims), a.ropeCos.pointer, a.ropeSinNeg.pointer, neox)
            biasGrad(.layer(l, .attnQBias), a.dq.pointer, T, Q)
            biasGrad(.layer(l, .attnKBias), a.dk.pointer, T, KV)
            biasGrad(.layer(l, .attnVBias), a.dv.pointer, T, KV)
            ckpt_linear_backward(a.dq.pointer, a.xn1[l].pointer, weight(.layer(l, .attnQ)), Int64(T), Int64(C), Int64(Q), a.dxn.pointer, grad(.layer(l, .attnQ)))
            ckpt_linear_backward(a.dk.pointer, a.xn1[l].pointer, weight(.layer(l, .attnK)), Int64(T), Int64(C), Int64(KV), a.dtmp.pointer, grad(.layer(l, .attnK)))
            add(a.dtmp.pointer, into: a.dxn.pointer, T * C)
            ckpt_linear_backward(a.dv.pointer, a.xn1[l].pointer, weight(.layer(l, .attnV)), Int64(T), Int64(C), Int64(KV), a.dtmp.pointer, grad(.layer(l, .attnV)))
            add(a.dtmp.pointer, into: a.dxn.pointer, T * C)
            ckpt_rmsnorm_backward(a.dxn.pointer, a.xin[l].pointer, weight(.layer(l, .attnNorm)), a.rstd1[l].pointer, Int64(T), Int64(C), a.dtmp.pointer, grad(.layer(l, .attnNorm)))
            add(a.dtmp.pointer, into: dx.pointer, T * C)
        }
        let dembed = grad(.embed)
        for (t, id) in tokens.enumerated() { add(dx.pointer + t * C, into: dembed + Int(id) * C, C) }
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
