import Basics
import CKernels
import TensorMath
import XCTest

/// Each operation's backward pass against central finite differences of its forward
/// pass: L = Σ R ⊙ y for a fixed random R, so dL/dy = R.
final class BackpropTests: XCTestCase {
    var rng = SplitMix64(seed: 21)

    func random(_ n: Int, scale: Float = 1) -> [Float] {
        (0..<n).map { _ in (Float(Int(rng.next() % 20001)) / 10000 - 1) * scale }
    }

    func dot(_ a: [Float], _ b: [Float]) -> Double { zip(a, b).reduce(0) { $0 + Double($1.0) * Double($1.1) } }

    /// Checks `analytic` (dL/dinput) against finite differences of `forward` at every
    /// index of `input` (or `samples` of them).
    func check(_ name: String, input: inout [Float], analytic: [Float], h: Float = 1e-2, tolerance: Double = 2e-3,
               samples: Int? = nil, forward: ([Float]) -> Double) {
        var indices = Array(input.indices)
        if let samples, samples < indices.count { indices = (0..<samples).map { _ in Int(rng.next() % UInt64(input.count)) } }
        for i in indices {
            let keep = input[i]
            input[i] = keep + h
            let up = forward(input)
            input[i] = keep - h
            let down = forward(input)
            input[i] = keep
            let fd = (up - down) / Double(2 * h)
            XCTAssertLessThan(abs(fd - Double(analytic[i])), tolerance + 1e-2 * abs(fd), "\(name)[\(i)]: finite difference \(fd), backward \(analytic[i])")
        }
    }

    func testLinear() {
        let T = 7, inC = 19, outC = 37  // not multiples of the panel or the 6-token block
        var x = random(T * inC), w = random(outC * inC)
        let r = random(T * outC)
        func f(_ x: [Float], _ w: [Float]) -> Double {
            var y = [Float](repeating: 0, count: T * outC)
            ckpt_linear_forward(x, Int64(T), Int64(inC), w, Int64(outC), &y)
            return dot(y, r)
        }
        var dx = [Float](repeating: 0, count: T * inC)
        var dw = [Float](repeating: 1, count: outC * inC)  // backward adds into dW
        ckpt_linear_backward(r, x, w, Int64(T), Int64(inC), Int64(outC), &dx, &dw)
        dw = dw.map { $0 - 1 }
        let w0 = w, x0 = x
        check("linear dx", input: &x, analytic: dx) { f($0, w0) }
        check("linear dW", input: &w, analytic: dw) { f(x0, $0) }
    }

    func testRMSNorm() {
        let T = 5, C = 24
        var x = random(T * C, scale: 2), w = random(C)
        let r = random(T * C)
        func f(_ x: [Float], _ w: [Float]) -> Double {
            var y = [Float](repeating: 0, count: T * C), rstd = [Float](repeating: 0, count: T)
            ckpt_rmsnorm_forward(x, w, Int64(T), Int64(C), 1e-5, &y, &rstd)
            return dot(y, r)
        }
        var y = [Float](repeating: 0, count: T * C), rstd = [Float](repeating: 0, count: T)
        ckpt_rmsnorm_forward(x, w, Int64(T), Int64(C), 1e-5, &y, &rstd)
        var dx = [Float](repeating: 0, count: T * C), dw = [Float](repeating: 0, count: C)
        ckpt_rmsnorm_backward(r, x, w, rstd, Int64(T), Int64(C), &dx, &dw)
        let w0 = w, x0 = x
        check("rmsnorm dx", input: &x, analytic: dx, h: 1e-3) { f($0, w0) }
        check("rmsnorm dw", input: &w, analytic: dw, h: 1e-3) { f(x0, $0) }
    }

    func testLayerNorm() {
        let T = 5, C = 24
        var x = random(T * C, scale: 2), w = random(C), b = random(C)
        let r = random(T * C)
        func f(_ x: [Float], _ w: [Float], _ b: [Float]) -> Double {
            var y = [Float](repeating: 0, count: T * C), mean = [Float](repeating: 0, count: T), rstd = [Float](repeating: 0, count: T)
            ckpt_layernorm_forward(x, w, b, Int64(T), Int64(C), 1e-5, &y, &mean, &rstd)
            return dot(y, r)
        }
        var y = [Float](repeating: 0, count: T * C), mean = [Float](repeating: 0, count: T), rstd = [Float](repeating: 0, count: T)
        ckpt_layernorm_forward(x, w, b, Int64(T), Int64(C), 1e-5, &y, &mean, &rstd)
        // The training forward equals the engine's LayerNorm (one definition of the model).
        var engine = [Float](repeating: 0, count: T * C)
        ckpt_layernorm(x, Int64(C), w, b, &engine, Int64(C), Int64(T), Int64(C), 1e-5)
        XCTAssertLessThan(zip(y, engine).map { abs($0 - $1) }.max()!, 1e-5)
        var dx = [Float](repeating: 0, count: T * C), dw = [Float](repeating: 0, count: C), db = [Float](repeating: 0, count: C)
        ckpt_layernorm_backward(r, x, w, mean, rstd, Int64(T), Int64(C), &dx, &dw, &db)
        let w0 = w, x0 = x, b0 = b
        check("layernorm dx", input: &x, analytic: dx, h: 1e-3) { f($0, w0, b0) }
        check("layernorm dw", input: &w, analytic: dw, h: 1e-3) { f(x0, $0, b0) }
        check("layernorm db", input: &b, analytic: db, h: 1e-3) { f(x0, w0, $0) }
    }

    func testSquaredReLU() {
        let n = 50
        // Kept away from the kink at 0, where the finite difference straddles two slopes.
        var u = random(n, scale: 3).map { abs($0) < 0.05 ? $0 + 0.1 : $0 }
        let r = random(n)
        func f(_ u: [Float]) -> Double {
            var y = [Float](repeating: 0, count: n)
            ckpt_relu_squared(u, &y, Int64(n))
            return dot(y, r)
        }
        var du = [Float](repeating: 0, count: n)
        ckpt_relu_squared_backward(r, u, Int64(n), &du)
        XCTAssertTrue(zip(u, du).contains { $0 < 0 && $1 == 0 } && zip(u, du).contains { $0 > 0 && $1 != 0 })
        check("relu² du", input: &u, analytic: du, h: 1e-3) { f($0) }
    }

    func testSwiGLU() {
        let n = 50
        var g = random(n, scale: 4), u = random(n, scale: 2)
        let r = random(n)
        func f(_ g: [Float], _ u: [Float]) -> Double {
            var y = [Float](repeating: 0, count: n)
            ckpt_silu_mul(g, u, &y, Int64(n))
            return dot(y, r)
        }
        var dg = [Float](repeating: 0, count: n), du = [Float](repeating: 0, count: n)
        ckpt_swiglu_backward(r, g, u, Int64(n), &dg, &du)
        let g0 = g, u0 = u
        check("swiglu dg", input: &g, analytic: dg, h: 1e-3) { f($0, u0) }
        check("swiglu du", input: &u, analytic: du, h: 1e-3) { f(g0, $0) }
    }

    func testGeGLUAndSoftcap() {
        let n = 50
        var g = random(n, scale: 4), u = random(n, scale: 2)
        let r = random(n)
        func f(_ g: [Float], _ u: [Float]) -> Double {
            var y = [Float](repeating: 0, count: n)
            ckpt_gelu_tanh_mul_exact(g, u, &y, Int64(n))
            return dot(y, r)
        }
        // The training forward agrees with the engine's vectorised GELU.
        var exact = [Float](repeating: 0, count: n), engine = exact
        ckpt_gelu_tanh_mul_exact(g, u, &exact, Int64(n))
        ckpt_gelu_tanh_mul(g, u, &engine, Int64(n))
        for i in 0..<n { XCTAssertEqual(exact[i], engine[i], accuracy: 1e-5 * max(1, abs(exact[i]))) }
        var dg = [Float](repeating: 0, count: n), du = [Float](repeating: 0, count: n)
        ckpt_geglu_backward(r, g, u, Int64(n), &dg, &du)
        let g0 = g, u0 = u
        check("geglu dg", input: &g, analytic: dg, h: 1e-3) { f($0, u0) }
        check("geglu du", input: &u, analytic: du, h: 1e-3) { f(g0, $0) }

        var x = random(n, scale: 20)
        func capped(_ x: [Float]) -> Double {
            var y = x
            ckpt_softcap(&y, Int64(n), 7)
            return dot(y, r)
        }
        var y = x
        ckpt_softcap(&y, Int64(n), 7)
        var dx = r
        ckpt_softcap_backward(y, &dx, Int64(n), 7)
        check("softcap dx", input: &x, analytic: dx, h: 1e-3) { capped($0) }
    }

    func testRoPEBackwardIsTheInverseRotation() {
        let T = 6, heads = 3, d = 8
        var x = random(T * heads * d)
        let r = random(T * heads * d)
        var cosT = [Float](), sinT = [Float]()
        for t in 0..<T { for i in 0..<(d / 2) { let a = Float(t) * powf(10000, -Float(2 * i) / Float(d)); cosT.append(cosf(a)); sinT.append(sinf(a)) } }
        for neox in [Int32(0), 1] {
            func f(_ x: [Float]) -> Double {
                var y = x
                ckpt_rope(&y, Int64(heads * d), Int64(T), Int32(heads), Int32(d), Int32(d), cosT, sinT, neox)
                return dot(y, r)
            }
            var dx = r
            ckpt_rope(&dx, Int64(heads * d), Int64(T), Int32(heads), Int32(d), Int32(d), cosT, sinT.map { -$0 }, neox)
            check("rope dx (neox \(neox))", input: &x, analytic: dx) { f($0) }
        }
    }

    func testCausalAttentionWithGroupedKVHeads() {
        // 9 tokens: one block of queries; 150: three (the kernel takes 64 at a time), the
        // window reaching back across a block boundary.
        for (T, windows) in [(9, [Int32(0), 4]), (150, [Int32(0), 70])] {
            attentionCase(T: T, windows: windows, samples: T > 64 ? 200 : nil)
        }
        // gemma2's soft-capped scores (a cap low enough to bend them).
        attentionCase(T: 9, windows: [0, 4], samples: nil, softcap: 1.5)
        attentionCase(T: 150, windows: [70], samples: 200, softcap: 1.5)
    }

    func attentionCase(T: Int, windows: [Int32], samples: Int?, softcap: Float = 0) {
        let H = 4, Hkv = 2, d = 6
        var q = random(T * H * d), k = random(T * Hkv * d), v = random(T * Hkv * d)
        let r = random(T * H * d)
        let scale = 1 / Float(d).squareRoot()
        for window in windows {
            func f(_ q: [Float], _ k: [Float], _ v: [Float]) -> Double {
                var out = [Float](repeating: 0, count: T * H * d), lse = [Float](repeating: 0, count: H * T)
                ckpt_attention_forward(q, k, v, Int64(T), Int32(H), Int32(Hkv), Int32(d), scale, softcap, window, &out, &lse)
                return dot(out, r)
            }
            var out = [Float](repeating: 0, count: T * H * d), lse = [Float](repeating: 0, count: H * T)
            ckpt_attention_forward(q, k, v, Int64(T), Int32(H), Int32(Hkv), Int32(d), scale, softcap, window, &out, &lse)
            // Against the inference kernel's output (no rounding).
            var reference = [Float](repeating: 0, count: T * H * d)
            var scratch = [Float](repeating: 0, count: ThreadPool.threads * Int(ckpt_attention_scratch_floats(Int64(T), Int32(d))))
            ckpt_attention(q, Int64(H * d), k, Int64(Hkv * d), v, Int64(Hkv * d), &reference, Int64(H * d), Int64(T), 0, Int64(T),
                           Int32(H), Int32(Hkv), Int32(d), scale, window, softcap, 0, &scratch)
            for i in out.indices { XCTAssertEqual(out[i], reference[i], accuracy: 1e-5, "window \(window) softcap \(softcap)") }
            var dq = [Float](repeating: 0, count: T * H * d), dk = [Float](repeating: 0, count: T * Hkv * d), dv = dk
            ckpt_attention_backward(r, q, k, v, lse, Int64(T), Int32(H), Int32(Hkv), Int32(d), scale, softcap, window, &dq, &dk, &dv)
            let q0 = q, k0 = k, v0 = v
            check("attention T\(T) dq w\(window) cap \(softcap)", input: &q, analytic: dq, samples: samples) { f($0, k0, v0) }
            check("attention T\(T) dk w\(window) cap \(softcap)", input: &k, analytic: dk, samples: samples) { f(q0, $0, v0) }
            check("attention T\(T) dv w\(window) cap \(softcap)", input: &v, analytic: dv, samples: samples) { f(q0, k0, $0) }
        }
    }
}
