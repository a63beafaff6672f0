#!/usr/bin/env bash
# Installs the system packages ntk needs (Debian/Ubuntu), if any is missing.
# Usage: scripts/setup.sh        (uses sudo when not root)
set -euo pipefail
packages=(pkg-config libopenmpi-dev openmpi-bin libopenblas-dev liblapacke-dev libscalapack-openmpi-dev zlib1g-dev iproute2 libelpa-dev
          librsvg2-2 fonts-dejavu-core  # PNG copies of the plots (loaded at run time)
          slurmd slurmctld slurm-client munge)  # the last line: cluster/test-slurm.sh's one-node cluster
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# The Python package's tests (scripts/test-python.sh) make a venv: Debian's python3 needs
# python3-venv for that (ensurepip); a python3 of its own (pyenv) has it.
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then missing+=(python3 python3-venv); fi
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v swift >/dev/null || { echo "setup: swift is not on PATH (Swift 6.0 or later is needed)" >&2; exit 1; }
