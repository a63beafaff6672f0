#!/usr/bin/env bash
# The Python package's tests (python/tests, pytest) in a virtual environment of their own.
# Builds nothing: runs the binary named by NTK_BIN, or else the repository's release, then
# debug build. Creates (once) the venv ${NTK_PY_VENV:-.build/python-venv} with numpy, pytest
# and the package (editable), flax (with jax) from PyPI; torch only from a CPU wheel found through PIP_FIND_LINKS
# (PyPI's default wheel brings several GB of CUDA libraries), else its test is skipped.
# The neural-tangents converter test uses the reference venv of scripts/reference
# (NTK_REF_VENV, default $HOME/.cache/ntk-reference-venv) when it exists.
# Usage: scripts/test-python.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
venv="${NTK_PY_VENV:-.build/python-venv}"
pip_quiet=(--quiet --disable-pip-version-check)

if [[ ! -x "$venv/bin/python" ]]; then
    "${NTK_PYTHON:-python3}" -m venv "$venv"
fi
py="$venv/bin/python"
"$py" -m pip install "${pip_quiet[@]}" "numpy>=1.22" pytest "setuptools>=64" wheel
installed="$("$py" -c 'import os, ntk; print(os.path.realpath(ntk.__file__))' 2>/dev/null || true)"
if [[ "$installed" != "$root/python/src/ntk/__init__.py" ]]; then
    "$py" -m pip install "${pip_quiet[@]}" --no-build-isolation -e ./python
fi

# Flax (with jax, CPU wheels from PyPI) for the test of from_flax on a real Flax model.
if ! "$py" -c 'import flax' 2>/dev/null; then
    "$py" -m pip install "${pip_quiet[@]}" flax || echo "test-python.sh: could not install flax; the test of from_flax with Flax itself will be skipped" >&2
fi

if ! "$py" -c 'import torch' 2>/dev/null; then
    wheel=""
    for dir in ${PIP_FIND_LINKS:-}; do
        for w in "$dir"/torch-*+cpu-*.whl; do [[ -f "$w" ]] && wheel="$w"; done
    done
    if [[ -n "$wheel" ]]; then
        "$py" -m pip install "${pip_quiet[@]}" "$wheel" || echo "test-python.sh: could not install $wheel; the torch test will be skipped" >&2
    else
        echo "test-python.sh: no CPU torch wheel in PIP_FIND_LINKS; the test of from_torch with torch itself will be skipped" >&2
    fi
fi

if [[ -z "${NTK_BIN:-}" ]]; then
    for candidate in .build/release/ntk .build/debug/ntk; do
        if [[ -x "$candidate" ]]; then NTK_BIN="$candidate"; break; fi
    done
fi
if [[ -z "${NTK_BIN:-}" || ! -x "$NTK_BIN" ]]; then
    echo "test-python.sh: no ntk binary (NTK_BIN='${NTK_BIN:-}'): build it with 'swift build -c release' or set NTK_BIN" >&2
    exit 1
fi
export NTK_BIN="$(cd "$(dirname "$NTK_BIN")" && pwd)/$(basename "$NTK_BIN")"
echo "test-python.sh: testing $NTK_BIN with $("$py" --version)"

source scripts/mpi-env.sh
status=0
"$py" -m pytest python/tests -rs "$@" || status=$?
if [[ $status -eq 5 ]]; then
    echo "test-python.sh: pytest ran no test" >&2
    exit 1
fi
exit "$status"
