// Hot loops of ckpt, in C. Every function is a plain loop over caller-owned memory:
// no allocation, no knowledge of models or files. The scalar versions are the
// reference; vectorised variants are chosen at run time and must agree with them.
#ifndef CKPT_KERNELS_H
#define CKPT_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---- dispatch -----------------------------------------------------------------
enum { CKPT_LEVEL_SCALAR = 0, CKPT_LEVEL_AVX2 = 1, CKPT_LEVEL_AVX512 = 2 };
/// The instruction-set level in use: the best the CPU has, capped by $CKPT_KERNELS.
int ckpt_kernel_level(void);
/// Caps the level (never above what the CPU has). For tests comparing paths.
void ckpt_set_kernel_level(int level);
/// 1 when the CPU has AVX-512 (the CKPT_LEVEL_AVX512 set) and AVX-512 VNNI, whatever the
/// level in use: kernels with a VNNI path take it at CKPT_LEVEL_AVX512 only when this is 1.
int ckpt_cpu_has_avx512vnni(void);
/// The same for AVX-512 BF16 (vdpbf16ps), taken by ckpt_matmul_bf16.
int ckpt_cpu_has_avx512bf16(void);

// ---- scalar conversions -------------------------------------------------------
float ckpt_f16_to_f32(uint16_t h);
float ckpt_bf16_to_f32(uint16_t h);

// ---- block decoders: `nblocks` blocks at `src` (unaligned ok) to f32 at `dst` ----
// Layouts and block sizes are those of ggml (see Formats/gguf.md). Results are
// bit-identical to gguf-py's `quants.dequantize`.
void ckpt_dequant_f16(const void *src, float *dst, int64_t n);
void ckpt_dequant_bf16(const void *src, float *dst, int64_t n);
void ckpt_dequant_q4_0(const void *src, float *dst, int64_t nblocks);
void ckpt_dequant_q4_1(const void *src, float *dst, int64_t nblocks);
void ckpt_dequant_q5_0(const void *src, float *dst, int64_t nblocks);
void ckpt_dequant_q5_1(const void *src, float *dst, int64_t nblocks);
void ckpt_dequant_q8_0(const void *src, float *dst, int64_t nblocks);
void ckpt_dequant_iq4_nl(const void *src, float *dst, int64_t nblocks);
void ckpt_dequant_q2_k(const void *src, float *dst, int64_t nblocks);
void ckpt_dequant_q3_k(const void *src, float *dst, int64_t nblocks);
void ckpt_dequant_q4_k(const void *src, float *dst, int64_t nblocks);
void ckpt_dequant_q5_k(const void *src, float *dst, int64_t nblocks);
void ckpt_dequant_q6_k(const void *src, float *dst, int64_t nblocks);

// ---- encoders from f32 (`nblocks` blocks of 32 floats, or `n` values) ------------------
// Bit-identical to gguf-py's `quants.quantize` (which reproduces ggml's reference
// quantizers) for every finite input.
uint16_t ckpt_f32_to_f16(float f);
uint16_t ckpt_f32_to_bf16(float f);
void ckpt_quant_f16(const float *src, void *dst, int64_t n);
void ckpt_quant_bf16(const float *src, void *dst, int64_t n);
void ckpt_quant_q8_0(const float *src, void *dst, int64_t nblocks);
void ckpt_quant_q4_0(const float *src, void *dst, int64_t nblocks);
void ckpt_quant_q4_1(const float *src, void *dst, int64_t nblocks);
void ckpt_quant_q5_0(const float *src, void *dst, int64_t nblocks);
void ckpt_quant_q5_1(const float *src, void *dst, int64_t nblocks);
/// K-quants: `nblocks` super-blocks of 256 floats; the search of ggml's reference
/// quantizers (no importance matrix), so errors match llama.cpp's.
void ckpt_quant_q4_k(const float *src, void *dst, int64_t nblocks);
void ckpt_quant_q5_k(const float *src, void *dst, int64_t nblocks);
void ckpt_quant_q6_k(const float *src, void *dst, int64_t nblocks);

// ---- reductions ----------------------------------------------------------------
/// Summary of a run of floats. Non-finite values are counted, not summed.
typedef struct {
    int64_t count;      // finite values
    int64_t nan_count;
    int64_t inf_count;
    double min, max;    // over finite values (undefined when count == 0)
    double mean;        // over finite values
    double m2;          // sum of squared deviations from `mean`
} ckpt_stats;

/// Summarises `n` floats (two passes over the run, which the caller keeps in cache).
/// Dispatches on ckpt_kernel_level(); the scalar version is the reference.
void ckpt_stats_f32(const float *x, int64_t n, ckpt_stats *out);
void ckpt_stats_f32_scalar(const float *x, int64_t n, ckpt_stats *out);

// ---- thread pool ---------------------------------------------------------------------------
/// One task of a parallel loop: `task` in [0, ntasks), `thread` in [0, ckpt_pool_threads()).
typedef void (*ckpt_task_fn)(void *ctx, int64_t task, int thread);
/// Sets the number of threads (the caller counts as one); returns the number running.
int ckpt_pool_set_threads(int n);
int ckpt_pool_threads(void);
/// Runs `ntasks` tasks on the pool and the calling thread; returns when all are done.
/// Loops are serialised: a second caller waits for the first loop to finish.
void ckpt_pool_run(int64_t ntasks, ckpt_task_fn fn, void *ctx);

// ---- matrix × activations ------------------------------------------------------------------
/// Rows of weights decoded per task of ckpt_matmul.
#define CKPT_PANEL_ROWS 16
/// The ggml type ids (ggml.h's enum ggml_type, as stored in GGUF) the matrix kernels
/// compute with; safetensors F32/F16/BF16 run as the first three.
enum {
    CKPT_GGML_F32 = 0, CKPT_GGML_F16 = 1, CKPT_GGML_Q4_0 = 2, CKPT_GGML_Q4_1 = 3, CKPT_GGML_Q5_0 = 6, CKPT_GGML_Q5_1 = 7,
    CKPT_GGML_Q8_0 = 8, CKPT_GGML_Q2_K = 10, CKPT_GGML_Q3_K = 11, CKPT_GGML_Q4_K = 12, CKPT_GGML_Q5_K = 13,
    CKPT_GGML_Q6_K = 14, CKPT_GGML_IQ4_NL = 20, CKPT_GGML_BF16 = 30,
};

/// Whether ckpt_matmul takes weights of this ggml type id.
int ckpt_matmul_supported(int ggml_type);
/// Floats of scratch ckpt_matmul needs per pool thread for rows of `k` elements.
int64_t ckpt_matmul_scratch_floats(int64_t k);
/// y[t*ldy + r] = Σ_i W[r][i] · x[t*ldx + i] for r < rows, t < ntok. W holds `rows` rows of
/// `k` elements in the ggml type `ggml_type`, `row_bytes` apart. `scratch` holds
/// ckpt_pool_threads() × ckpt_matmul_scratch_floats(k) floats. Runs on the pool.
/// Returns -1 (and does nothing) for an unsupported type or a `k` that is not whole blocks.
int ckpt_matmul(int ggml_type, const void *w, size_t row_bytes, int64_t rows, int64_t k,
                const float *x, int64_t ldx, int64_t ntok, float *y, int64_t ldy, float *scratch);

/// Whether ckpt_matmul_bf16 can run here (AVX-512 BF16, and the level allows AVX-512).
int ckpt_matmul_bf16_available(void);
/// BF16 weights × activations rounded to bf16 (as llama.cpp multiplies them), with
/// vdpbf16ps: y[t*ldy + r] = Σ_i W[r][i] · bf16(x[t*ldx + i]). `scratch` as for ckpt_matmul;
/// `xb` holds ntok × k uint16 for the rounded activations. Returns -1 (and does nothing)
/// when the CPU lacks AVX-512 BF16, k is odd, rows are not 4-byte multiples, or ntok < 4
/// (packing would cost more than it saves): take ckpt_matmul on rounded activations then.
int ckpt_matmul_bf16(const void *w, size_t row_bytes, int64_t rows, int64_t k, const float *x, int64_t ldx, int64_t ntok,
                     float *y, int64_t ldy, float *scratch, uint16_t *xb);

/// Rounds rows of f32 activations as llama.cpp does before multiplying them with weights
/// of `ggml_type` (8-bit blocks for quantized types, f16/bf16 for those); returns 0, and
/// writes nothing, when llama.cpp uses them as they are (F32 weights).
int ckpt_round_activations(int ggml_type, const float *x, int64_t ldx, int64_t rows, int64_t k, float *y, int64_t ldy);

/// ckpt_round_activations, also writing, for Q4_1/Q5_1 weights (and `block_sums` not NULL),
/// block_sums[r·(k/32) + b] = f16(d·Σq) − f16(d)·Σq for block b of activation row r: the part
/// of llama.cpp's q8_1 block sum `s` that rounded activations lose. Other types leave it alone.
int ckpt_round_activations_with_sums(int ggml_type, const float *x, int64_t ldx, int64_t rows, int64_t k, float *y, int64_t ldy,
                                     float *block_sums);
/// y[t*ldy + r] += Σ_b m(r, b) · c[t·(k/32) + b], with m(r, b) the f16 min of Q4_1/Q5_1 block b
/// of row r: with ckpt_matmul on rounded activations, llama.cpp's Q4_1/Q5_1 dot product.
/// `scratch` as ckpt_matmul's for rows of k/32. Runs on the pool. Returns -1 for other types.
int ckpt_matmul_add_block_mins(int ggml_type, const void *w, size_t row_bytes, int64_t rows, int64_t k,
                               const float *c, int64_t ntok, float *y, int64_t ldy, float *scratch);

/// Rounds n floats to f16 precision in place, on the calling thread (safe inside pool tasks).
void ckpt_round_f16(float *x, int64_t n);

/// Single-threaded f32 GEMM: y[t*ldy + r] = Σ_i W(r, i) · x[t*ldx + i], where W(r, i) is
/// w[r*ldw + i], or w[i*ldw + r] when `transposed`. `pack` holds CKPT_PANEL_ROWS·k + 16 floats.
void ckpt_gemm_f32(const float *w, int64_t ldw, int transposed, int64_t rows, int64_t k,
                   const float *x, int64_t ldx, int64_t nt, float *y, int64_t ldy, float *pack);
/// The same, adding into y instead of overwriting it.
void ckpt_gemm_f32_add(const float *w, int64_t ldw, int transposed, int64_t rows, int64_t k,
                       const float *x, int64_t ldx, int64_t nt, float *y, int64_t ldy, float *pack);

/// For attention-head importance: norms[t·heads + h] = ‖W[:, h·hd … (h+1)·hd) · o[t, h·hd … (h+1)·hd)‖₂,
/// with W the f32 output projection (`rows` = hidden rows, row stride ldw) and o the
/// per-head attention outputs (row stride ldo). `scratch` holds ckpt_pool_threads() ×
/// ckpt_head_contribution_scratch_floats(rows, head_dim) floats. Runs on the pool.
void ckpt_head_contribution_norms(const float *w, int64_t ldw, int64_t rows, const float *o, int64_t ldo, int64_t ntok,
                                  int heads, int head_dim, float *norms, float *scratch);
int64_t ckpt_head_contribution_scratch_floats(int64_t rows, int head_dim);

// ---- decoder-layer operations (f32) --------------------------------------------------------
/// y = x / sqrt(mean(x²) + eps) · w, per row of n (w may be NULL). Sums in double, as ggml.
void ckpt_rmsnorm(const float *x, int64_t ldx, const float *w, float *y, int64_t ldy, int64_t rows, int64_t n, float eps);
/// y = (x − mean) / sqrt(var + eps) · w + b per row of n (w, b may be NULL), mean and
/// variance summed in double, as ggml_norm.
void ckpt_layernorm(const float *x, int64_t ldx, const float *w, const float *b, float *y, int64_t ldy,
                    int64_t rows, int64_t n, float eps);
/// Rotates the first n_rot dims of each of `nheads` heads of each token's row, with tables
/// [ntok][n_rot/2]. neox != 0: pairs (i, i + n_rot/2) (HF's rotate_half); else (2i, 2i+1).
void ckpt_rope(float *x, int64_t ld, int64_t ntok, int nheads, int head_dim, int n_rot,
               const float *cos_table, const float *sin_table, int neox);
/// y = silu(g) · u, and gelu_tanh(g) · u (u may be NULL for the bare activation).
void ckpt_silu_mul(const float *g, const float *u, float *y, int64_t n);
void ckpt_gelu_tanh_mul(const float *g, const float *u, float *y, int64_t n);
/// y = max(x, 0)² (nemotron's ungated MLP).
void ckpt_relu_squared(const float *x, float *y, int64_t n);
/// x = cap · tanh(x / cap)
void ckpt_softcap(float *x, int64_t n, float cap);
/// Causal attention with grouped KV heads. Query i sits at position q_pos0 + i and sees keys
/// max(0, pos - window + 1) … pos (window 0: all). Rows: q/out [nq][n_head·hd], k/v
/// [nkv][n_head_kv·hd]. softcap > 0 caps the scaled scores (gemma2). round_probs != 0
/// rounds the attention weights to f16 before P·V, as llama.cpp's non-flash path does (on
/// the vector path; the scalar reference keeps them f32). scratch holds
/// ckpt_pool_threads() × ckpt_attention_scratch_floats(nkv, head_dim) floats. Runs on the pool.
void ckpt_attention(const float *q, int64_t ldq, const float *k, int64_t ldk, const float *v, int64_t ldv,
                    float *out, int64_t ldo, int64_t nq, int64_t q_pos0, int64_t nkv,
                    int n_head, int n_head_kv, int head_dim, float scale, int window, float softcap,
                    int round_probs, float *scratch);
/// log Σ exp(x[i]), max-shifted, summed in double.
double ckpt_logsumexp(const float *x, int64_t n);

// ---- teacher distributions (logit cache) ------------------------------------------------------
/// CRC-32C of `n` bytes, continuing from `crc` (0 to start): the iSCSI / ext4 checksum,
/// "123456789" → 0xE3069283.
uint32_t ckpt_crc32c(uint32_t crc, const void *data, int64_t n);
/// e[i] = exp((x[i] − max)·inv_temperature) for one row, and max in *max_out; returns Σ e
/// in double. The teacher's encoders and the distillation losses share it, so both see
/// the same exponentials.
double ckpt_softmax_terms(const float *x, int64_t n, float inv_temperature, float *e, float *max_out);
/// For each of `rows` rows of logits: the `k` largest (descending, ties by lower id) as ids and
/// log-probabilities of softmax(logits × inv_temperature), and log(1 − their mass) in
/// tail_logprob (−inf when nothing is left). scratch: ckpt_pool_threads() × vocab floats.
void ckpt_topk_logprobs(const float *logits, int64_t rows, int64_t vocab, int k, float inv_temperature,
                        int32_t *ids, float *logprobs, double *tail_logprob, float *scratch);
/// For each row: `draws` ids drawn from softmax(logits × inv_temperature) with a SplitMix64
/// stream seeded by seeds[row], returned as unique[row] ascending ids with counts (rows ×
/// draws slots each). scratch: threads × vocab floats; uniforms: threads × draws doubles.
void ckpt_sample_ids(const float *logits, int64_t rows, int64_t vocab, float inv_temperature, int draws,
                     const uint64_t *seeds, int32_t *ids, int32_t *counts, int32_t *unique, float *scratch, double *uniforms);

// ---- distillation losses ------------------------------------------------------------------------
enum { CKPT_KD_FORWARD = 0, CKPT_KD_REVERSE = 1, CKPT_KD_JSD = 2, CKPT_KD_TVD = 3 };
/// For each row: the loss of softmax(z × inv_temperature), bucketed into the row's listed
/// ids (ids/q at offsets[r] … offsets[r+1]) and one tail bucket (tails[r]: the target mass
/// of all other ids), against the target: forward KL(q‖s), reverse KL(s‖q), JSD (β = ½) or
/// TVD. Adds scale × dLoss/dz into grad (rows × vocab); losses[r] gets the unscaled loss.
/// scratch: pool threads × vocab floats; mask: pool threads × vocab bytes, all zero.
void ckpt_kd_loss_rows(const float *z, int64_t rows, int64_t vocab, float inv_temperature, int kind, const int32_t *ids,
                       const float *q, const int64_t *offsets, const float *tails, float scale, float *grad, double *losses,
                       float *scratch, uint8_t *mask);
/// Cross-entropy of softmax(z) against labels (−1: no label, no loss or gradient); adds
/// scale × gradient into grad. scratch: pool threads × vocab floats.
void ckpt_ce_loss_rows(const float *z, int64_t rows, int64_t vocab, const int32_t *labels, float scale, float *grad,
                       double *losses, float *scratch);

// ---- training: forward and backward of each operation (backprop.c) ---------------------------
/// y[ntok, out] = x[ntok, in] · W[out, in]ᵀ, on the pool.
void ckpt_linear_forward(const float *x, int64_t ntok, int64_t in, const float *w, int64_t out, float *y);
/// dx = dy · W (overwritten; NULL to skip), dW += dyᵀ · x (NULL to skip), on the pool.
void ckpt_linear_backward(const float *dy, const float *x, const float *w, int64_t ntok, int64_t in, int64_t out,
                          float *dx, float *dw);
/// The same on a column slice of wider matrices (an LM head a vocabulary slice at a
/// time): y[t·ldy + o] = Σ_i x[t, i] W[o, i], added into y when `accumulate`.
void ckpt_linear_forward_strided(const float *x, int64_t ntok, int64_t in, const float *w, int64_t out, float *y, int64_t ldy,
                                 int accumulate);
/// dy has row stride lddy; dx = dy · W (added into dx when `accumulate_dx`; NULL to
/// skip), dW += dyᵀ · x (NULL to skip). On the pool.
void ckpt_linear_backward_strided(const float *dy, int64_t lddy, const float *x, const float *w, int64_t ntok, int64_t in,
                                  int64_t out, float *dx, int accumulate_dx, float *dw);
/// y = x · rstd · w per row, rstd = 1/√(mean(x²) + eps) kept for the backward pass.
void ckpt_rmsnorm_forward(const float *x, const float *w, int64_t ntok, int64_t c, float eps, float *y, float *rstd);
/// dx overwritten (NULL to skip), dw added into (NULL to skip).
void ckpt_rmsnorm_backward(const float *dy, const float *x, const float *w, const float *rstd, int64_t ntok, int64_t c,
                           float *dx, float *dw);
/// y = (x − mean)·rstd·w + b per row (b may be NULL), mean and rstd kept for the backward pass.
void ckpt_layernorm_forward(const float *x, const float *w, const float *b, int64_t ntok, int64_t c, float eps, float *y,
                            float *mean, float *rstd);
/// dx overwritten (NULL to skip), dw and db added into (NULL to skip).
void ckpt_layernorm_backward(const float *dy, const float *x, const float *w, const float *mean, const float *rstd, int64_t ntok,
                             int64_t c, float *dx, float *dw, float *db);
/// du = dy · 2·max(u, 0): back through y = max(u, 0)² (forward: ckpt_relu_squared); du overwritten.
void ckpt_relu_squared_backward(const float *dy, const float *u, int64_t n, float *du);
/// Gradients of y = silu(g) · u (forward: ckpt_silu_mul); dg and du overwritten.
void ckpt_swiglu_backward(const float *dy, const float *g, const float *u, int64_t n, float *dg, float *du);
/// Causal attention of one sequence: q [ntok, heads·d], k and v [ntok, kv_heads·d], out
/// [ntok, heads·d]; lse [heads, ntok] keeps each row's log-sum-exp for the backward pass,
/// which recomputes the probabilities from it (memory grows with ntok, not ntok²).
/// window > 0 limits each query to its last `window` keys; softcap > 0 caps the scaled
/// scores at cap·tanh(s/cap) (gemma2). On the pool.
void ckpt_attention_forward(const float *q, const float *k, const float *v, int64_t ntok, int heads, int kv_heads, int head_dim,
                            float scale, float softcap, int window, float *out, float *lse);
/// dq, dk, dv overwritten, from the forward pass's inputs and lse. On the pool (one task
/// per query head; scratch of 3 × 64 × ntok floats per task).
void ckpt_attention_backward(const float *dout, const float *q, const float *k, const float *v, const float *lse, int64_t ntok,
                             int heads, int kv_heads, int head_dim, float scale, float softcap, int window, float *dq, float *dk,
                             float *dv);
/// y = gelu_tanh(g) · u with tanhf, the forward pass whose derivative ckpt_geglu_backward is.
void ckpt_gelu_tanh_mul_exact(const float *g, const float *u, float *y, int64_t n);
/// Gradients of y = gelu_tanh(g) · u; dg and du overwritten.
void ckpt_geglu_backward(const float *dy, const float *g, const float *u, int64_t n, float *dg, float *du);
/// dy ← dy · (1 − (y/cap)²): back through y = cap · tanh(x / cap), from its output y.
void ckpt_softcap_backward(const float *y, float *dy, int64_t n, float cap);
/// One AdamW step over n parameters (gradients multiplied by grad_scale first, for
/// clipping; step counts from 1 for the bias corrections). On the pool; deterministic.
void ckpt_adamw_update(float *w, const float *g, float *m, float *v, int64_t n, float lr, float beta1, float beta2, float eps,
                       float decay, float grad_scale, int64_t step);
/// Σ x², in double (NaN or Inf propagate).
double ckpt_sum_squares(const float *x, int64_t n);
/// Moments per scale of the 8-bit optimizer state.
#define CKPT_STATE_BLOCK 256
/// The same step with both moments kept in 8 bits per value (logarithmic codes under one
/// f32 scale per CKPT_STATE_BLOCK values; a fresh state is all codes 127 / 255, scales 0).
void ckpt_adamw_update_8bit(float *w, const float *g, uint8_t *m_codes, float *m_scales, uint8_t *v_codes, float *v_scales, int64_t n,
                            float lr, float beta1, float beta2, float eps, float decay, float grad_scale, int64_t step);
int64_t ckpt_attention_scratch_floats(int64_t nkv, int head_dim);
void ckpt_add(float *y, const float *x, int64_t n);
void ckpt_scale(float *y, float s, int64_t n);

// ---- activation statistics (importance) ------------------------------------------------------
/// Per column c < width over `rows` rows: Σ|x| and Σx², in double. Runs on the pool; the
/// result does not depend on the thread count.
void ckpt_column_moments(const float *x, int64_t ldx, int64_t rows, int64_t width, double *sum_abs, double *sum_sq);
/// out[r·segments + s] = ‖x[r, s·length … (s+1)·length)‖₂ (per-head norms).
void ckpt_segment_norms(const float *x, int64_t ldx, int64_t rows, int segments, int length, float *out);
/// Σ over rows of 1 − cos(a_r, b_r); rows where either is zero (or the product overflows)
/// are skipped and counted in *degenerate.
double ckpt_one_minus_cosine_sum(const float *a, const float *b, int64_t ld, int64_t rows, int64_t width, int64_t *degenerate);

// ---- int8 matrix products ----
// For training with 8-bit products (SwitchBack-style: the forward product and the input
// gradient in int8 with f32 scales, the weight gradient in f32). A quantized row of k
// values is kp = ckpt_q8_padded(k) = roundup(k, 32) int8 values, zeros past k, in blocks
// of 32 with one f32 scale each (ckpt_q8_blocks(k) = kp / 32 scales): scale = absmax / 127,
// value = round-to-nearest-even(x · 127 / absmax), so |x − value · scale| ≤ scale / 2.
// Blocks with absmax < 2⁻¹⁰⁰ are stored as zeros with scale 0. Inputs must be finite.
// Each function dispatches on ckpt_kernel_level(); the scalar path is the reference and the
// AVX2 and AVX-512 paths (VNNI for the product) give bit-identical results (quantized
// values, scales and products).

/// roundup(k, 32): int8 values per quantized row of k values.
int64_t ckpt_q8_padded(int64_t k);
/// roundup(k, 32) / 32: scales per quantized row of k values.
int64_t ckpt_q8_blocks(int64_t k);
/// Quantizes `rows` rows of k floats (row r at x + r·ldx) into q[rows × kp] (row r at
/// q + r·kp) and scales[rows × kp/32]. On the pool.
void ckpt_q8_quantize_rows(const float *x, int64_t ldx, int64_t rows, int64_t k, int8_t *q, float *scales);
/// Quantizes the transpose of w (rows × cols, row stride ldw): output row c holds column c
/// of w, w[0..rows)[c], padded to rowsp = roundup(rows, 32) in blocks of 32 along w's rows,
/// in q[cols × rowsp] and scales[cols × rowsp/32]. Exactly ckpt_q8_quantize_rows of the
/// transposed matrix. Used for Wᵀ in dx = dy · W. Works in cache-sized tiles, on the pool.
void ckpt_q8_quantize_cols(const float *w, int64_t ldw, int64_t rows, int64_t cols, int8_t *q, float *scales);
/// y[t·ldy + r] = Σ_b (Σ_{i in block b} xq[t·kp + i] · wq[r·kp + i]) · (xs[t·kp/32 + b] · ws[r·kp/32 + b])
/// for t < nt, r < rows, with both operands quantized rows of kp values (a multiple of 32).
/// With `accumulate` the sum starts from y's old value instead of 0. Block sums are exact
/// 32-bit integers, converted to f32 and added in ascending block order with one fused
/// multiply-add each, so the AVX-512 VNNI, AVX2 and scalar paths are bit-identical and
/// results do not depend on the thread count. On the pool, by panels of 32 rows (allocates
/// one packed panel per thread).
void ckpt_gemm_q8(const int8_t *xq, const float *xs, int64_t nt, const int8_t *wq, const float *ws, int64_t rows, int64_t kp,
                  float *y, int64_t ldy, int accumulate);
/// y[ntok, out] = x[ntok, in] · Wᵀ with W quantized by rows (ckpt_q8_quantize_rows of
/// W[out, in]: wq [out × ckpt_q8_padded(in)], ws [out × ckpt_q8_blocks(in)]). x is quantized
/// into the scratch: xq_scratch holds ntok × ckpt_q8_padded(in) bytes, xs_scratch
/// ntok × ckpt_q8_blocks(in) floats.
void ckpt_linear_forward_q8(const float *x, int64_t ntok, int64_t in, const int8_t *wq, const float *ws, int64_t out, float *y,
                            int8_t *xq_scratch, float *xs_scratch);
/// dx[ntok, in] = dy[ntok, out] · W (overwritten) with Wᵀ quantized by
/// ckpt_q8_quantize_cols(W, in, out, in, …): wtq [in × ckpt_q8_padded(out)], wts
/// [in × ckpt_q8_blocks(out)]. dy is quantized into the scratch: scratch_q holds
/// ntok × ckpt_q8_padded(out) bytes, scratch_s ntok × ckpt_q8_blocks(out) floats.
void ckpt_linear_backward_input_q8(const float *dy, int64_t ntok, int64_t in, const int8_t *wtq, const float *wts, int64_t out,
                                   float *dx, int8_t *scratch_q, float *scratch_s);

#ifdef __cplusplus
}
#endif
#endif
