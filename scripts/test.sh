#!/usr/bin/env bash
# The whole test suite, multi-rank tests (real mpirun) included.
# Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/mpi-env.sh
swift build --build-tests
swift test --skip-build "$@"
