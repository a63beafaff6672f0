// Header-only shim over Open MPI for Swift.
//
// Open MPI's handles (MPI_COMM_WORLD, MPI_DOUBLE, MPI_SUM, ...) and MPI_IN_PLACE are
// macros that Swift cannot import; each gets one static inline function here. This
// header has no stable API: only the MPI module above it may use it.
#ifndef NTK_CMPI_H
#define NTK_CMPI_H

#include <mpi.h>
#include <stdint.h>

static inline MPI_Comm ntk_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Comm ntk_mpi_comm_null(void) { return MPI_COMM_NULL; }
// The Fortran handle of a communicator (what Fortran libraries such as ELPA take).
static inline int ntk_mpi_comm_c2f(MPI_Comm comm) { return (int)MPI_Comm_c2f(comm); }

static inline MPI_Datatype ntk_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype ntk_mpi_int64(void) { return MPI_INT64_T; }
static inline MPI_Datatype ntk_mpi_int32(void) { return MPI_INT32_T; }
static inline MPI_Datatype ntk_mpi_byte(void) { return MPI_BYTE; }

static inline MPI_Op ntk_mpi_op_sum(void) { return MPI_SUM; }
static inline MPI_Op ntk_mpi_op_max(void) { return MPI_MAX; }
static inline MPI_Op ntk_mpi_op_min(void) { return MPI_MIN; }

static inline MPI_Errhandler ntk_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline void *ntk_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline int ntk_mpi_success(void) { return MPI_SUCCESS; }
static inline int ntk_mpi_max_error_string(void) { return MPI_MAX_ERROR_STRING; }
static inline int ntk_mpi_thread_funneled(void) { return MPI_THREAD_FUNNELED; }
static inline MPI_Status *ntk_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }

static inline MPI_Request ntk_mpi_request_null(void) { return MPI_REQUEST_NULL; }
static inline int ntk_mpi_comm_type_shared(void) { return MPI_COMM_TYPE_SHARED; }
static inline MPI_Info ntk_mpi_info_null(void) { return MPI_INFO_NULL; }
static inline int ntk_mpi_mode_nocheck(void) { return MPI_MODE_NOCHECK; }
static inline int ntk_mpi_undefined(void) { return MPI_UNDEFINED; }
static inline int ntk_mpi_any_source(void) { return MPI_ANY_SOURCE; }
static inline MPI_Status *ntk_mpi_statuses_ignore(void) { return MPI_STATUSES_IGNORE; }

static inline int ntk_mpi_any_tag(void) { return MPI_ANY_TAG; }
// The largest tag the communicator's MPI library accepts (MPI_TAG_UB, at least 32767).
static inline int ntk_mpi_tag_ub(MPI_Comm comm) {
    int *value = NULL;
    int flag = 0;
    if (MPI_Comm_get_attr(comm, MPI_TAG_UB, &value, &flag) != MPI_SUCCESS || !flag || value == NULL) return 32767;
    return *value;
}

#endif
