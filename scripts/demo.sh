#!/usr/bin/env bash
# Installs what is missing, builds, and computes the NTK of the default network
# (2 hidden relu layers of width 512) on scikit-learn's digits (1797 x 64, bundled)
# on 2 MPI ranks.
# Usage: scripts/demo.sh [RANKS] [extra ntk gram flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
ranks="${1:-2}"
shift || true
scripts/setup.sh
source scripts/mpi-env.sh
swift build -c release --product ntk 2>&1 | tail -1
mpirun -q --oversubscribe --bind-to none -np "$ranks" .build/release/ntk gram \
    --data data/digits.npy --out out/digits --force "$@"
