// Header-only shim: which instruction sets this CPU runs (GCC/Clang builtins), so that a
// build whose tile kernels use AVX-512 or AVX2 can refuse a CPU without them instead of
// dying of an illegal instruction. No stable API: only TileKernels uses it.
#ifndef NTK_CCPU_H
#define NTK_CCPU_H

static inline int ntk_cpu_has_avx512(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
#else
    return 0;
#endif
}

static inline int ntk_cpu_has_avx2_fma(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

#endif
