#!/usr/bin/env bash
# Optional: a CPU-only torch venv for the torch.func comparison of scripts/bench.sh.
# Installs only a CPU wheel ("+cpu") that pip finds through PIP_FIND_LINKS (a local wheel
# folder); PyPI's default torch wheel is ~540 MB by itself and pulls several GB of CUDA
# packages, so it is not installed. Prints the venv's python on its last line.
#   NTK_BENCH_TORCH_VENV  venv location (default: $HOME/.cache/ntk-bench-torch-venv)
set -euo pipefail
venv="${NTK_BENCH_TORCH_VENV:-$HOME/.cache/ntk-bench-torch-venv}"
if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c 'import torch, numpy' 2>/dev/null; then
    echo "$venv/bin/python"; exit 0
fi
wheel=""
for dir in ${PIP_FIND_LINKS:-}; do
    for w in "$dir"/torch-*+cpu-*.whl; do [[ -f "$w" ]] && wheel="$w"; done
done
if [[ -z "$wheel" ]]; then
    echo "setup-torch.sh: no CPU torch wheel in PIP_FIND_LINKS (${PIP_FIND_LINKS:-unset}); not installing PyPI's CUDA build" >&2
    exit 1
fi
tag=$(basename "$wheel" | sed -E 's/.*-(cp[0-9]+)-cp[0-9]+-.*/\1/')   # e.g. cp311
py=""
for c in "python${tag:2:1}.${tag:3}" "$HOME/.pyenv/versions/${tag:2:1}.${tag:3}"*/bin/python3 python3; do
    if command -v "$c" >/dev/null 2>&1 && [[ "$("$c" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')" == "$tag" ]]; then
        py="$(command -v "$c")"; break
    fi
done
[[ -n "$py" ]] || { echo "setup-torch.sh: need a Python matching $tag for $wheel" >&2; exit 1; }
"$py" -m venv "$venv"
"$venv/bin/pip" install --quiet "$wheel" "numpy<2" >&2
"$venv/bin/python" -c 'import torch; print("torch", torch.__version__)' >&2
echo "$venv/bin/python"
