#!/usr/bin/env bash
# The whole test suite, multi-rank tests (real mpirun) included.
# Usage: scripts/test.sh [swift test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/mpi-env.sh
swift build --build-tests
# One test at a time: the multi-rank tests start several processes each on what may be a
# 2-core machine, and some assert that a failure is noticed within seconds.
swift test --skip-build --no-parallel "$@"
# The Python package (python/) against the debug build the Swift tests used.
NTK_BIN=.build/debug/ntk scripts/test-python.sh
