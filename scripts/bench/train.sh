#!/usr/bin/env bash
# `ntk train` against jitted JAX float64 full-batch gradient descent on the same network,
# parameters, data and cores (issue "The researcher's workflow"): 3 x WIDTH relu, k = 10,
# N digits, STEPS steps, learning rate 1. Prints the medians of RUNS runs each (ntk's
# training.json seconds.training; JAX's timed lax.fori_loop, compile excluded), their ratio,
# both runs' losses (they must agree: the same computation), and the floor the machine sets:
# the step's flops over twice the one-core dgemm peak.
#
# Usage: scripts/bench/train.sh [N] [WIDTH] [STEPS] [RUNS] [RANKS]   (defaults 300 1024 100 3 2)
# Needs a release build (swift build -c release --product ntk) and the reference venv
# (scripts/reference/setup.sh) for JAX.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$(pwd)"
n="${1:-300}"; width="${2:-1024}"; steps="${3:-100}"; runs="${4:-3}"; ranks="${5:-2}"
ntk="$root/.build/release/ntk"
py="${NTK_REF_VENV:-$HOME/.cache/ntk-reference-venv}/bin/python"
[[ -x "$ntk" ]] || { echo "train.sh: build first: swift build -c release --product ntk" >&2; exit 1; }
[[ -x "$py" ]] || { echo "train.sh: no JAX: run scripts/reference/setup.sh" >&2; exit 1; }
source scripts/mpi-env.sh
work="${TMPDIR:-/tmp}/ntk-train-bench"; mkdir -p "$work"; cd "$work"
"$py" - "$root" "$n" <<'PY'
import sys
import numpy as np
root, n = sys.argv[1], int(sys.argv[2])
x = np.load(f"{root}/data/digits.npy")[:n].astype(np.float64)
labels = np.load(f"{root}/data/digits_labels.npy")[:n]
np.save("x.npy", x); np.save("y.npy", np.eye(10)[labels])
PY
"$ntk" init --depth 3 --width "$width" --out-dim 10 --data x.npy --out params.npz --force >/dev/null
cc -O2 -o dgemm_peak "$root/scripts/bench/dgemm_peak.c" $(pkg-config --cflags --libs lapacke openblas)
peak=$(OPENBLAS_NUM_THREADS=1 ./dgemm_peak | awk -F'median_gflops=' '/square2000/ {split($2, a, " "); print a[1]}')
for r in $(seq "$runs"); do
    rm -rf "ntk$r"
    mpirun -q --bind-to none -np "$ranks" "$ntk" train --train x.npy --targets y.npy --params params.npz --depth 3 --width "$width" \
        --out-dim 10 --learning-rate 1 --steps "0,$steps" --no-checkpoint --quiet --out "ntk$r" >/dev/null
done
"$py" "$root/scripts/bench/train_jax.py" --data x.npy --targets y.npy --params params.npz --depth 3 --width "$width" --out-dim 10 \
    --learning-rate 1 --steps "$steps" --runs "$runs" > jax.json
"$py" - "$runs" "$n" "$width" "$steps" "$peak" "$ranks" <<'PY'
import json, statistics, sys
runs, n, width, steps, peak, ranks = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
ours = [json.load(open(f"ntk{r}/training.json")) for r in range(1, runs + 1)]
jax = json.load(open("jax.json"))
t_ntk = statistics.median(o["seconds"]["training"] for o in ours)
t_jax = jax["median_seconds"]
# Flops per step: forward 2NP' (P' the weights), the signals back through the hidden
# layers 2N(P' - d w), the weight gradients 2NP'.
d, k = 64, 10
weights = d * width + 2 * width * width + width * k
flops = steps * 2 * n * (3 * weights - d * width)
print(f"N {n}, 3 x {width} relu, k {k}, {steps} steps, {ranks} ranks; dgemm peak {peak:.1f} GFLOP/s per core")
print(f"ntk train:  median {t_ntk:.3f} s ({[round(o['seconds']['training'], 3) for o in ours]}), loss {ours[0]['records'][0]['train_loss']:.15g} -> {ours[0]['records'][-1]['train_loss']:.15g}")
print(f"JAX (jit):  median {t_jax:.3f} s ({[round(t, 3) for t in jax['seconds']]}), loss {jax['loss_0']:.15g} -> {jax['loss_final']:.15g}, compile {jax['compile_seconds']:.2f} s")
print(f"JAX / ntk:  {t_jax / t_ntk:.2f}")
floor = flops / (2 * peak * 1e9)
print(f"floor at twice the one-core dgemm peak: {floor:.3f} s ({flops / 1e9:.1f} GFLOP), so JAX / ntk can be at most {t_jax / floor:.2f}")
print(f"ntk at {flops / t_ntk / 1e9:.1f} GFLOP/s ({flops / t_ntk / 1e9 / (2 * peak):.0%} of twice the peak), JAX at {flops / t_jax / 1e9:.1f}")
PY
