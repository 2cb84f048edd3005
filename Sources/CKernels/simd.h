// Small SIMD helpers shared by the kernels (private to CKernels).
#ifndef CKPT_SIMD_H
#define CKPT_SIMD_H
#include <stdint.h>

// The first 64-byte aligned float at or after p (scratch buffers carry 16 floats of slack).
static inline float *align64(float *p) { return p + ((16 - ((uintptr_t)p / 4) % 16) % 16); }

#if defined(__x86_64__)
#include <immintrin.h>

// Lanes of a 16-row panel vector that hold one of its nr rows.
static inline __mmask16 panel_mask(int64_t nr) { return nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1); }

// Stores (or, with `accumulate`, adds into) the first rows of n token rows of outputs:
// acc[j] goes to y + j·ldy, lanes outside `m` untouched. The epilogue of the 16-row tiles.
__attribute__((target("avx512f")))
static inline void store_tile512(const __m512 *acc, int n, float *y, int64_t ldy, __mmask16 m, int accumulate) {
    for (int j = 0; j < n; j++) {
        __m512 v = acc[j];
        if (accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, y + j * ldy));
        _mm512_mask_storeu_ps(y + j * ldy, m, v);
    }
}

// Horizontal sum and maximum of eight floats.
__attribute__((target("avx2,fma")))
static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma")))
static inline float hmax8(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// ---- vector exp (Cephes' expf: range reduction by ln 2, degree-5 polynomial; ~1 ulp) ----
__attribute__((target("avx2,fma")))
static inline __m256 exp8(__m256 x) {
    const __m256 hi = _mm256_set1_ps(88.3762626647949f), lo = _mm256_set1_ps(-88.3762626647949f);
    x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    __m256 fx = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f));
    fx = _mm256_floor_ps(fx);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    const __m256 z = _mm256_mul_ps(x, x);
    __m256 y = _mm256_set1_ps(1.9875691500E-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894E-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459E-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201E-1f));
    y = _mm256_fmadd_ps(y, z, _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

#endif
#endif
