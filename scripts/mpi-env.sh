# Sourced by the scripts: Open MPI settings for running as root and on small machines.
# Open MPI refuses root unless both variables are set; CI runs as root.
if [[ $(id -u) -eq 0 ]]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
# One BLAS thread per rank: ranks already use every core.
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"
