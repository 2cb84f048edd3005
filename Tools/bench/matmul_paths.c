// The engine's matrix × activations on each kernel path, on SmolLM2's shapes and its LM
// head, T tokens: F32 weights on the AVX2 and the AVX-512 packed kernel (bit-identical
// results), and BF16 weights with activations rounded to bf16 on the f32 kernel
// (ckpt_round_activations + ckpt_matmul) against vdpbf16ps (ckpt_matmul_bf16), rounding
// included in both timings. Prints GFLOP/s (2·T·rows·k / best time) and the ratios.
#include "CKernels.h"
#include "bench_clock.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    const int threads = argc > 1 ? atoi(argv[1]) : 2, T = argc > 2 ? atoi(argv[2]) : 512, reps = argc > 3 ? atoi(argv[3]) : 5;
    ckpt_pool_set_threads(threads);
    const int shapes[][2] = {{576, 576}, {192, 576}, {1536, 576}, {576, 1536}, {49152, 576}};
    printf("threads %d, tokens %d, best of %d; AVX-512 BF16 %s\n", threads, T, reps, ckpt_matmul_bf16_available() ? "yes" : "no");
    printf("  rows      k |  F32: AVX2  AVX-512  ratio  bits | BF16: f32 kernel  vdpbf16ps  ratio  max rel diff\n");
    for (int s = 0; s < 5; s++) {
        const int rows = shapes[s][0], k = shapes[s][1];
        float *wf = malloc((size_t)rows * k * 4), *x = malloc((size_t)T * k * 4), *xr = malloc((size_t)T * k * 4);
        float *y1 = malloc((size_t)T * rows * 4), *y2 = malloc((size_t)T * rows * 4);
        uint16_t *wb = malloc((size_t)rows * k * 2), *xb = malloc((size_t)T * k * 2);
        float *scratch = malloc((size_t)ckpt_matmul_scratch_floats(k) * 4 * threads);
        srand(s + 1);
        for (size_t i = 0; i < (size_t)rows * k; i++) { wf[i] = (rand() % 2001 - 1000) * 1e-3f; wb[i] = ckpt_f32_to_bf16(wf[i]); }
        for (size_t i = 0; i < (size_t)T * k; i++) x[i] = (rand() % 2001 - 1000) * 1.37e-3f;
        double best[2] = {1e9, 1e9};
        for (int level = CKPT_LEVEL_AVX2; level <= CKPT_LEVEL_AVX512; level++) {
            ckpt_set_kernel_level(level);
            for (int r = 0; r < reps; r++) {
                const double t0 = now();
                ckpt_matmul(0, wf, (size_t)k * 4, rows, k, x, k, T, level == CKPT_LEVEL_AVX2 ? y1 : y2, rows, scratch);
                const double t = now() - t0;
                if (t < best[level - CKPT_LEVEL_AVX2]) best[level - CKPT_LEVEL_AVX2] = t;
            }
        }
        const int same = memcmp(y1, y2, (size_t)T * rows * 4) == 0;
        const double flop = 2.0 * T * rows * k;
        printf("%6d %6d | %10.1f %8.1f %5.2fx  %s |", rows, k, flop / best[0] * 1e-9, flop / best[1] * 1e-9, best[0] / best[1],
               same ? "same" : "DIFF");
        double b1 = 1e9, b2 = 1e9, maxrel = 0;
        int ok = 1;
        for (int r = 0; r < reps; r++) {
            double t0 = now();
            ckpt_round_activations(30, x, k, T, k, xr, k);
            ckpt_matmul(30, wb, (size_t)k * 2, rows, k, xr, k, T, y1, rows, scratch);
            double t = now() - t0;
            if (t < b1) b1 = t;
            t0 = now();
            ok = ckpt_matmul_bf16(wb, (size_t)k * 2, rows, k, x, k, T, y2, rows, scratch, xb) == 0;
            t = now() - t0;
            if (t < b2) b2 = t;
        }
        if (ok) {
            for (size_t i = 0; i < (size_t)T * rows; i++) {
                const double d = fabs(y1[i] - y2[i]) / fmax(1, fabs(y1[i]));
                if (d > maxrel) maxrel = d;
            }
            printf(" %16.1f %10.1f %5.2fx  %.1e\n", flop / b1 * 1e-9, flop / b2 * 1e-9, b1 / b2, maxrel);
        } else {
            printf(" %16.1f %10s\n", flop / b1 * 1e-9, "n/a");
        }
        free(wf); free(x); free(xr); free(y1); free(y2); free(wb); free(xb); free(scratch);
    }
    return 0;
}
