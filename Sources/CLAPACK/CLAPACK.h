// Header-only shim over LAPACKE and OpenBLAS's CBLAS for Swift.
//
// lapack_int and the LAPACK_COL_MAJOR layout constant are macros; the wrappers below
// fix their types so that Swift sees plain Int32 signatures. No stable API: only the
// LinearAlgebra module may use it.
#ifndef NTK_CLAPACK_H
#define NTK_CLAPACK_H

#include <stdint.h>
#include <cblas.h>
#include <lapacke.h>

/// Symmetric eigendecomposition (divide and conquer), column-major; uplo names the
/// triangle read ('U' or 'L'). jobz: 'N' values only, 'V' values and vectors (overwrite
/// a). Returns LAPACK's info.
static inline int32_t ntk_dsyevd(char jobz, char uplo, int32_t n, double *a, int32_t lda, double *w) {
    return (int32_t)LAPACKE_dsyevd(LAPACK_COL_MAJOR, jobz, uplo, (lapack_int)n, a, (lapack_int)lda, w);
}

/// C = alpha * A * B^T + beta * C, all row-major (A: m x k, B: n x k, C: m x n).
static inline void ntk_dgemm_nt(int32_t m, int32_t n, int32_t k, double alpha,
                                const double *a, int32_t lda, const double *b, int32_t ldb,
                                double beta, double *c, int32_t ldc) {
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/// C = alpha * A * B + beta * C, all row-major (A: m x k, B: k x n, C: m x n).
static inline void ntk_dgemm_nn(int32_t m, int32_t n, int32_t k, double alpha,
                                const double *a, int32_t lda, const double *b, int32_t ldb,
                                double beta, double *c, int32_t ldc) {
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/// C = alpha * A^T * B + beta * C, all row-major (A: k x m, B: k x n, C: m x n).
static inline void ntk_dgemm_tn(int32_t m, int32_t n, int32_t k, double alpha,
                                const double *a, int32_t lda, const double *b, int32_t ldb,
                                double beta, double *c, int32_t ldc) {
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

static inline const char *ntk_openblas_corename(void) { return openblas_get_corename(); }
static inline void ntk_openblas_set_num_threads(int32_t n) { openblas_set_num_threads(n); }
static inline int32_t ntk_openblas_get_num_threads(void) { return openblas_get_num_threads(); }

#endif
