// Header-only shim over ELPA (Debian's libelpa-dev 2022.11: the MPI build, generic
// kernels, no OpenMP) for Swift. ELPA's C API selects its routines with _Generic macros,
// which Swift cannot import; the one function below calls the double-precision real
// routines by name. No stable API: only the DistributedEigen module may use it.
#ifndef NTK_CELPA_H
#define NTK_CELPA_H

#include <elpa/elpa.h>

/// Eigendecomposes the symmetric n x n matrix `a`, distributed block-cyclically with
/// block size nb over a process grid (this process at (process_row, process_col) holding
/// local_rows x local_cols values, column-major, as ScaLAPACK), with ELPA's one-stage
/// (stage 1) or two-stage (stage 2) solver. All n eigenvalues go to `ev` (ascending) on
/// every process; with `vectors`, the eigenvectors to `q` (same layout as `a`). `a` is
/// destroyed. `comm` is the Fortran handle of the communicator over the grid's processes.
/// Collective. Returns ELPA_OK (0) or an ELPA error code (see ntk_elpa_error_string).
static inline int ntk_elpa_solve(int n, int nb, int local_rows, int local_cols, int comm, int process_row,
                                 int process_col, int blacs_context, int stage, int vectors,
                                 double *a, double *ev, double *q) {
    // Once per process: ELPA does not support initializing again after elpa_uninit.
    static int initialized = 0;
    if (!initialized) {
        if (elpa_init(20171201) != ELPA_OK) return ELPA_ERROR_API_VERSION;
        initialized = 1;
    }
    int error = ELPA_OK;
    elpa_t handle = elpa_allocate(&error);
    if (error != ELPA_OK) return ELPA_ERROR;
    int status = ELPA_OK;
#define NTK_ELPA_SET(name, value) \
    if (status == ELPA_OK) { elpa_set(handle, name, value, &error); if (error != ELPA_OK) status = error; }
    NTK_ELPA_SET("na", n)
    NTK_ELPA_SET("nev", n)
    NTK_ELPA_SET("local_nrows", local_rows)
    NTK_ELPA_SET("local_ncols", local_cols)
    NTK_ELPA_SET("nblk", nb)
    NTK_ELPA_SET("mpi_comm_parent", comm)
    NTK_ELPA_SET("process_row", process_row)
    NTK_ELPA_SET("process_col", process_col)
    NTK_ELPA_SET("blacs_context", blacs_context)
    if (status == ELPA_OK && elpa_setup(handle) != ELPA_OK) status = ELPA_ERROR_SETUP;
    NTK_ELPA_SET("solver", stage == 1 ? ELPA_SOLVER_1STAGE : ELPA_SOLVER_2STAGE)
#undef NTK_ELPA_SET
    if (status == ELPA_OK) {
        if (vectors) elpa_eigenvectors_a_h_a_d(handle, a, ev, q, &error);
        else elpa_eigenvalues_a_h_a_d(handle, a, ev, &error);
        status = error;
    }
    elpa_deallocate(handle, &error);
    return status;
}

/// ELPA's text for an error code.
static inline const char *ntk_elpa_error_string(int code) { return elpa_strerr(code); }

#endif
