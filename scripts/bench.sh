#!/usr/bin/env bash
# Speed benchmark of `ntk gram`: builds ntk (release, in its own scratch folder) and two
# small C programs, then prints per configuration the median seconds per stage, useful
# GFLOP/s (structured cost model), the fraction of the measured one-core dgemm peak, the
# peak memory per rank, and — when the reference environments exist — neural-tangents'
# (and torch.func's) time on the same inputs and parameters. See scripts/bench/README.md.
#
# Usage: scripts/bench.sh [--quick] [--runs R] [--configs 1,4] [--no-reference] [--no-torch]
#                         [--workdir DIR] [--nt-budget S] [--torch-budget S] [--max-wait S] [--other-load C]
#   --quick          small N and widths, R=1 (a smoke run, under a minute once built)
#   --runs R         runs per measurement (default 3; median reported)
#   --configs LIST   subset of 1..6 (default 1-5; 6 is the CNN benchmark of docs/examples/digits-cnn.json,
#                    several minutes with neural-tangents at N = 1797)
#   --no-reference   skip neural-tangents and torch.func
#   --no-torch       skip torch.func only
#   --workdir DIR    inputs and outputs (default /tmp/ntk-bench)
# Environment: NTK_BENCH_SCRATCH (build folder, default .build-bench), NTK_REF_VENV,
# NTK_BENCH_TORCH_PYTHON, NTK_BENCH_DATA_PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

for arg in "$@"; do
    case "$arg" in
        -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    esac
done

scripts/setup.sh
source scripts/mpi-env.sh
if [[ ! -x /usr/bin/time ]]; then
    echo "bench: installing GNU time (peak memory per rank)" >&2
    sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq time >/dev/null
fi

scratch="${NTK_BENCH_SCRATCH:-$root/.build-bench}"
echo "bench: building ntk (release, --scratch-path $scratch)" >&2
build() { swift build -c release --product ntk --scratch-path "$scratch" 2>&1 | tail -3 >&2; }
# Another engineer saving a file mid-build makes swift build fail; try once more.
build || { sleep 10; build; }
ntk="$scratch/release/ntk"
[[ -x "$ntk" ]] || { echo "bench: no binary at $ntk" >&2; exit 1; }

bin="$scratch/bench-bin"
mkdir -p "$bin"
flags=$(pkg-config --cflags --libs lapacke openblas)
for prog in dgemm_peak dsyevd_bench; do
    if [[ ! -x "$bin/$prog" || scripts/bench/$prog.c -nt "$bin/$prog" ]]; then
        # shellcheck disable=SC2086
        cc -O2 -o "$bin/$prog" "scripts/bench/$prog.c" $flags
    fi
done

# A python with numpy for the input data.
data_py="${NTK_BENCH_DATA_PYTHON:-}"
ref_py="${NTK_REF_VENV:-$HOME/.cache/ntk-reference-venv}/bin/python"
if [[ -z "$data_py" ]]; then
    for c in python3 "$ref_py"; do
        if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import numpy' 2>/dev/null; then data_py="$(command -v "$c")"; break; fi
    done
fi
[[ -n "$data_py" ]] || { echo "bench: need a python with numpy (set NTK_BENCH_DATA_PYTHON)" >&2; exit 1; }

extra=()
if [[ -x "$ref_py" ]]; then extra+=(--nt-python "$ref_py"); fi
torch_py="${NTK_BENCH_TORCH_PYTHON:-}"
if [[ -z "$torch_py" ]]; then
    for c in "$HOME/.cache/ntk-bench-torch-venv/bin/python" "$ref_py" python3; do
        if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import torch, numpy' 2>/dev/null; then torch_py="$(command -v "$c")"; break; fi
    done
fi
if [[ -n "$torch_py" ]]; then extra+=(--torch-python "$torch_py"); fi

exec "$data_py" scripts/bench/bench.py --ntk "$ntk" --dgemm "$bin/dgemm_peak" --dsyevd "$bin/dsyevd_bench" \
    --data-python "$data_py" "${extra[@]}" "$@"
