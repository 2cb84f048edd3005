// Peak f32 FMA throughput of one core with 256-bit and 512-bit vectors: twelve
// independent accumulator chains, no memory traffic. On CPUs that split 512-bit FMAs
// into two 256-bit halves (Zen 4, this Zen 5 VM) both widths give the same GFLOP/s, so
// AVX-512 kernels can only gain by issuing fewer loads and broadcasts per FMA, or by
// instructions that do more per lane (vpdpbusd, vdpbf16ps).
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

__attribute__((target("avx512f"))) static float chains512(long n) {
    __m512 a[12];
    const __m512 m = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.001f);
    for (int j = 0; j < 12; j++) a[j] = _mm512_set1_ps((float)j);
    for (long i = 0; i < n; i++)
        for (int j = 0; j < 12; j++) a[j] = _mm512_fmadd_ps(a[j], m, b);
    __m512 s = a[0];
    for (int j = 1; j < 12; j++) s = _mm512_add_ps(s, a[j]);
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float chains256(long n) {
    __m256 a[12];
    const __m256 m = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(0.001f);
    for (int j = 0; j < 12; j++) a[j] = _mm256_set1_ps((float)j);
    for (long i = 0; i < n; i++)
        for (int j = 0; j < 12; j++) a[j] = _mm256_fmadd_ps(a[j], m, b);
    __m256 s = a[0];
    for (int j = 1; j < 12; j++) s = _mm256_add_ps(s, a[j]);
    float r[8];
    _mm256_storeu_ps(r, s);
    return r[0];
}

int main(int argc, char **argv) {
    const long n = argc > 1 ? atol(argv[1]) : 100000000;
    __builtin_cpu_init();
    double best256 = 1e9, best512 = 1e9;
    float sink = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t = now();
        sink += chains256(n);
        if (now() - t < best256) best256 = now() - t;
        if (__builtin_cpu_supports("avx512f")) {
            t = now();
            sink += chains512(n);
            if (now() - t < best512) best512 = now() - t;
        }
    }
    const double g256 = n * 12.0 * 16 / best256 * 1e-9;
    printf("one core, f32 FMA: 256-bit %.1f GFLOP/s", g256);
    if (best512 < 1e9) {
        const double g512 = n * 12.0 * 32 / best512 * 1e-9;
        printf(", 512-bit %.1f GFLOP/s (%.2fx)", g512, g512 / g256);
    }
    printf("  [%g]\n", sink);
    return 0;
}
