// BF16 weights × BF16 activations with AVX-512 BF16's vdpbf16ps.
//
// llama.cpp rounds activations to bf16 before multiplying them with BF16 weights, and so
// does the engine by default; once both operands are bf16, one vdpbf16ps does 32
// multiply-adds (two per lane, the products exact in f32) where an f32 FMA does 16, and on
// CPUs that issue 512-bit FMAs at half rate (Zen 4/5) this is the only way past the f32
// peak. Weights are packed per panel of 16 rows as bf16 pairs: 32-bit lane r of vector p
// holds row r's columns 2p and 2p+1, so a 32-bit broadcast of one token's pair meets 16 rows.
// Tokens go 12 at a time (twelve accumulators), as in the f32 kernel.
//
// The sums differ from the f32 kernel's only in order (pairs first), within f32 rounding.
#include "CKernels.h"
#include "simd.h"
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

// Below this many tokens packing costs more than it saves: callers take ckpt_matmul.
#define MIN_TOKENS 4
// Pairs of columns per pass, so a slice of the packed panel (KP × 64 bytes) stays in L1
// beside 12 tokens' slices of activations.
#define KP 256

int ckpt_matmul_bf16_available(void) { return ckpt_kernel_level() >= CKPT_LEVEL_AVX512 && ckpt_cpu_has_avx512bf16(); }

#if defined(__x86_64__)

// Round to nearest even on the upper 16 bits (as ckpt_f32_to_bf16; NaN stays NaN, quieted).
__attribute__((target("avx512f,avx512bw")))
static void to_bf16_avx512(const float *x, uint16_t *out, int64_t n) {
    const __m512i one = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7FFF), qnan = _mm512_set1_epi32(0x40);
    const __m512i absm = _mm512_set1_epi32(0x7FFFFFFF), inf = _mm512_set1_epi32(0x7F800000);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512i b = _mm512_loadu_si512(x + i);
        const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), one);
        __m512i r = _mm512_srli_epi32(_mm512_add_epi32(b, _mm512_add_epi32(bias, lsb)), 16);
        const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(b, absm), inf);
        r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(b, 16), qnan);
        _mm256_storeu_si256((__m256i *)(out + i), _mm512_cvtepi32_epi16(r));
    }
    for (; i < n; i++) out[i] = ckpt_f32_to_bf16(x[i]);
}

typedef struct {
    const float *x;
    int64_t ldx, k;
    uint16_t *xb;
} convert_job;

static void convert_task(void *ctx, int64_t t, int thread) {
    (void)thread;
    const convert_job *j = ctx;
    to_bf16_avx512(j->x + t * j->ldx, j->xb + t * j->k, j->k);
}

// Packs rows [16][k] of bf16 (missing rows zero) as pairs: packed[p*16 + r] = (w[r][2p], w[r][2p+1]).
__attribute__((target("avx512f,avx512bw")))
static void pack_pairs(const uint8_t *w, size_t row_bytes, int64_t nr, int64_t k, uint32_t *packed) {
    const int64_t pairs = k / 2;
    for (int64_t r = 0; r < CKPT_PANEL_ROWS; r++) {
        if (r < nr) {
            const uint8_t *src = w + (size_t)r * row_bytes;
            for (int64_t p = 0; p < pairs; p++) memcpy(packed + p * CKPT_PANEL_ROWS + r, src + 4 * p, 4);
        } else {
            for (int64_t p = 0; p < pairs; p++) packed[p * CKPT_PANEL_ROWS + r] = 0;
        }
    }
}

#define BF16_TILE(NT)                                                                                               \
    __attribute__((target("avx512f,avx512bw,avx512bf16")))                                                         \
    static inline void bf16_tile_##NT(const uint32_t *wp, int64_t np, const uint32_t *x, int64_t ldx, float *y,   \
                                      int64_t ldy, __mmask16 m, int accumulate) {                                  \
        __m512 acc[NT];                                                                                            \
        for (int j = 0; j < NT; j++) acc[j] = _mm512_setzero_ps();                                                 \
        for (int64_t p = 0; p < np; p++, wp += CKPT_PANEL_ROWS) {                                                  \
            const __m512bh wv = (__m512bh)_mm512_load_si512(wp);                                                   \
            for (int j = 0; j < NT; j++)                                                                           \
                acc[j] = _mm512_dpbf16_ps(acc[j], wv, (__m512bh)_mm512_set1_epi32((int)x[j * ldx + p]));          \
        }                                                                                                          \
        store_tile512(acc, NT, y, ldy, m, accumulate);                                                             \
    }
BF16_TILE(12)
BF16_TILE(4)
BF16_TILE(1)

typedef struct {
    const uint8_t *w;
    size_t row_bytes;
    int64_t rows, k;
    const uint16_t *xb;
    int64_t ntok;
    float *y;
    int64_t ldy;
    float *scratch;
} bf16_job;

__attribute__((target("avx512f,avx512bw,avx512bf16")))
static void bf16_task(void *ctx, int64_t task, int thread) {
    const bf16_job *j = ctx;
    const int64_t r0 = task * CKPT_PANEL_ROWS;
    const int64_t nr = j->rows - r0 < CKPT_PANEL_ROWS ? j->rows - r0 : CKPT_PANEL_ROWS;
    uint32_t *packed = (uint32_t *)align64(j->scratch + (int64_t)thread * ckpt_matmul_scratch_floats(j->k));
    pack_pairs(j->w + (size_t)r0 * j->row_bytes, j->row_bytes, nr, j->k, packed);
    const __mmask16 m = panel_mask(nr);
    const int64_t pairs = j->k / 2;
    const uint32_t *x = (const uint32_t *)j->xb;
    float *y = j->y + r0;
    for (int64_t p0 = 0; p0 < pairs; p0 += KP) {
        const int64_t np = pairs - p0 < KP ? pairs - p0 : KP;
        const uint32_t *w = packed + p0 * CKPT_PANEL_ROWS;
        const int acc = p0 > 0;
        int64_t t = 0;
        for (; t + 12 <= j->ntok; t += 12) bf16_tile_12(w, np, x + t * pairs + p0, pairs, y + t * j->ldy, j->ldy, m, acc);
        for (; t + 4 <= j->ntok; t += 4) bf16_tile_4(w, np, x + t * pairs + p0, pairs, y + t * j->ldy, j->ldy, m, acc);
        for (; t < j->ntok; t++) bf16_tile_1(w, np, x + t * pairs + p0, pairs, y + t * j->ldy, j->ldy, m, acc);
    }
}
#endif

int ckpt_matmul_bf16(const void *w, size_t row_bytes, int64_t rows, int64_t k, const float *x, int64_t ldx, int64_t ntok,
                     float *y, int64_t ldy, float *scratch, uint16_t *xb) {
#if defined(__x86_64__)
    if (!ckpt_matmul_bf16_available() || k % 2 != 0 || ntok < MIN_TOKENS || row_bytes % 4 != 0) return -1;
    convert_job cj = {x, ldx, k, xb};
    ckpt_pool_run(ntok, convert_task, &cj);
    bf16_job job = {w, row_bytes, rows, k, xb, ntok, y, ldy, scratch};
    ckpt_pool_run((rows + CKPT_PANEL_ROWS - 1) / CKPT_PANEL_ROWS, bf16_task, &job);
    return 0;
#else
    (void)w; (void)row_bytes; (void)rows; (void)k; (void)x; (void)ldx; (void)ntok; (void)y; (void)ldy; (void)scratch; (void)xb;
    return -1;
#endif
}
