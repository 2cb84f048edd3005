#include "CKernels.h"
#include <math.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

// Running sums of a summary before its mean is known.
typedef struct {
    int64_t count, nans, infs;
    double sum, min, max;
} partial_stats;

static inline void accumulate(const float *x, int64_t from, int64_t to, partial_stats *p) {
    for (int64_t i = from; i < to; i++) {
        const float v = x[i];
        if (isnan(v)) { p->nans++; continue; }
        if (isinf(v)) { p->infs++; continue; }
        p->count++;
        p->sum += v;
        if (v < p->min) p->min = v;
        if (v > p->max) p->max = v;
    }
}

// Squared deviations from `mean`: a second pass keeps the variance free of cancellation.
static inline double deviations(const float *x, int64_t from, int64_t to, double mean) {
    double m2 = 0;
    for (int64_t i = from; i < to; i++) {
        const float v = x[i];
        if (!isfinite(v)) continue;
        const double dv = (double)v - mean;
        m2 += dv * dv;
    }
    return m2;
}

static inline void finish(const partial_stats *p, double m2, ckpt_stats *out) {
    out->count = p->count;
    out->nan_count = p->nans;
    out->inf_count = p->infs;
    out->min = p->min;
    out->max = p->max;
    out->mean = p->count ? p->sum / (double)p->count : 0.0;
    out->m2 = m2;
}

void ckpt_stats_f32_scalar(const float *x, int64_t n, ckpt_stats *out) {
    partial_stats p = {0, 0, 0, 0.0, INFINITY, -INFINITY};
    accumulate(x, 0, n, &p);
    const double mean = p.count ? p.sum / (double)p.count : 0.0;
    finish(&p, deviations(x, 0, n, mean), out);
}

#if defined(__x86_64__)
// 8 floats a step: finite lanes found with two compares, sums widened to double.
__attribute__((target("avx2,fma")))
static void stats_avx2(const float *x, int64_t n, ckpt_stats *out) {
    const __m256 inf = _mm256_set1_ps(INFINITY);
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    __m256 vmin = _mm256_set1_ps(INFINITY), vmax = _mm256_set1_ps(-INFINITY);
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    int64_t count = 0, nans = 0, infs = 0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 a = _mm256_and_ps(v, absmask);
        const __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
        const __m256 isinf = _mm256_cmp_ps(a, inf, _CMP_EQ_OQ);
        const __m256 fin = _mm256_cmp_ps(a, inf, _CMP_LT_OQ); // false for NaN and ±inf
        nans += __builtin_popcount(_mm256_movemask_ps(nan));
        infs += __builtin_popcount(_mm256_movemask_ps(isinf));
        count += __builtin_popcount(_mm256_movemask_ps(fin));
        vmin = _mm256_blendv_ps(vmin, _mm256_min_ps(vmin, v), fin);
        vmax = _mm256_blendv_ps(vmax, _mm256_max_ps(vmax, v), fin);
        const __m256 vf = _mm256_and_ps(v, fin); // non-finite lanes add 0
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(vf)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(vf, 1)));
    }
    double lanes[4];
    float fl[8];
    _mm256_storeu_pd(lanes, _mm256_add_pd(s0, s1));
    partial_stats p = {count, nans, infs, (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]), INFINITY, -INFINITY};
    _mm256_storeu_ps(fl, vmin);
    for (int k = 0; k < 8; k++) if (fl[k] < p.min) p.min = fl[k];
    _mm256_storeu_ps(fl, vmax);
    for (int k = 0; k < 8; k++) if (fl[k] > p.max) p.max = fl[k];
    accumulate(x, i, n, &p);
    const double mean = p.count ? p.sum / (double)p.count : 0.0;
    const __m256d vm = _mm256_set1_pd(mean);
    __m256d m0 = _mm256_setzero_pd(), m1 = _mm256_setzero_pd();
    for (i = 0; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 fin = _mm256_cmp_ps(_mm256_and_ps(v, absmask), inf, _CMP_LT_OQ);
        const __m128 flo = _mm256_castps256_ps128(fin), fhi = _mm256_extractf128_ps(fin, 1);
        // Widen the lane masks to 64 bits to pick finite deviations only.
        const __m256d mlo = _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm_castps_si128(flo)));
        const __m256d mhi = _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm_castps_si128(fhi)));
        const __m256d dlo = _mm256_and_pd(_mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), vm), mlo);
        const __m256d dhi = _mm256_and_pd(_mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), vm), mhi);
        m0 = _mm256_fmadd_pd(dlo, dlo, m0);
        m1 = _mm256_fmadd_pd(dhi, dhi, m1);
    }
    _mm256_storeu_pd(lanes, _mm256_add_pd(m0, m1));
    finish(&p, (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]) + deviations(x, i, n, mean), out);
}
#endif

void ckpt_stats_f32(const float *x, int64_t n, ckpt_stats *out) {
#if defined(__x86_64__)
    if (ckpt_kernel_level() >= CKPT_LEVEL_AVX2) { stats_avx2(x, n, out); return; }
#endif
    ckpt_stats_f32_scalar(x, n, out);
}

// ---- activation statistics for importance estimation ---------------------------------------
// Summed in double. Every output element is accumulated over the rows in row order by one
// thread, whatever the thread count, so results do not depend on threading.

typedef struct {
    const float *x;
    int64_t ldx, rows, width;
    double *sum_abs, *sum_sq;
} moments_job;

#define MOMENT_COLUMNS 256

#if defined(__x86_64__)
__attribute__((target("avx2,fma")))
static void moments_avx2(const moments_job *j, int64_t c0, int64_t c1) {
    const __m256d sign = _mm256_set1_pd(-0.0);
    int64_t c = c0;
    for (; c + 4 <= c1; c += 4) {
        __m256d a = _mm256_setzero_pd(), q = a;
        for (int64_t r = 0; r < j->rows; r++) {
            const __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(j->x + r * j->ldx + c));
            a = _mm256_add_pd(a, _mm256_andnot_pd(sign, v));
            q = _mm256_add_pd(q, _mm256_mul_pd(v, v));
        }
        _mm256_storeu_pd(j->sum_abs + c, a);
        _mm256_storeu_pd(j->sum_sq + c, q);
    }
    for (; c < c1; c++) {
        double a = 0, q = 0;
        for (int64_t r = 0; r < j->rows; r++) { const double v = j->x[r * j->ldx + c]; a += fabs(v); q += v * v; }
        j->sum_abs[c] = a;
        j->sum_sq[c] = q;
    }
}
#endif

static void moments_task(void *ctx, int64_t task, int thread) {
    (void)thread;
    const moments_job *j = ctx;
    const int64_t c0 = task * MOMENT_COLUMNS;
    const int64_t c1 = c0 + MOMENT_COLUMNS < j->width ? c0 + MOMENT_COLUMNS : j->width;
#if defined(__x86_64__)
    if (ckpt_kernel_level() >= CKPT_LEVEL_AVX2) { moments_avx2(j, c0, c1); return; }
#endif
    for (int64_t c = c0; c < c1; c++) {
        double a = 0, q = 0;
        for (int64_t r = 0; r < j->rows; r++) { const double v = j->x[r * j->ldx + c]; a += fabs(v); q += v * v; }
        j->sum_abs[c] = a;
        j->sum_sq[c] = q;
    }
}

void ckpt_column_moments(const float *x, int64_t ldx, int64_t rows, int64_t width, double *sum_abs, double *sum_sq) {
    moments_job job = {x, ldx, rows, width, sum_abs, sum_sq};
    ckpt_pool_run((width + MOMENT_COLUMNS - 1) / MOMENT_COLUMNS, moments_task, &job);
}

void ckpt_segment_norms(const float *x, int64_t ldx, int64_t rows, int segments, int length, float *out) {
    for (int64_t r = 0; r < rows; r++)
        for (int s = 0; s < segments; s++) {
            const float *v = x + r * ldx + (int64_t)s * length;
            double q = 0;
            for (int i = 0; i < length; i++) q += (double)v[i] * v[i];
            out[r * segments + s] = (float)sqrt(q);
        }
}

double ckpt_one_minus_cosine_sum(const float *a, const float *b, int64_t ld, int64_t rows, int64_t width, int64_t *degenerate) {
    double total = 0;
    int64_t bad = 0;
    for (int64_t r = 0; r < rows; r++) {
        const float *u = a + r * ld, *v = b + r * ld;
        double d = 0, nu = 0, nv = 0;
        for (int64_t c = 0; c < width; c++) { const double x = u[c], y = v[c]; d += x * y; nu += x * x; nv += y * y; }
        if (nu > 0 && nv > 0 && isfinite(nu * nv)) total += 1 - d / (sqrt(nu) * sqrt(nv));
        else bad++;
    }
    *degenerate = bad;
    return total;
}
