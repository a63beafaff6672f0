#!/usr/bin/env python3
"""neural-tangents (and torch.func) on a convolutional model file: the reference times of
the CNN benchmark (docs/examples/digits-cnn.json on data/digits.npy by default).

Run the jax kinds with the reference venv (scripts/reference/setup.sh):

  ~/.cache/ntk-reference-venv/bin/python scripts/bench/cnn_reference.py \
      [--model docs/examples/digits-cnn.json] [--data data/digits.npy] [--params P.npz] \
      [--n 400,1797] [--kinds empirical,analytic,torch] [--repeats 3] [--threads T] \
      [--batch auto|0|B] [--analytic-batch auto|0|B] [--workdir DIR] [--compare DIR] \
      [--torch-python PY] [--budget S] [--torch-budget S] [--plan] [--json OUT]

Kinds (each (kind, N) runs in a child process of its own: a clean peak RSS, and a child
killed for memory does not end the others):
  empirical  nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), vmap_axes=0,
             implementation=STRUCTURED_DERIVATIVES), jitted: the (N, N) kernel of the mean
             over the k outputs, all N^2 pairs. Default N: 400 and 1797.
  analytic   kernel_fn(x, None, 'ntk') jitted: the infinite-width NTK. Default N: 400.
  torch      torch.func (vmap(jacrev) per block of samples, J_I J_J^T per tile, upper-triangle
             tiles only, divided by k), when the python of --torch-python (default: this
             one) imports torch; skipped otherwise. Default N: 400.
--n replaces every kind's default list; --analytic-n / --torch-n set one kind's.

Inputs: the first N rows of --data (float64), each reshaped to the model's "input_shape"
(C order); the network is the model file's layers in neural-tangents 0.6.5 stax (conv,
avg_pool (strides default to the window), global_avg_pool, flatten, dense, the
activations, residual blocks). Parameters: --params (the tool's layout: W{l} HWIO or
(n_in, n_out), b{l} (C_out,)), else drawn once with numpy's default_rng(--seed) in the
model's parameterization and written to WORKDIR/params.npz, so that every kind (and an
`ntk gram --params` run) computes the same network.

Timing: float64 (jax_enable_x64), CPU. The jitted function is AOT-compiled first
(compile_seconds, not counted), run once untimed (warm-up), then timed --repeats times
(block_until_ready; no new run after --budget s), median reported. --batch auto (default)
computes all of N x N in one call when the largest array of the lowered computation,
times --memory-factor (4), is within --memory-fraction (0.6) of MemAvailable; else
nt.batch(fn, B, store_on_device=False) with the largest divisor B of N that fits, or,
when no divisor fits above half the fitting size, N padded with zero rows to a multiple of
a fitting B ('padded_to'; the extra pairs are computed and dropped); 'mode' says which.
(jaxlib 0.4.23 gives no memory analysis on CPU, hence the estimate.) nt.batch jits the
block function itself, so there compile_seconds is the warm-up call minus the median call.
--threads T restricts each child to T CPUs (sched_setaffinity: XLA's and torch's pools
follow it); default: all (XLA's default pool). The torch kind can run under another
python (--torch-python; the reference venv has no torch): only numpy and torch are needed.

--plan only prints how each kernel would be computed (nothing is timed: lowering only).
Kernels are saved as WORKDIR/{kind}_{N}.npy; with --compare DIR, each is compared to
DIR/{kind}_{N}.npy (or DIR/empirical_{N}.npy for torch) when that exists (max |diff| /
max |ref|), and torch to this run's empirical kernel of the same N. Progress goes to
stderr; one JSON object (also written to --json OUT) to stdout.
"""
import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
KINDS = ("empirical", "analytic", "torch")
DEFAULT_N = {"empirical": [400, 1797], "analytic": [400], "torch": [400]}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def mem_available():
    try:
        with open("/proc/meminfo") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith("MemAvailable"))
    except (OSError, StopIteration):
        return 8 << 30


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# --- the model file and its parameters (numpy only) ---------------------------------------

def load_model(path):
    with open(path) as f:
        model = json.load(f)
    model.setdefault("parameterization", "ntk")
    return model


def sample_shape(model, data_shape):
    shape = model.get("input_shape")
    return tuple(shape) if shape is not None else tuple(data_shape[1:])


def load_inputs(model, data, n):
    import numpy as np
    x = np.load(data)
    if n > x.shape[0]:
        sys.exit(f"cnn_reference: N = {n} but {data} has {x.shape[0]} rows")
    x = np.ascontiguousarray(x[:n], dtype=np.float64)
    shape = sample_shape(model, x.shape)
    return x.reshape((n, *shape))


def shapes_of(layers, shape, out):
    """Appends (layer entry, input shape of one sample) for every dense and conv layer,
    depth-first; returns the output shape."""
    for e in layers:
        t = e["type"]
        if t in ("dense", "conv"):
            out.append((e, shape))
            if t == "dense":
                shape = (*shape[:-1], e["width"])
            else:
                k, s = e["kernel"], e.get("strides") or [1] * len(e["kernel"])
                shape = (*window_output(shape[:-1], k, s, e.get("padding", "VALID")), e["channels"])
        elif t == "avg_pool":
            w = e["window"]
            shape = (*window_output(shape[:-1], w, e.get("strides") or w, e.get("padding", "VALID")), shape[-1])
        elif t == "global_avg_pool":
            shape = (shape[-1],)
        elif t == "flatten":
            shape = (math.prod(shape),)
        elif t == "residual":
            shapes_of(e["layers"], shape, out)
    return shape


def window_output(sizes, window, strides, padding):
    if padding == "VALID":
        return tuple((n - k) // s + 1 for n, k, s in zip(sizes, window, strides))
    return tuple(-(-n // s) for n, s in zip(sizes, strides))


def draw_params(model, shape, seed):
    """The tool's raw arrays: ntk W, b ~ N(0, 1); standard W ~ N(0, W_std^2/fan_in), b ~ N(0, b_std^2)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    found = []
    shapes_of(model["layers"], shape, found)
    params = {}
    for i, (e, s) in enumerate(found):
        if e["type"] == "dense":
            W_shape, out = (s[-1], e["width"]), e["width"]
        else:
            W_shape, out = (*e["kernel"], s[-1], e["channels"]), e["channels"]
        W = rng.standard_normal(W_shape)
        b = rng.standard_normal(out) if e.get("b_std") is not None else None
        if model["parameterization"] == "standard":
            W *= e.get("W_std", 1.0) / math.sqrt(math.prod(W_shape[:-1]))
            if b is not None:
                b *= e["b_std"]
        params[f"W{i}"] = W
        if b is not None:
            params[f"b{i}"] = b
    return params


def parameter_count(params):
    return int(sum(v.size for v in params.values()))


# --- neural-tangents ------------------------------------------------------------------------

def nt_network(model, params):
    """(stax layers, stax parameter tree) of the model file with the tool's arrays."""
    import jax.numpy as jnp
    from neural_tangents import stax
    P = model["parameterization"]
    counter = [0]

    def build(layers):
        out, tree = [], []
        for e in layers:
            t = e["type"]
            if t in ("dense", "conv"):
                i = counter[0]
                counter[0] += 1
                W = jnp.asarray(params[f"W{i}"], dtype=jnp.float64)
                b = params.get(f"b{i}")
                if t == "dense":
                    out.append(stax.Dense(e["width"], W_std=e.get("W_std", 1.0), b_std=e.get("b_std"), parameterization=P))
                    b = None if b is None else jnp.asarray(b, dtype=jnp.float64).reshape(1, -1)
                else:
                    k = tuple(e["kernel"])
                    out.append(stax.Conv(e["channels"], k, strides=tuple(e.get("strides") or (1,) * len(k)),
                                         padding=e.get("padding", "VALID"), W_std=e.get("W_std", 1.0),
                                         b_std=e.get("b_std"), parameterization=P))
                    b = None if b is None else jnp.asarray(b, dtype=jnp.float64).reshape((1,) * (len(k) + 1) + (-1,))
                tree.append((W, b if e.get("b_std") is not None else None))
            elif t == "avg_pool":
                w = tuple(e["window"])
                out.append(stax.AvgPool(w, strides=tuple(e.get("strides") or w), padding=e.get("padding", "VALID")))
                tree.append(())
            elif t == "global_avg_pool":
                out.append(stax.GlobalAvgPool())
                tree.append(())
            elif t == "flatten":
                out.append(stax.Flatten())
                tree.append(())
            elif t == "residual":
                inner, inner_tree = build(e["layers"])
                out.append(stax.serial(stax.FanOut(2), stax.parallel(stax.serial(*inner), stax.Identity()),
                                       stax.FanInSum()))
                tree.append(((), (tuple(inner_tree), ()), ()))
            else:
                out.append(nt_activation(e))
                tree.append(())
        return out, tree

    layers, tree = build(model["layers"])
    return stax.serial(*layers), tuple(tree)


def nt_activation(e):
    import jax.numpy as jnp
    from neural_tangents import stax
    t = e["type"]
    simple = {"relu": stax.Relu, "erf": stax.Erf, "identity": stax.Identity}
    if t in simple:
        return simple[t]()
    if t == "gelu":
        return stax.Gelu(approximate=False)
    if t == "leaky_relu":
        return stax.LeakyRelu(e["alpha"])
    functions = {"tanh": jnp.tanh, "sigmoid": lambda x: 0.5 * (1 + jnp.tanh(0.5 * x)),
                 "softplus": lambda x: jnp.logaddexp(0.0, x)}
    if t in functions:
        return stax.ElementwiseNumerical(functions[t], e.get("quadrature_degree", 64))
    sys.exit(f"cnn_reference: no neural-tangents layer for {t!r}")


def largest_array_bytes(lowered):
    """The largest array of a lowered computation (bytes): XLA's CPU backend gives no
    memory analysis in jaxlib 0.4.23, so this is the estimate's base."""
    import re
    sizes = {"f64": 8, "f32": 4, "i64": 8, "i32": 4, "ui32": 4, "i1": 1, "ui8": 1, "i8": 1}
    best = 0
    for m in re.finditer(r"tensor<((?:\d+x)+)(f64|f32|i64|i32|ui32|i1|ui8|i8)>", lowered.as_text()):
        best = max(best, math.prod(int(d) for d in m.group(1).rstrip("x").split("x")) * sizes[m.group(2)])
    return best


def divisors_descending(n):
    return [b for b in range(n - 1, 0, -1) if n % b == 0]


def plan_batches(a, lower_at, n):
    """(mode, batch, padded_n, estimate bytes, budget bytes) for one kernel computation.
    lower_at(m, blocked) lowers the jitted function for m samples (one call when not blocked)."""
    budget = a.memory_fraction * mem_available()
    request = a.batch_request
    if request not in ("auto", "0"):
        b = int(request)
        if n % b:
            sys.exit(f"cnn_reference: --batch {b} must divide N = {n}")
        return "nt.batch", b, n, a.memory_factor * largest_array_bytes(lower_at(b, True)), budget
    whole = a.memory_factor * largest_array_bytes(lower_at(n, False))
    if request == "0" or whole <= budget:
        return "one call", 0, n, whole, budget
    # The size that fits, assuming the largest array grows as (block)^2 at most.
    fit = max(1, int(n * math.sqrt(budget / whole)))
    while fit > 1 and a.memory_factor * largest_array_bytes(lower_at(fit, True)) > budget:
        fit = max(1, int(fit * 0.8))
    for b in divisors_descending(n):
        if b > fit:
            continue
        if b >= fit // 2:
            return "nt.batch", b, n, a.memory_factor * largest_array_bytes(lower_at(b, True)), budget
        break
    b = fit
    padded = -(-n // b) * b
    return "nt.batch (N padded with zero rows)", b, padded, a.memory_factor * largest_array_bytes(lower_at(b, True)), budget


def child_jax(a, kind, n):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import numpy as np
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import neural_tangents as nt

    model = load_model(a.model)
    x_np = load_inputs(model, a.data, n)
    with np.load(a.params) as archive:
        params_np = {k: archive[k] for k in archive.files}
    (_, apply_fn, kernel_fn), tree = nt_network(model, params_np)

    if kind == "empirical":
        fn = nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), vmap_axes=0,
                                 implementation=nt.NtkImplementation.STRUCTURED_DERIVATIVES)
        args = (tree,)
        what = ("nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), vmap_axes=0, "
                "implementation=STRUCTURED_DERIVATIVES), jitted")
    else:
        def fn(x1, x2):
            return kernel_fn(x1, x2, "ntk")
        args = ()
        what = "kernel_fn(x, None, 'ntk'), jitted"
    jitted = jax.jit(fn)
    sample = x_np.shape[1:]

    def lower_at(m, blocked):
        block = jax.ShapeDtypeStruct((m, *sample), jnp.float64)
        return jitted.lower(block, block if blocked else None, *args)

    mode, batch, padded, estimate, budget = plan_batches(a, lower_at, n)
    result = {"kind": kind, "n": n, "what": what, "mode": mode, "batch_size": batch, "dtype": "float64",
              "pairs_computed": padded * padded, "memory_estimate_bytes": int(estimate),
              "memory_budget_bytes": int(budget), "devices": [str(d) for d in jax.devices()]}
    if padded != n:
        result["padded_to"] = padded
        x_np = np.concatenate([x_np, np.zeros((padded - n, *sample))])
    x = jnp.asarray(x_np)
    log(f"  {kind} N={n}: {mode}" + (f", batch {batch}" if batch else "") +
        f"; estimate {estimate / 2**30:.2f} GiB of a {budget / 2**30:.2f} GiB budget")
    if a.plan:
        return result, None

    if batch:
        # nt.batch jits the block function itself (a compiled executable cannot be given
        # to it): its compile time is the first call minus the median call.
        batched = nt.batch(fn, batch_size=batch, store_on_device=False)
        run = lambda: np.asarray(jax.block_until_ready(batched(x, None, *args)))  # noqa: E731
    else:
        t0 = time.perf_counter()
        compiled = lower_at(padded, False).compile()
        result["compile_seconds"] = time.perf_counter() - t0
        run = lambda: np.asarray(jax.block_until_ready(compiled(x, None, *args)))  # noqa: E731
    t0 = time.perf_counter()
    kernel = run()  # warm-up (not counted; with nt.batch it compiles too)
    result["warmup_seconds"] = time.perf_counter() - t0
    times, cpu = [], []
    while len(times) < max(1, a.repeats) and (not times or sum(times) < a.budget):
        c0, t0 = cpu_seconds(), time.perf_counter()
        kernel = run()
        dt = time.perf_counter() - t0
        times.append(dt)
        cpu.append((cpu_seconds() - c0) / dt)
    kernel = kernel.reshape(padded, padded)[:n, :n]
    result.update(seconds=times, median_seconds=statistics.median(times), cpu_per_wall=statistics.median(cpu),
                  runs_done=len(times), capped=len(times) < a.repeats)
    if batch:
        result["compile_seconds"] = max(0.0, result["warmup_seconds"] - result["median_seconds"])
        result["compile_note"] = "first call minus median call (nt.batch jits internally)"
    return result, kernel


# --- torch.func -----------------------------------------------------------------------------

def torch_forward(model, torch):
    """f(params, x) for one sample x (channels last), the model file's network in torch."""
    import torch.nn.functional as F
    P = model["parameterization"]

    def same_pads(sizes, window, strides):
        pads = []
        for size, k, s in zip(sizes, window, strides):
            total = max((-(-size // s) - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        return pads

    def pad(z, window, strides, padding):
        """z (1, C, *spatial): SAME zeros or CIRCULAR wrap, lax's amounts."""
        if padding == "VALID":
            return z
        pads = same_pads(z.shape[2:], window, strides)
        flat = [p for lo_hi in reversed(pads) for p in lo_hi]  # F.pad: last axis first
        return F.pad(z, flat, mode="circular" if padding == "CIRCULAR" else "constant")

    def channels_first(z):
        return z.movedim(-1, 1)

    def channels_last(z):
        return z.movedim(1, -1)

    activations = {"relu": torch.relu, "erf": torch.erf, "identity": lambda z: z, "tanh": torch.tanh,
                   "sigmoid": torch.sigmoid, "softplus": lambda z: F.softplus(z, threshold=1e9),
                   "gelu": lambda z: F.gelu(z, approximate="none")}

    def run(layers, params, z, counter):
        for e in layers:
            t = e["type"]
            if t == "dense" or t == "conv":
                i = counter[0]
                counter[0] += 1
                W, b = params[f"W{i}"], params.get(f"b{i}")
                if t == "dense":
                    h = z @ W
                    fan_in = W.shape[0]
                else:
                    k = list(e["kernel"])
                    s = list(e.get("strides") or [1] * len(k))
                    conv = F.conv2d if len(k) == 2 else F.conv1d
                    weight = W.permute(*range(len(k), len(k) + 2), *range(len(k))).movedim(0, 1)  # (O, I, *k)
                    h = channels_last(conv(pad(channels_first(z), k, s, e.get("padding", "VALID")), weight, stride=s))
                    fan_in = W.shape[-2] * math.prod(k)
                if P == "ntk":
                    h = (e.get("W_std", 1.0) / math.sqrt(fan_in)) * h
                    if b is not None:
                        h = h + e["b_std"] * b
                elif b is not None:
                    h = h + b
                z = h
            elif t == "avg_pool":
                w = list(e["window"])
                s = list(e.get("strides") or w)
                pool = F.avg_pool2d if len(w) == 2 else F.avg_pool1d
                z = channels_last(pool(pad(channels_first(z), w, s, e.get("padding", "VALID")), w, stride=s))
            elif t == "global_avg_pool":
                z = z.mean(dim=tuple(range(1, z.dim() - 1)))
            elif t == "flatten":
                z = z.reshape(z.shape[0], -1)
            elif t == "residual":
                z = z + run(e["layers"], params, z, counter)
            elif t == "leaky_relu":
                z = F.leaky_relu(z, e["alpha"])
            else:
                z = activations[t](z)
        return z

    def f(params, xi):
        return run(model["layers"], params, xi.unsqueeze(0), [0])[0]

    return f


def child_torch(a, n):
    import numpy as np
    import torch
    from torch.func import jacrev, vmap
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    model = load_model(a.model)
    x = torch.from_numpy(load_inputs(model, a.data, n))
    with np.load(a.params) as archive:
        params = {k: torch.from_numpy(np.ascontiguousarray(archive[k], dtype=np.float64)) for k in archive.files}
    f = torch_forward(model, torch)
    k = int(np.prod(f(params, x[0]).shape))
    count = sum(t.numel() for t in params.values())
    jac = vmap(jacrev(f), in_dims=(None, 0))

    def jacobians(lo, hi):
        js = jac(params, x[lo:hi])  # {name: (B, k, *shape)}
        return [js[name].reshape(hi - lo, -1) for name in sorted(js)]

    B = a.torch_tile or max(8, min(n, int(2.5e9 // (8 * k * count))))
    blocks = [(s, min(n, s + B)) for s in range(0, n, B)]
    if a.plan:
        log(f"  torch N={n}: tiles of {B} samples, {len(blocks)} row blocks")
        return {"kind": "torch", "n": n, "tile": B, "parameters": count, "outputs_k": k}, None
    with torch.no_grad():
        jacobians(0, min(n, 8))  # warm-up (not counted)

    def compute(deadline):
        kernel = np.zeros((n, n))
        done = 0
        with torch.no_grad():
            for bi, (r0, r1) in enumerate(blocks):
                jr = jacobians(r0, r1)
                for c0, c1 in blocks[bi:]:
                    if time.perf_counter() > deadline:
                        return kernel, done, True
                    jc = jr if c0 == r0 else jacobians(c0, c1)
                    kernel[r0:r1, c0:c1] = (sum(u @ v.T for u, v in zip(jr, jc)) / k).numpy()
                    done += (r1 - r0) * (r1 - r0 + 1) // 2 if c0 == r0 else (r1 - r0) * (c1 - c0)
        return kernel, done, False

    total = n * (n + 1) // 2
    times, cpu = [], []
    kernel, capped, done = None, False, 0
    start = time.perf_counter()
    while len(times) < max(1, a.repeats) and (not times or time.perf_counter() - start < a.torch_budget):
        c0, t0 = cpu_seconds(), time.perf_counter()
        # Only the first run is cut at the budget; later ones start only within it.
        kernel, done, capped = compute(start + a.torch_budget if not times else math.inf)
        dt = time.perf_counter() - t0
        times.append(dt)
        cpu.append((cpu_seconds() - c0) / dt)
        if capped:
            break
    result = {"kind": "torch", "n": n, "what": "torch.func vmap(jacrev) + J J^T per tile, upper-triangle tiles, / k",
              "torch": torch.__version__, "dtype": "float64", "threads": torch.get_num_threads(), "tile": B,
              "parameters": count, "outputs_k": k, "pairs_done": done, "pairs_total": total, "capped": capped,
              "seconds": times, "median_seconds": statistics.median(times),
              "cpu_per_wall": statistics.median(cpu) if cpu else None, "runs_done": 0 if capped else len(times)}
    if capped:
        result["projected_seconds"] = times[0] * total / max(1, done)
        return result, None
    upper = np.triu(kernel)
    return result, upper + np.triu(upper, 1).T


# --- the driver -------------------------------------------------------------------------------

def child_main(a):
    if a.threads:
        cpus = sorted(os.sched_getaffinity(0))[:a.threads]
        os.sched_setaffinity(0, cpus)
    kind, n = a.child, a.child_n
    if kind == "torch":
        result, kernel = child_torch(a, n)
    else:
        result, kernel = child_jax(a, kind, n)
    result["cpus"] = len(os.sched_getaffinity(0))
    result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if kernel is not None:
        import numpy as np
        path = os.path.join(a.workdir, f"{kind}_{n}.npy")
        np.save(path, kernel)
        result["kernel"] = path
    print(json.dumps(result), flush=True)


def versions(python):
    code = ("import json, importlib.metadata as m\nout = {}\n"
            "for name in ('jax', 'jaxlib', 'neural-tangents', 'numpy', 'torch'):\n"
            "    try: out[name] = m.version(name)\n    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(out))")
    done = subprocess.run([python, "-c", code], capture_output=True, text=True)
    return json.loads(done.stdout) if done.returncode == 0 else {}


def relative_difference(path, reference):
    import numpy as np
    a, b = np.load(path), np.load(reference)
    if a.shape != b.shape:
        return f"shapes differ: {a.shape} vs {b.shape}"
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def parse_list(text):
    return [int(v) for v in text.split(",") if v.strip()]


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=os.path.join(ROOT, "docs", "examples", "digits-cnn.json"))
    p.add_argument("--data", default=os.path.join(ROOT, "data", "digits.npy"))
    p.add_argument("--params", help="the tool's parameters (.npz); default: drawn with --seed into WORKDIR")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kinds", default="empirical,analytic,torch")
    p.add_argument("--n", type=parse_list, help="N for every kind (comma-separated)")
    p.add_argument("--empirical-n", type=parse_list)
    p.add_argument("--analytic-n", type=parse_list)
    p.add_argument("--torch-n", type=parse_list)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--budget", type=float, default=300.0, help="no new timed jax run after this many seconds")
    p.add_argument("--torch-budget", type=float, default=240.0, help="torch: no new tile after this many seconds")
    p.add_argument("--torch-python", default=sys.executable)
    p.add_argument("--torch-tile", type=int, default=0)
    p.add_argument("--batch", default="auto", help="empirical: auto, 0 (one call) or a divisor B of N (nt.batch)")
    p.add_argument("--analytic-batch", default="auto", help="analytic: as --batch")
    p.add_argument("--memory-fraction", type=float, default=0.6)
    p.add_argument("--memory-factor", type=float, default=4.0)
    p.add_argument("--threads", type=int, default=0, help="CPUs per child (0: all)")
    p.add_argument("--workdir")
    p.add_argument("--compare", help="a directory of {kind}_{N}.npy kernels to compare with")
    p.add_argument("--json", help="also write the JSON result here")
    p.add_argument("--plan", action="store_true", help="only say how each kernel would be computed (one call or "
                   "nt.batch, the memory estimate); nothing is timed")
    p.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    p.add_argument("--child-n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--batch-request", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        child_main(a)
        return

    import numpy as np
    kinds = [k for k in a.kinds.split(",") if k]
    for k in kinds:
        if k not in KINDS:
            sys.exit(f"cnn_reference: unknown kind {k!r} (known: {', '.join(KINDS)})")
    sizes = {k: getattr(a, f"{k}_n") or a.n or DEFAULT_N[k] for k in KINDS}
    workdir = a.workdir or tempfile.mkdtemp(prefix="ntk-cnn-reference-")
    os.makedirs(workdir, exist_ok=True)
    model = load_model(a.model)
    rows = np.load(a.data, mmap_mode="r").shape
    shape = sample_shape(model, rows)
    if a.params:
        params_path = os.path.abspath(a.params)
        with np.load(params_path) as archive:
            params = {k: archive[k] for k in archive.files}
        source = params_path
    else:
        params = draw_params(model, shape, a.seed)
        params_path = os.path.join(workdir, "params.npz")
        np.savez(params_path, **params)
        source = f"numpy default_rng({a.seed}) in the model's parameterization, written to {params_path}"
    out = {"tool": "cnn_reference.py", "model": os.path.abspath(a.model), "model_name": model.get("name"),
           "data": os.path.abspath(a.data), "input_shape": list(shape), "parameterization": model["parameterization"],
           "parameters": parameter_count(params), "params": source, "repeats": a.repeats,
           "cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "cpus_available": len(os.sched_getaffinity(0)),
           "memory_available_bytes": mem_available(),
           "threads": {"cpus_per_child": a.threads or len(os.sched_getaffinity(0)),
                       "how": "sched_setaffinity per child" if a.threads else "default (all CPUs; XLA's own pool)",
                       "XLA_FLAGS": os.environ.get("XLA_FLAGS"), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                       "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS")},
           "python": sys.executable, "versions": versions(sys.executable), "workdir": workdir, "results": []}
    if "torch" in kinds:
        out["torch_python"] = a.torch_python
        out["torch_versions"] = versions(a.torch_python) if a.torch_python != sys.executable else out["versions"]
    log(f"cnn_reference: {out['model_name'] or a.model}, {out['parameters']} parameters, input {tuple(shape)}, "
        f"{out['cpu_model']}, {out['threads']['cpus_per_child']} CPUs; workdir {workdir}")

    common = ["--model", a.model, "--data", a.data, "--params", params_path, "--workdir", workdir,
              "--repeats", str(a.repeats), "--budget", str(a.budget), "--torch-budget", str(a.torch_budget),
              "--torch-tile", str(a.torch_tile), "--memory-fraction", str(a.memory_fraction),
              "--memory-factor", str(a.memory_factor), "--threads", str(a.threads)] + (["--plan"] if a.plan else [])
    for kind in kinds:
        python = a.torch_python if kind == "torch" else sys.executable
        probe = "torch" if kind == "torch" else "neural_tangents"
        if subprocess.run([python, "-c", f"import {probe}"], capture_output=True).returncode != 0:
            reason = f"{python} cannot import {probe}"
            log(f"  {kind}: skipped ({reason})")
            out["results"].append({"kind": kind, "skipped": reason})
            continue
        for n in sizes[kind]:
            request = a.analytic_batch if kind == "analytic" else a.batch
            cmd = [python, os.path.abspath(__file__), *common, "--child", kind, "--child-n", str(n),
                   "--batch-request", str(request)]
            t0 = time.perf_counter()
            done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            wall = time.perf_counter() - t0
            for line in done.stderr.splitlines():
                if line.startswith("  "):
                    log(line)
            if done.returncode != 0:
                tail = [l for l in done.stderr.strip().splitlines() if l.strip()][-3:]
                why = "killed (out of memory?)" if done.returncode < 0 else f"rc {done.returncode}"
                res = {"kind": kind, "n": n, "error": f"{why}: " + " | ".join(tail)}
                log(f"  {kind} N={n}: FAILED {res['error']}")
                out["results"].append(res)
                continue
            res = json.loads(done.stdout.strip().splitlines()[-1])
            res["process_wall"] = wall
            if res.get("kernel"):
                compare = []
                if a.compare:
                    for name in ([f"{kind}_{n}.npy"] + ([f"empirical_{n}.npy"] if kind == "torch" else [])):
                        ref = os.path.join(a.compare, name)
                        if os.path.exists(ref):
                            compare.append({"reference": ref, "max_abs_diff_over_max": relative_difference(res["kernel"], ref)})
                            break
                mine = os.path.join(workdir, f"empirical_{n}.npy")
                if kind == "torch" and os.path.exists(mine):
                    compare.append({"reference": mine, "max_abs_diff_over_max": relative_difference(res["kernel"], mine)})
                if compare:
                    res["compare"] = compare
            out["results"].append(res)
            if a.plan:
                continue
            extra = ""
            if res.get("capped") and "projected_seconds" in res:
                extra = f" (capped: {res['pairs_done']}/{res['pairs_total']} pairs; projected {res['projected_seconds']:.1f} s)"
            if "compile_seconds" in res:
                extra += f"; compile {res['compile_seconds']:.2f} s, warm-up {res['warmup_seconds']:.2f} s"
            for c in res.get("compare", []):
                extra += f"; vs {os.path.basename(c['reference'])}: {c['max_abs_diff_over_max']:.2e}"
            log(f"  {kind} N={n}: median {res['median_seconds']:.3f} s over {len(res['seconds'])} run(s)"
                f" [{res.get('mode', 'tiles')}], cpu/wall {res['cpu_per_wall'] or 0:.2f},"
                f" peak RSS {res['max_rss_mb']:.0f} MiB{extra}")
    text = json.dumps(out, indent=1)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")
    print(text)
    if not a.plan and not any("median_seconds" in r for r in out["results"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
