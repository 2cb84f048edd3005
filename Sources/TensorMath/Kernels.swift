import CKernels

/// An owned, 64-byte aligned run of f32 values: activations, scratch, small weights.
/// A class so large buffers are never copied by accident.
public final class FloatBuffer: @unchecked Sendable {
    public let count: Int
    public let pointer: UnsafeMutablePointer<Float>

    public init(count: Int, zeroed: Bool = true) {
        self.count = count
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 4, alignment: 64)
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        if zeroed { pointer.initialize(repeating: 0, count: count) }
    }

    deinit { UnsafeMutableRawPointer(pointer).deallocate() }

    public subscript(i: Int) -> Float {
        get { pointer[i] }
        set { pointer[i] = newValue }
    }

}

/// The worker threads every kernel runs on (the caller counts as one).
public enum ThreadPool {
    /// Sets the thread count; returns how many run (thread creation can fail).
    @discardableResult
    public static func setThreads(_ n: Int) -> Int { Int(ckpt_pool_set_threads(Int32(clamping: n))) }
    public static var threads: Int { Int(ckpt_pool_threads()) }
}

/// A weight matrix as stored: `rows` rows of `columns` elements of a ggml type, read in
/// place from a mapping. Not owning: the caller keeps the mapping alive.
public struct WeightMatrix: @unchecked Sendable {
    /// ggml type id (0 F32, 1 F16, 30 BF16, 2/3/6/7/8 Q4_0…Q8_0, 12–14 Q4_K…Q6_K, …).
    public let ggmlType: Int32
    public let base: UnsafeRawPointer
    public let rowBytes: Int
    public let rows: Int
    public let columns: Int

    public init(ggmlType: Int32, base: UnsafeRawPointer, rowBytes: Int, rows: Int, columns: Int) {
        self.ggmlType = ggmlType
        self.base = base
        self.rowBytes = rowBytes
        self.rows = rows
        self.columns = columns
    }

    public static func isSupported(ggmlType: Int32) -> Bool { ckpt_matmul_supported(ggmlType) != 0 }
}

/// Scratch the matrix kernels decode weight panels into: one slice per pool thread.
public final class MatmulScratch: @unchecked Sendable {
    let buffer: FloatBuffer
    public let maxColumns: Int
    /// Pool threads it has a slice for.
    public let threads: Int
    /// Rounded activations (see `Kernels.matmul`), grown on demand.
    var rounded: FloatBuffer?
    /// Per-block sum corrections for Q4_1/Q5_1 weights (see `Kernels.matmul`), grown on demand.
    var sumCorrections: FloatBuffer?

    public init(maxColumns: Int) {
        self.maxColumns = maxColumns
        threads = max(ThreadPool.threads, 1)
        buffer = FloatBuffer(count: threads * Int(ckpt_matmul_scratch_floats(Int64(maxColumns))), zeroed: false)
    }

    func roundedBuffer(_ count: Int) -> FloatBuffer {
        if let r = rounded, r.count >= count { return r }
        let r = FloatBuffer(count: count, zeroed: false)
        rounded = r
        return r
    }

    func sumCorrectionBuffer(_ count: Int) -> FloatBuffer {
        if let c = sumCorrections, c.count >= count { return c }
        let c = FloatBuffer(count: count, zeroed: false)
        sumCorrections = c
        return c
    }
}

public enum Kernels {
    /// y[t][r] = W[r] · x[t] for `tokens` rows of x (stride ldx) into y (stride ldy).
    /// With `llamaCppRounding`, x is first rounded as llama.cpp rounds activations for
    /// this weight type (8-bit blocks, f16, bf16), so results match its numbers.
    public static func matmul(_ w: WeightMatrix, _ x: UnsafePointer<Float>, ldx: Int, tokens: Int,
                              into y: UnsafeMutablePointer<Float>, ldy: Int, scratch: MatmulScratch,
                              llamaCppRounding: Bool = false) {
        precondition(w.columns <= scratch.maxColumns && ThreadPool.threads * Int(ckpt_matmul_scratch_floats(Int64(w.columns))) <= scratch.buffer.count,
                     "matmul scratch too small")
        var x = x, ldx = ldx
        if llamaCppRounding && w.ggmlType == Int32(CKPT_GGML_BF16) && ckpt_matmul_bf16_available() != 0 {
            // BF16 × bf16-rounded activations: the same rounding, on vdpbf16ps (twice the
            // products per instruction of an f32 FMA). Declines few tokens; then as below.
            let xb = scratch.roundedBuffer((tokens * w.columns + 1) / 2)
            let bits = UnsafeMutableRawPointer(xb.pointer).assumingMemoryBound(to: UInt16.self)
            if ckpt_matmul_bf16(w.base, w.rowBytes, Int64(w.rows), Int64(w.columns), x, Int64(ldx), Int64(tokens), y, Int64(ldy),
                                scratch.buffer.pointer, bits) == 0 { return }
        }
        var sums: FloatBuffer?
        if llamaCppRounding {
            // Q4_1/Q5_1: llama.cpp's dot product also uses each activation block's sum as
            // q8_1 stores it; its difference from the rounded blocks' sum is added after.
            let hasMins = w.ggmlType == Int32(CKPT_GGML_Q4_1) || w.ggmlType == Int32(CKPT_GGML_Q5_1)
            if hasMins && w.columns % 32 == 0 { sums = scratch.sumCorrectionBuffer(tokens * w.columns / 32) }
            let r = scratch.roundedBuffer(tokens * w.columns)
            if ckpt_round_activations_with_sums(w.ggmlType, x, Int64(ldx), Int64(tokens), Int64(w.columns), r.pointer, Int64(w.columns),
                                                sums?.pointer) != 0 {
                x = UnsafePointer(r.pointer)
                ldx = w.columns
            }
        }
        let rc = ckpt_matmul(w.ggmlType, w.base, w.rowBytes, Int64(w.rows), Int64(w.columns),
                             x, Int64(ldx), Int64(tokens), y, Int64(ldy), scratch.buffer.pointer)
        precondition(rc == 0, "matmul called with an unsupported weight type \(w.ggmlType)")
        if let sums {
            ckpt_matmul_add_block_mins(w.ggmlType, w.base, w.rowBytes, Int64(w.rows), Int64(w.columns), sums.pointer,
                                       Int64(tokens), y, Int64(ldy), scratch.buffer.pointer)
        }
    }

    public static func rmsNorm(_ x: UnsafePointer<Float>, ldx: Int, weight: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>,
                               ldy: Int, rows: Int, width: Int, eps: Float) {
        ckpt_rmsnorm(x, Int64(ldx), weight, y, Int64(ldy), Int64(rows), Int64(width), eps)
    }
}
