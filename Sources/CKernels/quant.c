// Encoders from f32, scalar reference versions. Each follows ggml's quantize_row_*_ref
// (and gguf-py's `quants.quantize`, which reproduces it) operation for operation, so
// outputs are bit-identical; see Formats/gguf.md.
#include "CKernels.h"
#include <math.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

static inline uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline void wr16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }

// IEEE round-to-nearest-even, as numpy's float16 cast: overflow gives ±inf, NaN stays NaN.
uint16_t ckpt_f32_to_f16(float value) {
    const uint32_t f = f32_bits(value);
    const uint16_t sign = (uint16_t)((f >> 16) & 0x8000u);
    uint32_t exp = f & 0x7F800000u;
    uint32_t sig;
    if (exp >= 0x47800000u) {  // |f| >= 65536, inf or nan
        if (exp == 0x7F800000u && (f & 0x007FFFFFu)) {
            uint16_t r = (uint16_t)(0x7C00u + ((f & 0x007FFFFFu) >> 13));
            if (r == 0x7C00u) r++;  // keep it a NaN
            return sign + r;
        }
        return sign + 0x7C00u;
    }
    if (exp <= 0x38000000u) {  // subnormal half or zero
        if (exp < 0x33000000u) return sign;
        exp >>= 23;
        sig = 0x00800000u + (f & 0x007FFFFFu);
        sig >>= (113 - exp);
        // Round half to even; the bits shifted out above also count as "more than half".
        if (((sig & 0x00003FFFu) != 0x00001000u) || (f & 0x000007FFu)) sig += 0x00001000u;
        return sign + (uint16_t)(sig >> 13);
    }
    const uint16_t hexp = (uint16_t)((exp - 0x38000000u) >> 13);
    sig = f & 0x007FFFFFu;
    if ((sig & 0x00003FFFu) != 0x00001000u) sig += 0x00001000u;
    // A carry out of the significand bumps the exponent, up to inf: that is correct.
    return sign + (uint16_t)(hexp + (uint16_t)(sig >> 13));
}

// ggml_compute_fp32_to_bf16: quiet NaNs, round to nearest even.
uint16_t ckpt_f32_to_bf16(float value) {
    const uint32_t u = f32_bits(value);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 64);
    return (uint16_t)(((uint64_t)u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

#if defined(__x86_64__)
__attribute__((target("avx2,f16c")))
static int64_t f16_encode_avx2(const float *src, uint8_t *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(src + i);
        // NaN payloads differ from the scalar path (hardware quiets them): leave NaN runs to it.
        if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q))) break;
        _mm_storeu_si128((__m128i *)(dst + 2 * i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
    }
    return i;
}
#endif

void ckpt_quant_f16(const float *src, void *dst, int64_t n) {
    uint8_t *p = dst;
    int64_t i = 0;
#if defined(__x86_64__)
    if (ckpt_kernel_level() >= CKPT_LEVEL_AVX2) {
        while (i < n) {
            i += f16_encode_avx2(src + i, p + 2 * i, n - i);
            // The vector loop stopped at a group holding a NaN, or at the tail.
            const int64_t stop = i + 8 < n ? i + 8 : n;
            for (; i < stop; i++) wr16(p + 2 * i, ckpt_f32_to_f16(src[i]));
        }
    }
#endif
    for (; i < n; i++) wr16(p + 2 * i, ckpt_f32_to_f16(src[i]));
}

void ckpt_quant_bf16(const float *src, void *dst, int64_t n) {
    uint8_t *p = dst;
    for (int64_t i = 0; i < n; i++) wr16(p + 2 * i, ckpt_f32_to_bf16(src[i]));
}

void ckpt_quant_q8_0(const float *x, void *dst, int64_t nblocks) {
    uint8_t *b = dst;
    for (int64_t i = 0; i < nblocks; i++, x += 32, b += 34) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        wr16(b, ckpt_f32_to_f16(d));
        for (int j = 0; j < 32; j++) b[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
    }
}

// The element of largest magnitude, keeping its sign (the first one on ties).
static inline float signed_absmax(const float *x) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; j++) {
        const float v = x[j];
        if (amax < fabsf(v)) { amax = fabsf(v); max = v; }
    }
    return max;
}

static inline void min_max(const float *x, float *mn, float *mx) {
    float lo = x[0], hi = x[0];
    for (int j = 1; j < 32; j++) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
    }
    *mn = lo;
    *mx = hi;
}

static inline int clamp_trunc(float v, int hi) {
    int q = (int)v;  // truncation toward zero, as (int8_t) and np.trunc
    if (q < 0) q = 0;
    return q > hi ? hi : q;
}

void ckpt_quant_q4_0(const float *x, void *dst, int64_t nblocks) {
    uint8_t *b = dst;
    for (int64_t i = 0; i < nblocks; i++, x += 32, b += 18) {
        const float d = signed_absmax(x) / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        wr16(b, ckpt_f32_to_f16(d));
        for (int j = 0; j < 16; j++) {
            const int q0 = clamp_trunc(x[j] * id + 8.5f, 15);
            const int q1 = clamp_trunc(x[j + 16] * id + 8.5f, 15);
            b[2 + j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

void ckpt_quant_q4_1(const float *x, void *dst, int64_t nblocks) {
    uint8_t *b = dst;
    for (int64_t i = 0; i < nblocks; i++, x += 32, b += 20) {
        float mn, mx;
        min_max(x, &mn, &mx);
        const float d = (mx - mn) / 15.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        wr16(b, ckpt_f32_to_f16(d));
        wr16(b + 2, ckpt_f32_to_f16(mn));
        for (int j = 0; j < 16; j++) {
            const int q0 = clamp_trunc((x[j] - mn) * id + 0.5f, 15);
            const int q1 = clamp_trunc((x[j + 16] - mn) * id + 0.5f, 15);
            b[4 + j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

void ckpt_quant_q5_0(const float *x, void *dst, int64_t nblocks) {
    uint8_t *b = dst;
    for (int64_t i = 0; i < nblocks; i++, x += 32, b += 22) {
        const float d = signed_absmax(x) / -16.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        wr16(b, ckpt_f32_to_f16(d));
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            const int q0 = clamp_trunc(x[j] * id + 16.5f, 31);
            const int q1 = clamp_trunc(x[j + 16] * id + 16.5f, 31);
            b[6 + j] = (uint8_t)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
            qh |= (uint32_t)((q0 & 0x10) >> 4) << j;
            qh |= (uint32_t)((q1 & 0x10) >> 4) << (j + 16);
        }
        memcpy(b + 2, &qh, 4);
    }
}

void ckpt_quant_q5_1(const float *x, void *dst, int64_t nblocks) {
    uint8_t *b = dst;
    for (int64_t i = 0; i < nblocks; i++, x += 32, b += 24) {
        float mn, mx;
        min_max(x, &mn, &mx);
        const float d = (mx - mn) / 31.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        wr16(b, ckpt_f32_to_f16(d));
        wr16(b + 2, ckpt_f32_to_f16(mn));
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            const int q0 = clamp_trunc((x[j] - mn) * id + 0.5f, 31);
            const int q1 = clamp_trunc((x[j + 16] - mn) * id + 0.5f, 31);
            b[8 + j] = (uint8_t)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
            qh |= (uint32_t)((q0 & 0x10) >> 4) << j;
            qh |= (uint32_t)((q1 & 0x10) >> 4) << (j + 16);
        }
        memcpy(b + 4, &qh, 4);
    }
}
