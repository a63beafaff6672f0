#!/usr/bin/env python3
"""torch.func's empirical NTK (the tutorial's Jacobian contraction) on the same inputs and
parameters as an ntk run. Optional: needs a python with torch (CPU). Prints one JSON object.

  reference_torch.py --data X.npy --params P.npz --depth 3 --width 512 --out-dim 1 \
      [--w-std 1.414..] [--b-std 0.1] [--tile B] [--budget 120] [--threads 2] [--compare kernel.npy]

The network is the ntk parameterization written out (h = W_std/sqrt(n_in) z @ W + b_std b,
relu), float64. Per-sample Jacobians come from torch.func.vmap(torch.func.jacrev(f)) over
a block of B samples; the kernel tile is sum over parameter tensors of J_I J_J^T (the
tutorial's 'jacobian contraction', explicit: 2 P flops per pair and output), divided by k
(the mean over outputs, as neural-tangents' default). Memory bounds the block: B is
chosen so that one block of Jacobians is at most ~2.5 GB. Only the tiles with I <= J
are computed (the kernel is symmetric; the tutorial itself computes all N^2 pairs).
Row blocks' Jacobians are kept for the row; column blocks' are recomputed per tile.

--budget S: no new tile starts after S seconds; then the result is 'capped' and
'projected_seconds' extrapolates linearly by the fraction of pairs done (a projection,
not a measurement).
"""
import argparse
import json
import math
import os
import resource
import time

import numpy as np
import torch
from torch.func import jacrev, vmap


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--params", required=True)
    p.add_argument("--depth", type=int, required=True)
    p.add_argument("--width", type=int, required=True)
    p.add_argument("--out-dim", type=int, default=1)
    p.add_argument("--w-std", type=float, default=math.sqrt(2.0))
    p.add_argument("--b-std", type=float, default=0.1)
    p.add_argument("--tile", type=int, default=0)
    p.add_argument("--budget", type=float, default=120.0)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--compare")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_default_dtype(torch.float64)

    x = torch.from_numpy(np.load(a.data).astype(np.float64))
    n = x.shape[0]
    P = np.load(a.params)
    params = []
    for l in range(a.depth + 1):
        params.append(torch.from_numpy(np.ascontiguousarray(P[f"W{l}"], dtype=np.float64)))
        params.append(torch.from_numpy(np.ascontiguousarray(P[f"b{l}"], dtype=np.float64)))
    params = tuple(params)
    k = a.out_dim
    count = sum(t.numel() for t in params)

    def f(ps, xi):
        z = xi
        for l in range(a.depth + 1):
            W, b = ps[2 * l], ps[2 * l + 1]
            z = (a.w_std / math.sqrt(W.shape[0])) * (z @ W) + a.b_std * b
            if l < a.depth:
                z = torch.relu(z)
        return z  # (k,)

    jac = vmap(jacrev(f), in_dims=(None, 0))

    def jacobians(lo, hi):
        js = jac(params, x[lo:hi])  # tuple of (B, k, *shape)
        return [j.reshape(hi - lo, -1) for j in js]  # (B, k * numel)

    B = a.tile or max(8, min(n, int(2.5e9 // (8 * k * count))))
    blocks = [(s, min(n, s + B)) for s in range(0, n, B)]
    jacobians(0, min(n, 8))  # warm-up (not counted)

    kernel = np.zeros((n, n))
    done_pairs, total_pairs = 0, n * (n + 1) // 2
    capped = False
    c0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    with torch.no_grad():
        for bi, (r0, r1) in enumerate(blocks):
            if capped:
                break
            jr = jacobians(r0, r1)
            for (c0_, c1_) in blocks[bi:]:
                if time.perf_counter() - t0 > a.budget:
                    capped = True
                    break
                jc = jr if c0_ == r0 else jacobians(c0_, c1_)
                tile = sum(u @ v.T for u, v in zip(jr, jc)) / k
                kernel[r0:r1, c0_:c1_] = tile.numpy()
                rows, cols = r1 - r0, c1_ - c0_
                done_pairs += rows * (rows + 1) // 2 if c0_ == r0 else rows * cols
                del jc
            del jr
    dt = time.perf_counter() - t0
    c1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (c1.ru_utime - c0.ru_utime + c1.ru_stime - c0.ru_stime) / dt
    result = {"tool": "torch.func", "version": torch.__version__, "method": "vmap(jacrev) + J J^T per tile (explicit)",
              "dtype": "float64", "threads": a.threads, "n": n, "parameters": count, "tile": B,
              "pairs_done": done_pairs, "pairs_total": total_pairs, "seconds": dt, "cpu_per_wall": cpu,
              "capped": capped, "max_rss_mb": c1.ru_maxrss / 1024}
    if capped:
        result["projected_seconds"] = dt * total_pairs / max(1, done_pairs)
    elif a.compare and os.path.exists(a.compare):
        ref = np.load(a.compare)
        upper = np.triu(kernel)
        result["max_abs_diff_over_max"] = float(np.abs(upper - np.triu(ref)).max() / np.abs(ref).max())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
