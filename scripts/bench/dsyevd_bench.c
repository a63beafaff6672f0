/* Standalone LAPACKE_dsyevd timing on a symmetric matrix from a .npy file (scripts/bench).
 *
 *   dsyevd_bench MATRIX.npy [runs] [jobz] [top]
 *
 * With `top` K, LAPACKE_dsyevr with range 'I' (the K largest) instead, and the K values are
 * printed ("value=%.17g", ascending) for comparison with other solvers.
 * MATRIX.npy: 2-D float64 (little-endian, C or Fortran order; a symmetric matrix reads the
 * same either way), e.g. the kernel.npy that ntk wrote. jobz 'V' (default) or 'N'.
 * Each run copies the matrix and times LAPACKE_dsyevd(LAPACK_COL_MAJOR, jobz, 'U', ...)
 * alone. Threads: OPENBLAS_NUM_THREADS. Prints "key=value" lines. */
#include <cblas.h>
#include <lapacke.h>
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

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s MATRIX.npy [runs] [V|N]\n", argv[0]); return 2; }
    int runs = argc > 2 ? atoi(argv[2]) : 1;
    char jobz = argc > 3 ? argv[3][0] : 'V';
    int top = argc > 4 ? atoi(argv[4]) : 0;
    FILE *f = fopen(argv[1], "rb");
    if (!f) { perror(argv[1]); return 1; }
    unsigned char magic[10];
    if (fread(magic, 1, 10, f) != 10 || memcmp(magic, "\x93NUMPY", 6) != 0) { fprintf(stderr, "not a .npy file\n"); return 1; }
    size_t hlen;
    if (magic[6] == 1) hlen = magic[8] | (magic[9] << 8);
    else {
        unsigned char more[2];
        if (fread(more, 1, 2, f) != 2) return 1;
        hlen = magic[8] | (magic[9] << 8) | ((size_t)more[0] << 16) | ((size_t)more[1] << 24);
    }
    char *header = calloc(hlen + 1, 1);
    if (fread(header, 1, hlen, f) != hlen) { fprintf(stderr, "short header\n"); return 1; }
    if (!strstr(header, "'<f8'")) { fprintf(stderr, "need float64 ('<f8'): %s\n", header); return 1; }
    char *shape = strstr(header, "'shape'");
    long r = 0, c = 0;
    if (!shape || sscanf(strchr(shape, '(') + 1, "%ld, %ld", &r, &c) != 2 || r != c || r <= 0) {
        fprintf(stderr, "need a square 2-D matrix: %s\n", header); return 1;
    }
    int n = (int)r;
    double *m = malloc(sizeof(double) * (size_t)n * n);
    if (fread(m, sizeof(double), (size_t)n * n, f) != (size_t)n * n) { fprintf(stderr, "short data\n"); return 1; }
    fclose(f);
    double *a = malloc(sizeof(double) * (size_t)n * n);
    double *w = malloc(sizeof(double) * (size_t)n);
    double *t = malloc(sizeof(double) * (size_t)(runs > 0 ? runs : 1));
    printf("corename=%s threads=%d n=%d jobz=%c top=%d\n", openblas_get_corename(), openblas_get_num_threads(), n, jobz, top);
    double *z = top > 0 && jobz == 'V' ? malloc(sizeof(double) * (size_t)n * top) : NULL;
    lapack_int *isuppz = top > 0 ? malloc(sizeof(lapack_int) * 2 * (size_t)n) : NULL;
    for (int i = 0; i < runs; i++) {
        memcpy(a, m, sizeof(double) * (size_t)n * n);
        double t0 = now();
        lapack_int info, found = n;
        if (top > 0) {
            info = LAPACKE_dsyevr(LAPACK_COL_MAJOR, jobz, 'I', 'U', n, a, n, 0, 0, n - top + 1, n, 0, &found, w, z, n, isuppz);
        } else {
            info = LAPACKE_dsyevd(LAPACK_COL_MAJOR, jobz, 'U', n, a, n, w);
        }
        t[i] = now() - t0;
        if (info != 0) { fprintf(stderr, "%s info=%d\n", top > 0 ? "dsyevr" : "dsyevd", (int)info); return 1; }
        printf("run=%d seconds=%.4f lambda_min=%.10g lambda_max=%.10g\n", i, t[i], w[0], w[found - 1]);
        fflush(stdout);
    }
    for (int j = 0; top > 0 && j < top; j++) printf("value=%.17g\n", w[j]);
    qsort(t, runs, sizeof(double), cmp);
    printf("median_seconds=%.4f\n", t[runs / 2]);
    return 0;
}
