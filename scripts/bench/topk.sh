#!/usr/bin/env bash
# Top-K eigenpairs: ntk's block Lanczos on the distributed kernel (`ntk gram --eigen-top K`,
# 2 ranks, no rank holds the kernel) against LAPACK's dsyevr with range 'I' (the K largest)
# on the same kernel.npy with as many OpenBLAS threads, in one run on the same cores.
# Prints both times, their ratio and the largest eigenvalue difference relative to λ_max.
#
# Usage: scripts/bench/topk.sh [N] [K] [RANKS]    (default 16000 32 2; N = 16000 writes a
#        2 GB kernel and dsyevr takes minutes). Builds ntk (release, .build-bench) and the
#        C benchmark; inputs and outputs in ${NTK_BENCH_WORKDIR:-/tmp/ntk-bench-topk}.
set -euo pipefail
cd "$(dirname "$0")/../.."
n="${1:-16000}" k="${2:-32}" ranks="${3:-2}"
scripts/setup.sh >&2
source scripts/mpi-env.sh
scratch="${NTK_BENCH_SCRATCH:-$(pwd)/.build-bench}"
swift build -c release --product ntk --scratch-path "$scratch" 2>&1 | tail -1 >&2
work="${NTK_BENCH_WORKDIR:-/tmp/ntk-bench-topk}"
mkdir -p "$work"
# shellcheck disable=SC2046
cc -O2 -o "$work/dsyev_bench" scripts/bench/dsyevd_bench.c $(pkg-config --cflags --libs lapacke openblas)
python3 -c "import numpy as np; np.save('$work/x.npy', np.random.default_rng(0).standard_normal(($n, 64)))"
rm -rf "$work/out"
echo "topk: machine $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; N = $n, d = 64, 3 x 512 relu, K = $k, $ranks ranks"
OPENBLAS_NUM_THREADS=1 mpirun -q --oversubscribe --bind-to none -np "$ranks" "$scratch/release/ntk" gram --data "$work/x.npy" \
    --depth 3 --width 512 --eigen-top "$k" --out "$work/out" --no-checkpoint --no-progress --quiet
python3 - "$work" "$k" "$ranks" <<'PY'
import json, subprocess, sys, os
import numpy as np
work, k, ranks = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = json.load(open(f"{work}/out/summary.json"))
ours = np.load(f"{work}/out/eigenvalues.npy")
env = dict(os.environ, OPENBLAS_NUM_THREADS=ranks)
out = subprocess.run([f"{work}/dsyev_bench", f"{work}/out/kernel.npy", "1", "N", str(k)], env=env, capture_output=True, text=True, check=True).stdout
ref = np.array([float(l.split("=")[1]) for l in out.splitlines() if l.startswith("value=")])
lapack = float([l for l in out.splitlines() if l.startswith("median_seconds=")][0].split("=")[1])
core = [l for l in out.splitlines() if l.startswith("corename=")][0]
kr = s.get("krylov", {})
print(f"ntk block Lanczos: eigen stage {s['seconds']['eigen']:.2f} s ({kr.get('cycles')} cycles, {kr.get('block_products')} products of "
      f"{kr.get('block_size')} vectors, max residual {kr.get('max_residual'):.1e}); whole run {s['seconds']['total']:.2f} s "
      f"(tiles {s['seconds']['tiles']:.2f} s)")
print(f"LAPACKE_dsyevr range 'I', {ranks} threads ({core}): {lapack:.2f} s")
print(f"ratio dsyevr / ntk eigen stage: {lapack / s['seconds']['eigen']:.1f}x; "
      f"max |Δλ| / λ_max = {np.max(np.abs(ours - ref)) / ref.max():.1e}")
PY
