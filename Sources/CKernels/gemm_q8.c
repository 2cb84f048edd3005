// Int8 matrix products for training (SwitchBack-style): the forward product y = x·Wᵀ and
// the input gradient dx = dy·W run on 8-bit values with 32-bit integer sums; the weight
// gradient stays f32 (backprop.c).
//
// Layout: rows of int8 in blocks of 32 along the contraction, one f32 scale per block
// (absmax / 127, values rounded to nearest even, as GGUF Q8_0 but with f32 scales kept in
// a separate array). Rows are padded with zeros to kp = roundup(k, 32).
//
// The product works on panels of Q8_PANEL rows, packed so that a 256-bit vector holds
// four consecutive values of each of eight rows. A 32-bit broadcast of four activation
// bytes then meets eight rows at once: vpmaddubsw takes |x| as unsigned bytes and w with
// x's sign applied (vpsignb), vpmaddwd with ones widens the pair sums to 32 bits (values
// lie in [-127, 127], so no pair sum saturates), and each lane ends a block with the exact
// integer sum of one row's block. That sum is converted to f32 and added with one FMA,
// times the product of the two block scales, to a per-row f32 accumulator. Outputs come
// out row-contiguous, with no horizontal sums (a dot product per row and token along k
// would need one per output and a scale FMA per row, token and block on lanes holding
// partial sums). A task is one panel: its packed weights (Q8_PANEL × kp bytes, in L1 up to
// kp = 1024) are read once per call and reused by every token, Q8_TOKENS at a time.
//
// With AVX-512 VNNI (ckpt_kernel_level() ≥ CKPT_LEVEL_AVX512 and ckpt_cpu_has_avx512vnni())
// a 512-bit path takes over: panels packed the same way with 16 rows to a vector, and one
// vpdpbusd (unsigned × signed bytes, four products summed into each 32-bit lane) per 64
// products instead of vpsignb + vpmaddubsw + vpmaddwd + vpaddd per 32. There is no 512-bit
// vpsignb, so the activations go in as x + 128 (unsigned) and each block's accumulator
// starts at −128 · Σ w for its row (kept with the packed panel), which leaves the same exact
// integer block sum; the f32 step after it is the AVX2 path's. Its register tile is 32 rows
// × 4 tokens (see Q8_ZMM_VECS). The quantizers have AVX-512 versions too (same arithmetic
// per value; no VNNI needed).
//
// Every output element is computed by one task in a fixed order (blocks in ascending
// order, one FMA each), the same order as the scalar reference, so all paths agree
// bit for bit and results do not depend on the number of threads.
#include "CKernels.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define QB 32             // values per block
// The register tile: Q8_PANEL_VECS vectors of 8 rows × Q8_TOKENS tokens, so 8 integer and
// 8 f32 accumulators for the default 32 × 2. On Zen 3 (clang -O3) 64 × 1 runs as fast,
// 24 × 2, 16 × 3 and 16 × 4 3-8% slower: the loop is bound by vector ALU issue (~3.2 a
// cycle, 4 per 32 products plus a share of each activation broadcast's abs and of the
// block-scale FMAs), so sharing an activation over more rows is what helps. An int16
// vpmaddwd variant and a precomputed |x| measured the same. Override with -D to measure.
#ifndef Q8_PANEL_VECS
#define Q8_PANEL_VECS 4
#endif
#ifndef Q8_TOKENS
#define Q8_TOKENS 2
#endif
#define Q8_PANEL (8 * Q8_PANEL_VECS)
// Blocks whose absmax is below this are stored as zeros (scale 0): 127/absmax would
// overflow near the bottom of the f32 range, and the scale would lose precision.
#define TINY 0x1p-100f

static inline int64_t padded(int64_t k) { return (k + QB - 1) / QB * QB; }

int64_t ckpt_q8_padded(int64_t k) { return padded(k); }
int64_t ckpt_q8_blocks(int64_t k) { return padded(k) / QB; }

static void *checked_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) abort();  // out of memory: nothing sensible to return from a kernel
    return p;
}

// ---- quantization ------------------------------------------------------------------------------

// One block of n ≤ 32 values (the rest taken as zeros) to 32 bytes and a scale.
static void quantize_block(const float *x, int n, int8_t *q, float *scale) {
    float amax = 0;
    for (int i = 0; i < n; i++) { const float a = fabsf(x[i]); if (a > amax) amax = a; }
    if (!(amax >= TINY)) { memset(q, 0, QB); *scale = 0; return; }
    const float id = 127.0f / amax;
    *scale = amax / 127.0f;
    int i = 0;
    for (; i < n; i++) q[i] = (int8_t)nearbyintf(x[i] * id);
    for (; i < QB; i++) q[i] = 0;
}

static void quantize_row_scalar(const float *x, int64_t k, int8_t *q, float *scales) {
    for (int64_t b = 0; b * QB < k; b++) {
        const int n = k - b * QB < QB ? (int)(k - b * QB) : QB;
        quantize_block(x + b * QB, n, q + b * QB, scales + b);
    }
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma,f16c")))
static inline float hmax8_ps(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// Four vectors of eight int32 (each in [-127, 127]) to 32 bytes in their order.
__attribute__((target("avx2,fma,f16c")))
static inline __m256i pack_4x8(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    // Bytes: a0-3 b0-3 c0-3 d0-3 | a4-7 b4-7 c4-7 d4-7, as dwords 0 2 4 6 | 1 3 5 7.
    return _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// In-register transpose of an 8 × 8 matrix of 32-bit elements: r[i] holds row i; on
// return r[j] holds column j.
__attribute__((target("avx2,fma,f16c")))
static inline void transpose_8x8_epi32(__m256i r[8]) {
    const __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]), t1 = _mm256_unpackhi_epi32(r[0], r[1]);
    const __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]), t3 = _mm256_unpackhi_epi32(r[2], r[3]);
    const __m256i t4 = _mm256_unpacklo_epi32(r[4], r[5]), t5 = _mm256_unpackhi_epi32(r[4], r[5]);
    const __m256i t6 = _mm256_unpacklo_epi32(r[6], r[7]), t7 = _mm256_unpackhi_epi32(r[6], r[7]);
    // u0: elements 0 of rows 0-3 | elements 4 of rows 0-3; u4 the same for rows 4-7.
    const __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
    const __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
    const __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
    const __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
    r[0] = _mm256_permute2x128_si256(u0, u4, 0x20); r[4] = _mm256_permute2x128_si256(u0, u4, 0x31);
    r[1] = _mm256_permute2x128_si256(u1, u5, 0x20); r[5] = _mm256_permute2x128_si256(u1, u5, 0x31);
    r[2] = _mm256_permute2x128_si256(u2, u6, 0x20); r[6] = _mm256_permute2x128_si256(u2, u6, 0x31);
    r[3] = _mm256_permute2x128_si256(u3, u7, 0x20); r[7] = _mm256_permute2x128_si256(u3, u7, 0x31);
}

// The same arithmetic as quantize_block: absmax by max (exact), 127/absmax and
// absmax/127 as single divisions, one product and a round to nearest even per value.
__attribute__((target("avx2,fma,f16c")))
static void quantize_row_avx2(const float *x, int64_t k, int8_t *q, float *scales) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    int64_t b = 0;
    for (; (b + 1) * QB <= k; b++) {
        const float *xb = x + b * QB;
        const __m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8);
        const __m256 v2 = _mm256_loadu_ps(xb + 16), v3 = _mm256_loadu_ps(xb + 24);
        const __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v0, abs_mask), _mm256_and_ps(v1, abs_mask)),
                                       _mm256_max_ps(_mm256_and_ps(v2, abs_mask), _mm256_and_ps(v3, abs_mask)));
        const float amax = hmax8_ps(m);
        if (!(amax >= TINY)) {
            _mm256_storeu_si256((__m256i *)(q + b * QB), _mm256_setzero_si256());
            scales[b] = 0;
            continue;
        }
        const __m256 id = _mm256_set1_ps(127.0f / amax);
        scales[b] = amax / 127.0f;
        // cvtps rounds to nearest even (the default MXCSR mode), as nearbyintf does.
        const __m256i q0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, id)), q1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, id));
        const __m256i q2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, id)), q3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, id));
        _mm256_storeu_si256((__m256i *)(q + b * QB), pack_4x8(q0, q1, q2, q3));
    }
    if (b * QB < k) quantize_block(x + b * QB, (int)(k - b * QB), q + b * QB, scales + b);
}

#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c")))

// Sixteen vectors m[0..15] to one whose lane b is the maximum of m[b]'s lanes: four
// rounds that each halve the lanes per vector and the number of vectors, then one
// permutation (after them lane 4l + j holds vector l + 4j's maximum).
AVX512_TARGET
static inline __m512 max_16x16_ps(__m512 m[16]) {
    __m512 c[8], e[4], g[2];
    for (int i = 0; i < 8; i++)  // 128-bit lanes 0, 1: m[2i]; 2, 3: m[2i+1]
        c[i] = _mm512_max_ps(_mm512_shuffle_f32x4(m[2 * i], m[2 * i + 1], 0x44), _mm512_shuffle_f32x4(m[2 * i], m[2 * i + 1], 0xEE));
    for (int i = 0; i < 4; i++)  // 128-bit lane l: m[4i + l]
        e[i] = _mm512_max_ps(_mm512_shuffle_f32x4(c[2 * i], c[2 * i + 1], 0x88), _mm512_shuffle_f32x4(c[2 * i], c[2 * i + 1], 0xDD));
    for (int i = 0; i < 2; i++)  // 128-bit lane l: two values of m[8i + l], two of m[8i + 4 + l]
        g[i] = _mm512_max_ps(_mm512_shuffle_ps(e[2 * i], e[2 * i + 1], 0x44), _mm512_shuffle_ps(e[2 * i], e[2 * i + 1], 0xEE));
    const __m512 r = _mm512_max_ps(_mm512_shuffle_ps(g[0], g[1], 0x88), _mm512_shuffle_ps(g[0], g[1], 0xDD));
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), r);
}

// quantize_row_avx2 sixteen blocks at a time: their sixteen absmax in one vector, so the
// two divisions per block (the same as quantize_block's) are two vector divisions per 16
// blocks. The remaining blocks go through the AVX2 version. 1.1-1.4× faster than it on
// Zen 5 for rows of 576-4096 values.
AVX512_TARGET
static void quantize_row_avx512(const float *x, int64_t k, int8_t *q, float *scales) {
    int64_t b = 0;
    for (; (b + 16) * QB <= k; b += 16) {
        const float *xb = x + b * QB;
        __m512 m[16];
        for (int i = 0; i < 16; i++)
            m[i] = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(xb + i * QB)), _mm512_abs_ps(_mm512_loadu_ps(xb + i * QB + 16)));
        const __m512 amax = max_16x16_ps(m);
        const __mmask16 live = _mm512_cmp_ps_mask(amax, _mm512_set1_ps(TINY), _CMP_GE_OQ);
        float id[16];
        _mm512_storeu_ps(id, _mm512_maskz_div_ps(live, _mm512_set1_ps(127.0f), amax));
        _mm512_storeu_ps(scales + b, _mm512_maskz_div_ps(live, amax, _mm512_set1_ps(127.0f)));
        for (int i = 0; i < 16; i++) {
            // A dead block has id 0: its values become ±0, stored as 0.
            const __m512 s = _mm512_set1_ps(id[i]);
            const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb + i * QB), s));
            const __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb + i * QB + 16), s));
            _mm_storeu_si128((__m128i *)(q + (b + i) * QB), _mm512_cvtsepi32_epi8(q0));
            _mm_storeu_si128((__m128i *)(q + (b + i) * QB + 16), _mm512_cvtsepi32_epi8(q1));
        }
    }
    if (b * QB < k) quantize_row_avx2(x + b * QB, k - b * QB, q + b * QB, scales + b);
}
#endif

typedef struct {
    const float *x;
    int64_t ldx, rows, k, rows_per_task;
    int8_t *q;
    float *scales;
    int level;
} quant_rows_job;

static void quant_rows_task(void *ctx, int64_t task, int thread) {
    (void)thread;
    const quant_rows_job *j = ctx;
    const int64_t kp = padded(j->k), nb = kp / QB;
    const int64_t r0 = task * j->rows_per_task;
    const int64_t r1 = r0 + j->rows_per_task < j->rows ? r0 + j->rows_per_task : j->rows;
    for (int64_t r = r0; r < r1; r++) {
#if defined(__x86_64__)
        if (j->level >= CKPT_LEVEL_AVX512) { quantize_row_avx512(j->x + r * j->ldx, j->k, j->q + r * kp, j->scales + r * nb); continue; }
        if (j->level >= CKPT_LEVEL_AVX2) { quantize_row_avx2(j->x + r * j->ldx, j->k, j->q + r * kp, j->scales + r * nb); continue; }
#endif
        quantize_row_scalar(j->x + r * j->ldx, j->k, j->q + r * kp, j->scales + r * nb);
    }
}

// Values per task of the quantizers: enough that a task outweighs claiming it.
#define QUANT_TASK_VALUES 32768

void ckpt_q8_quantize_rows(const float *x, int64_t ldx, int64_t rows, int64_t k, int8_t *q, float *scales) {
    if (rows <= 0 || k <= 0) return;
    int64_t per = QUANT_TASK_VALUES / k;
    if (per < 1) per = 1;
    quant_rows_job job = {x, ldx, rows, k, per, q, scales, ckpt_kernel_level()};
    ckpt_pool_run((rows + per - 1) / per, quant_rows_task, &job);
}

// ---- quantization of a transpose -------------------------------------------------------------
// Output row c (a column of w) holds w[0..rows)[c] in blocks of 32 along the original rows.
// A task takes one band of 32 rows (one block of every output row): the band is read in
// tiles of 32 rows × 32 columns (scalar) or 32 × 8 (AVX2), so both the reads of w and the
// 32-byte writes of each output row stay within cache lines.

typedef struct {
    const float *w;
    int64_t ldw, rows, cols;
    int8_t *q;
    float *scales;
    int level;
} quant_cols_job;

// Columns [c0, cols) of the band of n ≤ 32 rows at w, through a transposed tile.
static void quant_cols_scalar(const float *w, int64_t ldw, int n, int64_t c0, int64_t cols, int8_t *q, float *scales,
                              int64_t rowsp, int64_t nbr, int64_t band) {
    float tile[32][QB];
    for (int64_t cb = c0; cb < cols; cb += 32) {
        const int nc = cols - cb < 32 ? (int)(cols - cb) : 32;
        for (int r = 0; r < n; r++)
            for (int c = 0; c < nc; c++) tile[c][r] = w[r * ldw + cb + c];
        for (int c = 0; c < nc; c++)
            quantize_block(tile[c], n, q + (cb + c) * rowsp + band * QB, scales + (cb + c) * nbr + band);
    }
}

#if defined(__x86_64__)
// Columns [0, cols rounded down to 8) of the band: eight columns at a time, each lane one
// column. Per lane the same arithmetic as quantize_block.
__attribute__((target("avx2,fma,f16c")))
static int64_t quant_cols_avx2(const float *w, int64_t ldw, int n, int64_t cols, int8_t *q, float *scales,
                               int64_t rowsp, int64_t nbr, int64_t band) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    // Within each 128-bit lane, bytes r·4 + c (row r, column c of four) to c·4 + r.
    const __m256i transpose4 = _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,
                                                0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    int64_t c0 = 0;
    for (; c0 + 8 <= cols; c0 += 8) {
        __m256 v[QB];
        __m256 m = _mm256_setzero_ps();
        for (int r = 0; r < QB; r++) {
            v[r] = r < n ? _mm256_loadu_ps(w + r * ldw + c0) : _mm256_setzero_ps();
            m = _mm256_max_ps(m, _mm256_and_ps(v[r], abs_mask));
        }
        const __m256 live = _mm256_cmp_ps(m, _mm256_set1_ps(TINY), _CMP_GE_OQ);
        const __m256 id = _mm256_and_ps(_mm256_div_ps(_mm256_set1_ps(127.0f), m), live);
        const __m256 d = _mm256_and_ps(_mm256_div_ps(m, _mm256_set1_ps(127.0f)), live);
        // g[i]: rows 4i … 4i+3; dword c holds column c's four rows.
        __m256i g[8];
        for (int i = 0; i < 8; i++) {
            const __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(v[4 * i], id));
            const __m256i b = _mm256_cvtps_epi32(_mm256_mul_ps(v[4 * i + 1], id));
            const __m256i c = _mm256_cvtps_epi32(_mm256_mul_ps(v[4 * i + 2], id));
            const __m256i e = _mm256_cvtps_epi32(_mm256_mul_ps(v[4 * i + 3], id));
            // packs keep lanes apart: bytes a0-3 b0-3 c0-3 e0-3 | a4-7 b4-7 c4-7 e4-7.
            const __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, e));
            g[i] = _mm256_shuffle_epi8(bytes, transpose4);
        }
        // Column c's 32 bytes are dword c of g[0..7]: an 8 × 8 transpose of dwords.
        transpose_8x8_epi32(g);
        float ds[8];
        _mm256_storeu_ps(ds, d);
        for (int c = 0; c < 8; c++) {
            _mm256_storeu_si256((__m256i *)(q + (c0 + c) * rowsp + band * QB), g[c]);
            scales[(c0 + c) * nbr + band] = ds[c];
        }
    }
    return c0;
}

// Columns [0, cols rounded down to 16) of the band, sixteen at a time, per lane the same
// arithmetic again. Each row's sixteen values are one 64-byte line, read whole into a
// contiguous tile. The AVX2 version reads it in two halves, eight columns apart in time,
// and when rows are 4 KiB apart the 32 rows' lines share L1 sets and are evicted in
// between: on Zen 5 this is 1.3-1.6× faster for 576 × 1024 and 576 × 1536, 1.03-1.15× on
// other shapes.
AVX512_TARGET
static int64_t quant_cols_avx512(const float *w, int64_t ldw, int n, int64_t cols, int8_t *q, float *scales,
                                 int64_t rowsp, int64_t nbr, int64_t band) {
    const __m512i transpose4 = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15));
    _Alignas(64) float tile[QB][16];
    int64_t c0 = 0;
    for (; c0 + 16 <= cols; c0 += 16) {
        __m512 m = _mm512_setzero_ps();
        for (int r = 0; r < QB; r++) {
            const __m512 v = r < n ? _mm512_loadu_ps(w + r * ldw + c0) : _mm512_setzero_ps();
            _mm512_store_ps(tile[r], v);
            m = _mm512_max_ps(m, _mm512_abs_ps(v));
        }
        const __mmask16 live = _mm512_cmp_ps_mask(m, _mm512_set1_ps(TINY), _CMP_GE_OQ);
        const __m512 id = _mm512_maskz_div_ps(live, _mm512_set1_ps(127.0f), m);
        const __m512 d = _mm512_maskz_div_ps(live, m, _mm512_set1_ps(127.0f));
        // Rows 4i … 4i+3 to bytes as in quant_cols_avx2 (per 128-bit lane): dword c holds
        // column c's four rows, columns 0-7 in the low half, 8-15 in the high one.
        __m256i lo[8], hi[8];
        for (int i = 0; i < 8; i++) {
            const __m512i a = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_load_ps(tile[4 * i]), id));
            const __m512i b = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_load_ps(tile[4 * i + 1]), id));
            const __m512i c = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_load_ps(tile[4 * i + 2]), id));
            const __m512i e = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_load_ps(tile[4 * i + 3]), id));
            const __m512i bytes = _mm512_packs_epi16(_mm512_packs_epi32(a, b), _mm512_packs_epi32(c, e));
            const __m512i g = _mm512_shuffle_epi8(bytes, transpose4);
            lo[i] = _mm512_castsi512_si256(g);
            hi[i] = _mm512_extracti64x4_epi64(g, 1);
        }
        // Each column's 32 bytes: two 8 × 8 transposes of dwords.
        transpose_8x8_epi32(lo);
        transpose_8x8_epi32(hi);
        float ds[16];
        _mm512_storeu_ps(ds, d);
        for (int c = 0; c < 8; c++) {
            _mm256_storeu_si256((__m256i *)(q + (c0 + c) * rowsp + band * QB), lo[c]);
            _mm256_storeu_si256((__m256i *)(q + (c0 + 8 + c) * rowsp + band * QB), hi[c]);
        }
        for (int c = 0; c < 16; c++) scales[(c0 + c) * nbr + band] = ds[c];
    }
    return c0;
}
#endif

static void quant_cols_task(void *ctx, int64_t band, int thread) {
    (void)thread;
    const quant_cols_job *j = ctx;
    const int64_t rowsp = padded(j->rows), nbr = rowsp / QB;
    const int n = j->rows - band * QB < QB ? (int)(j->rows - band * QB) : QB;
    const float *w = j->w + band * QB * j->ldw;
    int64_t c0 = 0;
#if defined(__x86_64__)
    if (j->level >= CKPT_LEVEL_AVX512) c0 = quant_cols_avx512(w, j->ldw, n, j->cols, j->q, j->scales, rowsp, nbr, band);
    if (j->level >= CKPT_LEVEL_AVX2)
        c0 += quant_cols_avx2(w + c0, j->ldw, n, j->cols - c0, j->q + c0 * rowsp, j->scales + c0 * nbr, rowsp, nbr, band);
#endif
    quant_cols_scalar(w, j->ldw, n, c0, j->cols, j->q, j->scales, rowsp, nbr, band);
}

void ckpt_q8_quantize_cols(const float *w, int64_t ldw, int64_t rows, int64_t cols, int8_t *q, float *scales) {
    if (rows <= 0 || cols <= 0) return;
    quant_cols_job job = {w, ldw, rows, cols, q, scales, ckpt_kernel_level()};
    ckpt_pool_run((rows + QB - 1) / QB, quant_cols_task, &job);
}

// ---- the product -------------------------------------------------------------------------------

// y[t·ldy + r] = (acc ? y : 0) + Σ_b isum(t, r, b) · (xs[t, b] · ws[r, b]), blocks in order,
// one fused multiply-add each: the reference for the vector path.
static void gemm_rows_scalar(const int8_t *xq, const float *xs, int64_t nt, const int8_t *wq, const float *ws, int64_t r0,
                             int64_t nr, int64_t kp, float *y, int64_t ldy, int accumulate) {
    const int64_t nb = kp / QB;
    for (int64_t t = 0; t < nt; t++) {
        const int8_t *xt = xq + t * kp;
        for (int64_t r = r0; r < r0 + nr; r++) {
            const int8_t *wr = wq + r * kp;
            float acc = accumulate ? y[t * ldy + r] : 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                int32_t s = 0;
                for (int i = 0; i < QB; i++) s += (int32_t)xt[b * QB + i] * wr[b * QB + i];
                acc = fmaf((float)s, xs[t * nb + b] * ws[r * nb + b], acc);
            }
            y[t * ldy + r] = acc;
        }
    }
}

#if defined(__x86_64__)
// Packs rows [r0, r0 + nr) into pw[kp/4][panel][4] (four values of each row side by side;
// missing rows are zero) and their scales into pws[nb][panel], for a panel of `panel` rows
// (a multiple of 8: Q8_PANEL for AVX2, Q8_ZMM_PANEL for VNNI). Whole groups of eight rows
// go through 8 × 8 transposes of 4-byte quads.
__attribute__((target("avx2,fma,f16c")))
static void pack_panel_q8(const int8_t *wq, const float *ws, int64_t r0, int64_t nr, int64_t kp, int panel, int8_t *pw, float *pws) {
    const int64_t nb = kp / QB, quads = kp / 4;
    int r = 0;
    for (; r + 8 <= nr; r += 8) {
        const int8_t *src = wq + (r0 + r) * kp;
        for (int64_t g = 0; g < quads; g += 8) {
            __m256i m[8];
            for (int i = 0; i < 8; i++) m[i] = _mm256_loadu_si256((const __m256i *)(src + i * kp + 4 * g));
            transpose_8x8_epi32(m);
            for (int i = 0; i < 8; i++) _mm256_store_si256((__m256i *)(pw + ((g + i) * panel + r) * 4), m[i]);
        }
    }
    for (; r < panel; r++) {
        int32_t *dst = (int32_t *)pw + r;
        if (r < nr) {
            const int8_t *src = wq + (r0 + r) * kp;
            for (int64_t g = 0; g < quads; g++) { int32_t v; memcpy(&v, src + 4 * g, 4); dst[g * panel] = v; }
        } else {
            for (int64_t g = 0; g < quads; g++) dst[g * panel] = 0;
        }
    }
    for (r = 0; r < panel; r++)
        for (int64_t b = 0; b < nb; b++) pws[b * panel + r] = r < nr ? ws[(r0 + r) * nb + b] : 0;
}

// One register tile: Q8_PANEL rows × NT tokens over all nb blocks. acc[t][v] holds block
// sums (int32, eight rows each), f[t][v] the f32 results. Rows beyond nr are computed
// (they are zero) but not stored.
#define DEFINE_TILE(NT)                                                                                               \
    __attribute__((target("avx2,fma,f16c")))                                                                          \
    static void tile_##NT(const int8_t *pw, const float *pws, int64_t nb, const int8_t *x, int64_t kp, const float *xs, \
                          float *y, int64_t ldy, int64_t nr, int accumulate) {                                        \
        const __m256i ones = _mm256_set1_epi16(1);                                                                    \
        __m256 f[NT][Q8_PANEL_VECS];                                                                                  \
        _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++)                                                          \
            _Pragma("GCC unroll 8") for (int v = 0; v < Q8_PANEL_VECS; v++) {                                         \
                if (!accumulate) f[t][v] = _mm256_setzero_ps();                                                       \
                else if (nr == Q8_PANEL) f[t][v] = _mm256_loadu_ps(y + t * ldy + 8 * v);                              \
                else {                                                                                                \
                    float tmp[8] = {0};                                                                               \
                    for (int r = 0; r < 8 && 8 * v + r < nr; r++) tmp[r] = y[t * ldy + 8 * v + r];                    \
                    f[t][v] = _mm256_loadu_ps(tmp);                                                                   \
                }                                                                                                     \
            }                                                                                                         \
        for (int64_t b = 0; b < nb; b++) {                                                                            \
            __m256i acc[NT][Q8_PANEL_VECS];                                                                           \
            _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++)                                                      \
                _Pragma("GCC unroll 8") for (int v = 0; v < Q8_PANEL_VECS; v++) acc[t][v] = _mm256_setzero_si256();   \
            const int8_t *wb = pw + b * QB * Q8_PANEL;                                                                \
            const int8_t *xb = x + b * QB;                                                                            \
            _Pragma("GCC unroll 1") for (int g = 0; g < QB / 4; g++) {                                                \
                __m256i w[Q8_PANEL_VECS];                                                                             \
                _Pragma("GCC unroll 8") for (int v = 0; v < Q8_PANEL_VECS; v++)                                       \
                    w[v] = _mm256_load_si256((const __m256i *)(wb + (g * Q8_PANEL + 8 * v) * 4));                     \
                _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) {                                                \
                    int32_t four;                                                                                     \
                    memcpy(&four, xb + t * kp + 4 * g, 4);                                                            \
                    const __m256i xv = _mm256_set1_epi32(four), ax = _mm256_abs_epi8(xv);                             \
                    _Pragma("GCC unroll 8") for (int v = 0; v < Q8_PANEL_VECS; v++) {                                 \
                        const __m256i p = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(w[v], xv));                       \
                        acc[t][v] = _mm256_add_epi32(acc[t][v], _mm256_madd_epi16(p, ones));                          \
                    }                                                                                                 \
                }                                                                                                     \
            }                                                                                                         \
            _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) {                                                    \
                const __m256 s = _mm256_broadcast_ss(xs + t * nb + b);                                                \
                _Pragma("GCC unroll 8") for (int v = 0; v < Q8_PANEL_VECS; v++) {                                     \
                    const __m256 d = _mm256_mul_ps(_mm256_load_ps(pws + b * Q8_PANEL + 8 * v), s);                    \
                    f[t][v] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[t][v]), d, f[t][v]);                             \
                }                                                                                                     \
            }                                                                                                         \
        }                                                                                                             \
        _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++)                                                          \
            _Pragma("GCC unroll 8") for (int v = 0; v < Q8_PANEL_VECS; v++) {                                         \
                if (nr == Q8_PANEL) _mm256_storeu_ps(y + t * ldy + 8 * v, f[t][v]);                                   \
                else {                                                                                                \
                    float tmp[8];                                                                                     \
                    _mm256_storeu_ps(tmp, f[t][v]);                                                                   \
                    for (int r = 0; r < 8 && 8 * v + r < nr; r++) y[t * ldy + 8 * v + r] = tmp[r];                    \
                }                                                                                                     \
            }                                                                                                         \
    }

DEFINE_TILE(1)
#if Q8_TOKENS >= 2
DEFINE_TILE(2)
#endif
#if Q8_TOKENS >= 3
DEFINE_TILE(3)
#endif
#if Q8_TOKENS >= 4
DEFINE_TILE(4)
#endif
#if Q8_TOKENS >= 5
#error "Q8_TOKENS above 4 has no tile"
#endif

typedef void (*tile_fn)(const int8_t *, const float *, int64_t, const int8_t *, int64_t, const float *, float *, int64_t,
                        int64_t, int);

static const tile_fn tiles[] = {
    NULL, tile_1,
#if Q8_TOKENS >= 2
    tile_2,
#endif
#if Q8_TOKENS >= 3
    tile_3,
#endif
#if Q8_TOKENS >= 4
    tile_4,
#endif
};
#endif

// ---- the AVX-512 VNNI product --------------------------------------------------------------------
#if defined(__x86_64__)
// Panels of Q8_ZMM_PANEL = 16 · Q8_ZMM_VECS rows, packed as for AVX2 (four consecutive
// values of each row side by side) but 16 rows to a 512-bit vector. vpdpbusd multiplies
// unsigned by signed bytes, and AVX-512 has no vpsignb, so the activations take a bias:
// x + 128 (x XOR 0x80) as unsigned bytes in [1, 255] against w as signed bytes gives
// Σ x·w + 128 · Σ w over a block. The packed panel carries −128 · Σ w for every row and
// block, and each block's accumulator starts from it, so after the block's eight vpdpbusd
// it holds the exact integer sum Σ x·w (every partial sum is below 2^21 in magnitude, far
// from wrapping). The f32 step is then the AVX2 path's: one FMA per block of that sum
// times (row scale · token scale), so the paths agree bit for bit.
//
// The biased activations of a register tile (Q8_ZMM_TOKENS rows of kp bytes) are written
// once per tile to a scratch next to the packed panel, so the inner loop broadcasts them
// with a plain load; XOR-ing each broadcast instead measured the same with gcc, but clang
// makes it three instructions (vmovd, vpxord, vpbroadcastd) per token and four bytes.
//
// The register tile: Q8_ZMM_VECS vectors of 16 rows × Q8_ZMM_TOKENS tokens. Measured on
// Zen 5 (2-core EPYC VM, clang -O3, one thread, 512 tokens, best of 20-30 runs taken while
// other jobs ran, so ±10% noise), GOP/s for k × rows = 576 × 1024 / 1024 × 576 / 4096 × 512:
// 2 × 4: 317 / 310 / 310; 2 × 3: 312 / 296 / 306; 4 × 2: 310 / 280 / 308; 1 × 6: 296 / 264 /
// 275; 3 × 3, 3 × 4, 2 × 6, 4 × 3, 2 × 5 and 1 × 4 no better (the AVX2 path: 110-128). Here
// a 512-bit vpdpbusd issues about once a cycle (as does a 512-bit FMA), so with the two f32
// operations per block and vector the loop is near its bound (64 vpdpbusd + 16 mul/FMA
// per block of 2 × 4); beyond a few accumulators the tile shape matters little. 32-row
// panels also waste fewer rows and keep a panel of kp ≤ 1024 in L1. Override with -D.
#ifndef Q8_ZMM_VECS
#define Q8_ZMM_VECS 2
#endif
#ifndef Q8_ZMM_TOKENS
#define Q8_ZMM_TOKENS 4
#endif
#define Q8_ZMM_PANEL (16 * Q8_ZMM_VECS)
#if Q8_ZMM_TOKENS > 6
#error "Q8_ZMM_TOKENS above 6 has no tile"
#endif
#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")))

// Packs rows [r0, r0 + nr) into pw[kp/4][Q8_ZMM_PANEL][4] (missing rows are zero), their
// scales into pws[nb][Q8_ZMM_PANEL] and −128 · (sum of each row's block) into
// pcorr[nb][Q8_ZMM_PANEL].
VNNI_TARGET
static void pack_panel_q8_vnni(const int8_t *wq, const float *ws, int64_t r0, int64_t nr, int64_t kp, int8_t *pw,
                               float *pws, int32_t *pcorr) {
    enum { P = Q8_ZMM_PANEL };
    const int64_t nb = kp / QB;
    pack_panel_q8(wq, ws, r0, nr, kp, P, pw, pws);
    const __m512i u128 = _mm512_set1_epi8((char)0x80);
    for (int64_t b = 0; b < nb; b++)
        for (int v = 0; v < Q8_ZMM_VECS; v++) {
            __m512i s = _mm512_setzero_si512();
            for (int g = 0; g < QB / 4; g++)
                s = _mm512_dpbusd_epi32(s, u128, _mm512_load_si512((const void *)(pw + ((b * (QB / 4) + g) * P + 16 * v) * 4)));
            _mm512_store_si512((void *)(pcorr + b * P + 16 * v), _mm512_sub_epi32(_mm512_setzero_si512(), s));
        }
}

// Lanes of vector v that hold one of the nr live rows.
static inline __mmask16 live_rows(int v, int64_t nr) {
    const int64_t n = nr - 16 * v;
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

// The NT activation rows at x, kp bytes each, XOR 0x80 (x + 128 as unsigned bytes) into xb.
VNNI_TARGET
static inline const uint8_t *bias_rows(const int8_t *x, int64_t kp, int nt, uint8_t *xb) {
    const __m256i bias = _mm256_set1_epi8((char)0x80);
    for (int64_t i = 0; i < nt * kp; i += 32)  // kp is a multiple of 32
        _mm256_store_si256((__m256i *)(xb + i), _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(x + i)), bias));
    return xb;
}

// One register tile: Q8_ZMM_PANEL rows × NT tokens over all nb blocks, as tile_NT.
#define DEFINE_ZMM_TILE(NT)                                                                                           \
    VNNI_TARGET                                                                                                       \
    static void zmm_tile_##NT(const int8_t *pw, const float *pws, const int32_t *pcorr, int64_t nb, const int8_t *x0, \
                              int64_t kp, const float *xs, float *y, int64_t ldy, int64_t nr, int accumulate,         \
                              uint8_t *xbias) {                                                                       \
        enum { P = Q8_ZMM_PANEL, V = Q8_ZMM_VECS };                                                                   \
        const uint8_t *x = bias_rows(x0, kp, NT, xbias);                                                              \
        __m512 f[NT][V];                                                                                              \
        _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++)                                                          \
            _Pragma("GCC unroll 8") for (int v = 0; v < V; v++)                                                       \
                f[t][v] = accumulate ? _mm512_maskz_loadu_ps(live_rows(v, nr), y + t * ldy + 16 * v)                  \
                                     : _mm512_setzero_ps();                                                           \
        for (int64_t b = 0; b < nb; b++) {                                                                            \
            __m512i acc[NT][V];                                                                                       \
            _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++)                                                      \
                _Pragma("GCC unroll 8") for (int v = 0; v < V; v++)                                                   \
                    acc[t][v] = _mm512_load_si512((const void *)(pcorr + b * P + 16 * v));                            \
            const int8_t *wb = pw + b * QB * P;                                                                       \
            const uint8_t *xb = x + b * QB;                                                                           \
            _Pragma("GCC unroll 1") for (int g = 0; g < QB / 4; g++) {                                                \
                __m512i w[V];                                                                                         \
                _Pragma("GCC unroll 8") for (int v = 0; v < V; v++)                                                   \
                    w[v] = _mm512_load_si512((const void *)(wb + (g * P + 16 * v) * 4));                              \
                _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) {                                                \
                    int32_t four;                                                                                     \
                    memcpy(&four, xb + t * kp + 4 * g, 4);                                                            \
                    const __m512i xv = _mm512_set1_epi32(four);                                                       \
                    _Pragma("GCC unroll 8") for (int v = 0; v < V; v++)                                               \
                        acc[t][v] = _mm512_dpbusd_epi32(acc[t][v], xv, w[v]);                                         \
                }                                                                                                     \
            }                                                                                                         \
            _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) {                                                    \
                const __m512 s = _mm512_set1_ps(xs[t * nb + b]);                                                      \
                _Pragma("GCC unroll 8") for (int v = 0; v < V; v++) {                                                 \
                    const __m512 d = _mm512_mul_ps(_mm512_load_ps(pws + b * P + 16 * v), s);                          \
                    f[t][v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[t][v]), d, f[t][v]);                             \
                }                                                                                                     \
            }                                                                                                         \
        }                                                                                                             \
        _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++)                                                          \
            _Pragma("GCC unroll 8") for (int v = 0; v < V; v++)                                                       \
                _mm512_mask_storeu_ps(y + t * ldy + 16 * v, live_rows(v, nr), f[t][v]);                               \
    }

DEFINE_ZMM_TILE(1)
#if Q8_ZMM_TOKENS >= 2
DEFINE_ZMM_TILE(2)
#endif
#if Q8_ZMM_TOKENS >= 3
DEFINE_ZMM_TILE(3)
#endif
#if Q8_ZMM_TOKENS >= 4
DEFINE_ZMM_TILE(4)
#endif
#if Q8_ZMM_TOKENS >= 5
DEFINE_ZMM_TILE(5)
#endif
#if Q8_ZMM_TOKENS >= 6
DEFINE_ZMM_TILE(6)
#endif

typedef void (*zmm_tile_fn)(const int8_t *, const float *, const int32_t *, int64_t, const int8_t *, int64_t, const float *,
                            float *, int64_t, int64_t, int, uint8_t *);

static const zmm_tile_fn zmm_tiles[] = {
    NULL, zmm_tile_1,
#if Q8_ZMM_TOKENS >= 2
    zmm_tile_2,
#endif
#if Q8_ZMM_TOKENS >= 3
    zmm_tile_3,
#endif
#if Q8_ZMM_TOKENS >= 4
    zmm_tile_4,
#endif
#if Q8_ZMM_TOKENS >= 5
    zmm_tile_5,
#endif
#if Q8_ZMM_TOKENS >= 6
    zmm_tile_6,
#endif
};
#endif

typedef struct {
    const int8_t *xq;
    const float *xs;
    int64_t nt;
    const int8_t *wq;
    const float *ws;
    int64_t rows, kp;
    float *y;
    int64_t ldy;
    int accumulate, level, vnni;
    int64_t panel;           // rows per panel: Q8_PANEL, or Q8_ZMM_PANEL on the VNNI path
    int64_t slice, nslices;  // tokens per task, and tasks per panel
    uint8_t *packs;          // per thread: packed panel, then its scales (…); 64-byte aligned
    int64_t pack_bytes;
} gemm_q8_job;

// Task = (panel, slice of tokens). Each output element belongs to one task and is computed
// in the same order whatever the slicing, so results do not depend on it.
static void gemm_q8_task(void *ctx, int64_t task, int thread) {
    const gemm_q8_job *j = ctx;
    const int64_t r0 = task / j->nslices * j->panel;
    const int64_t nr = j->rows - r0 < j->panel ? j->rows - r0 : j->panel;
    const int64_t t0 = task % j->nslices * j->slice;
    const int64_t t1 = t0 + j->slice < j->nt ? t0 + j->slice : j->nt;
#if defined(__x86_64__)
    if (j->vnni) {
        const int64_t nb = j->kp / QB;
        int8_t *pw = (int8_t *)(j->packs + (int64_t)thread * j->pack_bytes);
        float *pws = (float *)(pw + Q8_ZMM_PANEL * j->kp);
        int32_t *pcorr = (int32_t *)(pws + Q8_ZMM_PANEL * nb);
        uint8_t *xbias = (uint8_t *)(pcorr + Q8_ZMM_PANEL * nb);
        pack_panel_q8_vnni(j->wq, j->ws, r0, nr, j->kp, pw, pws, pcorr);
        int64_t t = t0;
        for (; t + Q8_ZMM_TOKENS <= t1; t += Q8_ZMM_TOKENS)
            zmm_tiles[Q8_ZMM_TOKENS](pw, pws, pcorr, nb, j->xq + t * j->kp, j->kp, j->xs + t * nb, j->y + t * j->ldy + r0,
                                     j->ldy, nr, j->accumulate, xbias);
        if (t < t1)
            zmm_tiles[t1 - t](pw, pws, pcorr, nb, j->xq + t * j->kp, j->kp, j->xs + t * nb, j->y + t * j->ldy + r0, j->ldy,
                              nr, j->accumulate, xbias);
        return;
    }
    if (j->level >= CKPT_LEVEL_AVX2) {
        const int64_t nb = j->kp / QB;
        int8_t *pw = (int8_t *)(j->packs + (int64_t)thread * j->pack_bytes);
        float *pws = (float *)(pw + Q8_PANEL * j->kp);
        pack_panel_q8(j->wq, j->ws, r0, nr, j->kp, Q8_PANEL, pw, pws);
        int64_t t = t0;
        for (; t + Q8_TOKENS <= t1; t += Q8_TOKENS)
            tiles[Q8_TOKENS](pw, pws, nb, j->xq + t * j->kp, j->kp, j->xs + t * nb, j->y + t * j->ldy + r0, j->ldy, nr,
                             j->accumulate);
        if (t < t1)
            tiles[t1 - t](pw, pws, nb, j->xq + t * j->kp, j->kp, j->xs + t * nb, j->y + t * j->ldy + r0, j->ldy, nr,
                          j->accumulate);
        return;
    }
#endif
    (void)thread;
    gemm_rows_scalar(j->xq + t0 * j->kp, j->xs + t0 * (j->kp / QB), t1 - t0, j->wq, j->ws, r0, nr, j->kp, j->y + t0 * j->ldy,
                     j->ldy, j->accumulate);
}

// Fewer panels than this many per thread: tokens are split too, so a thread that is held
// up (another process, a slow core) leaves work the others can take. A slice keeps at least
// this many tokens, so packing a panel stays a small part of a task.
#define TASKS_PER_THREAD 4
#define MIN_SLICE 64

void ckpt_gemm_q8(const int8_t *xq, const float *xs, int64_t nt, const int8_t *wq, const float *ws, int64_t rows, int64_t kp,
                  float *y, int64_t ldy, int accumulate) {
    if (nt <= 0 || rows <= 0) return;
    const int threads = ckpt_pool_threads();
    const int level = ckpt_kernel_level();
#if defined(__x86_64__)
    const int vnni = level >= CKPT_LEVEL_AVX512 && ckpt_cpu_has_avx512vnni();
    const int64_t panel = vnni ? Q8_ZMM_PANEL : Q8_PANEL, tile_tokens = vnni ? Q8_ZMM_TOKENS : Q8_TOKENS;
#else
    const int vnni = 0;
    const int64_t panel = Q8_PANEL, tile_tokens = Q8_TOKENS;
#endif
    const int64_t panels = (rows + panel - 1) / panel;
    int64_t nslices = 1;
    if (threads > 1 && panels < (int64_t)TASKS_PER_THREAD * threads) {
        nslices = ((int64_t)TASKS_PER_THREAD * threads + panels - 1) / panels;
        const int64_t most = nt / MIN_SLICE > 1 ? nt / MIN_SLICE : 1;
        if (nslices > most) nslices = most;
    }
    // Slices of whole register tiles, then as many as that takes.
    const int64_t slice = ((nt + nslices - 1) / nslices + tile_tokens - 1) / tile_tokens * tile_tokens;
    nslices = (nt + slice - 1) / slice;
    gemm_q8_job j = {xq, xs, nt, wq, ws, rows, kp, y, ldy, accumulate != 0, level, vnni, panel, slice, nslices, NULL, 0};
    uint8_t *block = NULL;
    if (j.level >= CKPT_LEVEL_AVX2) {
        // Packed panel and its scales (on the VNNI path also its block-sum corrections and
        // one register tile of biased activations), rounded to whole cache lines.
        j.pack_bytes = (panel * kp + panel * (kp / QB) * 4 * (vnni ? 2 : 1) + (vnni ? tile_tokens * kp : 0) + 63) / 64 * 64;
        block = checked_malloc((size_t)(threads * j.pack_bytes + 64));
        j.packs = block + (64 - (uintptr_t)block % 64) % 64;
    }
    ckpt_pool_run(panels * nslices, gemm_q8_task, &j);
    free(block);
}

// ---- training wrappers -------------------------------------------------------------------------

void ckpt_linear_forward_q8(const float *x, int64_t ntok, int64_t in, const int8_t *wq, const float *ws, int64_t out, float *y,
                            int8_t *xq_scratch, float *xs_scratch) {
    ckpt_q8_quantize_rows(x, in, ntok, in, xq_scratch, xs_scratch);
    ckpt_gemm_q8(xq_scratch, xs_scratch, ntok, wq, ws, out, padded(in), y, out, 0);
}

void ckpt_linear_backward_input_q8(const float *dy, int64_t ntok, int64_t in, const int8_t *wtq, const float *wts, int64_t out,
                                   float *dx, int8_t *scratch_q, float *scratch_s) {
    ckpt_q8_quantize_rows(dy, out, ntok, out, scratch_q, scratch_s);
    ckpt_gemm_q8(scratch_q, scratch_s, ntok, wtq, wts, in, padded(out), dx, in, 0);
}
