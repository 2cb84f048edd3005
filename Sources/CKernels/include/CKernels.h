// Hot loops of ckpt, in C. Every function is a plain loop over caller-owned memory:
// no allocation, no knowledge of models or files. The scalar versions are the
// reference; vectorised variants are chosen at run time and must agree with them.
#ifndef CKPT_KERNELS_H
#define CKPT_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---- dispatch -----------------------------------------------------------------
enum { CKPT_LEVEL_SCALAR = 0, CKPT_LEVEL_AVX2 = 1, CKPT_LEVEL_AVX512 = 2 };
/// The instruction-set level in use: the best the CPU has, capped by $CKPT_KERNELS.
int ckpt_kernel_level(void);
/// Caps the level (never above what the CPU has). For tests comparing paths.
void ckpt_set_kernel_level(int level);

// ---- scalar conversions -------------------------------------------------------
float ckpt_f16_to_f32(uint16_t h);
float ckpt_bf16_to_f32(uint16_t h);

// ---- block decoders: `nblocks` blocks at `src` (unaligned ok) to f32 at `dst` ----
// Layouts and block sizes are those of ggml (see Formats/gguf.md). Results are
// bit-identical to gguf-py's `quants.dequantize`.
void ckpt_dequant_f16(const void *src, float *dst, int64_t n);
void ckpt_dequant_bf16(const void *src, float *dst, int64_t n);
void ckpt_dequant_q4_0(const void *src, float *dst, int64_t nblocks);
void ckpt_dequant_q4_1(const void *src, float *dst, int64_t nblocks);
void ckpt_dequant_q5_0(const void *src, float *dst, int64_t nblocks);
void ckpt_dequant_q5_1(const void *src, float *dst, int64_t nblocks);
void ckpt_dequant_q8_0(const void *src, float *dst, int64_t nblocks);
void ckpt_dequant_iq4_nl(const void *src, float *dst, int64_t nblocks);
void ckpt_dequant_q2_k(const void *src, float *dst, int64_t nblocks);
void ckpt_dequant_q3_k(const void *src, float *dst, int64_t nblocks);
void ckpt_dequant_q4_k(const void *src, float *dst, int64_t nblocks);
void ckpt_dequant_q5_k(const void *src, float *dst, int64_t nblocks);
void ckpt_dequant_q6_k(const void *src, float *dst, int64_t nblocks);

// ---- encoders from f32 (`nblocks` blocks of 32 floats, or `n` values) ------------------
// Bit-identical to gguf-py's `quants.quantize` (which reproduces ggml's reference
// quantizers) for every finite input.
uint16_t ckpt_f32_to_f16(float f);
uint16_t ckpt_f32_to_bf16(float f);
void ckpt_quant_f16(const float *src, void *dst, int64_t n);
void ckpt_quant_bf16(const float *src, void *dst, int64_t n);
void ckpt_quant_q8_0(const float *src, void *dst, int64_t nblocks);
void ckpt_quant_q4_0(const float *src, void *dst, int64_t nblocks);
void ckpt_quant_q4_1(const float *src, void *dst, int64_t nblocks);
void ckpt_quant_q5_0(const float *src, void *dst, int64_t nblocks);
void ckpt_quant_q5_1(const float *src, void *dst, int64_t nblocks);
/// K-quants: `nblocks` super-blocks of 256 floats; the search of ggml's reference
/// quantizers (no importance matrix), so errors match llama.cpp's.
void ckpt_quant_q4_k(const float *src, void *dst, int64_t nblocks);
void ckpt_quant_q5_k(const float *src, void *dst, int64_t nblocks);
void ckpt_quant_q6_k(const float *src, void *dst, int64_t nblocks);

// ---- reductions ----------------------------------------------------------------
/// Summary of a run of floats. Non-finite values are counted, not summed.
typedef struct {
    int64_t count;      // finite values
    int64_t nan_count;
    int64_t inf_count;
    double min, max;    // over finite values (undefined when count == 0)
    double mean;        // over finite values
    double m2;          // sum of squared deviations from `mean`
} ckpt_stats;

/// Summarises `n` floats (two passes over the run, which the caller keeps in cache).
/// Dispatches on ckpt_kernel_level(); the scalar version is the reference.
void ckpt_stats_f32(const float *x, int64_t n, ckpt_stats *out);
void ckpt_stats_f32_scalar(const float *x, int64_t n, ckpt_stats *out);

#ifdef __cplusplus
}
#endif
#endif
