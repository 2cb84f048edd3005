// f32 building blocks of a decoder layer: norms, rotary embeddings, gates and causal
// attention. Each has a scalar reference and an AVX2 path; attention runs on the pool.
#include "CKernels.h"
#include "simd.h"
#include <math.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif


// ---- norms ------------------------------------------------------------------------------

void ckpt_rmsnorm(const float *x, int64_t ldx, const float *w, float *y, int64_t ldy, int64_t rows, int64_t n, float eps) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * ldx;
        float *yr = y + r * ldy;
        double sum = 0;
        for (int64_t i = 0; i < n; i++) sum += (double)(xr[i] * xr[i]);
        const float scale = 1.0f / sqrtf((float)(sum / (double)n) + eps);
        if (w) for (int64_t i = 0; i < n; i++) yr[i] = (xr[i] * scale) * w[i];
        else for (int64_t i = 0; i < n; i++) yr[i] = xr[i] * scale;
    }
}

void ckpt_layernorm(const float *x, int64_t ldx, const float *w, const float *b, float *y, int64_t ldy,
                    int64_t rows, int64_t n, float eps) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * ldx;
        float *yr = y + r * ldy;
        double sum = 0, sq = 0;
        for (int64_t i = 0; i < n; i++) sum += xr[i];
        const float mean = (float)(sum / (double)n);
        for (int64_t i = 0; i < n; i++) { const float d = xr[i] - mean; sq += (double)(d * d); }
        const float scale = 1.0f / sqrtf((float)(sq / (double)n) + eps);
        for (int64_t i = 0; i < n; i++) {
            float v = (xr[i] - mean) * scale;
            if (w) v *= w[i];
            if (b) v += b[i];
            yr[i] = v;
        }
    }
}

// ---- rotary embeddings ------------------------------------------------------------------

void ckpt_rope(float *x, int64_t ld, int64_t ntok, int nheads, int head_dim, int n_rot,
               const float *cos_table, const float *sin_table, int neox) {
    const int half = n_rot / 2;
    for (int64_t t = 0; t < ntok; t++) {
        const float *c = cos_table + t * half, *s = sin_table + t * half;
        for (int h = 0; h < nheads; h++) {
            float *v = x + t * ld + (int64_t)h * head_dim;
            if (neox) {
                for (int i = 0; i < half; i++) {
                    const float a = v[i], b = v[i + half];
                    v[i] = a * c[i] - b * s[i];
                    v[i + half] = a * s[i] + b * c[i];
                }
            } else {
                for (int i = 0; i < half; i++) {
                    const float a = v[2 * i], b = v[2 * i + 1];
                    v[2 * i] = a * c[i] - b * s[i];
                    v[2 * i + 1] = a * s[i] + b * c[i];
                }
            }
        }
    }
}

// ---- gates --------------------------------------------------------------------------------

static inline float silu1(float g) { return g / (1.0f + expf(-g)); }
static inline float gelu_tanh1(float g) {
    return 0.5f * g * (1.0f + tanhf(0.7978845608028654f * g * (1.0f + 0.044715f * g * g)));
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma")))
static int64_t silu_mul_avx2(const float *g, const float *u, float *y, int64_t n) {
    int64_t i = 0;
    const __m256 one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= n; i += 8) {
        const __m256 gv = _mm256_loadu_ps(g + i);
        const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), gv));
        const __m256 s = _mm256_div_ps(gv, _mm256_add_ps(one, e));
        _mm256_storeu_ps(y + i, _mm256_mul_ps(s, _mm256_loadu_ps(u + i)));
    }
    return i;
}

// tanh(z) = 1 - 2 / (exp(2z) + 1)
__attribute__((target("avx2,fma")))
static int64_t gelu_mul_avx2(const float *g, const float *u, float *y, int64_t n) {
    int64_t i = 0;
    const __m256 one = _mm256_set1_ps(1.0f), two = _mm256_set1_ps(2.0f), half = _mm256_set1_ps(0.5f);
    const __m256 c0 = _mm256_set1_ps(0.7978845608028654f), c1 = _mm256_set1_ps(0.044715f);
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(g + i);
        const __m256 z = _mm256_mul_ps(_mm256_mul_ps(c0, x), _mm256_fmadd_ps(_mm256_mul_ps(c1, x), x, one));
        const __m256 th = _mm256_sub_ps(one, _mm256_div_ps(two, _mm256_add_ps(exp8(_mm256_mul_ps(two, z)), one)));
        const __m256 gl = _mm256_mul_ps(_mm256_mul_ps(half, x), _mm256_add_ps(one, th));
        _mm256_storeu_ps(y + i, u ? _mm256_mul_ps(gl, _mm256_loadu_ps(u + i)) : gl);
    }
    return i;
}
#endif

void ckpt_silu_mul(const float *g, const float *u, float *y, int64_t n) {
    int64_t i = 0;
#if defined(__x86_64__)
    if (ckpt_kernel_level() >= CKPT_LEVEL_AVX2 && u) i = silu_mul_avx2(g, u, y, n);
#endif
    for (; i < n; i++) y[i] = silu1(g[i]) * (u ? u[i] : 1.0f);
}

void ckpt_gelu_tanh_mul(const float *g, const float *u, float *y, int64_t n) {
    int64_t i = 0;
#if defined(__x86_64__)
    if (ckpt_kernel_level() >= CKPT_LEVEL_AVX2) i = gelu_mul_avx2(g, u, y, n);
#endif
    for (; i < n; i++) y[i] = gelu_tanh1(g[i]) * (u ? u[i] : 1.0f);
}

void ckpt_relu_squared(const float *x, float *y, int64_t n) {
    // A loop the compiler vectorises; nothing here is worth intrinsics.
    for (int64_t i = 0; i < n; i++) {
        const float r = x[i] > 0.0f ? x[i] : 0.0f;
        y[i] = r * r;
    }
}

void ckpt_softcap(float *x, int64_t n, float cap) {
    for (int64_t i = 0; i < n; i++) x[i] = cap * tanhf(x[i] / cap);
}

// ---- causal attention ------------------------------------------------------------------

typedef struct {
    const float *q, *k, *v;
    int64_t ldq, ldk, ldv, ldo;
    float *out;
    int64_t nq, q_pos0;
    int n_head, n_head_kv, head_dim, window;
    float scale, softcap;
    float *scratch;       // per thread: nkv floats
    int64_t nkv;
    int level;
    int round_probs;
} attention_job;

#define QUERY_BLOCK 32

static float dot_scalar(const float *a, const float *b, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static void attend_row_scalar(const attention_job *j, const float *qr, int64_t kv_head_off, int64_t first, int64_t last,
                              float *sc, float *o) {
    const int hd = j->head_dim;
    float mx = -INFINITY;
    for (int64_t p = first; p <= last; p++) {
        float s = dot_scalar(qr, j->k + p * j->ldk + kv_head_off, hd) * j->scale;
        if (j->softcap > 0) s = j->softcap * tanhf(s / j->softcap);
        sc[p - first] = s;
        if (s > mx) mx = s;
    }
    float sum = 0;
    for (int64_t p = first; p <= last; p++) { sc[p - first] = expf(sc[p - first] - mx); sum += sc[p - first]; }
    for (int d = 0; d < hd; d++) o[d] = 0;
    for (int64_t p = first; p <= last; p++) {
        const float w = sc[p - first];
        const float *vr = j->v + p * j->ldv + kv_head_off;
        for (int d = 0; d < hd; d++) o[d] += w * vr[d];
    }
    const float inv = 1.0f / sum;
    for (int d = 0; d < hd; d++) o[d] *= inv;
}

// Largest of n floats (-inf for none).
#if defined(__x86_64__)
__attribute__((target("avx2,fma")))
static float max_avx2(const float *x, int64_t n) {
    __m256 m8 = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) m8 = _mm256_max_ps(m8, _mm256_loadu_ps(x + i));
    float mx = hmax8(m8);
    for (; i < n; i++) if (x[i] > mx) mx = x[i];
    return mx;
}

// Softmax of one row of scores in place (already scaled and capped; masked entries -inf).
__attribute__((target("avx2,fma")))
static void softmax_row_avx2(float *x, int64_t n) {
    const float mx = max_avx2(x, n);
    int64_t i;
    const __m256 mv = _mm256_set1_ps(mx);
    __m256 s8 = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8) {
        const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv));
        _mm256_storeu_ps(x + i, e);
        s8 = _mm256_add_ps(s8, e);
    }
    float sum = hsum8(s8);
    for (; i < n; i++) { x[i] = expf(x[i] - mx); sum += x[i]; }
    const __m256 iv = _mm256_set1_ps(1.0f / sum);
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), iv));
    for (; i < n; i++) x[i] *= 1.0f / sum;
}
#endif

int64_t ckpt_attention_scratch_floats(int64_t nkv, int head_dim) {
    return QUERY_BLOCK * nkv + (int64_t)CKPT_PANEL_ROWS * (nkv > head_dim ? nkv : head_dim) + 64;
}

// A block of queries of one head: S = Q Kᵀ over the keys the block can see, masked
// softmax per row, O = P V, both products on the f32 GEMM kernel.
static void attention_block_gemm(const attention_job *j, int h, int64_t i0, int64_t i1, float *scratch) {
    const int hd = j->head_dim;
    const int group = j->n_head / j->n_head_kv;
    const int64_t kv_off = (int64_t)(h / group) * hd;
    const int64_t p_lo = j->q_pos0 + i0, p_hi = j->q_pos0 + i1 - 1;
    const int64_t first = (j->window > 0 && p_lo - j->window + 1 > 0) ? p_lo - j->window + 1 : 0;
    const int64_t nk = p_hi - first + 1, nq = i1 - i0;
    float *sc = scratch, *pack = scratch + QUERY_BLOCK * j->nkv;
    ckpt_gemm_f32(j->k + first * j->ldk + kv_off, j->ldk, 0, nk, hd, j->q + i0 * j->ldq + (int64_t)h * hd, j->ldq,
                  nq, sc, nk, pack);
    for (int64_t r = 0; r < nq; r++) {
        float *row = sc + r * nk;
        const int64_t pos = j->q_pos0 + i0 + r;
        const int64_t lo = (j->window > 0 && pos - j->window + 1 > first) ? pos - j->window + 1 - first : 0;
        const int64_t hi = pos - first;  // last visible key, inclusive
        for (int64_t c = 0; c < lo; c++) row[c] = -INFINITY;
        // Two loops, not a branch inside one: with the branch inside, the compiler calls
        // tanhf for every score (if-conversion) even when there is no cap.
        if (j->softcap > 0) {
            for (int64_t c = lo; c <= hi; c++) row[c] = j->softcap * tanhf(row[c] * j->scale / j->softcap);
        } else {
            for (int64_t c = lo; c <= hi; c++) row[c] *= j->scale;
        }
        for (int64_t c = hi + 1; c < nk; c++) row[c] = -INFINITY;
#if defined(__x86_64__)
        softmax_row_avx2(row, nk);
        if (j->round_probs) ckpt_round_f16(row, nk);  // not the pooled rounding: this runs inside a pool task
#endif
    }
    ckpt_gemm_f32(j->v + first * j->ldv + kv_off, j->ldv, 1, hd, nk, sc, nk, nq,
                  j->out + i0 * j->ldo + (int64_t)h * hd, j->ldo, pack);
}

static void attention_task(void *ctx, int64_t task, int thread) {
    const attention_job *j = ctx;
    const int64_t nblocks = (j->nq + QUERY_BLOCK - 1) / QUERY_BLOCK;
    const int h = (int)(task / nblocks);
    const int64_t b = task % nblocks;
    const int64_t i0 = b * QUERY_BLOCK;
    const int64_t i1 = (b + 1) * QUERY_BLOCK < j->nq ? (b + 1) * QUERY_BLOCK : j->nq;
    float *scratch = j->scratch + (int64_t)thread * ckpt_attention_scratch_floats(j->nkv, j->head_dim);
#if defined(__x86_64__)
    if (j->level >= CKPT_LEVEL_AVX2) { attention_block_gemm(j, h, i0, i1, scratch); return; }
#endif
    const int group = j->n_head / j->n_head_kv;
    const int64_t kv_off = (int64_t)(h / group) * j->head_dim;
    for (int64_t i = i0; i < i1; i++) {
        const int64_t pos = j->q_pos0 + i;
        const int64_t first = (j->window > 0 && pos - j->window + 1 > 0) ? pos - j->window + 1 : 0;
        attend_row_scalar(j, j->q + i * j->ldq + (int64_t)h * j->head_dim, kv_off, first, pos, scratch,
                          j->out + i * j->ldo + (int64_t)h * j->head_dim);
    }
}

void ckpt_attention(const float *q, int64_t ldq, const float *k, int64_t ldk, const float *v, int64_t ldv,
                    float *out, int64_t ldo, int64_t nq, int64_t q_pos0, int64_t nkv,
                    int n_head, int n_head_kv, int head_dim, float scale, int window, float softcap,
                    int round_probs, float *scratch) {
    attention_job job = {q, k, v, ldq, ldk, ldv, ldo, out, nq, q_pos0, n_head, n_head_kv, head_dim, window,
                         scale, softcap, scratch, nkv, ckpt_kernel_level(), round_probs};
    const int64_t nblocks = (nq + QUERY_BLOCK - 1) / QUERY_BLOCK;
    ckpt_pool_run(nblocks * n_head, attention_task, &job);
}

// ---- small helpers ------------------------------------------------------------------------

void ckpt_add(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

void ckpt_scale(float *y, float s, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] *= s;
}

// ---- log-sum-exp of a logits row (sums in double, as llama-perplexity does) ----------------

#if defined(__x86_64__)
__attribute__((target("avx2,fma")))
static double logsumexp_avx2(const float *x, int64_t n) {
    const float mx = max_avx2(x, n);
    int64_t i;
    const __m256 mv = _mm256_set1_ps(mx);
    double sum = 0;
    for (i = 0; i + 8 <= n; i += 8) {
        const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv));
        const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(e)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1));
        const __m256d s = _mm256_add_pd(lo, hi);
        const __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
        sum += _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
    }
    for (; i < n; i++) sum += expf(x[i] - mx);
    return log(sum) + mx;
}
#endif

double ckpt_logsumexp(const float *x, int64_t n) {
#if defined(__x86_64__)
    if (ckpt_kernel_level() >= CKPT_LEVEL_AVX2) return logsumexp_avx2(x, n);
#endif
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++) if (x[i] > mx) mx = x[i];
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += expf(x[i] - mx);
    return log(sum) + mx;
}
