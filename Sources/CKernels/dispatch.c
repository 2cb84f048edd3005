// Runtime choice of kernel paths. One binary runs everywhere: AVX-512 code is compiled
// per function with target attributes and used only when the CPU has it. CKPT_KERNELS
// (=scalar, =avx2, =avx512) caps the level, so tests can compare the paths.
#include "CKernels.h"
#include <stdlib.h>
#include <string.h>

static int detected_level(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        return CKPT_LEVEL_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
        return CKPT_LEVEL_AVX2;
#endif
    return CKPT_LEVEL_SCALAR;
}

static int cached_level = -1;

int ckpt_kernel_level(void) {
    int level = __atomic_load_n(&cached_level, __ATOMIC_RELAXED);
    if (level >= 0) return level;
    level = detected_level();
    const char *cap = getenv("CKPT_KERNELS");
    if (cap) {
        int want = strcmp(cap, "scalar") == 0 ? CKPT_LEVEL_SCALAR
                 : strcmp(cap, "avx2") == 0 ? CKPT_LEVEL_AVX2
                 : CKPT_LEVEL_AVX512;
        if (want < level) level = want;
    }
    __atomic_store_n(&cached_level, level, __ATOMIC_RELAXED);
    return level;
}

void ckpt_set_kernel_level(int level) {
    int best = detected_level();
    __atomic_store_n(&cached_level, level < best ? level : best, __ATOMIC_RELAXED);
}

// Extensions some kernels take at CKPT_LEVEL_AVX512, detected once.
static int cached_vnni = -1, cached_bf16 = -1;

static int cached_extension(int *cache, int (*detect)(void)) {
    int has = __atomic_load_n(cache, __ATOMIC_RELAXED);
    if (has >= 0) return has;
    has = detected_level() == CKPT_LEVEL_AVX512 && detect();
    __atomic_store_n(cache, has, __ATOMIC_RELAXED);
    return has;
}

static int detect_vnni(void) {
#if defined(__x86_64__)
    return __builtin_cpu_supports("avx512vnni");
#else
    return 0;
#endif
}

static int detect_bf16(void) {
#if defined(__x86_64__)
    return __builtin_cpu_supports("avx512bf16");
#else
    return 0;
#endif
}

int ckpt_cpu_has_avx512vnni(void) { return cached_extension(&cached_vnni, detect_vnni); }
int ckpt_cpu_has_avx512bf16(void) { return cached_extension(&cached_bf16, detect_bf16); }
