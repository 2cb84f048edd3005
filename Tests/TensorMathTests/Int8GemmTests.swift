import Basics
import CKernels
import TensorMath
import XCTest

/// The int8 training products (gemm_q8.c): quantizers against their definition, the
/// product against double-precision sums written here, the AVX-512 VNNI and AVX2 paths
/// against the scalar one bit for bit, and the training wrappers against the f32 products
/// they replace.
final class Int8GemmTests: XCTestCase {
    override func tearDown() {
        ckpt_set_kernel_level(Int32(CKPT_LEVEL_AVX512))
        ThreadPool.setThreads(1)
    }

    typealias Random = KernelTests.Random
    /// Every path: ckpt_set_kernel_level caps at what the CPU has, so on a CPU without
    /// AVX-512 (or without VNNI) the last level repeats the AVX2 path.
    static let levels: [Int32] = [Int32(CKPT_LEVEL_SCALAR), Int32(CKPT_LEVEL_AVX2), Int32(CKPT_LEVEL_AVX512)]

    /// Standard normal values (Box–Muller over the tests' SplitMix64 stream).
    static func gaussian(_ rng: inout Random, _ n: Int, sd: Float = 1) -> [Float] {
        (0..<n).map { _ in
            let u1 = Double(rng.next()) * 0.5 + 0.5 + 1e-9, u2 = Double(rng.next()) * 0.5 + 0.5
            return sd * Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
        }
    }

    struct Quantized: Equatable {
        var q: [Int8]
        var s: [Float]
    }

    static func quantizeRows(_ x: [Float], ldx: Int, rows: Int, k: Int) -> Quantized {
        let kp = Int(ckpt_q8_padded(Int64(k))), nb = Int(ckpt_q8_blocks(Int64(k)))
        var out = Quantized(q: [Int8](repeating: 99, count: rows * kp), s: [Float](repeating: .nan, count: rows * nb))
        ckpt_q8_quantize_rows(x, Int64(ldx), Int64(rows), Int64(k), &out.q, &out.s)
        return out
    }

    static func quantizeCols(_ w: [Float], ldw: Int, rows: Int, cols: Int) -> Quantized {
        let rp = Int(ckpt_q8_padded(Int64(rows))), nb = Int(ckpt_q8_blocks(Int64(rows)))
        var out = Quantized(q: [Int8](repeating: 99, count: cols * rp), s: [Float](repeating: .nan, count: cols * nb))
        ckpt_q8_quantize_cols(w, Int64(ldw), Int64(rows), Int64(cols), &out.q, &out.s)
        return out
    }

    func testPaddingHelpers() {
        XCTAssertEqual(ckpt_q8_padded(1), 32)
        XCTAssertEqual(ckpt_q8_padded(32), 32)
        XCTAssertEqual(ckpt_q8_padded(33), 64)
        XCTAssertEqual(ckpt_q8_blocks(576), 18)
        XCTAssertEqual(ckpt_q8_blocks(577), 19)
    }

    /// Each value comes back within half a step of its block's scale; the scale is the
    /// block's absmax / 127, the largest value in a block is ±127, and the padding is zero.
    func testQuantizeRowsRoundTripWithinHalfAStep() {
        var rng = Random(state: 3)
        let rows = 9, k = 75, ldx = 80
        let kp = 96, nb = 3
        var x = Self.gaussian(&rng, rows * ldx)
        for r in 0..<rows { x[r * ldx + 7 * r] *= 40 }  // an outlier in some blocks
        for i in 0..<32 { x[4 * ldx + 32 + i] = 0 }       // an all-zero block
        for level in Self.levels { for threads in [1, 2] {
            ckpt_set_kernel_level(level)
            ThreadPool.setThreads(threads)
            let z = Self.quantizeRows(x, ldx: ldx, rows: rows, k: k)
            for r in 0..<rows { for b in 0..<nb {
                let lo = b * 32, hi = min(k, lo + 32)
                let amax = (lo..<hi).map { abs(x[r * ldx + $0]) }.max()!
                let s = z.s[r * nb + b]
                XCTAssertEqual(s, amax / 127, "row \(r) block \(b) level \(level)")
                if amax > 0 {
                    XCTAssertEqual((lo..<hi).map { abs(Int(z.q[r * kp + $0])) }.max(), 127, "row \(r) block \(b)")
                }
                for i in lo..<hi {
                    let err = abs(Double(x[r * ldx + i]) - Double(z.q[r * kp + i]) * Double(s))
                    // Half a step, plus the rounding of 127/absmax (a few 1e-5 of a step).
                    XCTAssertLessThanOrEqual(err, Double(s) * (0.5 + 3e-5), "row \(r) value \(i) level \(level)")
                }
            } }
            for r in 0..<rows { for i in k..<kp { XCTAssertEqual(z.q[r * kp + i], 0, "padding of row \(r) at \(i)") } }
            XCTAssertEqual(z.s[4 * nb + 1], 0, "an all-zero block has scale 0")
        } }
    }

    /// A hand-made row: absmax 127 gives scale 1, so values round to the nearest integer
    /// with ties to even; absmax 254 gives scale 2. 40 values: the second block is partial.
    func testQuantizeRowsExactValuesOnHandMadeBlocks() {
        var x = [Float](repeating: 0, count: 40)
        let first: [Float] = [127, -127, 2.5, 3.5, -0.5, 0.5, 1.5, -2.5, 126.5, -126.5, 0.49, -3.51, 10, 0.25]
        for (i, v) in first.enumerated() { x[i] = v }
        let second: [Float] = [254, 5, 7, -9, 1, -1, 3.0001]
        for (i, v) in second.enumerated() { x[32 + i] = v }
        let expected1: [Int8] = [127, -127, 2, 4, 0, 0, 2, -2, 126, -126, 0, -4, 10, 0]
        let expected2: [Int8] = [127, 2, 4, -4, 0, 0, 2]  // 2.5 → 2, 3.5 → 4, -4.5 → -4, ±0.5 → 0, 1.50005 → 2
        for level in Self.levels {
            ckpt_set_kernel_level(level)
            let z = Self.quantizeRows(x, ldx: 40, rows: 1, k: 40)
            XCTAssertEqual(z.s, [1, 2], "level \(level)")
            XCTAssertEqual(Array(z.q[0..<first.count]), expected1, "level \(level)")
            XCTAssertEqual(Array(z.q[first.count..<32]), [Int8](repeating: 0, count: 32 - first.count))
            XCTAssertEqual(Array(z.q[32..<(32 + second.count)]), expected2, "level \(level)")
            XCTAssertEqual(Array(z.q[(32 + second.count)..<64]), [Int8](repeating: 0, count: 32 - second.count), "padding")
        }
        // Too small to scale (absmax below 2^-100): zeros with scale 0, not a division by ~0.
        let tiny = Self.quantizeRows([Float](repeating: 1e-35, count: 32), ldx: 32, rows: 1, k: 32)
        XCTAssertEqual(tiny, Quantized(q: [Int8](repeating: 0, count: 32), s: [0]))
    }

    /// quantize_cols is quantize_rows of the explicit transpose, exactly, for shapes with
    /// partial bands of rows and columns that are not whole vectors.
    func testQuantizeColsEqualsRowsOfTranspose() {
        var rng = Random(state: 5)
        for (rows, cols, ldw) in [(70, 45, 50), (32, 8, 8), (5, 3, 3), (96, 64, 70), (33, 17, 17)] {
            var w = Self.gaussian(&rng, rows * ldw)
            w[ldw + 2] = 30
            var wt = [Float](repeating: 0, count: cols * rows)
            for r in 0..<rows { for c in 0..<cols { wt[c * rows + r] = w[r * ldw + c] } }
            for level in Self.levels { for threads in [1, 2] {
                ckpt_set_kernel_level(level)
                ThreadPool.setThreads(threads)
                let expected = Self.quantizeRows(wt, ldx: rows, rows: cols, k: rows)
                let got = Self.quantizeCols(w, ldw: ldw, rows: rows, cols: cols)
                XCTAssertEqual(got.q, expected.q, "\(rows)×\(cols) level \(level) threads \(threads)")
                XCTAssertEqual(got.s, expected.s, "\(rows)×\(cols) level \(level) threads \(threads)")
            } }
        }
    }

    /// y = Σ_b (integer block sum) · xs · ws in double, from the quantized operands.
    static func reference(_ x: Quantized, _ w: Quantized, nt: Int, rows: Int, kp: Int, start: [Float]?, ldy: Int)
        -> (value: [Double], magnitude: [Double]) {
        let nb = kp / 32
        var value = [Double](repeating: 0, count: nt * rows), magnitude = value
        for t in 0..<nt { for r in 0..<rows {
            var s = start.map { Double($0[t * ldy + r]) } ?? 0
            var m = abs(s)
            for b in 0..<nb {
                var isum = 0
                for i in (b * 32)..<(b * 32 + 32) { isum += Int(x.q[t * kp + i]) * Int(w.q[r * kp + i]) }
                let term = Double(isum) * Double(x.s[t * nb + b]) * Double(w.s[r * nb + b])
                s += term
                m += abs(term)
            }
            value[t * rows + r] = s
            magnitude[t * rows + r] = m
        } }
        return (value, magnitude)
    }

    func gemm(_ x: Quantized, _ w: Quantized, nt: Int, rows: Int, kp: Int, y: inout [Float], ldy: Int, accumulate: Bool) {
        ckpt_gemm_q8(x.q, x.s, Int64(nt), w.q, w.s, Int64(rows), Int64(kp), &y, Int64(ldy), accumulate ? 1 : 0)
    }

    /// Awkward shapes (k not a multiple of 32; rows and tokens not multiples of the register
    /// tile; one token), overwriting and accumulating, into a strided output whose gaps stay
    /// untouched: within 1e-5 of the exact sum, relative to the sum of the terms' magnitudes.
    func testGemmMatchesDoublePrecisionReference() {
        var rng = Random(state: 9)
        for (nt, k, rows) in [(1, 37, 5), (7, 64, 33), (13, 100, 17), (5, 31, 16), (4, 96, 48), (2, 1, 3), (10, 200, 19), (1, 576, 40), (150, 40, 20)] {
            let kp = Int(ckpt_q8_padded(Int64(k))), ldy = rows + 3
            let xf = Self.gaussian(&rng, nt * k), wf = Self.gaussian(&rng, rows * k)
            let x = Self.quantizeRows(xf, ldx: k, rows: nt, k: k), w = Self.quantizeRows(wf, ldx: k, rows: rows, k: k)
            let start = rng.values(nt * ldy)
            for accumulate in [false, true] {
                let ref = Self.reference(x, w, nt: nt, rows: rows, kp: kp, start: accumulate ? start : nil, ldy: ldy)
                for level in Self.levels { for threads in [1, 2] {
                    ckpt_set_kernel_level(level)
                    ThreadPool.setThreads(threads)
                    var y = start
                    gemm(x, w, nt: nt, rows: rows, kp: kp, y: &y, ldy: ldy, accumulate: accumulate)
                    let what = "nt \(nt) k \(k) rows \(rows) accumulate \(accumulate) level \(level) threads \(threads)"
                    for t in 0..<nt {
                        for r in 0..<rows {
                            let e = ref.value[t * rows + r], m = max(ref.magnitude[t * rows + r], 1e-30)
                            XCTAssertLessThanOrEqual(abs(Double(y[t * ldy + r]) - e) / m, 1e-5, "\(what) at (\(t), \(r))")
                        }
                        for r in rows..<ldy { XCTAssertEqual(y[t * ldy + r], start[t * ldy + r], "\(what): gap at (\(t), \(r))") }
                    }
                } }
            }
        }
    }

    /// The AVX2 path gives the scalar reference's bits (quantized values, scales and
    /// products), and the product does not depend on the thread count (with two threads,
    /// 201 tokens over two panels are also split into slices of tokens).
    func testAVX2AndScalarPathsAgreeBitForBit() throws {
        ckpt_set_kernel_level(Int32(CKPT_LEVEL_AVX512))
        try XCTSkipIf(ckpt_kernel_level() < CKPT_LEVEL_AVX2, "no AVX2 on this CPU")
        var rng = Random(state: 13)
        for (nt, k, rows) in [(29, 300, 50), (64, 576, 72), (3, 33, 9), (201, 96, 40)] {
            let kp = Int(ckpt_q8_padded(Int64(k)))
            var xf = Self.gaussian(&rng, nt * k), wf = Self.gaussian(&rng, rows * k, sd: 0.05)
            xf[5] = 1e-36  // a block may hold a tiny value next to normal ones
            wf[k] = -3
            var results: [[Float]] = []
            var quantized: [[Quantized]] = []
            for level in Self.levels { for threads in [1, 2] {
                ckpt_set_kernel_level(level)
                ThreadPool.setThreads(threads)
                let x = Self.quantizeRows(xf, ldx: k, rows: nt, k: k), w = Self.quantizeRows(wf, ldx: k, rows: rows, k: k)
                let wt = Self.quantizeCols(wf, ldw: k, rows: rows, cols: k)
                quantized.append([x, w, wt])
                var y = [Float](repeating: 0.25, count: nt * rows)
                gemm(x, w, nt: nt, rows: rows, kp: kp, y: &y, ldy: rows, accumulate: false)
                gemm(x, w, nt: nt, rows: rows, kp: kp, y: &y, ldy: rows, accumulate: true)
                results.append(y)
            } }
            for i in 1..<results.count {
                XCTAssertEqual(quantized[i], quantized[0], "\(nt)×\(k)×\(rows): quantization of run \(i)")
                XCTAssertEqual(results[i].map(\.bitPattern), results[0].map(\.bitPattern), "\(nt)×\(k)×\(rows): product of run \(i)")
            }
        }
    }

    /// The AVX-512 VNNI path (32-row panels, biased activations, vpdpbusd) against the AVX2
    /// and scalar paths, bit for bit, on shapes that are awkward for it: k not a multiple of
    /// 32, rows not a multiple of its 32-row panel (nor of 16, the rows per vector), 1 to 5
    /// tokens (partial register tiles), large k, a strided output whose gaps stay untouched,
    /// overwriting then accumulating, on one and two threads; blocks whose values are all
    /// ±127 or 0 take the biased activations to both ends of the unsigned range. Also the
    /// training wrappers, which quantize inside.
    func testAVX512VNNIAndAVX2AndScalarPathsAgreeBitForBit() throws {
        try XCTSkipUnless(ckpt_cpu_has_avx512vnni() != 0, "no AVX-512 VNNI on this CPU: only the AVX2 and scalar paths are compared")
        var rng = Random(state: 23)
        let shapes = [(1, 37, 5), (2, 1000, 70), (3, 33, 129), (4, 4133, 67), (5, 300, 200), (1, 8192, 17), (17, 70, 65),
                      (64, 576, 72), (201, 96, 130), (6, 31, 1), (9, 64, 16), (3, 2048, 257)]
        for (nt, k, rows) in shapes {
            let kp = Int(ckpt_q8_padded(Int64(k))), ldy = rows + 5
            var xf = Self.gaussian(&rng, nt * k), wf = Self.gaussian(&rng, rows * k, sd: 0.05)
            // Extreme blocks: x all +absmax or all −absmax (quantized to ±127), a zero block,
            // a block too small to scale, and w rows of ±127 in the same places.
            if k >= 64 {
                for i in 0..<32 { xf[i] = 2; wf[i] = i % 2 == 0 ? 0.5 : -0.5 }
                for i in 32..<64 { xf[(nt - 1) * k + i] = -3; wf[(rows - 1) * k + i] = -1 }
                if nt > 1 { for i in 32..<64 { xf[k + i] = 0 } }
            }
            if k >= 96 { for i in 64..<96 { xf[i] *= 1e-32; wf[i] *= 1e-32 } }
            let start = rng.values(nt * ldy), dy = Self.gaussian(&rng, nt * rows, sd: 1e-3)
            var results: [[Float]] = []
            var quantized: [[Quantized]] = []
            for level in Self.levels { for threads in [1, 2] {
                ckpt_set_kernel_level(level)
                ThreadPool.setThreads(threads)
                let x = Self.quantizeRows(xf, ldx: k, rows: nt, k: k), w = Self.quantizeRows(wf, ldx: k, rows: rows, k: k)
                var y = start
                gemm(x, w, nt: nt, rows: rows, kp: kp, y: &y, ldy: ldy, accumulate: false)
                var y2 = y
                gemm(x, w, nt: nt, rows: rows, kp: kp, y: &y2, ldy: ldy, accumulate: true)
                for t in 0..<nt { for r in rows..<ldy {
                    XCTAssertEqual(y2[t * ldy + r].bitPattern, start[t * ldy + r].bitPattern, "gap at (\(t), \(r))")
                } }
                // The wrappers: forward with W[rows, k], dx with the same W seen as [k, rows].
                let wt = Self.quantizeCols(wf, ldw: k, rows: rows, cols: k)
                let kpr = Int(ckpt_q8_padded(Int64(rows)))
                var yf = [Float](repeating: .nan, count: nt * rows)
                var sq = [Int8](repeating: 0, count: nt * max(kp, kpr)), ss = [Float](repeating: 0, count: nt * max(kp, kpr) / 32)
                ckpt_linear_forward_q8(xf, Int64(nt), Int64(k), w.q, w.s, Int64(rows), &yf, &sq, &ss)
                var dx = [Float](repeating: .nan, count: nt * k)
                ckpt_linear_backward_input_q8(dy, Int64(nt), Int64(k), wt.q, wt.s, Int64(rows), &dx, &sq, &ss)
                results.append(y + y2 + yf + dx)
                quantized.append([x, w, wt])
            } }
            XCTAssertEqual(ckpt_kernel_level(), Int32(CKPT_LEVEL_AVX512), "the last runs took the AVX-512 path")
            for i in 1..<results.count {
                let level = Self.levels[i / 2], threads = i % 2 + 1
                XCTAssertEqual(quantized[i], quantized[0], "nt \(nt) k \(k) rows \(rows): quantization at level \(level) threads \(threads)")
                let same = zip(results[i], results[0]).filter { $0.bitPattern == $1.bitPattern }.count
                XCTAssertEqual(same, results[0].count,
                               "nt \(nt) k \(k) rows \(rows): level \(level) threads \(threads) differs from scalar in \(results[0].count - same) values")
            }
        }
    }

    static func relativeError(_ a: [Float], _ b: [Float]) -> Double {
        var num = 0.0, den = 0.0
        for i in a.indices { let d = Double(a[i]) - Double(b[i]); num += d * d; den += Double(b[i]) * Double(b[i]) }
        return (num / den).squareRoot()
    }

    /// y = x·Wᵀ in int8 against the f32 product on Gaussian data: within 1% (relative
    /// Frobenius error), and not the f32 product itself.
    func testLinearForwardQ8MatchesF32() {
        var rng = Random(state: 17)
        for (T, inC, outC) in [(64, 576, 1024), (9, 100, 70)] {
            let x = Self.gaussian(&rng, T * inC), w = Self.gaussian(&rng, outC * inC, sd: 1 / Float(inC).squareRoot())
            var y32 = [Float](repeating: 0, count: T * outC)
            ckpt_linear_forward(x, Int64(T), Int64(inC), w, Int64(outC), &y32)
            let wq = Self.quantizeRows(w, ldx: inC, rows: outC, k: inC)
            let kp = Int(ckpt_q8_padded(Int64(inC))), nb = Int(ckpt_q8_blocks(Int64(inC)))
            for threads in [1, 2] {
                ThreadPool.setThreads(threads)
                var y8 = [Float](repeating: .nan, count: T * outC)
                var xq = [Int8](repeating: 0, count: T * kp), xs = [Float](repeating: 0, count: T * nb)
                ckpt_linear_forward_q8(x, Int64(T), Int64(inC), wq.q, wq.s, Int64(outC), &y8, &xq, &xs)
                let err = Self.relativeError(y8, y32)
                XCTAssertLessThan(err, 0.01, "\(T)×\(inC)×\(outC) threads \(threads)")
                XCTAssertGreaterThan(err, 1e-4, "an int8 product differs from the f32 one")
            }
        }
    }

    /// dx = dy·W in int8 (Wᵀ quantized by columns) against ckpt_linear_backward's dx.
    func testLinearBackwardInputQ8MatchesF32() {
        var rng = Random(state: 19)
        for (T, inC, outC) in [(64, 576, 1024), (64, 1024, 576), (9, 100, 70)] {
            let x = Self.gaussian(&rng, T * inC), w = Self.gaussian(&rng, outC * inC, sd: 1 / Float(inC).squareRoot())
            let dy = Self.gaussian(&rng, T * outC, sd: 1e-3)
            var dx32 = [Float](repeating: 0, count: T * inC)
            ckpt_linear_backward(dy, x, w, Int64(T), Int64(inC), Int64(outC), &dx32, nil)
            let wt = Self.quantizeCols(w, ldw: inC, rows: outC, cols: inC)
            let kp = Int(ckpt_q8_padded(Int64(outC))), nb = Int(ckpt_q8_blocks(Int64(outC)))
            for threads in [1, 2] {
                ThreadPool.setThreads(threads)
                var dx8 = [Float](repeating: .nan, count: T * inC)
                var sq = [Int8](repeating: 0, count: T * kp), ss = [Float](repeating: 0, count: T * nb)
                ckpt_linear_backward_input_q8(dy, Int64(T), Int64(inC), wt.q, wt.s, Int64(outC), &dx8, &sq, &ss)
                let err = Self.relativeError(dx8, dx32)
                XCTAssertLessThan(err, 0.01, "\(T)×\(inC)×\(outC) threads \(threads)")
                XCTAssertGreaterThan(err, 1e-4, "an int8 product differs from the f32 one")
            }
        }
    }
}
