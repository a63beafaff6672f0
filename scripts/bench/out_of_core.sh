#!/usr/bin/env bash
# Out-of-core benchmark (issue "Large N"): `ntk gram --eigen density --eigen-top 32
# --kernel-storage disk` at N = 60000 (a 28.8 GB kernel, larger than the development VM's
# 24 GiB), d = 64, 3 x 512 relu, k = 10 (mean kernel), 2 ranks. The top 32 eigenpairs come
# from block Lanczos and the density from stochastic Lanczos quadrature deflated by them, every
# product streaming each rank's panels of kernel.npy from disk. Prints the disk's sequential
# read bandwidth measured first (dd, O_DIRECT, one and two streams), then the run's seconds,
# peak memory per rank, Lanczos record, density estimates and the read bandwidth it reached.
#
# Usage: scripts/bench/out_of_core.sh [N] [WORKDIR] [extra ntk options...]
#        (defaults 60000, /tmp/ntk-out-of-core)
# Needs a release build (swift build -c release --product ntk), numpy, GNU time, and about
# 8·N² bytes of disk plus 4 GiB for the bandwidth test (both deleted after the run).
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$(pwd)"
n="${1:-60000}"; work="${2:-/tmp/ntk-out-of-core}"; shift $(( $# < 2 ? $# : 2 ))
ntk="$root/.build/release/ntk"
[[ -x "$ntk" ]] || { echo "out_of_core.sh: build first: swift build -c release --product ntk" >&2; exit 1; }
source scripts/mpi-env.sh
mkdir -p "$work"; cd "$work"
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; $(free -g | awk '/Mem:/ {print $2}') GiB"
# The disk: 4 GiB written with O_DIRECT, then read back with O_DIRECT in 8 MiB blocks by one
# and by two streams (what the two ranks do at once).
dd if=/dev/zero of=bandwidth.bin bs=8M count=512 oflag=direct status=none
one=$(dd if=bandwidth.bin of=/dev/null bs=8M iflag=direct 2>&1 | tail -1)
start=$(date +%s.%N)
dd if=bandwidth.bin of=/dev/null bs=8M iflag=direct count=256 status=none &
dd if=bandwidth.bin of=/dev/null bs=8M iflag=direct skip=256 status=none
wait
two=$(python3 -c "print(f'{4294967296 / ($(date +%s.%N) - $start) / 1e9:.2f} GB/s')")
rm -f bandwidth.bin
echo "disk, sequential O_DIRECT read: one stream $one; two streams $two"
python3 - "$n" <<'PY'
import sys
import numpy as np
n = int(sys.argv[1])
np.save('x.npy', np.random.default_rng(60).standard_normal((n, 64)))
PY
rm -rf gram
/usr/bin/time -f "gram: %e s wall, %M KB peak per rank" mpirun -q --bind-to none -np 2 "$ntk" gram --data x.npy \
    --depth 3 --width 512 --out-dim 10 --eigen density --eigen-top 32 --kernel-storage disk --no-checkpoint --quiet --out gram "$@"
python3 - <<'PY'
import json
s = json.load(open('gram/summary.json'))
print('seconds', {k: round(v, 2) for k, v in s['seconds'].items()})
print('kernel_storage', s['kernel_storage'], 'memory estimate', s['memory_estimate'])
print('krylov', s['krylov'])
d = s['density']
print('density', {k: d[k] for k in ('probes', 'steps', 'deflated', 'trace', 'effective_rank', 'participation_ratio', 'decay_exponent') if k in d})
o = s['out_of_core']
print('out_of_core', o)
print(f"read {o['bytes_read'] / 1e9:.1f} GB in {o['passes']} passes: {o['read_bytes_per_second'] / 1e9:.2f} GB/s while reading, "
      f"{o['stream_bytes_per_second'] / 1e9:.2f} GB/s with the products")
PY
rm -f gram/kernel.npy
