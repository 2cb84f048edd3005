// K-quant encoders (Q4_K, Q5_K, Q6_K) without an importance matrix. They follow the
// algorithm of ggml's reference quantizers (quantize_row_q{4,5,6}_K_ref): per sub-block
// a weighted search for scale and min over a few candidate grid widths, then 6-bit (Q4_K,
// Q5_K) or 8-bit (Q6_K) quantization of those scales against the block's largest, then
// the values re-quantized against the stored scales. Same search, same error as
// llama.cpp's own quantizer; layouts in Formats/gguf.md.
#include "CKernels.h"
#include <math.h>
#include <string.h>

#define SUPER 256
#define TINY_GROUP 1e-15f

// Round to nearest with ties to even, as ggml's nearest_int does it (adding 1.5·2^23
// leaves the integer in the low mantissa bits), for |v| < 2^22.
static inline int round_to_int(float v) {
    float shifted = v + 12582912.0f;
    int bits;
    memcpy(&bits, &shifted, 4);
    return (bits & 0x007FFFFF) - 0x00400000;
}

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

static inline void put_f16(uint8_t *p, float v) { uint16_t h = ckpt_f32_to_f16(v); memcpy(p, &h, 2); }
static inline float get_f16(const uint8_t *p) { uint16_t h; memcpy(&h, p, 2); return ckpt_f16_to_f32(h); }

// Scale and (non-positive) offset for `n` values on levels 0...top, minimising the
// weighted squared error over grid widths top + first_step + k·step, k = 0...steps.
// Writes the levels to `levels`, the offset (as a positive number to subtract) to *neg_min.
static float fit_scale_min(int n, int top, const float *x, const float *w, uint8_t *levels, float *neg_min,
                           float first_step, float step, int steps) {
    uint8_t trial[32];
    float lo = x[0], hi = x[0], sum_w = w[0], sum_x = w[0] * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (lo > 0) lo = 0;
    if (hi == lo) {
        for (int i = 0; i < n; i++) levels[i] = 0;
        *neg_min = -lo;
        return 0.0f;
    }
    float inv = top / (hi - lo);
    float scale = 1 / inv;
    float best = 0;
    for (int i = 0; i < n; i++) {
        const int l = clampi(round_to_int(inv * (x[i] - lo)), 0, top);
        levels[i] = (uint8_t)l;
        const float diff = scale * l + lo - x[i];
        best += w[i] * (diff * diff);
    }
    for (int k = 0; k <= steps; k++) {
        inv = (first_step + step * k + top) / (hi - lo);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            const int l = clampi(round_to_int(inv * (x[i] - lo)), 0, top);
            trial[i] = (uint8_t)l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        const float det = sum_w * sum_l2 - sum_l * sum_l;
        if (det > 0) {
            float s = (sum_w * sum_xl - sum_x * sum_l) / det;
            float m = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if (m > 0) {
                m = 0;
                s = sum_xl / sum_l2;
            }
            float err = 0;
            for (int i = 0; i < n; i++) {
                const float diff = s * trial[i] + m - x[i];
                err += w[i] * (diff * diff);
            }
            if (err < best) {
                memcpy(levels, trial, (size_t)n);
                best = err;
                scale = s;
                lo = m;
            }
        }
    }
    *neg_min = -lo;
    return scale;
}

// Symmetric scale for `n` values on levels -half...half-1 (returned as 0...2·half-1),
// weighting by x² and trying widths half ± 0.1·k for k = 1...9.
static float fit_symmetric(int n, int half, const float *x, int8_t *levels) {
    float amax = 0, peak = 0;
    for (int i = 0; i < n; i++) {
        const float a = fabsf(x[i]);
        if (a > amax) { amax = a; peak = x[i]; }
    }
    if (amax < TINY_GROUP) {
        for (int i = 0; i < n; i++) levels[i] = 0;
        return 0.0f;
    }
    float inv = -half / peak;
    float sum_lx = 0, sum_l2 = 0;
    for (int i = 0; i < n; i++) {
        const int l = clampi(round_to_int(inv * x[i]), -half, half - 1);
        levels[i] = (int8_t)(l + half);
        const float w = x[i] * x[i];
        sum_lx += w * x[i] * l;
        sum_l2 += w * l * l;
    }
    float scale = sum_l2 ? sum_lx / sum_l2 : 0.0f;
    float best = scale * sum_lx;
    for (int k = -9; k <= 9; k++) {
        if (k == 0) continue;
        inv = -(half + 0.1f * k) / peak;
        sum_lx = sum_l2 = 0;
        for (int i = 0; i < n; i++) {
            const int l = clampi(round_to_int(inv * x[i]), -half, half - 1);
            const float w = x[i] * x[i];
            sum_lx += w * x[i] * l;
            sum_l2 += w * l * l;
        }
        if (sum_l2 > 0 && sum_lx * sum_lx > best * sum_l2) {
            for (int i = 0; i < n; i++) levels[i] = (int8_t)(half + clampi(round_to_int(inv * x[i]), -half, half - 1));
            scale = sum_lx / sum_l2;
            best = scale * sum_lx;
        }
    }
    return scale;
}

// The 12-byte packing of eight 6-bit scales and eight 6-bit mins (Q4_K, Q5_K).
static void pack_scales(uint8_t *out, const uint8_t *sc, const uint8_t *mn) {
    memset(out, 0, 12);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            out[j] = sc[j];
            out[j + 4] = mn[j];
        } else {
            out[j + 4] = (uint8_t)((sc[j] & 0x0F) | ((mn[j] & 0x0F) << 4));
            out[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
            out[j] |= (uint8_t)((mn[j] >> 4) << 6);
        }
    }
}

static void unpack_scale(int j, const uint8_t *q, uint8_t *sc, uint8_t *mn) {
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
        *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// Shared by Q4_K (top 15, 20 steps from -1) and Q5_K (top 31, 15 steps from -0.5):
// fills `scales12`, d, dmin and the levels of 256 values.
static void kquant_asymmetric(const float *x, int top, float first_step, int steps,
                              uint8_t *d_out, uint8_t *dmin_out, uint8_t *scales12, uint8_t *levels) {
    float scales[8], mins[8], w[32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        const float *xs = x + 32 * j;
        float sum2 = 0;
        for (int l = 0; l < 32; l++) sum2 += xs[l] * xs[l];
        const float av = sqrtf(sum2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av + fabsf(xs[l]);
        scales[j] = fit_scale_min(32, top, xs, w, levels + 32 * j, &mins[j], first_step, 0.1f, steps);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; j++) {
        const int a = (uint8_t)round_to_int(inv_scale * scales[j]);
        const int b = (uint8_t)round_to_int(inv_min * mins[j]);
        ls[j] = (uint8_t)(a > 63 ? 63 : a);
        lm[j] = (uint8_t)(b > 63 ? 63 : b);
    }
    pack_scales(scales12, ls, lm);
    put_f16(d_out, max_scale / 63.f);
    put_f16(dmin_out, max_min / 63.f);
    const float d = get_f16(d_out), dmin = get_f16(dmin_out);
    for (int j = 0; j < 8; j++) {
        uint8_t sc, mn;
        unpack_scale(j, scales12, &sc, &mn);
        const float ds = d * sc;
        if (!ds) continue;
        const float dm = dmin * mn;
        for (int l = 0; l < 32; l++) levels[32 * j + l] = (uint8_t)clampi(round_to_int((x[32 * j + l] + dm) / ds), 0, top);
    }
}

void ckpt_quant_q4_k(const float *x, void *dst, int64_t nblocks) {
    uint8_t *b = dst;
    uint8_t levels[SUPER];
    for (int64_t i = 0; i < nblocks; i++, x += SUPER, b += 144) {
        kquant_asymmetric(x, 15, -1.f, 20, b, b + 2, b + 4, levels);
        uint8_t *q = b + 16;
        for (int j = 0; j < SUPER; j += 64, q += 32)
            for (int l = 0; l < 32; l++) q[l] = (uint8_t)(levels[j + l] | (levels[j + l + 32] << 4));
    }
}

void ckpt_quant_q5_k(const float *x, void *dst, int64_t nblocks) {
    uint8_t *b = dst;
    uint8_t levels[SUPER];
    for (int64_t i = 0; i < nblocks; i++, x += SUPER, b += 176) {
        kquant_asymmetric(x, 31, -0.5f, 15, b, b + 2, b + 4, levels);
        uint8_t *qh = b + 16, *ql = b + 48;
        memset(qh, 0, 32);
        uint8_t m1 = 1, m2 = 2;
        for (int n = 0; n < SUPER; n += 64, ql += 32, m1 <<= 2, m2 <<= 2) {
            for (int j = 0; j < 32; j++) {
                int l1 = levels[n + j], l2 = levels[n + j + 32];
                if (l1 > 15) { l1 -= 16; qh[j] |= m1; }
                if (l2 > 15) { l2 -= 16; qh[j] |= m2; }
                ql[j] = (uint8_t)(l1 | (l2 << 4));
            }
        }
    }
}

void ckpt_quant_q6_k(const float *x, void *dst, int64_t nblocks) {
    uint8_t *b = dst;
    int8_t levels[SUPER];
    float scales[16];
    for (int64_t i = 0; i < nblocks; i++, x += SUPER, b += 210) {
        float max_scale = 0, max_abs = 0;
        for (int s = 0; s < 16; s++) {
            scales[s] = fit_symmetric(16, 32, x + 16 * s, levels + 16 * s);
            if (fabsf(scales[s]) > max_abs) { max_abs = fabsf(scales[s]); max_scale = scales[s]; }
        }
        memset(b, 0, 210);
        if (max_abs < TINY_GROUP) {
            put_f16(b + 208, 0.f);
            continue;
        }
        const float inv = -128.f / max_scale;
        put_f16(b + 208, 1 / inv);
        int8_t *sc = (int8_t *)(b + 192);
        for (int s = 0; s < 16; s++) {
            const int v = round_to_int(inv * scales[s]);
            sc[s] = (int8_t)(v > 127 ? 127 : v);
        }
        const float d = get_f16(b + 208);
        for (int s = 0; s < 16; s++) {
            const float ds = d * sc[s];
            if (!ds) continue;
            for (int l = 0; l < 16; l++) levels[16 * s + l] = (int8_t)(clampi(round_to_int(x[16 * s + l] / ds), -32, 31) + 32);
        }
        uint8_t *ql = b, *qh = b + 128;
        for (int j = 0; j < SUPER; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; l++) {
                const uint8_t q1 = levels[j + l] & 0xF, q2 = levels[j + l + 32] & 0xF;
                const uint8_t q3 = levels[j + l + 64] & 0xF, q4 = levels[j + l + 96] & 0xF;
                ql[l] = (uint8_t)(q1 | (q3 << 4));
                ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
                qh[l] = (uint8_t)((levels[j + l] >> 4) | ((levels[j + l + 32] >> 4) << 2) |
                                  ((levels[j + l + 64] >> 4) << 4) | ((levels[j + l + 96] >> 4) << 6));
            }
        }
    }
}
