// Per-position work of the teacher pass: the k most probable ids with their
// log-probabilities and the tail mass, or n ids drawn from the distribution. Rows run on
// the pool; each has a scalar reference and an AVX2 path for its exponentials. Also
// CRC-32C, the logit cache's chunk checksum (SSE4.2 instruction, table fallback).
#include "CKernels.h"
#include "simd.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

// ---- CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) ---------------------------------

static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int j = 0; j < 8; j++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
        crc_table[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (int i = 0; i < 256; i++) crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xFF];
}

static uint32_t crc32c_table(uint32_t crc, const uint8_t *p, int64_t n) {
    pthread_once(&crc_once, crc_init);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w ^= crc;
        crc = crc_table[7][w & 0xFF] ^ crc_table[6][(w >> 8) & 0xFF] ^ crc_table[5][(w >> 16) & 0xFF] ^
              crc_table[4][(w >> 24) & 0xFF] ^ crc_table[3][(w >> 32) & 0xFF] ^ crc_table[2][(w >> 40) & 0xFF] ^
              crc_table[1][(w >> 48) & 0xFF] ^ crc_table[0][w >> 56];
        p += 8;
        n -= 8;
    }
    while (n-- > 0) crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xFF];
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc32c_sse42(uint32_t crc, const uint8_t *p, int64_t n) {
    uint64_t c = crc;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n-- > 0) c32 = _mm_crc32_u8(c32, *p++);
    return c32;
}

static int has_sse42(void) {
    static int cached = -1;
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("sse4.2") ? 1 : 0;
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v;
}
#endif

uint32_t ckpt_crc32c(uint32_t crc, const void *data, int64_t n) {
    crc = ~crc;
#if defined(__x86_64__)
    if (ckpt_kernel_level() >= CKPT_LEVEL_AVX2 && has_sse42()) return ~crc32c_sse42(crc, data, n);
#endif
    return ~crc32c_table(crc, data, n);
}

// ---- exponentials of a row ----------------------------------------------------------------

// e[i] = exp((x[i] - shift) * scale) as floats; returns their sum in double.
#if defined(__x86_64__)
__attribute__((target("avx2,fma")))
static double exp_row_avx2(const float *x, int64_t n, float shift, float scale, float *e) {
    const __m256 sv = _mm256_set1_ps(shift), cv = _mm256_set1_ps(scale);
    double sum = 0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = exp8(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), sv), cv));
        _mm256_storeu_ps(e + i, v);
        const __m256d s = _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
        const __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
        sum += _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
    }
    for (; i < n; i++) { e[i] = expf((x[i] - shift) * scale); sum += e[i]; }
    return sum;
}
#endif

static double exp_row(const float *x, int64_t n, float shift, float scale, float *e) {
#if defined(__x86_64__)
    if (ckpt_kernel_level() >= CKPT_LEVEL_AVX2) return exp_row_avx2(x, n, shift, scale, e);
#endif
    double sum = 0;
    for (int64_t i = 0; i < n; i++) { e[i] = expf((x[i] - shift) * scale); sum += e[i]; }
    return sum;
}

double ckpt_softmax_terms(const float *x, int64_t n, float inv_temperature, float *e, float *max_out) {
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) if (x[i] > m) m = x[i];
    *max_out = m;
    return exp_row(x, n, m, inv_temperature, e);
}

// ---- top-k ----------------------------------------------------------------------------------

// Min-heap on (value, then larger id = smaller) so the root is the entry to evict.
static inline int heap_less(float va, int32_t ia, float vb, int32_t ib) { return va < vb || (va == vb && ia > ib); }

static void heap_sift_down(float *v, int32_t *id, int k, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < k && heap_less(v[l], id[l], v[m], id[m])) m = l;
        if (r < k && heap_less(v[r], id[r], v[m], id[m])) m = r;
        if (m == i) return;
        float tv = v[i]; v[i] = v[m]; v[m] = tv;
        int32_t ti = id[i]; id[i] = id[m]; id[m] = ti;
        i = m;
    }
}

typedef struct {
    const float *logits;
    int64_t vocab;
    int k;
    float inv_temperature;
    int32_t *ids;
    float *logprobs;
    double *tail;
    float *scratch;
} topk_job;

static void topk_task(void *ctx, int64_t r, int thread) {
    const topk_job *j = ctx;
    const float *x = j->logits + r * j->vocab;
    const int k = j->k;
    float *hv = j->logprobs + r * k;
    int32_t *hi = j->ids + r * k;
    int n = 0;
    for (int64_t i = 0; i < j->vocab; i++) {
        const float v = x[i];
        if (n < k) {
            hv[n] = v; hi[n] = (int32_t)i; n++;
            if (n == k) for (int s = k / 2 - 1; s >= 0; s--) heap_sift_down(hv, hi, k, s);
        } else if (v > hv[0]) {
            hv[0] = v; hi[0] = (int32_t)i;
            heap_sift_down(hv, hi, k, 0);
        }
    }
    // Sort descending by value, ties by id: pop the heap from the back.
    for (int end = k - 1; end > 0; end--) {
        float tv = hv[0]; hv[0] = hv[end]; hv[end] = tv;
        int32_t ti = hi[0]; hi[0] = hi[end]; hi[end] = ti;
        heap_sift_down(hv, hi, end, 0);
    }
    const float mx = hv[0];
    const double sum = exp_row(x, j->vocab, mx, j->inv_temperature, j->scratch + (int64_t)thread * j->vocab);
    const double lse = log(sum);
    double kept = 0;
    for (int i = 0; i < k; i++) {
        const double lp = (double)(hv[i] - mx) * (double)j->inv_temperature - lse;
        hv[i] = (float)lp;
        kept += exp(lp);
    }
    const double tail = 1.0 - kept;
    j->tail[r] = tail > 0 ? log(tail) : -INFINITY;
}

void ckpt_topk_logprobs(const float *logits, int64_t rows, int64_t vocab, int k, float inv_temperature,
                        int32_t *ids, float *logprobs, double *tail_logprob, float *scratch) {
    topk_job j = { logits, vocab, k, inv_temperature, ids, logprobs, tail_logprob, scratch };
    ckpt_pool_run(rows, topk_task, &j);
}

// ---- sampling -------------------------------------------------------------------------------

static inline uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    const float *logits;
    int64_t vocab;
    float inv_temperature;
    int draws;
    const uint64_t *seeds;
    int32_t *ids;
    int32_t *counts;
    int32_t *unique;
    float *scratch;
    double *uniforms;
} sample_job;

static void sample_task(void *ctx, int64_t r, int thread) {
    const sample_job *j = ctx;
    const float *x = j->logits + r * j->vocab;
    float *e = j->scratch + (int64_t)thread * j->vocab;
    double *u = j->uniforms + (int64_t)thread * j->draws;
    const int n = j->draws;
    float mx;
    const double total = ckpt_softmax_terms(x, j->vocab, j->inv_temperature, e, &mx);
    uint64_t state = j->seeds[r];
    for (int d = 0; d < n; d++) u[d] = (double)(splitmix64(&state) >> 11) * 0x1.0p-53 * total;
    qsort(u, (size_t)n, sizeof(double), cmp_double);
    int32_t *oi = j->ids + r * n, *oc = j->counts + r * n;
    int m = 0, d = 0;
    double c = 0;
    int64_t last = 0;
    for (int64_t i = 0; i < j->vocab && d < n; i++) {
        if (e[i] <= 0) continue;
        last = i;
        c += e[i];
        int got = 0;
        while (d < n && u[d] < c) { got++; d++; }
        if (got) { oi[m] = (int32_t)i; oc[m] = got; m++; }
    }
    // Rounding can leave the largest draws just past the running sum: give them to the
    // last id with mass, which is where they fell.
    if (d < n) {
        if (m > 0 && oi[m - 1] == (int32_t)last) oc[m - 1] += n - d;
        else { oi[m] = (int32_t)last; oc[m] = n - d; m++; }
    }
    j->unique[r] = m;
}

void ckpt_sample_ids(const float *logits, int64_t rows, int64_t vocab, float inv_temperature, int draws,
                     const uint64_t *seeds, int32_t *ids, int32_t *counts, int32_t *unique, float *scratch, double *uniforms) {
    sample_job j = { logits, vocab, inv_temperature, draws, seeds, ids, counts, unique, scratch, uniforms };
    ckpt_pool_run(rows, sample_task, &j);
}
