#!/usr/bin/env bash
# rank_rss.sh PREFIX CMD [ARGS...]: runs CMD under GNU time, which writes the process's
# peak resident set size (KiB) to PREFIX.<MPI rank>. Used inside mpirun by bench.py, one
# wrapper per rank. The exit status is CMD's.
prefix="$1"
shift
exec /usr/bin/time -f %M -o "$prefix.${OMPI_COMM_WORLD_RANK:-0}" "$@"
