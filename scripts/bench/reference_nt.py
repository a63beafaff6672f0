#!/usr/bin/env python3
"""neural-tangents' empirical NTK on the same inputs and parameters as an ntk run.

Run with the reference venv (scripts/reference/setup.sh). Prints one JSON object on stdout.

  reference_nt.py --data X.npy --params P.npz --depth 3 --width 512 --out-dim 1 \
      [--activation relu] [--w-std 1.414..] [--b-std 0.1] [--runs 3] [--batch 0] \
      [--budget 300] [--compare kernel.npy]

The network is stax.serial([Dense(width, W_std, b_std, 'ntk'), Relu()] * depth,
Dense(k, W_std, b_std, 'ntk')) with the raw arrays of P.npz put into the stax params
(W{l} as (fan_in, fan_out), b{l} reshaped to (1, fan_out)), float64
(jax_enable_x64), implementation STRUCTURED_DERIVATIVES, vmap_axes=0, trace_axes=(-1,)
(the mean over the k outputs, like ntk's --output-kernel mean), jitted.

--batch 0 (default) computes the whole N x N kernel in one jitted call, AOT-compiled
first (compile time reported apart). --batch B > 0 uses nt.batch(fn, B) (B must divide
N); its compile time is the first call minus the median of the timed calls.
Both compute all N^2 pairs, as a neural-tangents user gets them.

Timed runs: up to --runs, but no new run starts once --budget seconds of timed runs
have passed (at least one run is always made); 'runs_done' says how many ran.
"""
import argparse
import json
import math
import os
import resource
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402
import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import neural_tangents as nt  # noqa: E402
from neural_tangents import stax  # noqa: E402

ACTIVATIONS = {"relu": stax.Relu, "erf": stax.Erf, "identity": stax.Identity}


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--params", required=True)
    p.add_argument("--depth", type=int, required=True)
    p.add_argument("--width", type=int, required=True)
    p.add_argument("--out-dim", type=int, default=1)
    p.add_argument("--activation", default="relu", choices=sorted(ACTIVATIONS))
    p.add_argument("--w-std", type=float, default=math.sqrt(2.0))
    p.add_argument("--b-std", type=float, default=0.1)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--batch", type=int, default=0)
    p.add_argument("--budget", type=float, default=300.0)
    p.add_argument("--compare")
    a = p.parse_args()

    x = jnp.asarray(np.load(a.data).astype(np.float64))
    n = x.shape[0]
    P = np.load(a.params)
    layers, params = [], []
    for l in range(a.depth + 1):
        width = a.width if l < a.depth else a.out_dim
        layers.append(stax.Dense(width, W_std=a.w_std, b_std=a.b_std, parameterization="ntk"))
        params.append((jnp.asarray(P[f"W{l}"], dtype=jnp.float64),
                       jnp.asarray(P[f"b{l}"], dtype=jnp.float64).reshape(1, -1)))
        if l < a.depth:
            layers.append(ACTIVATIONS[a.activation]())
            params.append(())
    _, apply_fn, _ = stax.serial(*layers)
    fn = nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), vmap_axes=0,
                             implementation=nt.NtkImplementation.STRUCTURED_DERIVATIVES)

    result = {"tool": "neural-tangents", "version": "0.6.5", "jax": jax.__version__,
              "implementation": "STRUCTURED_DERIVATIVES", "dtype": "float64", "n": n,
              "pairs_computed": n * n, "devices": [str(d) for d in jax.devices()]}
    if a.batch:
        if n % a.batch:
            sys.exit(f"--batch {a.batch} must divide N = {n}")
        result["mode"] = f"nt.batch(batch_size={a.batch})"
        batched = nt.batch(fn, batch_size=a.batch, store_on_device=False)
        run = lambda: np.asarray(batched(x, None, params))  # noqa: E731
        t0 = time.perf_counter()
        kernel = run()
        first = time.perf_counter() - t0
    else:
        result["mode"] = "one jitted call over all N x N"
        t0 = time.perf_counter()
        compiled = jax.jit(fn).lower(x, None, params).compile()
        result["compile_seconds"] = time.perf_counter() - t0
        run = lambda: np.asarray(compiled(x, None, params).block_until_ready())  # noqa: E731
        t0 = time.perf_counter()
        kernel = run()   # warm-up execution (not counted)
        result["warmup_seconds"] = time.perf_counter() - t0

    times, cpu = [], []
    spent = 0.0
    while len(times) < max(1, a.runs) and (not times or spent < a.budget):
        c0, t0 = cpu_seconds(), time.perf_counter()
        kernel = run()
        dt = time.perf_counter() - t0
        times.append(dt)
        cpu.append((cpu_seconds() - c0) / dt)
        spent += dt
    result["seconds"] = times
    result["median_seconds"] = statistics.median(times)
    result["cpu_per_wall"] = statistics.median(cpu)
    result["runs_done"] = len(times)
    result["capped"] = len(times) < a.runs
    if a.batch:
        result["compile_seconds"] = max(0.0, first - result["median_seconds"])
        result["compile_note"] = "first call minus median call"
    result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if a.compare and os.path.exists(a.compare):
        ref = np.load(a.compare)
        kernel = kernel.reshape(ref.shape)
        result["max_abs_diff_over_max"] = float(np.abs(kernel - ref).max() / np.abs(ref).max())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
