#!/usr/bin/env python3
"""Jitted JAX float64 full-batch gradient descent on the network and parameters of an
`ntk train` run: the reference `scripts/bench/train.sh` times `ntk train` against.

Run with the reference venv (scripts/reference/setup.sh). Prints one JSON object on stdout.

  train_jax.py --data X.npy --targets Y.npy --params P.npz --depth 3 --width 1024 \
      --out-dim 10 --learning-rate 1 --steps 100 [--w-std 1.414..] [--b-std 0.1] [--runs 3]

The network is ntk's shorthand MLP in the NTK parameterization: per dense layer
z = (W_std / sqrt(fan_in)) h W + b_std b with W (fan_in, fan_out) and b (fan_out,) the raw
arrays of P.npz (as `ntk init` writes them), relu between layers. The loss is ntk's,
(1/(2 N k)) ||f(X) - Y||^2, and one step is theta <- theta - eta grad. All steps run in one
jitted `lax.fori_loop` (compiled first, compile time reported apart); the timed runs start
from the same parameters. `loss_0` and `loss_final` let the caller check that it computed
what ntk computed (training.json's train_loss at step 0 and at the last step).
"""
import argparse
import json
import math
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402
import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--targets", required=True)
    p.add_argument("--params", required=True)
    p.add_argument("--depth", type=int, required=True)
    p.add_argument("--width", type=int, required=True)
    p.add_argument("--out-dim", type=int, required=True)
    p.add_argument("--learning-rate", type=float, required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--w-std", type=float, default=math.sqrt(2.0))
    p.add_argument("--b-std", type=float, default=0.1)
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()

    x = jnp.asarray(np.load(a.data), dtype=jnp.float64)
    y = jnp.asarray(np.load(a.targets), dtype=jnp.float64).reshape(x.shape[0], a.out_dim)
    raw = np.load(a.params)
    params = [(jnp.asarray(raw[f"W{l}"]), jnp.asarray(raw[f"b{l}"]).reshape(-1)) for l in range(a.depth + 1)]
    c = x.shape[0] * a.out_dim

    def forward(theta, h):
        for l, (w, b) in enumerate(theta):
            h = (a.w_std / math.sqrt(w.shape[0])) * (h @ w) + a.b_std * b
            if l < a.depth:
                h = jax.nn.relu(h)
        return h

    def loss(theta):
        r = forward(theta, x) - y
        return jnp.sum(r * r) / (2 * c)

    grad = jax.grad(loss)

    def step(_, theta):
        g = grad(theta)
        return [(w - a.learning_rate * gw, b - a.learning_rate * gb) for (w, b), (gw, gb) in zip(theta, g)]

    @jax.jit
    def train(theta, steps):
        return jax.lax.fori_loop(0, steps, step, theta)

    start = time.perf_counter()
    jax.block_until_ready(train(params, 1))
    compile_seconds = time.perf_counter() - start
    times = []
    final = None
    for _ in range(a.runs):
        start = time.perf_counter()
        final = jax.block_until_ready(train(params, a.steps))
        times.append(time.perf_counter() - start)
    print(json.dumps({
        "jax": jax.__version__, "devices": str(jax.devices()), "n": int(x.shape[0]), "steps": a.steps,
        "seconds": times, "median_seconds": statistics.median(times), "compile_seconds": compile_seconds,
        "loss_0": float(loss(params)), "loss_final": float(loss(final)),
    }))


if __name__ == "__main__":
    main()
