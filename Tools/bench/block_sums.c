// What llama.cpp's Q4_1/Q5_1 block sums cost the engine's matmul (Kernels.matmul under
// llamaCppRounding). Old path: activations rounded to q8 blocks, then ckpt_matmul. New path:
// the rounding also writes each block's sum correction (ckpt_round_activations_with_sums),
// then ckpt_matmul, then ckpt_matmul_add_block_mins. Both timed with the rounding included,
// on SmolLM2's shapes and its LM head, best of REPS, interleaved so noise hits both alike.
// Prints ms of each, the ratio, and the largest change of y the correction makes (it must
// be small but not zero: that is the term llama.cpp keeps).
#include "CKernels.h"
#include "bench_clock.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    const int threads = argc > 1 ? atoi(argv[1]) : 2, T = argc > 2 ? atoi(argv[2]) : 512, reps = argc > 3 ? atoi(argv[3]) : 7;
    ckpt_pool_set_threads(threads);
    const int shapes[][2] = {{576, 576}, {192, 576}, {1536, 576}, {576, 1536}, {49152, 576}};
    const int types[] = {3 /* Q4_1 */, 7 /* Q5_1 */};
    const size_t block_bytes[] = {20, 24};
    printf("threads %d, tokens %d, best of %d\n", threads, T, reps);
    printf("  type   rows      k | round+matmul ms | +block sums ms | ratio | max |Δy| / max |y|\n");
    double total_old = 0, total_new = 0;
    for (int ti = 0; ti < 2; ti++) {
        for (int s = 0; s < 5; s++) {
            const int rows = shapes[s][0], k = shapes[s][1], nb = k / 32;
            const size_t row_bytes = (size_t)nb * block_bytes[ti];
            float *wf = malloc((size_t)rows * k * 4), *x = malloc((size_t)T * k * 4), *xr = malloc((size_t)T * k * 4);
            float *sums = malloc((size_t)T * nb * 4), *y1 = malloc((size_t)T * rows * 4), *y2 = malloc((size_t)T * rows * 4);
            unsigned char *w = malloc((size_t)rows * row_bytes);
            float *scratch = malloc((size_t)ckpt_matmul_scratch_floats(k) * 4 * threads);
            srand(s + 1);
            for (size_t i = 0; i < (size_t)rows * k; i++) wf[i] = (rand() % 2001 - 1000) * 1e-3f + 0.3f;
            for (size_t i = 0; i < (size_t)T * k; i++) x[i] = (rand() % 2001 - 1000) * 1.37e-3f;
            for (int r = 0; r < rows; r++) {
                if (types[ti] == 3) ckpt_quant_q4_1(wf + (size_t)r * k, w + r * row_bytes, nb);
                else ckpt_quant_q5_1(wf + (size_t)r * k, w + r * row_bytes, nb);
            }
            double b_old = 1e9, b_new = 1e9;
            for (int r = 0; r < reps; r++) {
                double t0 = now();
                ckpt_round_activations(types[ti], x, k, T, k, xr, k);
                ckpt_matmul(types[ti], w, row_bytes, rows, k, xr, k, T, y1, rows, scratch);
                double t = now() - t0;
                if (t < b_old) b_old = t;
                t0 = now();
                ckpt_round_activations_with_sums(types[ti], x, k, T, k, xr, k, sums);
                ckpt_matmul(types[ti], w, row_bytes, rows, k, xr, k, T, y2, rows, scratch);
                ckpt_matmul_add_block_mins(types[ti], w, row_bytes, rows, k, sums, T, y2, rows, scratch);
                t = now() - t0;
                if (t < b_new) b_new = t;
            }
            double maxd = 0, maxy = 0;
            for (size_t i = 0; i < (size_t)T * rows; i++) {
                maxd = fmax(maxd, fabs(y1[i] - y2[i]));
                maxy = fmax(maxy, fabs(y1[i]));
            }
            printf("  %-5s %6d %6d | %15.3f | %14.3f | %5.3f | %.2e\n", types[ti] == 3 ? "Q4_1" : "Q5_1", rows, k, b_old * 1e3,
                   b_new * 1e3, b_new / b_old, maxd / maxy);
            // A layer of SmolLM2 runs q, k, v, o, gate, up, down: weight each shape by its use.
            const int uses = s == 0 ? 2 : s == 1 ? 2 : s == 2 ? 2 : 1;
            if (ti == 0 && s < 4) { total_old += uses * b_old; total_new += uses * b_new; }
            free(wf); free(x); free(xr); free(sums); free(y1); free(y2); free(w); free(scratch);
        }
    }
    printf("one SmolLM2 layer on Q4_1 (q, o 576×576; k, v 192×576; gate, up 1536×576; down 576×1536): %.3f ms against %.3f ms, %.3fx\n",
           total_new * 1e3, total_old * 1e3, total_new / total_old);
    return 0;
}
