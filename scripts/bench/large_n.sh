#!/usr/bin/env bash
# Large-N benchmark (issue "Large N"): `ntk gram --eigen none` against `ntk predict --solver cg`
# (t = inf and three finite times) on the same data, d = 64, 3 x 512 relu, k = 10, M test points,
# 2 ranks. Prints both runs' seconds, peak memory per rank (GNU time), the CG record and the ratio.
#
# Usage: scripts/bench/large_n.sh [N] [M] [WORKDIR]   (defaults 40000, 1000, /tmp/ntk-large-n)
# Needs a release build (swift build -c release --product ntk), numpy, GNU time, and about
# 8·N² bytes of disk for gram's kernel.npy (deleted after the run).
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$(pwd)"
n="${1:-40000}"; m="${2:-1000}"; work="${3:-/tmp/ntk-large-n}"
ntk="$root/.build/release/ntk"
[[ -x "$ntk" ]] || { echo "large_n.sh: build first: swift build -c release --product ntk" >&2; exit 1; }
source scripts/mpi-env.sh
mkdir -p "$work"; cd "$work"
python3 - "$n" "$m" <<'PY'
import sys
import numpy as np
n, m = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(40)
x = rng.standard_normal((n, 64)); w = rng.standard_normal((64, 10))
np.save('x.npy', x); np.save('y.npy', np.tanh(x @ w / 8))
xt = rng.standard_normal((m, 64)); np.save('xt.npy', xt); np.save('yt.npy', np.tanh(xt @ w / 8))
PY
rm -rf gram predict
common=(--depth 3 --width 512 --out-dim 10 --no-checkpoint --quiet)
/usr/bin/time -f "gram: %e s wall, %M KB peak per rank" mpirun -q --bind-to none -np 2 "$ntk" gram --data x.npy --eigen none "${common[@]}" --out gram
rm -f gram/kernel.npy
/usr/bin/time -f "predict: %e s wall, %M KB peak per rank" mpirun -q --bind-to none -np 2 "$ntk" predict --train x.npy --targets y.npy \
    --test xt.npy --test-targets yt.npy --solver cg --learning-rate 1 --times 1000,10000,100000,inf "${common[@]}" --out predict
python3 - <<'PY'
import json
g = json.load(open('gram/summary.json')); p = json.load(open('predict/summary.json'))
print('gram seconds', g['seconds']); print('predict seconds', p['seconds'])
print('solve', {k: v for k, v in p['cg'].items() if k not in ('estimated_errors', 'error_bounds', 'test_error_bounds')})
print('largest estimated error', max(max(r) for r in p['cg']['estimated_errors']))
# The proven bounds per time (relative to ||Y - f0||; at t = inf the relative residual).
for entry in json.load(open('predict/metrics.json'))['solver_errors']:
    print('bound', entry['time'], 'train', max(entry['relative']), 'test', max(entry.get('test_relative') or [float('nan')]))
print('predict / gram', p['seconds']['total'] / g['seconds']['total'])
PY
