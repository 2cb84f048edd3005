// Matrix × batch of activations for weights of any stored type.
//
// A batch of prompt tokens reuses every weight hundreds of times, so the weights are
// decoded once per batch, a panel of rows at a time, into f32 (the bit-exact block
// decoders of dequant.c), and multiplied against f32 activations by a register-blocked
// kernel: 4 weight rows × 3 tokens per step, twelve 8-wide accumulators. Decoding costs
// 1/ntok of the multiply; activations stay f32 (llama.cpp rounds them to 8-bit blocks
// for quantized weights, which costs it about a logit at a few positions).
//
// Work is split over the thread pool by panels of rows; each thread decodes into its
// own slice of the caller's scratch buffer.
#include "CKernels.h"
#include "simd.h"
#include <math.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif


static int block_elements(int type) {
    switch (type) {
    case CKPT_GGML_F32: case CKPT_GGML_F16: case CKPT_GGML_BF16: return 1;
    case CKPT_GGML_Q4_0: case CKPT_GGML_Q4_1: case CKPT_GGML_Q5_0: case CKPT_GGML_Q5_1: case CKPT_GGML_Q8_0: case CKPT_GGML_IQ4_NL: return 32;
    case CKPT_GGML_Q2_K: case CKPT_GGML_Q3_K: case CKPT_GGML_Q4_K: case CKPT_GGML_Q5_K: case CKPT_GGML_Q6_K: return 256;
    default: return 0;
    }
}

int ckpt_matmul_supported(int type) { return block_elements(type) > 0; }

int64_t ckpt_matmul_scratch_floats(int64_t k) { return 2 * (int64_t)CKPT_PANEL_ROWS * k + 16; }

static void decode_rows(int type, const uint8_t *src, float *dst, int64_t n) {
    const int64_t nb = n / block_elements(type);
    switch (type) {
    case CKPT_GGML_F32: memcpy(dst, src, (size_t)n * 4); break;
    case CKPT_GGML_F16: ckpt_dequant_f16(src, dst, n); break;
    case CKPT_GGML_BF16: ckpt_dequant_bf16(src, dst, n); break;
    case CKPT_GGML_Q4_0: ckpt_dequant_q4_0(src, dst, nb); break;
    case CKPT_GGML_Q4_1: ckpt_dequant_q4_1(src, dst, nb); break;
    case CKPT_GGML_Q5_0: ckpt_dequant_q5_0(src, dst, nb); break;
    case CKPT_GGML_Q5_1: ckpt_dequant_q5_1(src, dst, nb); break;
    case CKPT_GGML_Q8_0: ckpt_dequant_q8_0(src, dst, nb); break;
    case CKPT_GGML_IQ4_NL: ckpt_dequant_iq4_nl(src, dst, nb); break;
    case CKPT_GGML_Q2_K: ckpt_dequant_q2_k(src, dst, nb); break;
    case CKPT_GGML_Q3_K: ckpt_dequant_q3_k(src, dst, nb); break;
    case CKPT_GGML_Q4_K: ckpt_dequant_q4_k(src, dst, nb); break;
    case CKPT_GGML_Q5_K: ckpt_dequant_q5_k(src, dst, nb); break;
    case CKPT_GGML_Q6_K: ckpt_dequant_q6_k(src, dst, nb); break;
    }
}

// ---- panel kernels: y[t*ldy + r] = dot(w + r*k, x + t*ldx), r < nr, t < nt --------------

static void panel_scalar(const float *w, int64_t nr, int64_t k, const float *x, int64_t ldx,
                         int64_t nt, float *y, int64_t ldy) {
    for (int64_t t = 0; t < nt; t++) {
        const float *xt = x + t * ldx;
        for (int64_t r = 0; r < nr; r++) {
            const float *wr = w + r * k;
            float s = 0;
            for (int64_t i = 0; i < k; i++) s += wr[i] * xt[i];
            y[t * ldy + r] = s;
        }
    }
}


// A panel of up to 16 rows transposed to [k][16]: 16 rows side by side, two vectors a
// column. Rows are w[r*ldw + i], or w[i*ldw + r] when `transposed`; missing rows are zero.
static void pack_panel(const float *w, int64_t ldw, int transposed, int64_t nr, int64_t k, float *packed) {
    for (int64_t i = 0; i < k; i++) {
        float *dst = packed + i * CKPT_PANEL_ROWS;
        int64_t r = 0;
        if (transposed) { memcpy(dst, w + i * ldw, (size_t)nr * 4); r = nr; }
        else for (; r < nr; r++) dst[r] = w[r * ldw + i];
        for (; r < CKPT_PANEL_ROWS; r++) dst[r] = 0;
    }
}

// 16 rows × 6 tokens per step: each column of the packed panel (two vectors) meets six
// broadcast activations in twelve independent FMAs; outputs come out row-contiguous.
#if defined(__x86_64__)
// Partial sums over one slice of k, added to y when `accumulate`.
__attribute__((target("avx2,fma")))
static inline void packed_6x16(const float *wp, int64_t k, const float *x0, int64_t ldx, float *y, int64_t ldy,
                               int64_t nr, int accumulate) {
    __m256 a0 = _mm256_setzero_ps(), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0;
    __m256 a3 = a0, b3 = a0, a4 = a0, b4 = a0, a5 = a0, b5 = a0;
    const float *w = wp;
    for (int64_t i = 0; i < k; i++, w += CKPT_PANEL_ROWS) {
        const __m256 lo = _mm256_load_ps(w), hi = _mm256_load_ps(w + 8);
        __m256 v = _mm256_broadcast_ss(x0 + i);
        a0 = _mm256_fmadd_ps(lo, v, a0); b0 = _mm256_fmadd_ps(hi, v, b0);
        v = _mm256_broadcast_ss(x0 + ldx + i);
        a1 = _mm256_fmadd_ps(lo, v, a1); b1 = _mm256_fmadd_ps(hi, v, b1);
        v = _mm256_broadcast_ss(x0 + 2 * ldx + i);
        a2 = _mm256_fmadd_ps(lo, v, a2); b2 = _mm256_fmadd_ps(hi, v, b2);
        v = _mm256_broadcast_ss(x0 + 3 * ldx + i);
        a3 = _mm256_fmadd_ps(lo, v, a3); b3 = _mm256_fmadd_ps(hi, v, b3);
        v = _mm256_broadcast_ss(x0 + 4 * ldx + i);
        a4 = _mm256_fmadd_ps(lo, v, a4); b4 = _mm256_fmadd_ps(hi, v, b4);
        v = _mm256_broadcast_ss(x0 + 5 * ldx + i);
        a5 = _mm256_fmadd_ps(lo, v, a5); b5 = _mm256_fmadd_ps(hi, v, b5);
    }
    float tmp[6][CKPT_PANEL_ROWS];
    const int full = nr == CKPT_PANEL_ROWS;
    __m256 acc[12] = {a0, b0, a1, b1, a2, b2, a3, b3, a4, b4, a5, b5};
    for (int j = 0; j < 6; j++) {
        float *yt = y + j * ldy;
        if (full) {
            __m256 lo = acc[2 * j], hi = acc[2 * j + 1];
            if (accumulate) { lo = _mm256_add_ps(lo, _mm256_loadu_ps(yt)); hi = _mm256_add_ps(hi, _mm256_loadu_ps(yt + 8)); }
            _mm256_storeu_ps(yt, lo); _mm256_storeu_ps(yt + 8, hi);
        } else {
            _mm256_storeu_ps(tmp[j], acc[2 * j]); _mm256_storeu_ps(tmp[j] + 8, acc[2 * j + 1]);
            for (int64_t r = 0; r < nr; r++) yt[r] = accumulate ? yt[r] + tmp[j][r] : tmp[j][r];
        }
    }
}

// Columns of k taken per pass, so the slice of the packed panel (KC × 16 floats) stays in L1.
#define KC 256

// 16 rows × 6 tokens per step: each column of the packed panel (two vectors) meets six
// broadcast activations in twelve independent FMAs; outputs come out row-contiguous.
__attribute__((target("avx2,fma")))
static void packed_avx2(const float *wp, int64_t nr, int64_t k, const float *x, int64_t ldx,
                        int64_t nt, float *y, int64_t ldy, int add) {
    for (int64_t k0 = 0; k0 < k; k0 += KC) {
        const int64_t kc = k - k0 < KC ? k - k0 : KC;
        const float *w = wp + k0 * CKPT_PANEL_ROWS;
        const int acc = add || k0 > 0;
        int64_t t = 0;
        for (; t + 6 <= nt; t += 6) packed_6x16(w, kc, x + t * ldx + k0, ldx, y + t * ldy, ldy, nr, acc);
        for (; t < nt; t++) {
            const float *xt = x + t * ldx + k0;
            __m256 a = _mm256_setzero_ps(), b = a;
            const float *wq = w;
            for (int64_t i = 0; i < kc; i++, wq += CKPT_PANEL_ROWS) {
                const __m256 v = _mm256_broadcast_ss(xt + i);
                a = _mm256_fmadd_ps(_mm256_load_ps(wq), v, a);
                b = _mm256_fmadd_ps(_mm256_load_ps(wq + 8), v, b);
            }
            float tmp[CKPT_PANEL_ROWS];
            _mm256_storeu_ps(tmp, a); _mm256_storeu_ps(tmp + 8, b);
            float *yt = y + t * ldy;
            for (int64_t r = 0; r < nr; r++) yt[r] = acc ? yt[r] + tmp[r] : tmp[r];
        }
    }
}


// AVX-512: the same packed panel, one 512-bit vector a column, meets 12 broadcast tokens
// per step in twelve accumulators (one load and twelve broadcast-FMAs per column). Every
// output is summed in the AVX2 kernel's order (one FMA per column within a KC slice,
// slices added in turn), so the two paths agree bit for bit.
#define PACKED512(NT)                                                                                           \
    __attribute__((target("avx512f")))                                                                         \
    static inline void packed512_##NT(const float *w, int64_t k, const float *x, int64_t ldx, float *y,       \
                                      int64_t ldy, __mmask16 m, int accumulate) {                              \
        __m512 acc[NT];                                                                                        \
        for (int j = 0; j < NT; j++) acc[j] = _mm512_setzero_ps();                                             \
        for (int64_t i = 0; i < k; i++, w += CKPT_PANEL_ROWS) {                                                \
            const __m512 wv = _mm512_load_ps(w);                                                               \
            for (int j = 0; j < NT; j++) acc[j] = _mm512_fmadd_ps(wv, _mm512_set1_ps(x[j * ldx + i]), acc[j]); \
        }                                                                                                      \
        store_tile512(acc, NT, y, ldy, m, accumulate);                                                         \
    }
PACKED512(12)
PACKED512(4)
PACKED512(1)

__attribute__((target("avx512f")))
static void packed_avx512(const float *wp, int64_t nr, int64_t k, const float *x, int64_t ldx,
                          int64_t nt, float *y, int64_t ldy, int add) {
    const __mmask16 m = panel_mask(nr);
    for (int64_t k0 = 0; k0 < k; k0 += KC) {
        const int64_t kc = k - k0 < KC ? k - k0 : KC;
        const float *w = wp + k0 * CKPT_PANEL_ROWS;
        const int acc = add || k0 > 0;
        int64_t t = 0;
        for (; t + 12 <= nt; t += 12) packed512_12(w, kc, x + t * ldx + k0, ldx, y + t * ldy, ldy, m, acc);
        for (; t + 4 <= nt; t += 4) packed512_4(w, kc, x + t * ldx + k0, ldx, y + t * ldy, ldy, m, acc);
        for (; t < nt; t++) packed512_1(w, kc, x + t * ldx + k0, ldx, y + t * ldy, ldy, m, acc);
    }
}

// The packed product on the best path this CPU allows.
static inline void packed_best(int level, const float *wp, int64_t nr, int64_t k, const float *x, int64_t ldx,
                               int64_t nt, float *y, int64_t ldy, int add) {
    if (level >= CKPT_LEVEL_AVX512) packed_avx512(wp, nr, k, x, ldx, nt, y, ldy, add);
    else packed_avx2(wp, nr, k, x, ldx, nt, y, ldy, add);
}

// Few tokens (generation): no packing, which would cost more than the products. Rows
// are decoded (in L1) and dotted with each token's activations.
__attribute__((target("avx2,fma")))
static void rows_dot_avx2(const float *w, int64_t nr, int64_t k, const float *x, int64_t ldx,
                          int64_t nt, float *y, int64_t ldy) {
    const int64_t k8 = k & ~(int64_t)7;
    for (int64_t r = 0; r < nr; r++) {
        const float *wr = w + r * k;
        for (int64_t t = 0; t < nt; t++) {
            const float *xt = x + t * ldx;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0;
            int64_t i = 0;
            for (; i + 16 <= k8; i += 16) {
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(wr + i), _mm256_loadu_ps(xt + i), a0);
                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(wr + i + 8), _mm256_loadu_ps(xt + i + 8), a1);
            }
            for (; i < k8; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(wr + i), _mm256_loadu_ps(xt + i), a0);
            float acc = hsum8(_mm256_add_ps(a0, a1));
            for (; i < k; i++) acc += wr[i] * xt[i];
            y[t * ldy + r] = acc;
        }
    }
}
#endif

// ---- single-threaded f32 GEMM over strided operands (attention's QKᵀ and PV) -------------

static void gemm_f32(const float *w, int64_t ldw, int transposed, int64_t rows, int64_t k,
                     const float *x, int64_t ldx, int64_t nt, float *y, int64_t ldy, float *pack, int add) {
    float *packed = align64(pack);
    for (int64_t r0 = 0; r0 < rows; r0 += CKPT_PANEL_ROWS) {
        const int64_t nr = rows - r0 < CKPT_PANEL_ROWS ? rows - r0 : CKPT_PANEL_ROWS;
        const float *wr = transposed ? w + r0 : w + r0 * ldw;
#if defined(__x86_64__)
        const int level = ckpt_kernel_level();
        if (level >= CKPT_LEVEL_AVX2) {
            pack_panel(wr, ldw, transposed, nr, k, packed);
            packed_best(level, packed, nr, k, x, ldx, nt, y + r0, ldy, add);
            continue;
        }
#endif
        for (int64_t t = 0; t < nt; t++)
            for (int64_t r = 0; r < nr; r++) {
                float acc = 0;
                for (int64_t i = 0; i < k; i++) acc += (transposed ? wr[i * ldw + r] : wr[r * ldw + i]) * x[t * ldx + i];
                y[t * ldy + r0 + r] = add ? y[t * ldy + r0 + r] + acc : acc;
            }
    }
}

void ckpt_gemm_f32(const float *w, int64_t ldw, int transposed, int64_t rows, int64_t k,
                   const float *x, int64_t ldx, int64_t nt, float *y, int64_t ldy, float *pack) {
    gemm_f32(w, ldw, transposed, rows, k, x, ldx, nt, y, ldy, pack, 0);
}

void ckpt_gemm_f32_add(const float *w, int64_t ldw, int transposed, int64_t rows, int64_t k,
                       const float *x, int64_t ldx, int64_t nt, float *y, int64_t ldy, float *pack) {
    gemm_f32(w, ldw, transposed, rows, k, x, ldx, nt, y, ldy, pack, 1);
}

// ---- driver ----------------------------------------------------------------------------

typedef struct {
    int type;
    const uint8_t *w;
    size_t row_bytes;
    int64_t rows, k;
    const float *x;
    int64_t ldx, ntok;
    float *y;
    int64_t ldy;
    float *scratch;
    int level;
} matmul_job;

// Tokens are taken in slices so a slice of activations stays in L2 while a panel of
// decoded weights (CKPT_PANEL_ROWS × k floats) sits in L1/L2 beside it.
#define TOKEN_SLICE 96
// Below this many tokens, packing a panel costs more than it saves.
#define FEW_TOKENS 4

static void matmul_task(void *ctx, int64_t task, int thread) {
    const matmul_job *j = ctx;
    const int64_t r0 = task * CKPT_PANEL_ROWS;
    const int64_t nr = j->rows - r0 < CKPT_PANEL_ROWS ? j->rows - r0 : CKPT_PANEL_ROWS;
    float *slice = j->scratch + (int64_t)thread * ckpt_matmul_scratch_floats(j->k);
    float *packed = align64(slice);
    float *decoded = packed + CKPT_PANEL_ROWS * j->k;
    const float *rows;
    if (j->type == CKPT_GGML_F32 && j->row_bytes == (size_t)j->k * 4) {
        rows = (const float *)(j->w + (size_t)r0 * j->row_bytes);
    } else {
        decode_rows(j->type, j->w + (size_t)r0 * j->row_bytes, decoded, nr * j->k);
        rows = decoded;
    }
#if defined(__x86_64__)
    if (j->level >= CKPT_LEVEL_AVX2 && j->ntok < FEW_TOKENS) {
        rows_dot_avx2(rows, nr, j->k, j->x, j->ldx, j->ntok, j->y + r0, j->ldy);
        return;
    }
    if (j->level >= CKPT_LEVEL_AVX2) {
        pack_panel(rows, j->k, 0, nr, j->k, packed);
        for (int64_t t0 = 0; t0 < j->ntok; t0 += TOKEN_SLICE) {
            const int64_t nt = j->ntok - t0 < TOKEN_SLICE ? j->ntok - t0 : TOKEN_SLICE;
            packed_best(j->level, packed, nr, j->k, j->x + t0 * j->ldx, j->ldx, nt, j->y + t0 * j->ldy + r0, j->ldy, 0);
        }
        return;
    }
#endif
    panel_scalar(rows, nr, j->k, j->x, j->ldx, j->ntok, j->y + r0, j->ldy);
}

int ckpt_matmul(int type, const void *w, size_t row_bytes, int64_t rows, int64_t k,
                const float *x, int64_t ldx, int64_t ntok, float *y, int64_t ldy, float *scratch) {
    const int bs = block_elements(type);
    if (bs == 0 || k % bs != 0) return -1;
    matmul_job job = {type, w, row_bytes, rows, k, x, ldx, ntok, y, ldy, scratch, ckpt_kernel_level()};
    ckpt_pool_run((rows + CKPT_PANEL_ROWS - 1) / CKPT_PANEL_ROWS, matmul_task, &job);
    return 0;
}

// ---- llama.cpp's activation rounding ----------------------------------------------------
// For quantized weights llama.cpp multiplies against activations quantized to 8-bit
// blocks (Q8_0/Q8_1 with an f16 scale for 32-blocks, Q8_K with an f32 scale for
// K-quants), for F16/BF16 weights against activations rounded to that type. Rounding the
// f32 activations the same way before the f32 kernel reproduces its numbers up to the
// order of additions. Ties round to even, as its AVX2 quantizers do.

// With `c` (Q4_1/Q5_1 weights), also each block's sum correction, see block_sum_correction.
static float block_sum_correction(float d, float dh, float sum);

static void round_q8_32(const float *x, float *y, int64_t n, float *c) {
    for (int64_t b = 0; b + 32 <= n; b += 32) {
        float amax = 0;
        for (int i = 0; i < 32; i++) { const float a = fabsf(x[b + i]); if (a > amax) amax = a; }
        const float d = amax / 127.0f, id = amax != 0 ? 127.0f / amax : 0.0f;
        const float dh = ckpt_f16_to_f32(ckpt_f32_to_f16(d));
        int sum = 0;
        for (int i = 0; i < 32; i++) { const float q = nearbyintf(x[b + i] * id); sum += (int)q; y[b + i] = q * dh; }
        if (c) c[b / 32] = block_sum_correction(d, dh, (float)sum);
    }
}

static void round_q8_k(const float *x, float *y, int64_t n) {
    for (int64_t b = 0; b + 256 <= n; b += 256) {
        float amax = 0, max = 0;
        for (int i = 0; i < 256; i++) { const float a = fabsf(x[b + i]); if (a > amax) { amax = a; max = x[b + i]; } }
        if (amax == 0) { for (int i = 0; i < 256; i++) y[b + i] = 0; continue; }
        const float iscale = -127.0f / max, d = 1.0f / iscale;
        for (int i = 0; i < 256; i++) {
            float v = nearbyintf(iscale * x[b + i]);
            if (v > 127) v = 127;
            y[b + i] = v * d;
        }
    }
}

static void round_f16(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = ckpt_f16_to_f32(ckpt_f32_to_f16(x[i]));
}

static void round_bf16(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = ckpt_bf16_to_f32(ckpt_f32_to_bf16(x[i]));
}

#if defined(__x86_64__)
// Same arithmetic as the scalar versions: one product and one rounding per value.
__attribute__((target("avx2,fma,f16c")))
// The quants are small integers in f32, so their vector sum is the scalar's exact integer sum.
static void round_q8_32_avx2(const float *x, float *y, int64_t n, float *c) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    for (int64_t b = 0; b + 32 <= n; b += 32) {
        __m256 v[4], m = _mm256_setzero_ps();
        for (int j = 0; j < 4; j++) { v[j] = _mm256_loadu_ps(x + b + 8 * j); m = _mm256_max_ps(m, _mm256_and_ps(v[j], abs_mask)); }
        const float amax = hmax8(m);
        const float d = amax / 127.0f, id = amax != 0 ? 127.0f / amax : 0.0f;
        const float dh = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtps_ph(_mm_set_ss(d), _MM_FROUND_TO_NEAREST_INT)));
        const __m256 idv = _mm256_set1_ps(id), dv = _mm256_set1_ps(dh);
        __m256 qsum = _mm256_setzero_ps();
        for (int j = 0; j < 4; j++) {
            const __m256 q = _mm256_round_ps(_mm256_mul_ps(v[j], idv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            qsum = _mm256_add_ps(qsum, q);
            _mm256_storeu_ps(y + b + 8 * j, _mm256_mul_ps(q, dv));
        }
        if (c) {
            const __m128 h = _mm_add_ps(_mm256_castps256_ps128(qsum), _mm256_extractf128_ps(qsum, 1));
            const __m128 h2 = _mm_add_ps(h, _mm_movehl_ps(h, h));
            c[b / 32] = block_sum_correction(d, dh, _mm_cvtss_f32(_mm_add_ss(h2, _mm_shuffle_ps(h2, h2, 1))));
        }
    }
}

__attribute__((target("avx2,fma,f16c")))
static void round_f16_avx2(const float *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT)));
    round_f16(x + i, y + i, n - i);
}

// Round to nearest even on the upper 16 bits; NaN passes through (activations have none).
__attribute__((target("avx2,fma")))
static void round_bf16_avx2(const float *x, float *y, int64_t n) {
    int64_t i = 0;
    const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7FFF), hi = _mm256_set1_epi32((int)0xFFFF0000u);
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256i b = _mm256_castps_si256(v);
        const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(b, 16), one);
        const __m256i r = _mm256_and_si256(_mm256_add_epi32(b, _mm256_add_epi32(bias, lsb)), hi);
        const __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
        _mm256_storeu_ps(y + i, _mm256_blendv_ps(_mm256_castsi256_ps(r), v, nan));
    }
    round_bf16(x + i, y + i, n - i);
}
#endif

void ckpt_round_f16(float *x, int64_t n) {
#if defined(__x86_64__)
    if (ckpt_kernel_level() >= CKPT_LEVEL_AVX2) { round_f16_avx2(x, x, n); return; }
#endif
    round_f16(x, x, n);
}

typedef struct {
    int type;
    const float *x;
    int64_t ldx, rows, k;
    float *y;
    int64_t ldy;
    float *c;
} round_job;

#define ROUND_ROWS 16

static void round_task(void *ctx, int64_t task, int thread) {
    (void)thread;
    const round_job *j = ctx;
    const int64_t r1 = (task + 1) * ROUND_ROWS < j->rows ? (task + 1) * ROUND_ROWS : j->rows;
    const int avx2 = ckpt_kernel_level() >= CKPT_LEVEL_AVX2;
    for (int64_t r = task * ROUND_ROWS; r < r1; r++) {
        const float *x = j->x + r * j->ldx;
        float *y = j->y + r * j->ldy;
        switch (j->type) {
        case CKPT_GGML_F16:
#if defined(__x86_64__)
            if (avx2) { round_f16_avx2(x, y, j->k); break; }
#endif
            round_f16(x, y, j->k); break;
        case CKPT_GGML_BF16:
#if defined(__x86_64__)
            if (avx2) { round_bf16_avx2(x, y, j->k); break; }
#endif
            round_bf16(x, y, j->k); break;
        case CKPT_GGML_Q2_K: case CKPT_GGML_Q3_K: case CKPT_GGML_Q4_K: case CKPT_GGML_Q5_K: case CKPT_GGML_Q6_K:
            round_q8_k(x, y, j->k); break;
        default: {
            float *c = j->c ? j->c + r * (j->k / 32) : NULL;
#if defined(__x86_64__)
            if (avx2) { round_q8_32_avx2(x, y, j->k, c); break; }
#endif
            round_q8_32(x, y, j->k, c); break;
        }
        }
    }
}

int ckpt_round_activations(int type, const float *x, int64_t ldx, int64_t rows, int64_t k, float *y, int64_t ldy) {
    return ckpt_round_activations_with_sums(type, x, ldx, rows, k, y, ldy, NULL);
}

int ckpt_round_activations_with_sums(int type, const float *x, int64_t ldx, int64_t rows, int64_t k, float *y, int64_t ldy,
                                     float *block_sums) {
    switch (type) {
    case CKPT_GGML_Q4_0: case CKPT_GGML_Q4_1: case CKPT_GGML_Q5_0: case CKPT_GGML_Q5_1: case CKPT_GGML_Q8_0: case CKPT_GGML_IQ4_NL:
        if (k % 32) return 0;
        break;
    case CKPT_GGML_Q2_K: case CKPT_GGML_Q3_K: case CKPT_GGML_Q4_K: case CKPT_GGML_Q5_K: case CKPT_GGML_Q6_K:
        if (k % 256) return 0;
        break;
    case CKPT_GGML_F16: case CKPT_GGML_BF16:
        break;
    default:
        return 0;
    }
    float *c = type == CKPT_GGML_Q4_1 || type == CKPT_GGML_Q5_1 ? block_sums : NULL;
    round_job job = {type, x, ldx, rows, k, y, ldy, c};
    ckpt_pool_run((rows + ROUND_ROWS - 1) / ROUND_ROWS, round_task, &job);
    return 1;
}

// ---- llama.cpp's block sums for Q4_1/Q5_1 -------------------------------------------------
// A Q4_1/Q5_1 weight is d·q + m, so a block's dot product is d·d'·Σqq' + m·d'·Σq'. llama.cpp
// takes the second term from the q8_1 block's `s`, stored as f16(d'_f32 · Σq'), with the
// scale before its own f16 rounding; the f32 kernel on rounded activations computes
// m · f16(d') · Σq'. The difference, m · c with c = f16(d'·Σq') − f16(d')·Σq', is small per
// block but it is the same sign across a row's many tokens, and it moved continuation
// log-likelihoods by tenths of a nat on long texts. Adding Σ_b m_b · c_b to each output
// reproduces llama.cpp's sum; the rounding pass, which has d, f16(d) and the quants at hand,
// writes each c (ckpt_round_activations_with_sums).

static float block_sum_correction(float d, float dh, float sum) {
    return ckpt_f16_to_f32(ckpt_f32_to_f16(d * sum)) - dh * sum;
}

typedef struct {
    const uint8_t *w;
    size_t row_bytes, block_bytes;
    int64_t rows, nb;
    const float *c;
    int64_t ntok;
    float *y;
    int64_t ldy;
    float *scratch;
} mins_job;

static void mins_task(void *ctx, int64_t task, int thread) {
    const mins_job *j = ctx;
    const int64_t r0 = task * CKPT_PANEL_ROWS;
    const int64_t nr = j->rows - r0 < CKPT_PANEL_ROWS ? j->rows - r0 : CKPT_PANEL_ROWS;
    float *m = j->scratch + (int64_t)thread * ckpt_matmul_scratch_floats(j->nb);
    float *pack = m + CKPT_PANEL_ROWS * j->nb;
    for (int64_t r = 0; r < nr; r++) {
        const uint8_t *row = j->w + (size_t)(r0 + r) * j->row_bytes;
        for (int64_t b = 0; b < j->nb; b++) {
            uint16_t h;
            memcpy(&h, row + (size_t)b * j->block_bytes + 2, 2);  // block: f16 d, f16 m, quants
            m[r * j->nb + b] = ckpt_f16_to_f32(h);
        }
    }
    ckpt_gemm_f32_add(m, j->nb, 0, nr, j->nb, j->c, j->nb, j->ntok, j->y + r0, j->ldy, pack);
}

int ckpt_matmul_add_block_mins(int type, const void *w, size_t row_bytes, int64_t rows, int64_t k,
                               const float *c, int64_t ntok, float *y, int64_t ldy, float *scratch) {
    if ((type != CKPT_GGML_Q4_1 && type != CKPT_GGML_Q5_1) || k % 32) return -1;
    mins_job job = {w, row_bytes, type == CKPT_GGML_Q4_1 ? 20 : 24, rows, k / 32, c, ntok, y, ldy, scratch};
    ckpt_pool_run((rows + CKPT_PANEL_ROWS - 1) / CKPT_PANEL_ROWS, mins_task, &job);
    return 0;
}

// ---- per-head contribution norms (importance of attention heads) ---------------------------
// norms[t*heads + h] = ‖ W[:, h·hd : (h+1)·hd] · o[t, h·hd : (h+1)·hd] ‖₂: the length of what
// head h adds to the residual stream at token t. One task per (head, block of tokens).

#define CONTRIB_TOKENS 64

typedef struct {
    const float *w;
    int64_t ldw, rows;
    const float *o;
    int64_t ldo, ntok;
    int heads, hd;
    float *norms;
    float *scratch;
} contrib_job;

int64_t ckpt_head_contribution_scratch_floats(int64_t rows, int head_dim) {
    return CONTRIB_TOKENS * rows + (int64_t)CKPT_PANEL_ROWS * head_dim + 64;
}

static void contrib_task(void *ctx, int64_t task, int thread) {
    const contrib_job *j = ctx;
    const int64_t nblocks = (j->ntok + CONTRIB_TOKENS - 1) / CONTRIB_TOKENS;
    const int h = (int)(task / nblocks);
    const int64_t t0 = (task % nblocks) * CONTRIB_TOKENS;
    const int64_t nt = j->ntok - t0 < CONTRIB_TOKENS ? j->ntok - t0 : CONTRIB_TOKENS;
    float *y = j->scratch + (int64_t)thread * ckpt_head_contribution_scratch_floats(j->rows, j->hd);
    float *pack = y + CONTRIB_TOKENS * j->rows;
    ckpt_gemm_f32(j->w + (int64_t)h * j->hd, j->ldw, 0, j->rows, j->hd, j->o + t0 * j->ldo + (int64_t)h * j->hd, j->ldo,
                  nt, y, j->rows, pack);
    for (int64_t t = 0; t < nt; t++) {
        double s = 0;
        for (int64_t r = 0; r < j->rows; r++) { const double v = y[t * j->rows + r]; s += v * v; }
        j->norms[(t0 + t) * j->heads + h] = (float)sqrt(s);
    }
}

void ckpt_head_contribution_norms(const float *w, int64_t ldw, int64_t rows, const float *o, int64_t ldo, int64_t ntok,
                                  int heads, int head_dim, float *norms, float *scratch) {
    contrib_job job = {w, ldw, rows, o, ldo, ntok, heads, head_dim, norms, scratch};
    const int64_t nblocks = (ntok + CONTRIB_TOKENS - 1) / CONTRIB_TOKENS;
    ckpt_pool_run(nblocks * heads, contrib_task, &job);
}
