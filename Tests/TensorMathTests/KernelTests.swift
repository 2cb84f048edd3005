import Basics
import CheckpointIO
import CKernels
import TensorMath
import TestSupport
import XCTest

/// The engine's kernels against plain double-precision loops written here, on every
/// instruction-set path this CPU has, single- and multi-threaded.
final class KernelTests: XCTestCase {
    override func tearDown() {
        ckpt_set_kernel_level(Int32(CKPT_LEVEL_AVX512))
        ThreadPool.setThreads(1)
    }

    /// Deterministic values in [-1, 1): the top 24 bits of SplitMix64's output.
    struct Random {
        var generator: SplitMix64
        init(state: UInt64) { generator = SplitMix64(seed: state) }
        mutating func next() -> Float { Float(generator.next() >> 40) / Float(1 << 23) - 1 }
        mutating func values(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in next() * scale } }
    }

    /// Every path, capped at what this CPU has (a level it lacks runs as the best below it).
    static let levels: [Int32] = [Int32(CKPT_LEVEL_SCALAR), Int32(CKPT_LEVEL_AVX2), Int32(CKPT_LEVEL_AVX512)]

    /// Weights of every type: the fixture blocks (gguf-py's decodings are the truth), or
    /// for float types, random values; rows of `k`, multiplied by random activations.
    func testMatmulMatchesDecodedWeightsForEveryType() throws {
        var rng = Random(state: 7)
        let types = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "IQ4_NL", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
        for name in types {
            let type = try XCTUnwrap(GGMLType.named(name))
            var blocks: [UInt8]
            var decoded: [Float]
            let k: Int
            if type.isQuantized {
                // The fixture's few blocks, rearranged into 37 rows of two blocks each.
                let raw = try FileSystem.readFile(fixturesPath + "/dequant/\(name).blocks")
                let f = try FileSystem.readFile(fixturesPath + "/dequant/\(name).f32")
                let values = f.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
                let nb = raw.count / type.bytesPerBlock, bs = type.blockSize, bb = type.bytesPerBlock
                k = 2 * bs
                blocks = []; decoded = []
                for r in 0..<37 { for j in 0..<2 {
                    let b = (3 * r + j) % nb
                    blocks += raw[(b * bb)..<((b + 1) * bb)]
                    decoded += values[(b * bs)..<((b + 1) * bs)]
                } }
            } else {
                k = 72
                decoded = rng.values(37 * k)
                switch name {
                case "F16": blocks = decoded.flatMap { withUnsafeBytes(of: ckpt_f32_to_f16($0).littleEndian, Array.init) }
                case "BF16": blocks = decoded.flatMap { withUnsafeBytes(of: ckpt_f32_to_bf16($0).littleEndian, Array.init) }
                default: blocks = decoded.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) }
                }
                if name != "F32" { decoded = (0..<decoded.count).map { i in
                    let h = UInt16(blocks[2 * i]) | UInt16(blocks[2 * i + 1]) << 8
                    return name == "F16" ? ckpt_f16_to_f32(h) : ckpt_bf16_to_f32(h)
                } }
            }
            let rows = decoded.count / k
            XCTAssertGreaterThan(rows, 16, "\(name): enough rows for a full and a partial panel")
            let rowBytes = blocks.count / rows
            for tokens in [1, 5, 13, 30] {
                let x = rng.values(tokens * k)
                var expected = [Double](repeating: 0, count: tokens * rows)
                for t in 0..<tokens { for r in 0..<rows {
                    var s = 0.0
                    for i in 0..<k { s += Double(decoded[r * k + i]) * Double(x[t * k + i]) }
                    expected[t * rows + r] = s
                } }
                for level in Self.levels { for threads in [1, 2] {
                    ckpt_set_kernel_level(level)
                    ThreadPool.setThreads(threads)
                    let y = try matmul(blocks, typeID: Int32(type.id), rowBytes: rowBytes, rows: rows, k: k, x: x, tokens: tokens)
                    for i in y.indices {
                        let scale = max(1, abs(expected[i]))
                        XCTAssertEqual(Double(y[i]), expected[i], accuracy: 2e-5 * scale * Double(k).squareRoot(),
                                       "\(name) level \(level) threads \(threads) tokens \(tokens) out \(i)")
                    }
                } }
            }
        }
    }

    func matmul(_ blocks: [UInt8], typeID: Int32, rowBytes: Int, rows: Int, k: Int, x: [Float], tokens: Int) throws -> [Float] {
        let scratch = MatmulScratch(maxColumns: k)
        var y = [Float](repeating: .nan, count: tokens * rows)
        blocks.withUnsafeBytes { w in
            let m = WeightMatrix(ggmlType: typeID, base: w.baseAddress!, rowBytes: rowBytes, rows: rows, columns: k)
            x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
                Kernels.matmul(m, xp.baseAddress!, ldx: k, tokens: tokens, into: yp.baseAddress!, ldy: rows, scratch: scratch)
            } }
        }
        return y
    }

    /// Q4_1/Q5_1 weights with llama.cpp's rounding: its dot product against q8_1 blocks,
    /// Σ_b d·d'·Σqq' + m·s with s = f16(d'·Σq') from the unrounded scale, written out here
    /// from ggml's block layouts. The f32 kernel on rounded activations alone misses the
    /// rounding of s; the block-min correction must bring every level and thread count to it.
    func testQ4_1AndQ5_1MatchLlamaCppDotProductWithBlockSums() throws {
        var rng = Random(state: 41)
        let rows = 19, k = 320, nb = k / 32
        func f16(_ v: Float) -> Float { ckpt_f16_to_f32(ckpt_f32_to_f16(v)) }
        for (type, blockBytes) in [(CKPT_GGML_Q4_1, 20), (CKPT_GGML_Q5_1, 24)] {
            // Weights with an offset, so the mins are far from zero as in real Q4_1 rows.
            let wf = rng.values(rows * k).map { $0 + 0.3 }
            var blocks = [UInt8](repeating: 0, count: rows * nb * blockBytes)
            if type == CKPT_GGML_Q4_1 { ckpt_quant_q4_1(wf, &blocks, Int64(rows * nb)) } else { ckpt_quant_q5_1(wf, &blocks, Int64(rows * nb)) }
            func weightBlock(_ r: Int, _ b: Int) -> (d: Float, m: Float, q: [Int]) {
                let o = (r * nb + b) * blockBytes
                let h = { (i: Int) in ckpt_f16_to_f32(UInt16(blocks[o + i]) | UInt16(blocks[o + i + 1]) << 8) }
                let qh = type == CKPT_GGML_Q5_1 ? (0..<4).reduce(UInt32(0)) { $0 | UInt32(blocks[o + 4 + $1]) << (8 * $1) } : 0
                let qs = type == CKPT_GGML_Q5_1 ? o + 8 : o + 4
                var q = [Int](repeating: 0, count: 32)
                for j in 0..<16 {
                    q[j] = Int(blocks[qs + j] & 0xF) | Int((qh >> j) & 1) << 4
                    q[j + 16] = Int(blocks[qs + j] >> 4) | Int((qh >> (j + 16)) & 1) << 4
                }
                return (h(0), h(2), q)
            }
            for tokens in [1, 5, 30] {
                let x = rng.values(tokens * k, scale: 2)
                var expected = [Double](), rounded = [Double](), norms = [Double]()
                for t in 0..<tokens { for r in 0..<rows {
                    var sum = 0.0, sumRounded = 0.0, norm = 0.0
                    for b in 0..<nb {
                        let a = Array(x[(t * k + b * 32)..<(t * k + b * 32 + 32)])
                        let amax = a.map(abs).max()!
                        let d = amax / 127, id: Float = amax != 0 ? 127 / amax : 0
                        let qa = a.map { Int(($0 * id).rounded(.toNearestOrEven)) }
                        let s = f16(d * Float(qa.reduce(0, +)))
                        let w = weightBlock(r, b)
                        let dot = zip(w.q, qa).reduce(0) { $0 + $1.0 * $1.1 }
                        let first = Double(w.d) * Double(f16(d)) * Double(dot)
                        sum += first + Double(w.m) * Double(s)
                        sumRounded += first + Double(w.m) * Double(f16(d)) * Double(qa.reduce(0, +))
                        norm += abs(first) + abs(Double(w.m) * Double(s))
                    }
                    expected.append(sum); rounded.append(sumRounded); norms.append(norm)
                } }
                let tolerance = norms.map { 2e-6 * $0 }
                XCTAssertTrue(zip(zip(expected, rounded), tolerance).contains { abs($0.0 - $0.1) > 10 * $1 },
                              "the rounding of s matters at this size, so the check below can fail")
                for level in Self.levels { for threads in [1, 2] {
                    ckpt_set_kernel_level(level)
                    ThreadPool.setThreads(threads)
                    let scratch = MatmulScratch(maxColumns: k)
                    var y = [Float](repeating: .nan, count: tokens * rows)
                    blocks.withUnsafeBytes { w in
                        let m = WeightMatrix(ggmlType: Int32(type), base: w.baseAddress!, rowBytes: nb * blockBytes, rows: rows, columns: k)
                        Kernels.matmul(m, x, ldx: k, tokens: tokens, into: &y, ldy: rows, scratch: scratch, llamaCppRounding: true)
                    }
                    for i in y.indices {
                        XCTAssertEqual(Double(y[i]), expected[i], accuracy: tolerance[i], "type \(type) level \(level) threads \(threads) tokens \(tokens) out \(i)")
                    }
                } }
            }
        }
    }

    /// The AVX-512 packed product sums each output in the AVX2 kernel's order, so the two
    /// agree bit for bit: plain and transposed weights, accumulate or not, partial panels,
    /// k past one cache slice, every token remainder of its 12-, 4- and 1-token steps.
    func testPackedProductIsBitIdenticalOnAVX2AndAVX512() throws {
        ckpt_set_kernel_level(Int32(CKPT_LEVEL_AVX512))
        try XCTSkipIf(ckpt_kernel_level() < CKPT_LEVEL_AVX512, "no AVX-512 on this CPU")
        var rng = Random(state: 17)
        let rows = 37, k = 300
        let w = rng.values(rows * k), x = rng.values(31 * k), y0 = rng.values(31 * rows)
        var pack = [Float](repeating: 0, count: Int(CKPT_PANEL_ROWS) * k + 16)
        for tokens in [1, 3, 4, 11, 12, 13, 17, 31] { for transposed in [0, 1] { for add in [false, true] {
            var outs: [[Float]] = []
            for level in [CKPT_LEVEL_AVX2, CKPT_LEVEL_AVX512] {
                ckpt_set_kernel_level(Int32(level))
                var y = y0
                // Transposed: the same numbers read as a [k, rows] matrix.
                let ldw = transposed == 1 ? rows : k
                if add { ckpt_gemm_f32_add(w, Int64(ldw), Int32(transposed), Int64(rows), Int64(k), x, Int64(k), Int64(tokens), &y, Int64(rows), &pack) }
                else { ckpt_gemm_f32(w, Int64(ldw), Int32(transposed), Int64(rows), Int64(k), x, Int64(k), Int64(tokens), &y, Int64(rows), &pack) }
                outs.append(y)
            }
            XCTAssertEqual(outs[0].map(\.bitPattern), outs[1].map(\.bitPattern), "tokens \(tokens) transposed \(transposed) add \(add)")
            XCTAssertEqual(outs[1][(tokens * rows)...].map(\.bitPattern), y0[(tokens * rows)...].map(\.bitPattern), "rows past the tokens untouched")
        } } }
    }

    /// BF16 weights with llama.cpp's rounding: the vdpbf16ps kernel (AVX-512 BF16) against
    /// a double-precision sum of the bf16-rounded operands, and against the f32 kernel on
    /// the same rounded activations (AVX2 level), for a partial panel and every token step.
    func testBF16DotProductKernelMatchesRoundedProducts() throws {
        ckpt_set_kernel_level(Int32(CKPT_LEVEL_AVX512))
        try XCTSkipIf(ckpt_matmul_bf16_available() == 0, "no AVX-512 BF16 on this CPU")
        var rng = Random(state: 23)
        let rows = 41, k = 1200
        let wf = rng.values(rows * k)
        let bits = wf.map { ckpt_f32_to_bf16($0) }
        let blocks = bits.flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) }
        for tokens in [4, 13, 30] {
            let x = rng.values(tokens * k, scale: 3)
            var outs: [[Float]] = []
            for level in [CKPT_LEVEL_AVX512, CKPT_LEVEL_AVX2] { for threads in [1, 2] {
                ckpt_set_kernel_level(Int32(level))
                ThreadPool.setThreads(threads)
                let scratch = MatmulScratch(maxColumns: k)
                var y = [Float](repeating: .nan, count: tokens * rows)
                blocks.withUnsafeBytes { w in
                    let m = WeightMatrix(ggmlType: Int32(CKPT_GGML_BF16), base: w.baseAddress!, rowBytes: 2 * k, rows: rows, columns: k)
                    Kernels.matmul(m, x, ldx: k, tokens: tokens, into: &y, ldy: rows, scratch: scratch, llamaCppRounding: true)
                }
                outs.append(y)
            } }
            for t in 0..<tokens { for r in 0..<rows {
                var s = 0.0, norm = 0.0
                for i in 0..<k {
                    let p = Double(ckpt_bf16_to_f32(bits[r * k + i])) * Double(ckpt_bf16_to_f32(ckpt_f32_to_bf16(x[t * k + i])))
                    s += p; norm += abs(p)
                }
                for (n, y) in outs.enumerated() {
                    XCTAssertEqual(Double(y[t * rows + r]), s, accuracy: 1e-6 * norm, "tokens \(tokens) run \(n) at \(t),\(r)")
                }
            } }
            XCTAssertEqual(outs[0].map(\.bitPattern), outs[1].map(\.bitPattern), "bf16 kernel: 1 and 2 threads agree")
        }
        // The kernel itself takes 4 tokens or more and declines fewer (callers fall back).
        ckpt_set_kernel_level(Int32(CKPT_LEVEL_AVX512))
        var scratch = [Float](repeating: 0, count: ThreadPool.threads * Int(ckpt_matmul_scratch_floats(Int64(k))))
        let x = rng.values(4 * k)
        var y = [Float](repeating: 0, count: 4 * rows), xb = [UInt16](repeating: 0, count: 4 * k)
        for (tokens, rc) in [(4, Int32(0)), (3, Int32(-1))] {
            XCTAssertEqual(blocks.withUnsafeBytes { w in
                ckpt_matmul_bf16(w.baseAddress, 2 * k, Int64(rows), Int64(k), x, Int64(k), Int64(tokens), &y, Int64(rows), &scratch, &xb)
            }, rc, "\(tokens) tokens")
        }
    }

    func testMatmulRejectsUnsupportedTypesAndPartialBlocks() {
        XCTAssertEqual(ckpt_matmul_supported(16), 0, "IQ2_XXS has no kernel")
        var y = [Float](repeating: 0, count: 4)
        let x = [Float](repeating: 1, count: 48)
        let w = [UInt8](repeating: 0, count: 34 * 2)
        let rc = w.withUnsafeBytes { wp in
            ckpt_matmul(8, wp.baseAddress, 34, 1, 48, x, 48, 1, &y, 1, nil)
        }
        XCTAssertEqual(rc, -1, "48 is not a whole number of Q8_0 blocks")
    }

    /// Causal attention with grouped heads, a sliding window, soft-capping and a cached
    /// prefix, against a direct double-precision softmax.
    func testAttentionMatchesDirectSoftmax() {
        var rng = Random(state: 11)
        let heads = 4, kvHeads = 2, hd = 16, past = 5, nq = 70
        let nkv = past + nq
        let q = rng.values(nq * heads * hd), k = rng.values(nkv * kvHeads * hd), v = rng.values(nkv * kvHeads * hd)
        for (window, softcap) in [(0, Float(0)), (9, Float(0)), (0, Float(3)), (40, Float(2))] {
            var expected = [Double](repeating: 0, count: nq * heads * hd)
            for i in 0..<nq { for h in 0..<heads {
                let pos = past + i, kh = h / (heads / kvHeads)
                let lo = window > 0 ? max(0, pos - window + 1) : 0
                var scores: [Double] = []
                for j in lo...pos {
                    var s = 0.0
                    for d in 0..<hd { s += Double(q[(i * heads + h) * hd + d]) * Double(k[(j * kvHeads + kh) * hd + d]) }
                    s *= 0.25
                    if softcap > 0 { s = Double(softcap) * tanh(s / Double(softcap)) }
                    scores.append(s)
                }
                let m = scores.max()!
                let e = scores.map { exp($0 - m) }, z = e.reduce(0, +)
                for d in 0..<hd {
                    var o = 0.0
                    for (n, j) in (lo...pos).enumerated() { o += e[n] / z * Double(v[(j * kvHeads + kh) * hd + d]) }
                    expected[(i * heads + h) * hd + d] = o
                }
            } }
            for level in Self.levels { for threads in [1, 2] {
                ckpt_set_kernel_level(level)
                ThreadPool.setThreads(threads)
                let scratch = [Float](repeating: 0, count: threads * Int(ckpt_attention_scratch_floats(Int64(nkv), Int32(hd))))
                var out = [Float](repeating: .nan, count: nq * heads * hd)
                var sc = scratch
                ckpt_attention(q, Int64(heads * hd), k, Int64(kvHeads * hd), v, Int64(kvHeads * hd), &out, Int64(heads * hd),
                               Int64(nq), Int64(past), Int64(nkv), Int32(heads), Int32(kvHeads), Int32(hd), 0.25,
                               Int32(window), softcap, 0, &sc)
                for i in out.indices {
                    XCTAssertEqual(Double(out[i]), expected[i], accuracy: 2e-5, "window \(window) cap \(softcap) level \(level) threads \(threads) at \(i)")
                }
            } }
        }
    }

    func testRopeLayoutsRotateTheRightPairs() {
        var rng = Random(state: 3)
        let heads = 2, hd = 8, rot = 6, tokens = 3
        let x = rng.values(tokens * heads * hd)
        let angles = (0..<tokens).flatMap { t in (0..<(rot / 2)).map { i in Double(t + 1) * pow(100, -Double(2 * i) / Double(rot)) } }
        let cosT = angles.map { Float(cos($0)) }, sinT = angles.map { Float(sin($0)) }
        for neox in [0, 1] {
            var y = x
            ckpt_rope(&y, Int64(heads * hd), Int64(tokens), Int32(heads), Int32(hd), Int32(rot), cosT, sinT, Int32(neox))
            for t in 0..<tokens { for h in 0..<heads {
                let base = (t * heads + h) * hd
                for i in 0..<(rot / 2) {
                    let (a, b) = neox == 1 ? (base + i, base + i + rot / 2) : (base + 2 * i, base + 2 * i + 1)
                    let c = cos(angles[t * rot / 2 + i]), s = sin(angles[t * rot / 2 + i])
                    XCTAssertEqual(Double(y[a]), Double(x[a]) * c - Double(x[b]) * s, accuracy: 1e-6)
                    XCTAssertEqual(Double(y[b]), Double(x[a]) * s + Double(x[b]) * c, accuracy: 1e-6)
                }
                for d in rot..<hd { XCTAssertEqual(y[base + d], x[base + d], "dims past n_rot stay") }
            } }
        }
    }

    func testNormsAndGatesMatchDefinitions() {
        var rng = Random(state: 5)
        let n = 100
        let x = rng.values(2 * n, scale: 4), w = rng.values(n), u = rng.values(2 * n)
        var y = [Float](repeating: 0, count: 2 * n)
        ckpt_rmsnorm(x, Int64(n), w, &y, Int64(n), 2, Int64(n), 1e-5)
        for r in 0..<2 {
            let ms = (0..<n).map { Double(x[r * n + $0] * x[r * n + $0]) }.reduce(0, +) / Double(n)
            for i in 0..<n { XCTAssertEqual(Double(y[r * n + i]), Double(x[r * n + i]) / (ms + 1e-5).squareRoot() * Double(w[i]), accuracy: 1e-5) }
        }
        for level in Self.levels {
            ckpt_set_kernel_level(level)
            var s = [Float](repeating: 0, count: 2 * n), g = s
            ckpt_silu_mul(x, u, &s, Int64(2 * n))
            ckpt_gelu_tanh_mul(x, u, &g, Int64(2 * n))
            for i in 0..<(2 * n) {
                let xv = Double(x[i])
                XCTAssertEqual(Double(s[i]), xv / (1 + exp(-xv)) * Double(u[i]), accuracy: 1e-5, "silu \(level)")
                let gelu = 0.5 * xv * (1 + tanh(0.7978845608028654 * (xv + 0.044715 * xv * xv * xv)))
                XCTAssertEqual(Double(g[i]), gelu * Double(u[i]), accuracy: 1e-5, "gelu \(level)")
            }
            let lse = ckpt_logsumexp(x, Int64(2 * n))
            let m = Double(x.max()!)
            XCTAssertEqual(lse, m + log(x.map { exp(Double($0) - m) }.reduce(0, +)), accuracy: 1e-5)
        }
    }

    /// Every task runs exactly once whatever the thread count, and loops can follow each
    /// other without a pause.
    /// llama.cpp's activation rounding: 8-bit blocks with an f16 scale (32-blocks) or an f32
    /// scale of -127/max (K-quant blocks of 256), f16, bf16; vector path equal to the scalar
    /// one bit for bit, each value within half a step of its input.
    func testActivationRoundingFollowsLlamaCppQuantizers() {
        var rng = Random(state: 9)
        let rows = 20, k = 512
        let x = rng.values(rows * k, scale: 3)
        for (type, block) in [(CKPT_GGML_Q8_0, 32), (CKPT_GGML_Q4_1, 32), (CKPT_GGML_Q4_K, 256), (CKPT_GGML_F16, 1), (CKPT_GGML_BF16, 1)] {
            var outs: [[Float]] = []
            for level in Self.levels {
                ckpt_set_kernel_level(level)
                ThreadPool.setThreads(2)
                var y = [Float](repeating: .nan, count: rows * k)
                XCTAssertEqual(ckpt_round_activations(Int32(type), x, Int64(k), Int64(rows), Int64(k), &y, Int64(k)), 1)
                outs.append(y)
            }
            for o in outs.dropFirst() { XCTAssertEqual(outs[0].map(\.bitPattern), o.map(\.bitPattern), "type \(type): scalar and vector paths") }
            let y = outs[0]
            for b in stride(from: 0, to: rows * k, by: max(block, 1)) where block > 1 {
                let amax = x[b..<(b + block)].map(abs).max()!
                let step = amax / 127
                let levels = Set(y[b..<(b + block)].map { ($0 / (block == 32 ? Float(Float16(step)) : step)).rounded() })
                XCTAssertLessThanOrEqual(levels.count, 255, "at most 255 levels per block")
                // Half a step, plus the scale's own f16 rounding times the largest level.
                let scaleError = block == 32 ? 127 * abs(step - Float(Float16(step))) : 0
                for i in b..<(b + block) { XCTAssertEqual(y[i], x[i], accuracy: step * 0.501 + scaleError, "type \(type) at \(i)") }
            }
            if type == CKPT_GGML_F16 { for i in x.indices { XCTAssertEqual(y[i], Float(Float16(x[i]))) } }
            if type == CKPT_GGML_BF16 { for i in x.indices { XCTAssertEqual(y[i].bitPattern & 0xFFFF, 0); XCTAssertEqual(y[i], x[i], accuracy: abs(x[i]) / 256) } }
        }
        var y = [Float](repeating: 0, count: k)
        XCTAssertEqual(ckpt_round_activations(0, x, Int64(k), 1, Int64(k), &y, Int64(k)), 0, "F32 weights: activations stay")
    }

    func testPoolRunsEveryTaskOnce() {
        let hits = UnsafeMutablePointer<Int32>.allocate(capacity: 1000)
        defer { hits.deallocate() }
        for threads in [1, 2, 3] {
            ThreadPool.setThreads(threads)
            XCTAssertEqual(ThreadPool.threads, threads)
            for _ in 0..<50 {
                hits.initialize(repeating: 0, count: 1000)
                ckpt_pool_run(1000, { ctx, task, _ in
                    ctx!.assumingMemoryBound(to: Int32.self)[Int(task)] += 1
                }, hits)
                XCTAssertEqual(Array(UnsafeBufferPointer(start: hits, count: 1000)), [Int32](repeating: 1, count: 1000))
            }
            // A loop started inside a task runs inline rather than deadlocking on the busy pool.
            hits.initialize(repeating: 0, count: 1000)
            ckpt_pool_run(10, { ctx, outer, _ in
                let base = ctx!.assumingMemoryBound(to: Int32.self) + Int(outer) * 100
                ckpt_pool_run(100, { inner, task, _ in inner!.assumingMemoryBound(to: Int32.self)[Int(task)] += 1 }, base)
            }, hits)
            XCTAssertEqual(Array(UnsafeBufferPointer(start: hits, count: 1000)), [Int32](repeating: 1, count: 1000))
        }
    }
}
