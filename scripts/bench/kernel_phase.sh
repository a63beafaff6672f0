#!/usr/bin/env bash
# The kernel phase at scale: `ntk gram --eigen none` (every rank writes kernel.npy, the
# default checkpoint on) at N = 16000, d = 64, 3 x 512 relu, k = 1, on 1 and 2 ranks, runs
# interleaved; against the machine's own limit, the one-core dgemm peak (scripts/bench/
# dgemm_peak.c, best BLAS kernel, measured in the same run) and a 2-thread dgemm.
# Prints each run's stages, the medians, the useful GFLOP/s (summary.json's `work`: pair
# products over i <= j and the per-sample passes), the fraction of two cores' peak, and the
# speed-up of 2 ranks over 1. With NTK_BASELINE=/path/to/ntk, that binary's runs too.
#
# Usage: scripts/bench/kernel_phase.sh [N] [RUNS]    (default 16000 3; N = 16000 writes a
#        2 GB kernel.npy per run). Builds ntk (release, .build-bench); inputs and outputs in
#        ${NTK_BENCH_WORKDIR:-/tmp/ntk-bench-kernel}.
set -euo pipefail
cd "$(dirname "$0")/../.."
n="${1:-16000}" runs="${2:-3}"
scripts/setup.sh >&2
source scripts/mpi-env.sh
scratch="${NTK_BENCH_SCRATCH:-$(pwd)/.build-bench}"
swift build -c release --product ntk --scratch-path "$scratch" 2>&1 | tail -1 >&2
work="${NTK_BENCH_WORKDIR:-/tmp/ntk-bench-kernel}"
mkdir -p "$work"
# shellcheck disable=SC2046
cc -O2 -o "$work/dgemm_peak" scripts/bench/dgemm_peak.c $(pkg-config --cflags --libs lapacke openblas)
python3 -c "import numpy as np; np.save('$work/x.npy', np.random.default_rng(0).standard_normal(($n, 64)))"
"$scratch/release/ntk" init --depth 3 --width 512 --input-width 64 --seed 0 --out "$work/p.npz" --force > /dev/null
echo "kernel_phase: machine $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; N = $n, d = 64, 3 x 512 relu, k = 1, --eigen none, $runs runs"
peak=$(for core in SkylakeX Haswell ""; do
    env ${core:+OPENBLAS_CORETYPE=$core} OPENBLAS_NUM_THREADS=1 "$work/dgemm_peak" 2>/dev/null | sed -n 's/^shape=square2000 .*median_gflops=\([0-9.]*\).*/\1/p'
done | sort -g | tail -1)
peak2=$(OPENBLAS_NUM_THREADS=2 "$work/dgemm_peak" 2>/dev/null | sed -n 's/^shape=square2000 .*median_gflops=\([0-9.]*\).*/\1/p')
echo "dgemm n = 2000: one core $peak GFLOP/s (best kernel), two threads $peak2 GFLOP/s"

binaries=("ntk=$scratch/release/ntk")
[[ -n ${NTK_BASELINE:-} ]] && binaries+=("baseline=$NTK_BASELINE")
: > "$work/runs.txt"
for ((r = 1; r <= runs; r++)); do
    for ranks in 1 2; do
        for entry in "${binaries[@]}"; do
            name=${entry%%=*} binary=${entry#*=}
            rm -rf "$work/out"
            OPENBLAS_NUM_THREADS=1 mpirun -q --oversubscribe --bind-to none -np "$ranks" "$binary" gram --data "$work/x.npy" \
                --depth 3 --width 512 --params "$work/p.npz" --eigen none --out "$work/out" --no-progress --quiet > /dev/null
            python3 - "$work/out/summary.json" "$name" "$ranks" >> "$work/runs.txt" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(json.dumps(dict(name=sys.argv[2], ranks=int(sys.argv[3]), seconds=s["seconds"], work=s.get("work"), n=s["n"])))
PY
            tail -1 "$work/runs.txt" | python3 -c "
import json, sys
r = json.loads(sys.stdin.read()); s = r['seconds']
print(f\"  {r['name']} {r['ranks']} rank(s): total {s['total']:.2f} s (tiles {s['tiles']:.2f}, products {s['tile_products']:.2f}, \"
      f\"writing in the loop {s.get('write_tiles', 0):.2f}, final sync {s['gather']:.2f})\")"
        done
    done
done
python3 - "$work/runs.txt" "$peak" "$peak2" <<'PY'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
peak, peak2 = float(sys.argv[2]), float(sys.argv[3])
for name in sorted({r["name"] for r in runs}):
    medians = {}
    for ranks in (1, 2):
        mine = [r for r in runs if r["name"] == name and r["ranks"] == ranks]
        if not mine:
            continue
        total = statistics.median(r["seconds"]["total"] for r in mine)
        medians[ranks] = total
        w, n = mine[0]["work"], mine[0]["n"]
        if w:
            pairs = 2 * w["pair_multiply_adds"] * n * (n + 1) / 2 / 1e9
            passes = 2 * w["per_sample_multiply_adds"] * n / 1e9
            rate = (pairs + passes) / total
            print(f"{name}, {ranks} rank(s): median total {total:.2f} s; {pairs + passes:.1f} GFLOP useful ({pairs:.1f} pair products + "
                  f"{passes:.1f} per-sample passes) = {rate:.1f} GFLOP/s = {100 * rate / (ranks * peak):.1f}% of {ranks} x {peak} "
                  f"(pair products alone {100 * pairs / total / (ranks * peak):.1f}%)"
                  + (f"; {100 * rate / peak2:.1f}% of the 2-thread dgemm" if ranks == 2 else ""))
        else:
            print(f"{name}, {ranks} rank(s): median total {total:.2f} s")
    if 1 in medians and 2 in medians:
        print(f"{name}: 2 ranks {medians[1] / medians[2]:.2f}x 1 rank")
PY
