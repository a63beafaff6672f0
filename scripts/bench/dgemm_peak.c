/* One-core dgemm throughput of the OpenBLAS in use (scripts/bench).
 *
 *   dgemm_peak [seconds_per_shape]
 *
 * Prints openblas_get_corename() and, per shape, the best and median GFLOP/s of repeated
 * cblas_dgemm calls (2 m n k flops each). Shapes: square n = 2000 (the usual "peak"), and
 * the tile shapes of ntk's structured path: C (256 x 256) = A (256 x k) B^T, row-major
 * NoTrans/Trans as ntk calls it, for k = 512 (hidden layers) and k = 64 (input layer).
 * Thread count comes from OPENBLAS_NUM_THREADS (scripts set 1); the kernel from
 * OPENBLAS_CORETYPE. Output lines are "key=value" for the driver to parse. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void fill(double *p, size_t n, unsigned *s) {
    for (size_t i = 0; i < n; i++) { *s = *s * 1103515245u + 12345u; p[i] = ((*s >> 8) & 0xffff) / 65536.0 - 0.5; }
}

/* Runs C = A B^T (m x n, inner k) repeatedly for about `budget` seconds (at least 3 calls,
 * after 1 warm-up) and prints best and median GFLOP/s. */
static void bench(const char *name, int m, int n, int k, double budget) {
    unsigned seed = 12345;
    double *a = malloc(sizeof(double) * (size_t)m * k);
    double *b = malloc(sizeof(double) * (size_t)n * k);
    double *c = malloc(sizeof(double) * (size_t)m * n);
    fill(a, (size_t)m * k, &seed);
    fill(b, (size_t)n * k, &seed);
    memset(c, 0, sizeof(double) * (size_t)m * n);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0, a, k, b, k, 0.0, c, n);
    enum { MAXS = 100000 };
    static double rate[MAXS];
    int count = 0;
    double start = now();
    while (count < MAXS && (count < 3 || now() - start < budget)) {
        double t0 = now();
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0, a, k, b, k, 0.0, c, n);
        double dt = now() - t0;
        rate[count++] = 2.0 * m * n * (double)k / dt / 1e9;
    }
    qsort(rate, count, sizeof(double), cmp);
    printf("shape=%s m=%d n=%d k=%d calls=%d best_gflops=%.2f median_gflops=%.2f checksum=%.6g\n",
           name, m, n, k, count, rate[count - 1], rate[count / 2], c[0] + c[(size_t)m * n - 1]);
    fflush(stdout);
    free(a); free(b); free(c);
}

int main(int argc, char **argv) {
    double budget = argc > 1 ? atof(argv[1]) : 2.0;
    const char *env = getenv("OPENBLAS_CORETYPE");
    printf("corename=%s coretype_env=%s threads=%d\n", openblas_get_corename(), env ? env : "(unset)",
           openblas_get_num_threads());
    bench("square2000", 2000, 2000, 2000, budget);
    bench("tile256x256_k512", 256, 256, 512, budget);
    bench("tile256x256_k64", 256, 256, 64, budget);
    return 0;
}
