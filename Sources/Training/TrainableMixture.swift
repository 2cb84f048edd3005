import CKernels
import Models
import TensorMath
#if canImport(Glibc)
import Glibc
#endif

/// One mixture-of-experts layer's routing and expert activations for one sequence: what
/// its backward pass reads. Each expert's rows sit together, in token order, from
/// `offsets[e]`: row j of expert e is token `routes[e][j].row`.
final class MixtureActivations {
    /// The router's softmax [tokens × experts].
    let probs: FloatBuffer
    /// Per expert, the tokens routed to it and the weight its output gets.
    var routes: [[(row: Int, weight: Float)]]
    var offsets: [Int]
    /// Each routed row's gate, up and act(gate) × up [tokens·k × ffn], and its output before the weight [tokens·k × hidden].
    let gate, up, act, out: FloatBuffer
    /// The shared expert's output [tokens × hidden] and its sigmoid gate per token (qwen2moe).
    let sharedOut, sharedGate: FloatBuffer

    init(spec s: DecoderSpec, tokens T: Int) {
        func buf(_ n: Int) -> FloatBuffer { FloatBuffer(count: n, zeroed: false) }
        probs = buf(T * s.experts)
        routes = Array(repeating: [], count: s.experts)
        offsets = Array(repeating: 0, count: s.experts)
        let rows = T * s.expertsUsed
        gate = buf(rows * s.ffn); up = buf(rows * s.ffn); act = buf(rows * s.ffn); out = buf(rows * s.hidden)
        let shared = s.sharedFFN > 0 ? 1 : 0
        sharedOut = buf(shared * T * s.hidden); sharedGate = buf(shared * T)
    }

    static func bytes(spec s: DecoderSpec, tokens T: Int) -> Int {
        4 * (T * s.experts + T * s.expertsUsed * (3 * s.ffn + s.hidden) + (s.sharedFFN > 0 ? T * (s.hidden + 1) : 0))
            + 16 * T * s.expertsUsed  // the routes
    }
}

extension TrainableDecoder {
    /// Which tokens went to which experts in the last forward pass, per layer (empty for a
    /// dense model): a finite-difference check is valid only where a change of a weight
    /// leaves this as it is.
    var lastRouting: [[[Int]]] {
        guard let a = acts, !recomputeActivations else { return [] }
        return a.layers.compactMap { $0.mixture.map { $0.routes.map { $0.map(\.row) } } }
    }

    /// A mixture's MLP forward on one sequence, from the normed rows `la.xn2` into `y`:
    /// softmax of the router's logits, per token the `expertsUsed` most probable experts
    /// (ties to the lower index, as the engine), their weights renormalised where the
    /// family does; each expert's gated MLP on its rows, weighted into `y`; then the shared
    /// expert, times its sigmoid gate. The choice of experts is a constant of the backward
    /// pass (as in PyTorch); the weights are not.
    func mixtureForward(_ l: Int, _ la: LayerActivations, _ a: Activations, into y: UnsafeMutablePointer<Float>) {
        let s = spec, T = a.tokens, C = s.hidden, F = s.ffn, E = s.experts, K = s.expertsUsed
        let m = la.mixture!
        linearForward(.layer(l, .moeRouter), la.xn2.pointer, T, C, E, m.probs.pointer)
        for e in 0..<E { m.routes[e].removeAll(keepingCapacity: true) }
        ExpertRouter.route(m.probs.pointer, tokens: T, experts: E, chosen: K, renormalise: s.expertWeightsNorm, into: &m.routes)
        memset(y, 0, T * C * 4)
        var at = 0
        for e in 0..<E {
            m.offsets[e] = at
            let rows = m.routes[e]
            at += rows.count
            if rows.isEmpty { continue }
            let o = m.offsets[e], n = rows.count
            for (j, r) in rows.enumerated() { memcpy(a.expertIn.pointer + j * C, la.xn2.pointer + r.row * C, C * 4) }
            mlpForward(gate: .expert(l, e, .mlpGate), up: .expert(l, e, .mlpUp), down: .expert(l, e, .mlpDown), x: a.expertIn.pointer, rows: n, width: F,
                       gateOut: m.gate.pointer + o * F, upOut: m.up.pointer + o * F, act: m.act.pointer + o * F, into: m.out.pointer + o * C)
            for (j, r) in rows.enumerated() {
                let yr = y + r.row * C, out = m.out.pointer + (o + j) * C
                for c in 0..<C { yr[c] += r.weight * out[c] }
            }
        }
        guard s.sharedFFN > 0 else { return }
        mlpForward(gate: .layer(l, .sharedGate), up: .layer(l, .sharedUp), down: .layer(l, .sharedDown), x: la.xn2.pointer, rows: T, width: s.sharedFFN,
                   gateOut: la.gate.pointer, upOut: la.up.pointer, act: la.act.pointer, into: m.sharedOut.pointer)
        let gateWeight = has(.layer(l, .sharedRouter)) ? UnsafePointer(weight(.layer(l, .sharedRouter))) : nil
        for t in 0..<T {
            var g: Float = 1
            if let w = gateWeight {
                var z: Float = 0
                for c in 0..<C { z += la.xn2[t * C + c] * w[c] }
                g = 1 / (1 + expf(-z))
            }
            m.sharedGate[t] = g
            let yr = y + t * C, out = m.sharedOut.pointer + t * C
            for c in 0..<C { yr[c] += g * out[c] }
        }
    }

    /// The backward pass of `mixtureForward`: `dy` at the MLP's output, the gradient at its
    /// input (`a.dxn`, overwritten); every expert's, the router's and the shared expert's
    /// weight gradients added. Through the weights: dL/dw = dy · expert output; through
    /// the renormalisation w_j = p_j / Σ_k p_k, dL/dp_j = (dL/dw_j − Σ_k w_k dL/dw_k) / Σ_k p_k;
    /// then the softmax's Jacobian to the router's logits.
    func mixtureBackward(_ l: Int, _ dy: UnsafePointer<Float>, _ la: LayerActivations, _ a: Activations) {
        let s = spec, T = a.tokens, C = s.hidden, F = s.ffn, E = s.experts
        let m = la.mixture!
        let dxn = a.dxn.pointer
        memset(dxn, 0, T * C * 4)
        // dL/dw per token and expert, then dL/dp, in a.dRouter.
        let dw = a.dRouter.pointer
        memset(dw, 0, T * E * 4)
        for e in 0..<E where !m.routes[e].isEmpty {
            let rows = m.routes[e], o = m.offsets[e], n = rows.count
            for (j, r) in rows.enumerated() {
                let d = dy + r.row * C, out = m.out.pointer + (o + j) * C, de = a.expertDy.pointer + j * C
                var dot: Float = 0
                for c in 0..<C { dot += d[c] * out[c]; de[c] = r.weight * d[c] }
                dw[r.row * E + e] = dot
                memcpy(a.expertIn.pointer + j * C, la.xn2.pointer + r.row * C, C * 4)
            }
            mlpBackward(gate: .expert(l, e, .mlpGate), up: .expert(l, e, .mlpUp), down: .expert(l, e, .mlpDown), dy: a.expertDy.pointer,
                        x: a.expertIn.pointer, rows: n, width: F, gate: m.gate.pointer + o * F, up: m.up.pointer + o * F,
                        act: m.act.pointer + o * F, a, into: a.expertDx.pointer)
            for (j, r) in rows.enumerated() {
                let src = a.expertDx.pointer + j * C, dst = dxn + r.row * C
                for c in 0..<C { dst[c] += src[c] }
            }
        }
        var chosen = [[Int]](repeating: [], count: T)
        for e in 0..<E { for r in m.routes[e] { chosen[r.row].append(e) } }
        for t in 0..<T {
            let p = m.probs.pointer + t * E, g = dw + t * E
            if s.expertWeightsNorm {
                var kept: Float = 0, weighted: Float = 0
                for e in chosen[t] { kept += p[e] }
                for e in chosen[t] { weighted += (p[e] / kept) * g[e] }
                for e in chosen[t] { g[e] = (g[e] - weighted) / kept }
            }
            // Softmax: dlogit_i = p_i (dp_i − Σ_j p_j dp_j); dp is 0 off the chosen experts.
            var mean: Float = 0
            for e in chosen[t] { mean += p[e] * g[e] }
            for e in 0..<E { g[e] = p[e] * (g[e] - mean) }
        }
        linearBackward(.layer(l, .moeRouter), dw, la.xn2.pointer, T, C, E, a.expertDx.pointer)
        add(a.expertDx.pointer, into: dxn, T * C)
        guard s.sharedFFN > 0 else { return }
        let gateRole = TensorRole.layer(l, .sharedRouter), gated = has(gateRole)
        for t in 0..<T {
            let d = dy + t * C, de = a.expertDy.pointer + t * C, g = m.sharedGate[t]
            for c in 0..<C { de[c] = g * d[c] }
        }
        mlpBackward(gate: .layer(l, .sharedGate), up: .layer(l, .sharedUp), down: .layer(l, .sharedDown), dy: a.expertDy.pointer, x: la.xn2.pointer,
                    rows: T, width: s.sharedFFN, gate: la.gate.pointer, up: la.up.pointer, act: la.act.pointer, a, into: a.expertDx.pointer)
        add(a.expertDx.pointer, into: dxn, T * C)
        guard gated else { return }
        // y += σ(x·w) · out: dz = (dy · out) σ (1 − σ); dw += dz x, dx += dz w.
        let w = weight(gateRole), gw = grad(gateRole)
        for t in 0..<T {
            let d = dy + t * C, out = m.sharedOut.pointer + t * C, x = la.xn2.pointer + t * C, g = m.sharedGate[t]
            var dot: Float = 0
            for c in 0..<C { dot += d[c] * out[c] }
            let dz = dot * g * (1 - g)
            for c in 0..<C { gw[c] += dz * x[c]; dxn[t * C + c] += dz * w[c] }
        }
    }
}
