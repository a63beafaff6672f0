#!/usr/bin/env bash
# Creates (idempotently) the Python reference environment used to generate test fixtures:
# neural-tangents 0.6.5 on jax/jaxlib 0.4.23, float64 capable, CPU only.
# Not a dependency of the ntk product. Prints the venv's python path on its last line.
#
#   NTK_REF_VENV   venv location (default: $HOME/.cache/ntk-reference-venv)
#   NTK_REF_PYTHON Python 3.11 interpreter to build the venv from (default: auto-detected)
set -euo pipefail

VENV="${NTK_REF_VENV:-$HOME/.cache/ntk-reference-venv}"
STAMP_VERSION="ntk-ref-2"   # bump when the pins below change

# Pinned so that `pip install` resolves the same, known-working set every time.
PINS=(
  "neural-tangents==0.6.5"
  "jax==0.4.23"
  "jaxlib==0.4.23"
  "numpy==1.26.4"
  "scipy==1.12.0"
  "scikit-learn==1.9.1"
  "tensorflow==2.15.1"   # neural-tangents requires tensorflow>=2.15; 2.15.x keeps numpy<2
  "tf2jax==0.3.6"
  "keras==2.15.0"
  "ml-dtypes==0.3.2"
  "protobuf==4.25.9"
  "frozendict==2.5.1"
  "opt_einsum==3.4.0"
  "dm-tree==0.1.10"
)

find_python() {
  if [[ -n "${NTK_REF_PYTHON:-}" ]]; then echo "$NTK_REF_PYTHON"; return; fi
  for c in /root/.pyenv/versions/3.11.7/bin/python3 "$HOME/.pyenv/versions/3.11.7/bin/python3" python3.11 python3; do
    if command -v "$c" >/dev/null 2>&1 && \
       "$c" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
      command -v "$c"; return
    fi
  done
  echo "setup.sh: need a Python 3.11 interpreter (set NTK_REF_PYTHON)" >&2
  exit 1
}

STAMP="$VENV/.ntk-reference-ok"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_VERSION" && -x "$VENV/bin/python" ]] && \
   "$VENV/bin/python" -c 'import neural_tangents, jax, sklearn' >/dev/null 2>&1; then
  echo "reference venv already set up" >&2
  echo "$VENV/bin/python"
  exit 0
fi

PY="$(find_python)"
echo "setup.sh: creating venv at $VENV with $PY" >&2
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade "pip==24.0" >&2
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}" >&2

TF_CPP_MIN_LOG_LEVEL=3 "$VENV/bin/python" - >&2 <<'PYEOF'
import jax
jax.config.update('jax_enable_x64', True)
import jax.numpy as jnp
import neural_tangents as nt
from neural_tangents import stax
print('jax', jax.__version__, 'neural_tangents', nt.__version__ if hasattr(nt, '__version__') else '?')
_, _, kernel_fn = stax.serial(stax.Dense(4), stax.Relu(), stax.Dense(1))
k = kernel_fn(jnp.eye(2), None, 'ntk')
assert k.dtype == jnp.float64, k.dtype
PYEOF

echo "$STAMP_VERSION" > "$STAMP"
echo "$VENV/bin/python"
