// The distributed eigensolvers alone on a kernel that `ntk gram` wrote, for the rule of
// `--eigen-solver auto` (docs/cluster.md, "Eigensolvers"): ELPA one-stage (1) or two-stage
// (2), or ScaLAPACK pdsyevd / pdsyevr, on a near-square process grid with block size NB.
// Prints the solve's wall time (the matrix is read block-cyclically from the file first).
//   mpicc -O2 -o distributed_eigen_bench distributed_eigen_bench.c $(pkg-config --cflags --libs elpa)
//   OPENBLAS_NUM_THREADS=1 mpirun -np 2 ./distributed_eigen_bench kernel.npy N NB 1|2|pdsyevd|pdsyevr values|vectors
#include <mpi.h>
#include <elpa/elpa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <unistd.h>
extern void Cblacs_get(int, int, int*); extern void Cblacs_gridinit(int*, const char*, int, int);
extern void Cblacs_gridinfo(int, int*, int*, int*, int*);
extern int numroc_(int*, int*, int*, int*, int*);
extern void descinit_(int*, int*, int*, int*, int*, int*, int*, int*, int*, int*);
extern void pdsyevd_(char*, char*, int*, double*, int*, int*, int*, double*, double*, int*, int*, int*, double*, int*, int*, int*, int*);
extern void pdsyevr_(char*, char*, char*, int*, double*, int*, int*, int*, double*, double*, int*, int*, int*, int*, double*, double*, int*, int*, int*, double*, int*, int*, int*, int*);
int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size; MPI_Comm_rank(MPI_COMM_WORLD, &rank); MPI_Comm_size(MPI_COMM_WORLD, &size);
  const char *file = argv[1]; int n = atoi(argv[2]), nb = atoi(argv[3]); const char *solver = argv[4]; int vectors = strcmp(argv[5], "vectors") == 0;
  int prow = 1, pcol = size; for (int c = 1; c * c <= size; c++) if (size % c == 0) prow = c; pcol = size / prow;
  int ctx; Cblacs_get(-1, 0, &ctx); Cblacs_gridinit(&ctx, "R", prow, pcol);
  int pr, pc, myr, myc; Cblacs_gridinfo(ctx, &pr, &pc, &myr, &myc);
  int zero = 0; int nr = numroc_(&n, &nb, &myr, &zero, &prow), nc = numroc_(&n, &nb, &myc, &zero, &pcol);
  int fd = open(file, O_RDONLY); off_t len = lseek(fd, 0, SEEK_END);
  char *map = mmap(0, len, PROT_READ, MAP_PRIVATE, fd, 0); const double *k = (const double *)(map + (len - (off_t)8 * n * n));
  double *a = malloc(sizeof(double) * (size_t)nr * nc + 8), *q = malloc(sizeof(double) * (size_t)nr * nc + 8), *ev = malloc(sizeof(double) * n);
  for (int j = 0; j < nc; j++) { int gj = (j / nb * pcol + myc) * nb + j % nb;
    for (int i = 0; i < nr; i++) { int gi = (i / nb * prow + myr) * nb + i % nb; a[(size_t)j * nr + i] = k[(size_t)gi * n + gj]; } }
  MPI_Barrier(MPI_COMM_WORLD); double t0 = MPI_Wtime(); int err = 0;
  if (solver[0] == '1' || solver[0] == '2') {
    if (elpa_init(20171201) != ELPA_OK) { fprintf(stderr, "elpa_init\n"); return 1; }
    elpa_t h = elpa_allocate(&err);
    elpa_set(h, "na", n, &err); elpa_set(h, "nev", n, &err); elpa_set(h, "local_nrows", nr, &err); elpa_set(h, "local_ncols", nc, &err);
    elpa_set(h, "nblk", nb, &err); elpa_set(h, "mpi_comm_parent", (int)MPI_Comm_c2f(MPI_COMM_WORLD), &err);
    elpa_set(h, "process_row", myr, &err); elpa_set(h, "process_col", myc, &err); elpa_set(h, "blacs_context", ctx, &err);
    if (elpa_setup(h) != ELPA_OK) { fprintf(stderr, "setup\n"); return 1; }
    elpa_set(h, "solver", solver[0] == '1' ? ELPA_SOLVER_1STAGE : ELPA_SOLVER_2STAGE, &err);
    if (vectors) elpa_eigenvectors(h, a, ev, q, &err); else elpa_eigenvalues(h, a, ev, &err);
    if (err != ELPA_OK) fprintf(stderr, "elpa error %d\n", err);
    elpa_deallocate(h, &err); elpa_uninit(&err);
  } else {
    int desc[9], info, one = 1, lld = nr > 1 ? nr : 1; descinit_(desc, &n, &n, &nb, &nb, &zero, &zero, &ctx, &lld, &info);
    char jobz = vectors ? 'V' : 'N', up = 'U', all = 'A'; double wq[3]; int iwq[3], m, nz; double vl = 0, vu = 0; int il = 1, iu = n, lwork = -1, liwork = -1;
    if (strcmp(solver, "pdsyevd") == 0) {
      pdsyevd_(&jobz, &up, &n, a, &one, &one, desc, ev, q, &one, &one, desc, wq, &lwork, iwq, &liwork, &info);
      lwork = (int)wq[0] * 2 + 100000; liwork = iwq[0] * 2 + 1000; double *w = malloc(8.0 * lwork); int *iw = malloc(4.0 * liwork);
      pdsyevd_(&jobz, &up, &n, a, &one, &one, desc, ev, q, &one, &one, desc, w, &lwork, iw, &liwork, &info);
    } else {
      pdsyevr_(&jobz, &all, &up, &n, a, &one, &one, desc, &vl, &vu, &il, &iu, &m, &nz, ev, q, &one, &one, desc, wq, &lwork, iwq, &liwork, &info);
      lwork = (int)wq[0] + 100000; liwork = iwq[0] + 1000; double *w = malloc(8.0 * lwork); int *iw = malloc(4.0 * liwork);
      pdsyevr_(&jobz, &all, &up, &n, a, &one, &one, desc, &vl, &vu, &il, &iu, &m, &nz, ev, q, &one, &one, desc, w, &lwork, iw, &liwork, &info);
    }
    if (info) fprintf(stderr, "info %d\n", info);
  }
  double t = MPI_Wtime() - t0;
  if (rank == 0) printf("%s %s nb=%d n=%d: %.2f s  (lambda_max %.6g, lambda_min %.6g)\n", solver, argv[5], nb, n, t, ev[n - 1], ev[0]);
  MPI_Finalize(); return 0;
}
