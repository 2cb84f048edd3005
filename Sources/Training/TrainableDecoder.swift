import Basics
import CKernels
import CheckpointIO
import Models
import TensorMath
#if canImport(Glibc)
import Glibc
#endif

/// A student being trained: f32 master weights of a decoder (llama, mistral, qwen2,
/// qwen3, gemma2, gemma3, nemotron, phi3, and the mixtures of experts mixtral, qwen3moe,
/// qwen2moe) in one flat array with their gradients beside them (in memory or
/// streamed from files, see `StateResidence`), and the
/// forward and backward passes of one sequence, layer by layer, built from the
/// operations in backprop.c. Weights keep the file's layout (llama.cpp's Q/K row order
/// in GGUF, with the RoPE layout the engine uses for it), so they write back unchanged.
package final class TrainableDecoder {
    /// One trained tensor: where it lives in the flat buffers.
    package struct Slot: Sendable {
        package let role: TensorRole
        package let name: String
        package let shape: [Int]
        package let offset: Int
        package let count: Int

        package var isNorm: Bool {
            switch role {
            case .finalNorm: return true
            case let .layer(_, part): return part.isNorm
            default: return false
            }
        }
    }

    package enum Failure: UserFacingError, Sendable {
        case unsupported(String)
        package var exitCode: ExitCode { .unsupported }
        package var description: String {
            switch self {
            case let .unsupported(why): return "distillation does not handle this student yet: \(why)"
            }
        }
    }

    package let spec: DecoderSpec
    package let slots: [Slot]
    package let weights: StateArray
    package let grads: StateArray
    package let tiedHead: Bool
    /// Recompute each layer's activations in the backward pass from its saved input,
    /// instead of keeping them all from the forward pass: memory for one layer's
    /// activations rather than every layer's, for about a third more compute.
    package let recomputeActivations: Bool
    /// Added to norm weights when read and taken off when written: gemma's HF checkpoints
    /// store w for a norm that multiplies by 1 + w (GGUF holds 1 + w already).
    package let normOffset: Float
    /// Where each role's values sit: a slot, and the offset into it of a part of a fused
    /// matrix (phi3's q, k and v rows of `attn_qkv`; gate and up of `ffn_up`) or of a
    /// stack (each expert of GGUF's `ffn_*_exps`), so the passes read and update the parts
    /// while the fused tensor writes back whole.
    private var index: [TensorRole: (slot: Int, offset: Int)] = [:]
    /// Per layer, the f32 elements its tensors span in `weights` and `grads`.
    private var layerRanges: [Range<Int>] = []
    private(set) var acts: Activations?

    /// Rows of logits computed at a time, bounding the logits buffer to rows × vocab.
    package var logitRows = 64

    /// How the matrix products run. `int8`: the forward product and the input gradient
    /// with 8-bit operands in blocks of 32 and f32 accumulation (weights and activations
    /// quantized on the fly from the f32 masters), the weight gradient in f32 (as
    /// SwitchBack). Quantized weights are kept until the weights change when the state is
    /// in memory, requantized at each use when it streams: the same values either way.
    package enum Products: String, Sendable, CaseIterable { case f32, int8 }
    package var products: Products = .f32 { didSet { weightsChanged() } }

    private struct QuantizedKey: Hashable { let slot: Int; let part: Int; let transposed: Bool; let first: Int }
    private var quantized: [QuantizedKey: QuantizedMatrix] = [:]
    private var activationScratch = QuantizedMatrix(values: 0, scales: 0)

    /// Call after changing weights (the optimizer does): drops the quantized copies.
    package func weightsChanged() { quantized.removeAll(keepingCapacity: true) }

    /// Output rows of the LM head handled at a time: a slice of its weights (and their
    /// gradients) is what a streamed run holds. Set from the hidden size alone (16 MiB of
    /// f32 rows), so runs streamed or not compute the same sums in the same order.
    package var vocabSlice: Int

    static func defaultVocabSlice(hidden: Int) -> Int {
        let rows = max(Int(CKPT_PANEL_ROWS), (16 << 20) / max(hidden * 4, 1))
        return rows - rows % Int(CKPT_PANEL_ROWS)
    }

    /// A student's trained tensors, read from `model`; weights and gradients live as
    /// `residence` says.
    package init(model: DecoderModel, residence: StateResidence = .memory, recomputeActivations: Bool = false) throws {
        let s = model.spec
        if s.heads % max(s.kvHeads, 1) != 0 { throw Failure.unsupported("\(s.heads) query heads do not group evenly over \(s.kvHeads) KV heads") }
        spec = s
        self.recomputeActivations = recomputeActivations
        vocabSlice = Self.defaultVocabSlice(hidden: s.hidden)
        normOffset = model.checkpoint.format == .safetensors ? s.hfNormOffset : 0
        let slots = try Self.slots(of: model)
        self.slots = slots
        tiedHead = model.tensor(.lmHead) == nil
        let total = slots.last.map { $0.offset + $0.count } ?? 0
        weights = try StateArray(name: "weights.f32", byteCount: total * 4, residence: residence)
        grads = try StateArray(name: "grads.f32", byteCount: total * 4, residence: residence)
        layerRanges = Array(repeating: 0..<0, count: s.layers)
        for (i, slot) in slots.enumerated() {
            index[slot.role] = (i, 0)
            if case let .layer(l, part) = slot.role {
                var at = 0
                for (sub, rows) in part.fusedParts(s) {
                    index[.layer(l, sub)] = (i, at)
                    at += rows * (slot.shape.last ?? 0)
                }
                if at != 0 && at != slot.count {
                    throw Failure.unsupported("\(slot.name) holds \(slot.count) values, not the \(at) of its parts")
                }
                if let sub = part.stackedPart, slot.shape.count == 3 {
                    let each = slot.count / max(slot.shape[0], 1)
                    for e in 0..<slot.shape[0] { index[.expert(l, e, sub)] = (i, e * each) }
                }
            }
            if let l = slot.role.layerIndex {
                let r = layerRanges[l]
                layerRanges[l] = r.isEmpty ? slot.offset..<(slot.offset + slot.count) : min(r.lowerBound, slot.offset)..<max(r.upperBound, slot.offset + slot.count)
            }
            let t = model.tensor(slot.role)!
            try TensorDecoder.decodeRows(t, rows: 0..<t.rowCount, into: weights.pointer + slot.offset)
            if normOffset != 0 && slot.isNorm {
                for i in slot.offset..<(slot.offset + slot.count) { weights[i] += normOffset }
            }
            weights.release(floats: slot.offset..<(slot.offset + slot.count))
            try? t.file.advise(.dontNeed, range: t.offset..<(t.offset + t.byteCount))
        }
    }

    /// The tensors a student trains, in the order they sit in the flat buffers. GGUF's
    /// stacked experts are one slot a stack (the tensor that is written back).
    package static func slots(of model: DecoderModel) throws -> [Slot] {
        let roles = model.required().map(\.0)
        var slots: [Slot] = []
        var at = 0
        for var r in roles {
            if case let .expert(l, e, part) = r, let stacked = part.expertStack, model.tensor(.layer(l, stacked)) != nil {
                if e != 0 { continue }
                r = .layer(l, stacked)
            }
            guard let t = model.tensor(r) else { throw Failure.unsupported("no tensor for \(r)") }
            slots.append(Slot(role: r, name: t.name, shape: t.shape, offset: at, count: t.elementCount))
            at += t.elementCount
        }
        return slots
    }

    package var parameterCount: Int { weights.count }

    package func weight(_ r: TensorRole) -> UnsafeMutablePointer<Float> {
        let role = r == .lmHead && tiedHead ? .embed : r
        let e = index[role]!
        return weights.pointer + slots[e.slot].offset + e.offset
    }

    package func grad(_ r: TensorRole) -> UnsafeMutablePointer<Float> {
        let role = r == .lmHead && tiedHead ? .embed : r
        let e = index[role]!
        return grads.pointer + slots[e.slot].offset + e.offset
    }

    package func has(_ r: TensorRole) -> Bool { index[r] != nil }

    package func zeroGrads() { grads.zero() }

    /// Done with a layer for now: a streamed student drops its pages.
    private func release(layer l: Int, grads withGrads: Bool) {
        weights.release(floats: layerRanges[l])
        if withGrads { grads.release(floats: layerRanges[l]) }
    }

    private func release(_ r: TensorRole, grads withGrads: Bool) {
        let role = r == .lmHead && tiedHead ? .embed : r
        let slot = slots[index[role]!.slot]
        weights.release(floats: slot.offset..<(slot.offset + slot.count))
        if withGrads { grads.release(floats: slot.offset..<(slot.offset + slot.count)) }
    }

    /// Receives rows `firstRow ..< firstRow + rows` of one sequence's logits, writes the
    /// loss's gradient with respect to them into `grad` (zeroed beforehand) and returns
    /// the loss summed over those rows.
    package typealias LossHead = (_ firstRow: Int, _ rows: Int, _ logits: UnsafePointer<Float>, _ grad: UnsafeMutablePointer<Float>) -> Double

    /// Receives layer `layer`'s output (tokens × hidden, row-major) in the forward pass,
    /// writes the gradient of an extra loss on it into `grad` (zeroed beforehand) and
    /// returns that loss (an intermediate-state loss against a teacher's layer).
    package typealias HiddenHead = (_ layer: Int, _ hidden: UnsafePointer<Float>, _ grad: UnsafeMutablePointer<Float>) -> Double

    /// One decoder layer's activations for one sequence: what its backward pass reads.
    final class LayerActivations {
        let xn1, q, k, v, att, xmid, xn2, gate, up, act, rstd1, rstd2: FloatBuffer
        /// The two pre-norms' row means (LayerNorm; unused under RMSNorm).
        let mean1, mean2: FloatBuffer
        /// Each attention row's log-sum-exp [heads, tokens]: the backward pass recomputes the probabilities.
        let lse: FloatBuffer
        /// q and k before their per-head norms, and the norms' 1/rms (qwen3, gemma3).
        let qRaw, kRaw, rstdQ, rstdK: FloatBuffer
        /// Attention's and the MLP's outputs before their post-norms, and the norms' 1/rms (gemma2, gemma3).
        let attnOut, mlpOut, rstdPost1, rstdPost2: FloatBuffer
        /// A mixture of experts' routing and experts (gate, up and act above are then the shared expert's).
        let mixture: MixtureActivations?

        init(spec s: DecoderSpec, tokens T: Int) {
            func buf(_ n: Int) -> FloatBuffer { FloatBuffer(count: n, zeroed: false) }
            xn1 = buf(T * s.hidden); q = buf(T * s.qDim); k = buf(T * s.kvDim); v = buf(T * s.kvDim)
            att = buf(T * s.qDim); xmid = buf(T * s.hidden); xn2 = buf(T * s.hidden)
            let f = Self.denseWidth(s)
            gate = buf(T * f); up = buf(T * f); act = buf(T * f)
            mixture = s.isMixtureOfExperts ? MixtureActivations(spec: s, tokens: T) : nil
            rstd1 = buf(T); rstd2 = buf(T); lse = buf(s.heads * T)
            mean1 = buf(T); mean2 = buf(T)
            let qk = s.qkNorm ? 1 : 0, post = s.postNorms ? 1 : 0
            qRaw = buf(qk * T * s.qDim); kRaw = buf(qk * T * s.kvDim); rstdQ = buf(qk * T * s.heads); rstdK = buf(qk * T * s.kvHeads)
            attnOut = buf(post * T * s.hidden); mlpOut = buf(post * T * s.hidden); rstdPost1 = buf(post * T); rstdPost2 = buf(post * T)
        }

        /// The width of the MLP every token runs: the dense one, or a mixture's shared expert (if any).
        static func denseWidth(_ s: DecoderSpec) -> Int { s.isMixtureOfExperts ? s.sharedFFN : s.ffn }

        /// Bytes for `tokens` tokens.
        static func bytes(spec s: DecoderSpec, tokens T: Int) -> Int {
            let qk = s.qkNorm ? T * (s.qDim + s.kvDim + s.heads + s.kvHeads) : 0
            let post = s.postNorms ? 2 * T * (s.hidden + 1) : 0
            return 4 * (T * (3 * s.hidden + 2 * s.qDim + 2 * s.kvDim + 3 * denseWidth(s) + 4) + s.heads * T + qk + post)
                + (s.isMixtureOfExperts ? MixtureActivations.bytes(spec: s, tokens: T) : 0)
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
        let xfin, xf, rstdF, meanF: FloatBuffer
        /// RoPE tables of global layers and of sliding-window layers (their base differs in gemma3).
        let ropeCos, ropeSin, ropeSinNeg, ropeCosLocal, ropeSinLocal, ropeSinNegLocal: FloatBuffer
        // Work buffers.
        let dx, dxn, dtmp, dq, dk, dv, datt, dg, du, da, dproj: FloatBuffer
        /// A mixture of experts: one expert's gathered input rows and their input gradient, the router logits' gradient.
        let expertIn, expertDx, expertDy, dRouter: FloatBuffer
        let logits, dlogits: FloatBuffer
        /// Gradients of hidden-state losses at the outputs of the layers that have one.
        var hiddenGrads: [Int: FloatBuffer] = [:]

        init(spec s: DecoderSpec, tokens T: Int, logitRows: Int, recompute: Bool) {
            tokens = T
            xin = (0..<s.layers).map { _ in FloatBuffer(count: T * s.hidden, zeroed: false) }
            layers = (0..<(recompute ? 1 : s.layers)).map { _ in LayerActivations(spec: s, tokens: T) }
            xfin = FloatBuffer(count: T * s.hidden, zeroed: false); xf = FloatBuffer(count: T * s.hidden, zeroed: false)
            rstdF = FloatBuffer(count: T, zeroed: false); meanF = FloatBuffer(count: T, zeroed: false)
            let half = s.ropeDims / 2
            func table() -> FloatBuffer { FloatBuffer(count: T * half, zeroed: false) }
            ropeCos = table(); ropeSin = table(); ropeSinNeg = table(); ropeCosLocal = table(); ropeSinLocal = table(); ropeSinNegLocal = table()
            for t in 0..<T {
                for i in 0..<half {
                    let a = Double(t) * s.ropeInvFreq[i], b = Double(t) * s.ropeInvFreqLocal[i]
                    let g = s.ropeAttentionFactor, l = s.ropeAttentionFactorLocal
                    ropeCos[t * half + i] = Float(cos(a)) * g; ropeSin[t * half + i] = Float(sin(a)) * g; ropeSinNeg[t * half + i] = -Float(sin(a)) * g
                    ropeCosLocal[t * half + i] = Float(cos(b)) * l; ropeSinLocal[t * half + i] = Float(sin(b)) * l
                    ropeSinNegLocal[t * half + i] = -Float(sin(b)) * l
                }
            }
            let f = max(s.ffn, s.sharedFFN), wide = max(s.hidden, s.qDim, f)
            dx = FloatBuffer(count: T * s.hidden); dxn = FloatBuffer(count: T * wide); dtmp = FloatBuffer(count: T * wide)
            dq = FloatBuffer(count: T * s.qDim); dk = FloatBuffer(count: T * s.kvDim); dv = FloatBuffer(count: T * s.kvDim)
            datt = FloatBuffer(count: T * s.qDim); dg = FloatBuffer(count: T * f); du = FloatBuffer(count: T * f)
            da = FloatBuffer(count: T * f); dproj = FloatBuffer(count: s.postNorms ? T * s.hidden : 0)
            let moe = s.isMixtureOfExperts ? 1 : 0
            expertIn = FloatBuffer(count: moe * T * s.hidden); expertDx = FloatBuffer(count: moe * T * s.hidden)
            expertDy = FloatBuffer(count: moe * T * s.hidden)
            dRouter = FloatBuffer(count: moe * T * s.experts)
            logits = FloatBuffer(count: logitRows * s.vocab, zeroed: false); dlogits = FloatBuffer(count: logitRows * s.vocab)
        }

        /// Bytes the buffers take for `tokens` tokens.
        static func bytes(spec s: DecoderSpec, tokens T: Int, logitRows: Int, recompute: Bool) -> Int {
            let f = max(s.ffn, s.sharedFFN), wide = max(s.hidden, s.qDim, f)
            let shared = T * (3 * s.hidden + 2 + 6 * (s.ropeDims / 2)) + T * (s.hidden + 2 * wide + 2 * s.qDim + 2 * s.kvDim + 3 * f)
                + (s.postNorms ? T * s.hidden : 0)
                + (s.isMixtureOfExperts ? T * (3 * s.hidden + s.experts) : 0)
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

    private func sliding(_ layer: Int) -> Bool { spec.slidingWindow > 0 && spec.slidingLayers.contains(layer) }

    private func window(_ layer: Int) -> Int32 { sliding(layer) ? Int32(spec.slidingWindow) : 0 }

    /// cos, sin and −sin tables of layer `l`'s RoPE.
    private func rope(_ l: Int, _ a: Activations) -> (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) {
        spec.slidingLayers.contains(l) ? (a.ropeCosLocal.pointer, a.ropeSinLocal.pointer, a.ropeSinNegLocal.pointer)
            : (a.ropeCos.pointer, a.ropeSin.pointer, a.ropeSinNeg.pointer)
    }

    /// Rows `first ..< first + rows` of slot `r`'s matrix (`cols` wide), quantized by rows
    /// (for y = x·Wᵀ) or, `transposed`, by columns (for dx = dy·W).
    private func quantizedWeight(_ r: TensorRole, first: Int = 0, rows: Int, cols: Int, transposed: Bool) -> QuantizedMatrix {
        let role = r == .lmHead && tiedHead ? .embed : r
        let e = index[role]!, key = QuantizedKey(slot: e.slot, part: e.offset, transposed: transposed, first: first)
        if let m = quantized[key] { return m }
        let w = weight(role) + first * cols
        let m: QuantizedMatrix
        if transposed {
            m = QuantizedMatrix(values: cols * Int(ckpt_q8_padded(Int64(rows))), scales: cols * Int(ckpt_q8_blocks(Int64(rows))))
            ckpt_q8_quantize_cols(w, Int64(cols), Int64(rows), Int64(cols), m.values, m.scales.pointer)
        } else {
            m = QuantizedMatrix(values: rows * Int(ckpt_q8_padded(Int64(cols))), scales: rows * Int(ckpt_q8_blocks(Int64(cols))))
            ckpt_q8_quantize_rows(w, Int64(cols), Int64(rows), Int64(cols), m.values, m.scales.pointer)
        }
        if !weights.isStreamed { quantized[key] = m }
        return m
    }

    /// Scratch for `rows` quantized rows of `k` values.
    private func scratch(rows: Int, k: Int) -> QuantizedMatrix {
        let v = rows * Int(ckpt_q8_padded(Int64(k))), b = rows * Int(ckpt_q8_blocks(Int64(k)))
        if activationScratch.capacity < v || activationScratch.scales.count < b { activationScratch = QuantizedMatrix(values: v, scales: b) }
        return activationScratch
    }

    /// y[T, out] = x[T, in] · Wᵀ for slot `r`.
    func linearForward(_ r: TensorRole, _ x: UnsafePointer<Float>, _ T: Int, _ inDim: Int, _ outDim: Int, _ y: UnsafeMutablePointer<Float>) {
        guard products == .int8 else { return ckpt_linear_forward(x, Int64(T), Int64(inDim), weight(r), Int64(outDim), y) }
        let m = quantizedWeight(r, rows: outDim, cols: inDim, transposed: false), sc = scratch(rows: T, k: inDim)
        ckpt_linear_forward_q8(x, Int64(T), Int64(inDim), m.values, m.scales.pointer, Int64(outDim), y, sc.values, sc.scales.pointer)
    }

    /// dx = dy · W (overwritten), dW += dyᵀ · x, for slot `r`.
    func linearBackward(_ r: TensorRole, _ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ T: Int, _ inDim: Int, _ outDim: Int,
                                _ dx: UnsafeMutablePointer<Float>) {
        guard products == .int8 else {
            return ckpt_linear_backward(dy, x, weight(r), Int64(T), Int64(inDim), Int64(outDim), dx, grad(r))
        }
        let m = quantizedWeight(r, rows: outDim, cols: inDim, transposed: true), sc = scratch(rows: T, k: outDim)
        ckpt_linear_backward_input_q8(dy, Int64(T), Int64(inDim), m.values, m.scales.pointer, Int64(outDim), dx, sc.values, sc.scales.pointer)
        ckpt_linear_backward(dy, x, weight(r), Int64(T), Int64(inDim), Int64(outDim), nil, grad(r))
    }

    /// act(x·gateᵀ) · (x·upᵀ) · downᵀ over `rows` rows (act(x·upᵀ) ungated), keeping
    /// gate, up and act for the backward pass: the dense MLP, each expert, the shared expert.
    func mlpForward(gate: TensorRole, up: TensorRole, down: TensorRole, x: UnsafePointer<Float>, rows T: Int, width F: Int,
                    gateOut: UnsafeMutablePointer<Float>, upOut: UnsafeMutablePointer<Float>, act: UnsafeMutablePointer<Float>,
                    into y: UnsafeMutablePointer<Float>, upBias: TensorRole? = nil) {
        let s = spec, C = s.hidden
        if s.gatedMLP { linearForward(gate, x, T, C, F, gateOut) }
        linearForward(up, x, T, C, F, upOut)
        if let upBias { addBias(upBias, upOut, T, F) }
        switch s.activation {
        case .silu: ckpt_silu_mul(gateOut, upOut, act, Int64(T * F))
        case .geluTanh: ckpt_gelu_tanh_mul_exact(gateOut, upOut, act, Int64(T * F))
        case .reluSquared: ckpt_relu_squared(upOut, act, Int64(T * F))
        }
        linearForward(down, act, T, F, C, y)
    }

    /// The backward pass of `mlpForward`: `dy` at its output, dx (overwritten) at its
    /// input; the weights' gradients added. Uses a.da, a.dg, a.du and a.dtmp.
    func mlpBackward(gate: TensorRole, up: TensorRole, down: TensorRole, dy: UnsafePointer<Float>, x: UnsafePointer<Float>, rows T: Int, width F: Int,
                     gate g: UnsafePointer<Float>, up u: UnsafePointer<Float>, act: UnsafePointer<Float>, _ a: Activations,
                     into dx: UnsafeMutablePointer<Float>, upBias: TensorRole? = nil) {
        let s = spec, C = s.hidden
        linearBackward(down, dy, act, T, F, C, a.da.pointer)
        switch s.activation {
        case .silu: ckpt_swiglu_backward(a.da.pointer, g, u, Int64(T * F), a.dg.pointer, a.du.pointer)
        case .geluTanh: ckpt_geglu_backward(a.da.pointer, g, u, Int64(T * F), a.dg.pointer, a.du.pointer)
        case .reluSquared: ckpt_relu_squared_backward(a.da.pointer, u, Int64(T * F), a.du.pointer)
        }
        if let upBias { biasGrad(upBias, a.du.pointer, T, F) }
        if s.gatedMLP {
            linearBackward(gate, a.dg.pointer, x, T, C, F, dx)
            linearBackward(up, a.du.pointer, x, T, C, F, a.dtmp.pointer)
            add(a.dtmp.pointer, into: dx, T * C)
        } else {
            linearBackward(up, a.du.pointer, x, T, C, F, dx)
        }
    }

    /// Layer `l` forward on one sequence: reads its input from `x` (the residual stream),
    /// leaves its output there, and what the backward pass needs in `la`.
    private func forwardLayer(_ l: Int, _ x: UnsafeMutablePointer<Float>, _ la: LayerActivations, _ a: Activations) {
        let s = spec, T = a.tokens, C = s.hidden, F = s.ffn, Q = s.qDim, KV = s.kvDim, d = s.headDim
        let neox: Int32 = s.ropeNeox ? 1 : 0
        let (cosT, sinT, _) = rope(l, a)
        normForward(.layer(l, .attnNorm), .layer(l, .attnNormBias), x, T, la.xn1.pointer, la.mean1.pointer, la.rstd1.pointer)
        let (q, k) = s.qkNorm ? (la.qRaw.pointer, la.kRaw.pointer) : (la.q.pointer, la.k.pointer)
        linearForward(.layer(l, .attnQ), la.xn1.pointer, T, C, Q, q)
        linearForward(.layer(l, .attnK), la.xn1.pointer, T, C, KV, k)
        linearForward(.layer(l, .attnV), la.xn1.pointer, T, C, KV, la.v.pointer)
        addBias(.layer(l, .attnQBias), q, T, Q)
        addBias(.layer(l, .attnKBias), k, T, KV)
        addBias(.layer(l, .attnVBias), la.v.pointer, T, KV)
        if s.qkNorm {
            // Each head's q and k normed on their own: rows of head_dim.
            ckpt_rmsnorm_forward(q, weight(.layer(l, .attnQNorm)), Int64(T * s.heads), Int64(d), s.normEps, la.q.pointer, la.rstdQ.pointer)
            ckpt_rmsnorm_forward(k, weight(.layer(l, .attnKNorm)), Int64(T * s.kvHeads), Int64(d), s.normEps, la.k.pointer, la.rstdK.pointer)
        }
        ckpt_rope(la.q.pointer, Int64(Q), Int64(T), Int32(s.heads), Int32(d), Int32(s.ropeDims), cosT, sinT, neox)
        ckpt_rope(la.k.pointer, Int64(KV), Int64(T), Int32(s.kvHeads), Int32(d), Int32(s.ropeDims), cosT, sinT, neox)
        ckpt_attention_forward(la.q.pointer, la.k.pointer, la.v.pointer, Int64(T), Int32(s.heads), Int32(s.kvHeads), Int32(d),
                               s.attentionScale, s.attentionSoftcap, window(l), la.att.pointer, la.lse.pointer)
        let attnOut = s.postNorms ? la.attnOut.pointer : a.dtmp.pointer
        linearForward(.layer(l, .attnOutput), la.att.pointer, T, Q, C, attnOut)
        addBias(.layer(l, .attnOutputBias), attnOut, T, C)
        if s.postNorms {
            ckpt_rmsnorm_forward(attnOut, weight(.layer(l, .postAttnNorm)), Int64(T), Int64(C), s.normEps, a.dtmp.pointer, la.rstdPost1.pointer)
        }
        add(a.dtmp.pointer, into: x, T * C)
        memcpy(la.xmid.pointer, x, T * C * 4)
        normForward(.layer(l, .mlpNorm), .layer(l, .mlpNormBias), x, T, la.xn2.pointer, la.mean2.pointer, la.rstd2.pointer)
        let mlpOut = s.postNorms ? la.mlpOut.pointer : a.dtmp.pointer
        if s.isMixtureOfExperts {
            mixtureForward(l, la, a, into: mlpOut)
        } else {
            mlpForward(gate: .layer(l, .mlpGate), up: .layer(l, .mlpUp), down: .layer(l, .mlpDown), x: la.xn2.pointer, rows: T, width: F,
                       gateOut: la.gate.pointer, upOut: la.up.pointer, act: la.act.pointer, into: mlpOut, upBias: .layer(l, .mlpUpBias))
            addBias(.layer(l, .mlpDownBias), mlpOut, T, C)
        }
        if s.postNorms {
            ckpt_rmsnorm_forward(mlpOut, weight(.layer(l, .postMlpNorm)), Int64(T), Int64(C), s.normEps, a.dtmp.pointer, la.rstdPost2.pointer)
        }
        add(a.dtmp.pointer, into: x, T * C)
    }

    /// Layer `l` backward on one sequence: `dx` holds the gradient at its output and
    /// leaves with the gradient at its input; weight gradients are added into `grads`.
    private func backwardLayer(_ l: Int, _ dx: UnsafeMutablePointer<Float>, _ la: LayerActivations, _ a: Activations) {
        let s = spec, T = a.tokens, C = s.hidden, F = s.ffn, Q = s.qDim, KV = s.kvDim, d = s.headDim
        let neox: Int32 = s.ropeNeox ? 1 : 0
        let (cosT, _, sinNeg) = rope(l, a)
        // MLP: x_out = x_mid + postnorm(down(act(gate) · up)).
        var dOut = UnsafeMutablePointer(dx)
        if s.postNorms {
            ckpt_rmsnorm_backward(dx, la.mlpOut.pointer, weight(.layer(l, .postMlpNorm)), la.rstdPost2.pointer, Int64(T), Int64(C),
                                  a.dproj.pointer, grad(.layer(l, .postMlpNorm)))
            dOut = a.dproj.pointer
        }
        if s.isMixtureOfExperts {
            mixtureBackward(l, dOut, la, a)
        } else {
            biasGrad(.layer(l, .mlpDownBias), dOut, T, C)
            mlpBackward(gate: .layer(l, .mlpGate), up: .layer(l, .mlpUp), down: .layer(l, .mlpDown), dy: dOut, x: la.xn2.pointer, rows: T, width: F,
                        gate: la.gate.pointer, up: la.up.pointer, act: la.act.pointer, a, into: a.dxn.pointer, upBias: .layer(l, .mlpUpBias))
        }
        normBackward(.layer(l, .mlpNorm), .layer(l, .mlpNormBias), a.dxn.pointer, la.xmid.pointer, la.mean2.pointer, la.rstd2.pointer, T, a.dtmp.pointer)
        add(a.dtmp.pointer, into: dx, T * C)
        // Attention: x_mid = x_in + postnorm(o(attention(rope(qknorm(q)), rope(qknorm(k)), v))).
        dOut = dx
        if s.postNorms {
            ckpt_rmsnorm_backward(dx, la.attnOut.pointer, weight(.layer(l, .postAttnNorm)), la.rstdPost1.pointer, Int64(T), Int64(C),
                                  a.dproj.pointer, grad(.layer(l, .postAttnNorm)))
            dOut = a.dproj.pointer
        }
        biasGrad(.layer(l, .attnOutputBias), dOut, T, C)
        linearBackward(.layer(l, .attnOutput), dOut, la.att.pointer, T, Q, C, a.datt.pointer)
        ckpt_attention_backward(a.datt.pointer, la.q.pointer, la.k.pointer, la.v.pointer, la.lse.pointer, Int64(T), Int32(s.heads),
                                Int32(s.kvHeads), Int32(d), s.attentionScale, s.attentionSoftcap, window(l), a.dq.pointer, a.dk.pointer, a.dv.pointer)
        ckpt_rope(a.dq.pointer, Int64(Q), Int64(T), Int32(s.heads), Int32(d), Int32(s.ropeDims), cosT, sinNeg, neox)
        ckpt_rope(a.dk.pointer, Int64(KV), Int64(T), Int32(s.kvHeads), Int32(d), Int32(s.ropeDims), cosT, sinNeg, neox)
        if s.qkNorm {
            ckpt_rmsnorm_backward(a.dq.pointer, la.qRaw.pointer, weight(.layer(l, .attnQNorm)), la.rstdQ.pointer, Int64(T * s.heads), Int64(d),
                                  a.dtmp.pointer, grad(.layer(l, .attnQNorm)))
            memcpy(a.dq.pointer, a.dtmp.pointer, T * Q * 4)
            ckpt_rmsnorm_backward(a.dk.pointer, la.kRaw.pointer, weight(.layer(l, .attnKNorm)), la.rstdK.pointer, Int64(T * s.kvHeads), Int64(d),
                                  a.dtmp.pointer, grad(.layer(l, .attnKNorm)))
            memcpy(a.dk.pointer, a.dtmp.pointer, T * KV * 4)
        }
        biasGrad(.layer(l, .attnQBias), a.dq.pointer, T, Q)
        biasGrad(.layer(l, .attnKBias), a.dk.pointer, T, KV)
        biasGrad(.layer(l, .attnVBias), a.dv.pointer, T, KV)
        linearBackward(.layer(l, .attnQ), a.dq.pointer, la.xn1.pointer, T, C, Q, a.dxn.pointer)
        linearBackward(.layer(l, .attnK), a.dk.pointer, la.xn1.pointer, T, C, KV, a.dtmp.pointer)
        add(a.dtmp.pointer, into: a.dxn.pointer, T * C)
        linearBackward(.layer(l, .attnV), a.dv.pointer, la.xn1.pointer, T, C, KV, a.dtmp.pointer)
        add(a.dtmp.pointer, into: a.dxn.pointer, T * C)
        normBackward(.layer(l, .attnNorm), .layer(l, .attnNormBias), a.dxn.pointer, a.xin[l].pointer, la.mean1.pointer, la.rstd1.pointer, T, a.dtmp.pointer)
        add(a.dtmp.pointer, into: dx, T * C)
    }

    /// Runs one sequence forward and (unless `backward` is false) backward, adding its
    /// gradients into `grads`; returns the loss the heads report, summed over positions.
    /// `hidden`, when given, is called with the output of each layer in `hiddenLayers`.
    package func forwardBackward(_ tokens: [Int32], backward: Bool = true, hiddenLayers: Set<Int> = [], hidden: HiddenHead? = nil,
                                loss head: LossHead) -> Double {
        let s = spec, T = tokens.count, C = s.hidden
        let a = activations(T)
        // Forward.
        let x = a.dx  // the residual stream, reused as dx in the backward pass
        let embed = weight(.embed)
        for (t, id) in tokens.enumerated() { memcpy(x.pointer + t * C, embed + Int(id) * C, C * 4) }
        if s.embeddingScale != 1 { ckpt_scale(x.pointer, s.embeddingScale, Int64(T * C)) }
        release(.embed, grads: false)
        var total = 0.0
        for l in 0..<s.layers {
            memcpy(a.xin[l].pointer, x.pointer, T * C * 4)
            forwardLayer(l, x.pointer, a.layers[recomputeActivations ? 0 : l], a)
            release(layer: l, grads: false)
            if let hidden, hiddenLayers.contains(l) {
                let g = a.hiddenGrads[l] ?? FloatBuffer(count: T * C)
                a.hiddenGrads[l] = g
                memset(g.pointer, 0, T * C * 4)
                total += hidden(l, x.pointer, g.pointer)
            }
        }
        memcpy(a.xfin.pointer, x.pointer, T * C * 4)
        normForward(.finalNorm, .finalNormBias, x.pointer, T, a.xf.pointer, a.meanF.pointer, a.rstdF.pointer)

        // LM head and loss, a block of rows at a time (each a slice of the vocabulary at a
        // time); its backward pass right away.
        let V = s.vocab, headWeight = weight(.lmHead), headGrad = grad(.lmHead), slice = vocabSlice
        let headScratch = products == .int8 ? scratch(rows: min(logitRows, T), k: max(C, min(slice, V))) : activationScratch
        var r0 = 0
        while r0 < T {
            let n = min(logitRows, T - r0)
            for v0 in stride(from: 0, to: V, by: slice) {
                let nv = min(slice, V - v0)
                if products == .int8 {
                    if v0 == 0 { ckpt_q8_quantize_rows(a.xf.pointer + r0 * C, Int64(C), Int64(n), Int64(C), headScratch.values, headScratch.scales.pointer) }
                    let m = quantizedWeight(.lmHead, first: v0, rows: nv, cols: C, transposed: false)
                    ckpt_gemm_q8(headScratch.values, headScratch.scales.pointer, Int64(n), m.values, m.scales.pointer, Int64(nv),
                                 ckpt_q8_padded(Int64(C)), a.logits.pointer + v0, Int64(V), 0)
                } else {
                    ckpt_linear_forward_strided(a.xf.pointer + r0 * C, Int64(n), Int64(C), headWeight + v0 * C, Int64(nv), a.logits.pointer + v0, Int64(V), 0)
                }
                weights.release(floats: (headWeight - weights.pointer + v0 * C)..<(headWeight - weights.pointer + (v0 + nv) * C))
            }
            if s.finalSoftcap > 0 { ckpt_softcap(a.logits.pointer, Int64(n * V), s.finalSoftcap) }
            memset(a.dlogits.pointer, 0, n * V * 4)
            total += head(r0, n, a.logits.pointer, a.dlogits.pointer)
            if backward {
                if s.finalSoftcap > 0 { ckpt_softcap_backward(a.logits.pointer, a.dlogits.pointer, Int64(n * V), s.finalSoftcap) }
                for v0 in stride(from: 0, to: V, by: slice) {
                    let nv = min(slice, V - v0)
                    if products == .int8 {
                        ckpt_q8_quantize_rows(a.dlogits.pointer + v0, Int64(V), Int64(n), Int64(nv), headScratch.values, headScratch.scales.pointer)
                        let m = quantizedWeight(.lmHead, first: v0, rows: nv, cols: C, transposed: true)
                        ckpt_gemm_q8(headScratch.values, headScratch.scales.pointer, Int64(n), m.values, m.scales.pointer, Int64(C),
                                     ckpt_q8_padded(Int64(nv)), a.dxn.pointer + r0 * C, Int64(C), v0 == 0 ? 0 : 1)
                        ckpt_linear_backward_strided(a.dlogits.pointer + v0, Int64(V), a.xf.pointer + r0 * C, headWeight + v0 * C, Int64(n), Int64(C),
                                                     Int64(nv), nil, 0, headGrad + v0 * C)
                    } else {
                        ckpt_linear_backward_strided(a.dlogits.pointer + v0, Int64(V), a.xf.pointer + r0 * C, headWeight + v0 * C, Int64(n), Int64(C),
                                                     Int64(nv), a.dxn.pointer + r0 * C, v0 == 0 ? 0 : 1, headGrad + v0 * C)
                    }
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
        normBackward(.finalNorm, .finalNormBias, a.dxn.pointer, a.xfin.pointer, a.meanF.pointer, a.rstdF.pointer, T, dx.pointer)
        for l in (0..<s.layers).reversed() {
            if hidden != nil, hiddenLayers.contains(l), let g = a.hiddenGrads[l] { add(g.pointer, into: dx.pointer, T * C) }
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
        if s.embeddingScale != 1 { ckpt_scale(dx.pointer, s.embeddingScale, Int64(T * C)) }
        for (t, id) in tokens.enumerated() { add(dx.pointer + t * C, into: dembed + Int(id) * C, C) }
        release(.embed, grads: true)
        return total
    }

    /// A pre-norm over rows of hidden width: RMSNorm, or LayerNorm with its bias (`mean`
    /// is written only then).
    private func normForward(_ w: TensorRole, _ b: TensorRole, _ x: UnsafePointer<Float>, _ T: Int, _ y: UnsafeMutablePointer<Float>,
                             _ mean: UnsafeMutablePointer<Float>, _ rstd: UnsafeMutablePointer<Float>) {
        let C = Int64(spec.hidden)
        switch spec.norm {
        case .rms: ckpt_rmsnorm_forward(x, weight(w), Int64(T), C, spec.normEps, y, rstd)
        case .layer: ckpt_layernorm_forward(x, weight(w), has(b) ? weight(b) : nil, Int64(T), C, spec.normEps, y, mean, rstd)
        }
    }

    /// dx (overwritten) from dy through the pre-norm; its weight's and bias's gradients added.
    private func normBackward(_ w: TensorRole, _ b: TensorRole, _ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ mean: UnsafePointer<Float>,
                              _ rstd: UnsafePointer<Float>, _ T: Int, _ dx: UnsafeMutablePointer<Float>) {
        let C = Int64(spec.hidden)
        switch spec.norm {
        case .rms: ckpt_rmsnorm_backward(dy, x, weight(w), rstd, Int64(T), C, dx, grad(w))
        case .layer: ckpt_layernorm_backward(dy, x, weight(w), mean, rstd, Int64(T), C, dx, grad(w), has(b) ? grad(b) : nil)
        }
    }

    func addBias(_ r: TensorRole, _ y: UnsafeMutablePointer<Float>, _ T: Int, _ n: Int) {
        guard has(r) else { return }
        let b = weight(r)
        for t in 0..<T { add(b, into: y + t * n, n) }
    }

    func biasGrad(_ r: TensorRole, _ dy: UnsafeMutablePointer<Float>, _ T: Int, _ n: Int) {
        guard has(r) else { return }
        let g = grad(r)
        for t in 0..<T { add(dy + t * n, into: g, n) }
    }

    @inline(__always) func add(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, _ n: Int) {
        for i in 0..<n { y[i] += x[i] }
    }
}

/// int8 values in blocks of 32 with one f32 scale per block (see ckpt_q8_quantize_rows).
final class QuantizedMatrix {
    let values: UnsafeMutablePointer<Int8>
    let capacity: Int
    let scales: FloatBuffer

    init(values n: Int, scales b: Int) {
        capacity = n
        values = UnsafeMutableRawPointer.allocate(byteCount: max(n, 1), alignment: 64).bindMemory(to: Int8.self, capacity: max(n, 1))
        scales = FloatBuffer(count: b, zeroed: false)
    }

    deinit { UnsafeMutableRawPointer(values).deallocate() }
}
