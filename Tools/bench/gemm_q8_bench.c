// Driver for Tools/bench/gemm_q8_bench.sh: f32 linear products (ckpt_linear_forward,
// ckpt_linear_backward with dw = NULL) against their int8 counterparts
// (ckpt_linear_forward_q8 with the activations quantized inside the timing,
// ckpt_linear_backward_input_q8 with dy quantized inside the timing), on Gaussian data.
//
//   gemm_q8_bench THREADS TOKENS REPS in,out [in,out …]
//
// Each measurement is the fastest of REPS runs, f32 and int8 interleaved so both see the
// same machine load. Weights are quantized once beforehand (a training step does it once
// per weight update); that time is printed separately.
//
// When the best path is AVX-512 VNNI (ckpt_cpu_has_avx512vnni() at CKPT_LEVEL_AVX512), the
// int8 products also run capped at CKPT_LEVEL_AVX2 in the same loop, and the last columns
// give the AVX2 int8 GFLOP/s, the VNNI/AVX2 speed ratios and whether both paths gave the
// same bits (they must).
#include "CKernels.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// 64-byte aligned, as the training code's FloatBuffer: rows of outputs then start on cache
// lines, and two threads writing neighbouring panels do not share lines.
static void *xmalloc(size_t n) {
    void *p = aligned_alloc(64, (n + 63) / 64 * 64);
    if (!p) { fprintf(stderr, "out of memory\n"); exit(1); }
    return p;
}

static uint64_t state = 0x243F6A8885A308D3ull;
static double uniform(void) {
    state += 0x9E3779B97F4A7C15ull;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return ((double)(z >> 11) + 0.5) / 9007199254740992.0;
}
static void gaussian(float *x, int64_t n, float sd) {
    for (int64_t i = 0; i < n; i++) x[i] = sd * (float)(sqrt(-2 * log(uniform())) * cos(6.283185307179586 * uniform()));
}

static double rel_error(const float *a, const float *ref, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) { const double d = (double)a[i] - ref[i]; num += d * d; den += (double)ref[i] * ref[i]; }
    return sqrt(num / den);
}

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: %s THREADS TOKENS REPS in,out [in,out ...]\n", argv[0]); return 64; }
    const int threads = ckpt_pool_set_threads(atoi(argv[1]));
    const int64_t T = atoll(argv[2]);
    const int reps = atoi(argv[3]);
    const int level = ckpt_kernel_level();
    const int vnni = level >= CKPT_LEVEL_AVX512 && ckpt_cpu_has_avx512vnni();
    printf("threads %d, tokens %lld, best of %d; GFLOP/s = 2·T·in·out / time; int8 path: %s\n", threads, (long long)T, reps,
           vnni ? "AVX-512 VNNI" : level >= CKPT_LEVEL_AVX2 ? "AVX2" : "scalar");
    printf("%6s %6s | %22s %6s | %22s %6s | %9s %9s | %8s", "in", "out", "forward f32 / int8", "ratio", "dx f32 / int8",
           "ratio", "fwd err", "dx err", "W quant");
    if (vnni) printf(" | %21s | %13s | %4s", "int8 AVX2 fwd / dx", "VNNI/AVX2 f dx", "bits");
    printf("\n");
    for (int a = 4; a < argc; a++) {
        long long in_, out_;
        if (sscanf(argv[a], "%lld,%lld", &in_, &out_) != 2) { fprintf(stderr, "bad shape %s\n", argv[a]); return 64; }
        const int64_t in = in_, out = out_;
        const int64_t kin = ckpt_q8_padded(in), kout = ckpt_q8_padded(out);
        float *x = xmalloc(sizeof(float) * T * in), *w = xmalloc(sizeof(float) * out * in), *dy = xmalloc(sizeof(float) * T * out);
        float *y32 = xmalloc(sizeof(float) * T * out), *y8 = xmalloc(sizeof(float) * T * out);
        float *dx32 = xmalloc(sizeof(float) * T * in), *dx8 = xmalloc(sizeof(float) * T * in);
        int8_t *wq = xmalloc(out * kin), *wtq = xmalloc(in * kout);
        float *ws = xmalloc(sizeof(float) * out * (kin / 32)), *wts = xmalloc(sizeof(float) * in * (kout / 32));
        float *y8a = xmalloc(sizeof(float) * T * out), *dx8a = xmalloc(sizeof(float) * T * in);
        int8_t *xq = xmalloc(T * (kin > kout ? kin : kout));
        float *xs = xmalloc(sizeof(float) * T * ((kin > kout ? kin : kout) / 32));
        gaussian(x, T * in, 1.0f);
        gaussian(w, out * in, 1.0f / sqrtf((float)in));
        gaussian(dy, T * out, 1e-3f);

        double tq = now();
        ckpt_q8_quantize_rows(w, in, out, in, wq, ws);
        ckpt_q8_quantize_cols(w, in, out, in, wtq, wts);
        tq = now() - tq;

        double f32_fwd = 1e30, q8_fwd = 1e30, f32_dx = 1e30, q8_dx = 1e30, avx2_fwd = 1e30, avx2_dx = 1e30;
        for (int r = 0; r < reps; r++) {
            if (vnni) {
                ckpt_set_kernel_level(CKPT_LEVEL_AVX2);
                double t0 = now();
                ckpt_linear_forward_q8(x, T, in, wq, ws, out, y8a, xq, xs);
                double t1 = now();
                ckpt_linear_backward_input_q8(dy, T, in, wtq, wts, out, dx8a, xq, xs);
                double t2 = now();
                ckpt_set_kernel_level(level);
                if (t1 - t0 < avx2_fwd) avx2_fwd = t1 - t0;
                if (t2 - t1 < avx2_dx) avx2_dx = t2 - t1;
            }
            double t0 = now();
            ckpt_linear_forward(x, T, in, w, out, y32);
            double t1 = now();
            ckpt_linear_forward_q8(x, T, in, wq, ws, out, y8, xq, xs);
            double t2 = now();
            ckpt_linear_backward(dy, x, w, T, in, out, dx32, NULL);
            double t3 = now();
            ckpt_linear_backward_input_q8(dy, T, in, wtq, wts, out, dx8, xq, xs);
            double t4 = now();
            if (t1 - t0 < f32_fwd) f32_fwd = t1 - t0;
            if (t2 - t1 < q8_fwd) q8_fwd = t2 - t1;
            if (t3 - t2 < f32_dx) f32_dx = t3 - t2;
            if (t4 - t3 < q8_dx) q8_dx = t4 - t3;
        }
        const double flop = 2.0 * (double)T * (double)in * (double)out * 1e-9;
        printf("%6lld %6lld | %9.1f / %9.1f  %5.2fx | %9.1f / %9.1f  %5.2fx | %8.2f%% %8.2f%% | %6.1fms", in_, out_,
               flop / f32_fwd, flop / q8_fwd, f32_fwd / q8_fwd, flop / f32_dx, flop / q8_dx, f32_dx / q8_dx,
               100 * rel_error(y8, y32, T * out), 100 * rel_error(dx8, dx32, T * in), 1e3 * tq);
        if (vnni) {
            const int same = memcmp(y8, y8a, sizeof(float) * T * out) == 0 && memcmp(dx8, dx8a, sizeof(float) * T * in) == 0;
            printf(" | %9.1f / %9.1f | %5.2fx %5.2fx | %4s", flop / avx2_fwd, flop / avx2_dx, avx2_fwd / q8_fwd,
                   avx2_dx / q8_dx, same ? "same" : "DIFF");
        }
        printf("\n");
        fflush(stdout);
        free(x); free(w); free(dy); free(y32); free(y8); free(dx32); free(dx8); free(y8a); free(dx8a);
        free(wq); free(wtq); free(ws); free(wts); free(xq); free(xs);
    }
    return 0;
}
