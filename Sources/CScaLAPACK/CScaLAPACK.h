// Header-only shim over ScaLAPACK and its C BLACS interface (Debian's
// libscalapack-openmpi, LP64: Fortran INTEGER is 32 bits) for Swift.
//
// The library ships no C header, so the prototypes are declared here. The Fortran
// routines take every argument by reference and, compiled by gfortran, one hidden
// length argument (size_t, at the end) per CHARACTER argument; the wrappers below pass
// those lengths explicitly, as LAPACKE does, and give Swift plain Int32 signatures by
// value. No stable API: only the DistributedEigen module may use it.
#ifndef NTK_CSCALAPACK_H
#define NTK_CSCALAPACK_H

#include <stddef.h>
#include <stdint.h>

// BLACS, C interface.
void Cblacs_pinfo(int *mypnum, int *nprocs);
void Cblacs_get(int icontxt, int what, int *val);
void Cblacs_gridinit(int *icontxt, char *order, int nprow, int npcol);
void Cblacs_gridinfo(int icontxt, int *nprow, int *npcol, int *myrow, int *mycol);
void Cblacs_gridexit(int icontxt);

// ScaLAPACK tools and drivers (Fortran).
int numroc_(const int *n, const int *nb, const int *iproc, const int *isrcproc, const int *nprocs);
void descinit_(int *desc, const int *m, const int *n, const int *mb, const int *nb,
               const int *irsrc, const int *icsrc, const int *ictxt, const int *lld, int *info);
void pdsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *ia, const int *ja,
              const int *desca, double *w, double *z, const int *iz, const int *jz, const int *descz,
              double *work, const int *lwork, int *iwork, const int *liwork, int *info,
              size_t jobz_len, size_t uplo_len);
void pdsyevr_(const char *jobz, const char *range, const char *uplo, const int *n, double *a,
              const int *ia, const int *ja, const int *desca, const double *vl, const double *vu,
              const int *il, const int *iu, int *m, int *nz, double *w, double *z, const int *iz,
              const int *jz, const int *descz, double *work, const int *lwork, int *iwork,
              const int *liwork, int *info, size_t jobz_len, size_t range_len, size_t uplo_len);
void pdgemr2d_(const int *m, const int *n, const double *a, const int *ia, const int *ja, const int *desca,
               double *b, const int *ib, const int *jb, const int *descb, const int *ictxt);
void pdtran_(const int *m, const int *n, const double *alpha, const double *a, const int *ia, const int *ja,
             const int *desca, const double *beta, double *c, const int *ic, const int *jc, const int *descc);

/// The BLACS default system context (what = 0), which spans MPI_COMM_WORLD.
static inline int32_t ntk_blacs_system_context(void) {
    int context = 0;
    Cblacs_get(-1, 0, &context);
    return (int32_t)context;
}

/// This process's BLACS number and the process count.
static inline void ntk_blacs_pinfo(int32_t *rank, int32_t *count) {
    int r = 0, c = 0;
    Cblacs_pinfo(&r, &c);
    *rank = (int32_t)r;
    *count = (int32_t)c;
}

/// A rows x columns process grid in row-major order on `context`; returns the grid's
/// context (the input context is not changed).
static inline int32_t ntk_blacs_gridinit(int32_t context, int32_t rows, int32_t columns) {
    int grid = (int)context;
    char order[] = "Row";
    Cblacs_gridinit(&grid, order, (int)rows, (int)columns);
    return (int32_t)grid;
}

/// The grid's shape and this process's coordinates in it (-1 when outside the grid).
static inline void ntk_blacs_gridinfo(int32_t context, int32_t *rows, int32_t *columns, int32_t *myRow, int32_t *myColumn) {
    int r = 0, c = 0, mr = 0, mc = 0;
    Cblacs_gridinfo((int)context, &r, &c, &mr, &mc);
    *rows = (int32_t)r;
    *columns = (int32_t)c;
    *myRow = (int32_t)mr;
    *myColumn = (int32_t)mc;
}

static inline void ntk_blacs_gridexit(int32_t context) { Cblacs_gridexit((int)context); }

/// The number of rows (or columns) of an n-long dimension, in blocks of nb dealt
/// cyclically from process `source` over `processes`, that land on process `index`.
static inline int32_t ntk_numroc(int32_t n, int32_t nb, int32_t index, int32_t source, int32_t processes) {
    int n_ = n, nb_ = nb, i_ = index, s_ = source, p_ = processes;
    return (int32_t)numroc_(&n_, &nb_, &i_, &s_, &p_);
}

/// Fills the 9-integer descriptor of an m x n matrix in mb x nb blocks, first block on
/// process (0, 0), local leading dimension lld. Returns info.
static inline int32_t ntk_descinit(int32_t *desc, int32_t m, int32_t n, int32_t mb, int32_t nb,
                                   int32_t context, int32_t lld) {
    int m_ = m, n_ = n, mb_ = mb, nb_ = nb, zero = 0, ctxt = context, lld_ = lld, info = 0;
    descinit_((int *)desc, &m_, &n_, &mb_, &nb_, &zero, &zero, &ctxt, &lld_, &info);
    return (int32_t)info;
}

/// All eigenvalues and eigenvectors of the whole distributed symmetric matrix A
/// (ia = ja = iz = jz = 1), divide and conquer. jobz must be 'V'. lwork = -1 or
/// liwork = -1 is a workspace query. Returns info.
static inline int32_t ntk_pdsyevd(char jobz, char uplo, int32_t n, double *a, const int32_t *desca,
                                  double *w, double *z, const int32_t *descz,
                                  double *work, int32_t lwork, int32_t *iwork, int32_t liwork) {
    int n_ = n, one = 1, lwork_ = lwork, liwork_ = liwork, info = 0;
    pdsyevd_(&jobz, &uplo, &n_, a, &one, &one, (const int *)desca, w, z, &one, &one, (const int *)descz,
             work, &lwork_, (int *)iwork, &liwork_, &info, 1, 1);
    return (int32_t)info;
}

/// Selected eigenvalues (range 'A' all, 'I' the il-th to iu-th, 1-based ascending) and
/// optionally eigenvectors (jobz 'V' or 'N') of the whole distributed symmetric matrix,
/// MRRR. *found receives the number of eigenvalues found. Returns info.
static inline int32_t ntk_pdsyevr(char jobz, char range, char uplo, int32_t n, double *a, const int32_t *desca,
                                  int32_t il, int32_t iu, int32_t *found, double *w, double *z, const int32_t *descz,
                                  double *work, int32_t lwork, int32_t *iwork, int32_t liwork) {
    int n_ = n, one = 1, il_ = il, iu_ = iu, m = 0, nz = 0, lwork_ = lwork, liwork_ = liwork, info = 0;
    double vl = 0, vu = 0;
    pdsyevr_(&jobz, &range, &uplo, &n_, a, &one, &one, (const int *)desca, &vl, &vu, &il_, &iu_, &m, &nz, w,
             z, &one, &one, (const int *)descz, work, &lwork_, (int *)iwork, &liwork_, &info, 1, 1, 1);
    *found = (int32_t)m;
    return (int32_t)info;
}

/// Copies the m x n submatrix of A starting at global column ja (1-based, first row) to
/// B starting at (1, 1), whatever the two distributions; `context` must span both grids.
static inline void ntk_pdgemr2d(int32_t m, int32_t n, const double *a, int32_t ja, const int32_t *desca,
                                double *b, const int32_t *descb, int32_t context) {
    int m_ = m, n_ = n, one = 1, ja_ = ja, ctxt = context;
    pdgemr2d_(&m_, &n_, a, &one, &ja_, (const int *)desca, b, &one, &one, (const int *)descb, &ctxt);
}

/// C := beta C + alpha Aᵀ for the whole n x m distributed matrix A (PBLAS pdtran).
static inline void ntk_pdtran(int32_t m, int32_t n, double alpha, const double *a, const int32_t *desca,
                              double beta, double *c, const int32_t *descc) {
    int m_ = m, n_ = n, one = 1;
    pdtran_(&m_, &n_, &alpha, a, &one, &one, (const int *)desca, &beta, c, &one, &one, (const int *)descc);
}

#endif
