// Block decoders, scalar reference versions. The order of float operations follows
// ggml's dequantize_row_* exactly (and gguf-py, which does the same arithmetic in
// numpy float32), so results are bit-identical; the build disables FMA contraction.
#include "CKernels.h"
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

static inline uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline float f32_from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float ckpt_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F;
    uint32_t man = h & 0x3FF;
    if (exp == 0x1F) return f32_from_bits(sign | 0x7F800000u | (man << 13));  // inf / nan
    if (exp == 0) {
        if (man == 0) return f32_from_bits(sign);
        // Subnormal: normalise into an f32 exponent.
        int e = -1;
        do { man <<= 1; e++; } while ((man & 0x400) == 0);
        man &= 0x3FF;
        return f32_from_bits(sign | ((uint32_t)(127 - 15 - e) << 23) | (man << 13));
    }
    return f32_from_bits(sign | ((exp + 127 - 15) << 23) | (man << 13));
}

float ckpt_bf16_to_f32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }

#if defined(__x86_64__)
// Hardware half conversion is exact for every non-NaN value (it quiets signalling NaNs,
// where the scalar path keeps the payload as is).
__attribute__((target("avx2,f16c")))
static int64_t f16_avx2(const uint8_t *p, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 2 * i))));
    return i;
}

__attribute__((target("avx2")))
static int64_t bf16_avx2(const uint8_t *p, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p + 2 * i)));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_slli_epi32(w, 16));
    }
    return i;
}
#endif

void ckpt_dequant_f16(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    int64_t i = 0;
#if defined(__x86_64__)
    if (ckpt_kernel_level() >= CKPT_LEVEL_AVX2) i = f16_avx2(p, dst, n);
#endif
    for (; i < n; i++) dst[i] = ckpt_f16_to_f32(rd16(p + 2 * i));
}

void ckpt_dequant_bf16(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    int64_t i = 0;
#if defined(__x86_64__)
    if (ckpt_kernel_level() >= CKPT_LEVEL_AVX2) i = bf16_avx2(p, dst, n);
#endif
    for (; i < n; i++) dst[i] = ckpt_bf16_to_f32(rd16(p + 2 * i));
}

#if defined(__x86_64__)
// 16 packed nibbles to 16 floats (low nibbles: elements 0-15, high: 16-31), as int32.
__attribute__((target("avx2")))
static inline void nibbles_avx2(const uint8_t *qs, __m256i *lo0, __m256i *lo1, __m256i *hi0, __m256i *hi1) {
    const __m128i bytes = _mm_loadu_si128((const __m128i *)qs);
    const __m128i mask = _mm_set1_epi8(0x0F);
    const __m128i lo = _mm_and_si128(bytes, mask);
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
    *lo0 = _mm256_cvtepu8_epi32(lo);
    *lo1 = _mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8));
    *hi0 = _mm256_cvtepu8_epi32(hi);
    *hi1 = _mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8));
}

// Same operations as the scalar loops (a product, then a sum where the type has one;
// no fused multiply-add), so the vector path is bit-identical to them.
__attribute__((target("avx2")))
static void q4_0_avx2(const uint8_t *b, float *dst, int64_t nblocks) {
    const __m256i eight = _mm256_set1_epi32(8);
    for (int64_t i = 0; i < nblocks; i++, b += 18, dst += 32) {
        const __m256 d = _mm256_set1_ps(ckpt_f16_to_f32(rd16(b)));
        __m256i q[4];
        nibbles_avx2(b + 2, &q[0], &q[1], &q[2], &q[3]);
        for (int k = 0; k < 4; k++)
            _mm256_storeu_ps(dst + 8 * k, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(q[k], eight))));
    }
}

__attribute__((target("avx2")))
static void q4_1_avx2(const uint8_t *b, float *dst, int64_t nblocks) {
    for (int64_t i = 0; i < nblocks; i++, b += 20, dst += 32) {
        const __m256 d = _mm256_set1_ps(ckpt_f16_to_f32(rd16(b)));
        const __m256 m = _mm256_set1_ps(ckpt_f16_to_f32(rd16(b + 2)));
        __m256i q[4];
        nibbles_avx2(b + 4, &q[0], &q[1], &q[2], &q[3]);
        for (int k = 0; k < 4; k++)
            _mm256_storeu_ps(dst + 8 * k, _mm256_add_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(q[k])), m));
    }
}

__attribute__((target("avx2")))
static void q8_0_avx2(const uint8_t *b, float *dst, int64_t nblocks) {
    for (int64_t i = 0; i < nblocks; i++, b += 34, dst += 32) {
        const __m256 d = _mm256_set1_ps(ckpt_f16_to_f32(rd16(b)));
        for (int k = 0; k < 4; k++) {
            const __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b + 2 + 8 * k)));
            _mm256_storeu_ps(dst + 8 * k, _mm256_mul_ps(d, _mm256_cvtepi32_ps(q)));
        }
    }
}
#endif

void ckpt_dequant_q4_0(const void *src, float *dst, int64_t nblocks) {
    const uint8_t *b = src;
#if defined(__x86_64__)
    if (ckpt_kernel_level() >= CKPT_LEVEL_AVX2) { q4_0_avx2(b, dst, nblocks); return; }
#endif
    for (int64_t i = 0; i < nblocks; i++, b += 18, dst += 32) {
        const float d = ckpt_f16_to_f32(rd16(b));
        const uint8_t *qs = b + 2;
        for (int j = 0; j < 16; j++) {
            dst[j] = d * (float)((int)(qs[j] & 0x0F) - 8);
            dst[j + 16] = d * (float)((int)(qs[j] >> 4) - 8);
        }
    }
}

void ckpt_dequant_q4_1(const void *src, float *dst, int64_t nblocks) {
    const uint8_t *b = src;
#if defined(__x86_64__)
    if (ckpt_kernel_level() >= CKPT_LEVEL_AVX2) { q4_1_avx2(b, dst, nblocks); return; }
#endif
    for (int64_t i = 0; i < nblocks; i++, b += 20, dst += 32) {
        const float d = ckpt_f16_to_f32(rd16(b));
        const float m = ckpt_f16_to_f32(rd16(b + 2));
        const uint8_t *qs = b + 4;
        for (int j = 0; j < 16; j++) {
            dst[j] = d * (float)(qs[j] & 0x0F) + m;
            dst[j + 16] = d * (float)(qs[j] >> 4) + m;
        }
    }
}

void ckpt_dequant_q5_0(const void *src, float *dst, int64_t nblocks) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < nblocks; i++, b += 22, dst += 32) {
        const float d = ckpt_f16_to_f32(rd16(b));
        const uint32_t qh = rd32(b + 2);
        const uint8_t *qs = b + 6;
        for (int j = 0; j < 16; j++) {
            const uint8_t h0 = ((qh >> j) << 4) & 0x10;
            const uint8_t h1 = (qh >> (j + 12)) & 0x10;
            dst[j] = d * (float)((int)((qs[j] & 0x0F) | h0) - 16);
            dst[j + 16] = d * (float)((int)((qs[j] >> 4) | h1) - 16);
        }
    }
}

void ckpt_dequant_q5_1(const void *src, float *dst, int64_t nblocks) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < nblocks; i++, b += 24, dst += 32) {
        const float d = ckpt_f16_to_f32(rd16(b));
        const float m = ckpt_f16_to_f32(rd16(b + 2));
        const uint32_t qh = rd32(b + 4);
        const uint8_t *qs = b + 8;
        for (int j = 0; j < 16; j++) {
            const uint8_t h0 = ((qh >> j) << 4) & 0x10;
            const uint8_t h1 = (qh >> (j + 12)) & 0x10;
            dst[j] = d * (float)((qs[j] & 0x0F) | h0) + m;
            dst[j + 16] = d * (float)((qs[j] >> 4) | h1) + m;
        }
    }
}

void ckpt_dequant_q8_0(const void *src, float *dst, int64_t nblocks) {
    const uint8_t *b = src;
#if defined(__x86_64__)
    if (ckpt_kernel_level() >= CKPT_LEVEL_AVX2) { q8_0_avx2(b, dst, nblocks); return; }
#endif
    for (int64_t i = 0; i < nblocks; i++, b += 34, dst += 32) {
        const float d = ckpt_f16_to_f32(rd16(b));
        const int8_t *qs = (const int8_t *)(b + 2);
        for (int j = 0; j < 32; j++) dst[j] = d * (float)qs[j];
    }
}

static const int8_t kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

void ckpt_dequant_iq4_nl(const void *src, float *dst, int64_t nblocks) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < nblocks; i++, b += 18, dst += 32) {
        const float d = ckpt_f16_to_f32(rd16(b));
        const uint8_t *qs = b + 2;
        for (int j = 0; j < 16; j++) {
            dst[j] = d * (float)kvalues_iq4nl[qs[j] & 0x0F];
            dst[j + 16] = d * (float)kvalues_iq4nl[qs[j] >> 4];
        }
    }
}

// Q2_K: scales[16] (low nibble scale, high nibble min), qs[64], d, dmin.
void ckpt_dequant_q2_k(const void *src, float *dst, int64_t nblocks) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < nblocks; i++, b += 84) {
        const uint8_t *scales = b;
        const uint8_t *q = b + 16;
        const float d = ckpt_f16_to_f32(rd16(b + 80));
        const float dmin = ckpt_f16_to_f32(rd16(b + 82));
        int is = 0;
        for (int n = 0; n < 256; n += 128) {
            int shift = 0;
            for (int j = 0; j < 4; j++) {
                for (int half = 0; half < 2; half++) {
                    const uint8_t sc = scales[is++];
                    const float dl = d * (float)(sc & 0x0F);
                    const float ml = dmin * (float)(sc >> 4);
                    for (int l = 0; l < 16; l++) *dst++ = dl * (float)((q[l + 16 * half] >> shift) & 3) - ml;
                }
                shift += 2;
            }
            q += 32;
        }
    }
}

// Q3_K: hmask[32], qs[64], scales[12] (16 six-bit scales), d.
void ckpt_dequant_q3_k(const void *src, float *dst, int64_t nblocks) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < nblocks; i++, b += 110) {
        const uint8_t *hm = b;
        const uint8_t *q = b + 32;
        const uint8_t *s = b + 96;
        const float d = ckpt_f16_to_f32(rd16(b + 108));
        int is = 0;
        uint8_t m = 1;
        for (int n = 0; n < 256; n += 128) {
            int shift = 0;
            for (int j = 0; j < 4; j++) {
                for (int half = 0; half < 2; half++, is++) {
                    const int lo = is < 8 ? (s[is] & 0x0F) : (s[is - 8] >> 4);
                    const int hi = (s[8 + is % 4] >> (2 * (is / 4))) & 3;
                    const float dl = d * (float)((lo | (hi << 4)) - 32);
                    for (int l = 0; l < 16; l++) {
                        const int k = l + 16 * half;
                        const int v = ((q[k] >> shift) & 3) - ((hm[k] & m) ? 0 : 4);
                        *dst++ = dl * (float)v;
                    }
                }
                shift += 2;
                m <<= 1;
            }
            q += 32;
        }
    }
}

static inline void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// Q4_K: d, dmin, scales[12] (8 six-bit scale/min pairs), qs[128].
void ckpt_dequant_q4_k(const void *src, float *dst, int64_t nblocks) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < nblocks; i++, b += 144) {
        const float d = ckpt_f16_to_f32(rd16(b));
        const float dmin = ckpt_f16_to_f32(rd16(b + 2));
        const uint8_t *scales = b + 4;
        const uint8_t *q = b + 16;
        for (int j = 0, is = 0; j < 256; j += 64, is += 2, q += 32) {
            uint8_t sc, mn;
            scale_min_k4(is, scales, &sc, &mn);
            const float d1 = d * (float)sc, m1 = dmin * (float)mn;
            scale_min_k4(is + 1, scales, &sc, &mn);
            const float d2 = d * (float)sc, m2 = dmin * (float)mn;
            for (int l = 0; l < 32; l++) *dst++ = d1 * (float)(q[l] & 0x0F) - m1;
            for (int l = 0; l < 32; l++) *dst++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

// Q5_K: d, dmin, scales[12], qh[32], qs[128].
void ckpt_dequant_q5_k(const void *src, float *dst, int64_t nblocks) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < nblocks; i++, b += 176) {
        const float d = ckpt_f16_to_f32(rd16(b));
        const float dmin = ckpt_f16_to_f32(rd16(b + 2));
        const uint8_t *scales = b + 4;
        const uint8_t *qh = b + 16;
        const uint8_t *ql = b + 48;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0, is = 0; j < 256; j += 64, is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
            uint8_t sc, mn;
            scale_min_k4(is, scales, &sc, &mn);
            const float d1 = d * (float)sc, m1 = dmin * (float)mn;
            scale_min_k4(is + 1, scales, &sc, &mn);
            const float d2 = d * (float)sc, m2 = dmin * (float)mn;
            for (int l = 0; l < 32; l++) *dst++ = d1 * (float)((ql[l] & 0x0F) + ((qh[l] & u1) ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *dst++ = d2 * (float)((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
        }
    }
}

// Q6_K: ql[128], qh[64], scales[16] (int8), d.
void ckpt_dequant_q6_k(const void *src, float *dst, int64_t nblocks) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < nblocks; i++, b += 210, dst += 256) {
        const uint8_t *ql = b;
        const uint8_t *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        const float d = ckpt_f16_to_f32(rd16(b + 208));
        float *y = dst;
        for (int n = 0; n < 256; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = (int)((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = (int)((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = (int)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = (int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l + 0] = d * (float)sc[is + 0] * (float)q1;
                y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                y[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
        }
    }
}
