#!/usr/bin/env bash
# Which architecture? A batch sweep over depth, width and activation on the bundled
# digits data: for each network, ntk predict computes the NTK on 2 ranks and prints its
# conditioning, centred kernel-target alignment and the predicted test error of the
# trained (linearized) network; a table compares them at the end.
#
# Usage: scripts/sweep.sh [RANKS] [KERNEL]     KERNEL: empirical (default) or analytic
# Needs: a built ntk (swift build -c release), python3 with numpy (for the split and
# the table). Environment: DEPTHS, WIDTHS, ACTIVATIONS, NTRAIN, NTEST, LR override the
# defaults below; SWEEP_DIR is where the inputs and every run's results go (default: a new
# directory under ${TMPDIR:-/tmp}, printed at the start; never inside the repository).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/mpi-env.sh
ranks="${1:-2}"
kernel="${2:-empirical}"
depths="${DEPTHS:-1 2 3}"
widths="${WIDTHS:-256 1024}"
activations="${ACTIVATIONS:-relu erf tanh}"
ntrain="${NTRAIN:-600}"
ntest="${NTEST:-400}"
lr="${LR:-1}"
ntk=.build/release/ntk
[[ -x $ntk ]] || swift build -c release --product ntk >/dev/null
work="${SWEEP_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/ntk-sweep.XXXXXX")}"
mkdir -p "$work"
echo "sweep: results in $work" >&2

python3 - "$work" "$ntrain" "$ntest" <<'PY'
import sys, numpy as np
work, ntrain, ntest = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
x = np.load("data/digits.npy").astype(np.float64)
y = np.load("data/digits_labels.npy")
order = np.random.default_rng(0).permutation(len(x))
train, test = order[:ntrain], order[ntrain:ntrain + ntest]
np.save(f"{work}/x_train.npy", x[train]); np.save(f"{work}/y_train.npy", y[train])
np.save(f"{work}/x_test.npy", x[test]); np.save(f"{work}/y_test.npy", y[test])
PY

for depth in $depths; do
  for width in $widths; do
    for activation in $activations; do
      name="d${depth}-w${width}-${activation}"
      echo "sweep: $name" >&2
      w_std=1.4142135623730951
      [[ $activation == relu ]] || w_std=1.5
      mpirun -q --oversubscribe --bind-to none -np "$ranks" "$ntk" predict \
        --train "$work/x_train.npy" --targets "$work/y_train.npy" \
        --test "$work/x_test.npy" --test-targets "$work/y_test.npy" \
        --depth "$depth" --width "$width" --activation "$activation" --w-std "$w_std" --b-std 0.1 \
        --out-dim 10 --kernel "$kernel" --learning-rate "$lr" --times 100,inf \
        --out "$work/$name" --force --quiet
    done
  done
done

python3 - "$work" <<'PY'
import json, os, sys
work = sys.argv[1]
rows = []
for name in sorted(os.listdir(work)):
    path = os.path.join(work, name)
    if not os.path.isfile(os.path.join(path, "summary.json")):
        continue
    s = json.load(open(os.path.join(path, "summary.json")))
    m = json.load(open(os.path.join(path, "metrics.json")))["times"]
    d = s["diagnostics"]
    final = m[-1]
    rows.append((name, d.get("condition_number"), d.get("centered_kernel_target_alignment"), d.get("effective_rank"),
                 s["max_stable_learning_rate"], m[0].get("test_accuracy"), final.get("test_mse"), final.get("test_accuracy")))
fmt = lambda v, f: "-" if v is None else f % v
print(f"{'network':<18} {'cond':>10} {'c-align':>8} {'eff.rank':>8} {'max lr':>8} {'acc@t=100':>9} {'test MSE':>9} {'test acc':>8}")
for r in sorted(rows, key=lambda r: -(r[7] or 0)):
    print(f"{r[0]:<18} {fmt(r[1], '%10.3g')} {fmt(r[2], '%8.3f')} {fmt(r[3], '%8.2f')} {fmt(r[4], '%8.3g')} {fmt(r[5], '%9.3f')} {fmt(r[6], '%9.4f')} {fmt(r[7], '%8.3f')}")
print("(test MSE and accuracy at t = inf: kernel regression with the NTK; sorted by test accuracy)")
PY
