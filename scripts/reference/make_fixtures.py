#!/usr/bin/env python3
"""Generate the reference fixtures that ntk's Swift tests compare against.

Run with the venv made by scripts/reference/setup.sh:

    "$(scripts/reference/setup.sh)" scripts/reference/make_fixtures.py

Writes (relative to the repository root):
  Tests/Fixtures/empirical/<case>/  finite-width empirical NTK (neural-tangents 0.6.5)
  Tests/Fixtures/empirical/cases.json
  Tests/Fixtures/analytic/<case>/   infinite-width NNGP / NTK (stax kernel_fn)
  Tests/Fixtures/analytic/cases.json
  Tests/Fixtures/residual/empirical/<case>/, .../cases.json   the same for residual MLPs
  Tests/Fixtures/residual/analytic/<case>/, .../cases.json    (incl. sums stax refuses)
  data/digits.npy, data/digits_labels.npy

Everything is float64 and deterministic (fixed numpy seeds; jax's RNG is not used
for any value that is written). Besides writing, the script checks:
  * stax apply_fn(params, x) == an independent numpy forward pass (1e-12);
  * JACOBIAN_CONTRACTION == STRUCTURED_DERIVATIVES (1e-12 relative);
  * the empirical NTK == the structured per-layer formula of docs/maths.md in numpy;
  * the analytic kernels == the recursion of docs/maths.md in numpy;
  * the worked check of docs/maths.md.
Any failed check raises, and nothing is reported as done.
"""
import json
import math
import os
import shutil
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402
import scipy.special  # noqa: E402

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import neural_tangents as nt  # noqa: E402
from neural_tangents import stax  # noqa: E402

warnings.filterwarnings("ignore", message=".*Numerical Activation Layer.*")
warnings.filterwarnings("ignore", message=".*Using JAX autodiff.*")

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIX = os.path.join(ROOT, "Tests", "Fixtures")
SQRT2 = math.sqrt(2.0)

# ----------------------------------------------------------------------------
# Model description (the tool's JSON schema) -> stax layers / numpy functions
# ----------------------------------------------------------------------------


def dense(width, W_std=1.0, b_std=None):
    d = {"type": "dense", "width": width, "W_std": W_std}
    # b_std absent means no bias; write it only when there is a bias, and write
    # an explicit null in some cases (see `nobias_null`) to exercise both forms.
    if b_std is not None:
        d["b_std"] = b_std
    return d


def residual(*layers):
    """y = x + block(x): stax.serial(FanOut(2), parallel(serial(*block), Identity()), FanInSum())."""
    return {"type": "residual", "layers": list(layers)}


def act(kind, **kw):
    d = {"type": kind}
    d.update(kw)
    return d


def _gelu_np(h):
    return 0.5 * h * (1.0 + scipy.special.erf(h / SQRT2))


def _gelu_d_np(h):
    return 0.5 * (1.0 + scipy.special.erf(h / SQRT2)) + h * np.exp(-0.5 * h * h) / math.sqrt(2 * math.pi)


def _sigmoid_np(h):
    return scipy.special.expit(h)


# numpy value and derivative of each activation (used by the independent checks)
NP_ACT = {
    "relu": (lambda h: np.maximum(h, 0.0), lambda h, a: (h > 0).astype(np.float64)),
    "erf": (lambda h: scipy.special.erf(h), lambda h, a: 2.0 / math.sqrt(math.pi) * np.exp(-h * h)),
    "tanh": (np.tanh, lambda h, a: 1.0 - np.tanh(h) ** 2),
    "identity": (lambda h: h, lambda h, a: np.ones_like(h)),
    "gelu": (_gelu_np, lambda h, a: _gelu_d_np(h)),
    "sigmoid": (_sigmoid_np, lambda h, a: _sigmoid_np(h) * (1.0 - _sigmoid_np(h))),
    "softplus": (lambda h: np.logaddexp(0.0, h), lambda h, a: _sigmoid_np(h)),
    "leaky_relu": (None, lambda h, a: np.where(h > 0, 1.0, a)),
}

JAX_FN = {"tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid, "softplus": jax.nn.softplus,
          "erf": jax.scipy.special.erf, "relu": jax.nn.relu,
          "gelu": lambda x: jax.nn.gelu(x, approximate=False), "identity": lambda x: x}


def np_act(layer, h):
    t = layer["type"]
    if t == "leaky_relu":
        return np.where(h > 0, h, layer["alpha"] * h)
    return NP_ACT[t][0](h)


def np_dact(layer, h):
    return NP_ACT[layer["type"]][1](h, layer.get("alpha"))


def stax_layer(layer, param, analytic):
    t = layer["type"]
    if t == "residual":
        block = stax.serial(*[stax_layer(l, param, analytic) for l in layer["layers"]])
        return stax.serial(stax.FanOut(2), stax.parallel(block, stax.Identity()), stax.FanInSum())
    if t == "dense":
        return stax.Dense(layer["width"], W_std=layer.get("W_std", 1.0),
                          b_std=layer.get("b_std"), parameterization=param)
    if "quadrature_degree" in layer:
        assert analytic or t in JAX_FN
        return stax.ElementwiseNumerical(JAX_FN[t], deg=layer["quadrature_degree"])
    if t == "relu":
        return stax.Relu()
    if t == "erf":
        return stax.Erf()
    if t == "identity":
        return stax.Identity()
    if t == "gelu":
        return stax.Gelu(approximate=False)
    if t == "leaky_relu":
        return stax.LeakyRelu(layer["alpha"])
    if t in ("tanh", "sigmoid", "softplus"):
        if analytic:
            raise ValueError(f"{t} has no closed-form kernel: give quadrature_degree")
        return stax.Elementwise(fn=JAX_FN[t])
    raise ValueError(t)


def build(model, analytic=False):
    p = model["parameterization"]
    return stax.serial(*[stax_layer(l, p, analytic) for l in model["layers"]])


def _walk_dense(layers):
    for l in layers:
        if l["type"] == "residual":
            yield from _walk_dense(l["layers"])
        elif l["type"] == "dense":
            yield l


def dense_layers(model):
    """The dense layers in depth-first order (a residual block's layers numbered in place)."""
    return list(_walk_dense(model["layers"]))


def walk_dense_fan_in(layers, n_in):
    """Yields (dense layer, fan_in) depth-first; returns the output width."""
    for layer in layers:
        if layer["type"] == "residual":
            n_block = yield from walk_dense_fan_in(layer["layers"], n_in)
            assert n_block == n_in, f"residual block maps width {n_in} to {n_block}"
        elif layer["type"] == "dense":
            yield layer, n_in
            n_in = layer["width"]
    return n_in


def scale_factors(model, layer, n_in):
    """(s_l, t_l) of docs/maths.md: h = s z.W + t b with raw trainable W, b."""
    has_b = layer.get("b_std") is not None
    if model["parameterization"] == "ntk":
        return layer.get("W_std", 1.0) / math.sqrt(n_in), (layer["b_std"] if has_b else 0.0)
    return 1.0, (1.0 if has_b else 0.0)


# ----------------------------------------------------------------------------
# Parameters
# ----------------------------------------------------------------------------


def draw_params(model, d, rng):
    """Raw trainable arrays of the declared parameterization, numpy-drawn."""
    out = {}
    for l, (layer, n_in) in enumerate(walk_dense_fan_in(model["layers"], d)):
        n_out = layer["width"]
        W = rng.standard_normal((n_in, n_out))
        b = rng.standard_normal(n_out) if layer.get("b_std") is not None else None
        if model["parameterization"] == "standard":
            W = W * (layer.get("W_std", 1.0) / math.sqrt(n_in))
            if b is not None:
                b = b * layer["b_std"]
        out[f"W{l}"] = W
        if b is not None:
            out[f"b{l}"] = b
    return out


def to_stax_params(model, init_fn, d, flat):
    """Put the numpy arrays into the pytree stax.serial expects.

    stax.serial params: a list with one entry per layer. Dense -> tuple (W, b) with
    W of shape (fan_in, fan_out) and b of shape (1, fan_out) (a broadcastable row,
    not (fan_out,)); b is None when b_std is None. Activations -> ().
    A residual layer is itself a stax.serial of three: [(), (block params, ()), ()]
    (FanOut, parallel(block, Identity), FanInSum), the block's list built the same way.
    """
    _, ref = init_fn(jax.random.PRNGKey(0), (1, d))
    counter = [0]

    def fill(layers, refs):
        assert len(layers) == len(refs), (len(layers), len(refs))
        params = []
        for layer, ref_p in zip(layers, refs):
            if layer["type"] == "residual":
                assert len(ref_p) == 3 and ref_p[0] == () and ref_p[2] == (), ref_p
                block_ref, id_ref = ref_p[1]
                assert id_ref == (), id_ref
                par = type(ref_p[1])((fill(layer["layers"], block_ref), ()))
                params.append(type(ref_p)([(), par, ()]))
                continue
            if layer["type"] != "dense":
                assert ref_p == (), ref_p
                params.append(())
                continue
            l = counter[0]
            W = flat[f"W{l}"]
            b = flat.get(f"b{l}")
            refW, refb = ref_p
            assert refW.shape == W.shape, (refW.shape, W.shape)
            if b is None:
                assert refb is None
                params.append((jnp.asarray(W), None))
            else:
                assert refb.shape == (1, b.shape[0]), refb.shape
                params.append((jnp.asarray(W), jnp.asarray(b.reshape(1, -1))))
            counter[0] += 1
        return type(refs)(params)

    params = fill(model["layers"], ref)
    assert counter[0] == len(dense_layers(model)) == len(flat) - sum(k.startswith("b") for k in flat)
    return params


# ----------------------------------------------------------------------------
# Independent numpy implementation (forward pass + structured empirical NTK)
# ----------------------------------------------------------------------------


def np_forward(model, flat, x):
    """Returns f(x) and, per dense layer, (s, t, z_in) plus the activation inputs.

    A residual layer y = z + block(z) appears in the trace as ("residual", block trace).
    """
    counter = [0]

    def run(layers, z):
        trace = []
        for layer in layers:
            if layer["type"] == "residual":
                y, sub = run(layer["layers"], z)
                assert y.shape == z.shape, (y.shape, z.shape)
                trace.append(("residual", sub))
                z = z + y
            elif layer["type"] == "dense":
                l = counter[0]
                s, t = scale_factors(model, layer, z.shape[1])
                W = flat[f"W{l}"]
                b = flat.get(f"b{l}")
                h = s * (z @ W) if model["parameterization"] == "ntk" else z @ W
                if b is not None:
                    h = h + (layer["b_std"] * b if model["parameterization"] == "ntk" else b)
                trace.append(("dense", l, s, t, z))
                z = h
                counter[0] += 1
            else:
                trace.append(("act", layer, z))
                z = np_act(layer, z)
        return z, trace

    return run(model["layers"], x)


def np_full_ntk(model, flat, x1, x2):
    """Theta[i, j, a, b] = <grad f_a(x_i), grad f_b(x_j)> by the structured form.

    Backward through a residual y = z + block(z): delta_z = delta_y + block's backward of delta_y.
    """
    k = dense_layers(model)[-1]["width"]

    def back(trace, delta, per_layer):
        for item in reversed(trace):
            if item[0] == "act":
                delta = delta * np_dact(item[1], item[2])[:, None, :]
            elif item[0] == "residual":
                delta = delta + back(item[1], delta, per_layer)
            else:
                _, l, s, t, z = item
                per_layer[l] = (s, t, z, delta)
                delta = delta @ (s * flat[f"W{l}"]).T
        return delta

    parts = []
    for x in (x1, x2):
        _, trace = np_forward(model, flat, x)
        delta = np.broadcast_to(np.eye(k), (x.shape[0], k, k)).copy()  # (N, c, n)
        per_layer = {}
        back(trace, delta, per_layer)
        parts.append(per_layer)
    theta = 0.0
    for l in parts[0]:
        s, t, z1, d1 = parts[0][l]
        _, _, z2, d2 = parts[1][l]
        g = s * s * (z1 @ z2.T) + t * t
        theta = theta + g[:, :, None, None] * np.einsum("iap,jbp->ijab", d1, d2)
    return theta


# ----------------------------------------------------------------------------
# Independent numpy implementation of the infinite-width recursion (docs/maths.md)
# ----------------------------------------------------------------------------


def _np_act_kernel(layer, q12, q11, q22, T):
    t = layer["type"]
    if "quadrature_degree" in layer:
        xs, ws = np.polynomial.hermite.hermgauss(layer["quadrature_degree"])
        f = NP_ACT[t][0]
        df = lambda h: np_dact(layer, h)  # noqa: E731

        def integ(g):
            a = q12 / np.sqrt(q11 / 2)
            b = np.sqrt(np.maximum(2 * (q22 - q12 ** 2 / q11), 0.0))
            u = np.sqrt(2 * q11)[..., None, None] * xs[:, None]
            v = a[..., None, None] * xs[:, None] + b[..., None, None] * xs[None, :]
            return np.einsum("i,j,...ij->...", ws, ws, g(u) * g(v)) / math.pi

        return integ(f), T * integ(df)
    if t == "identity":
        return q12, T
    if t == "relu":
        s = np.sqrt(np.maximum(q11 * q22 - q12 ** 2, 0.0))
        th = np.arctan2(s, q12)
        return (s + (math.pi - th) * q12) / (2 * math.pi), T * (math.pi - th) / (2 * math.pi)
    if t == "erf":
        D = np.sqrt((1 + 2 * q11) * (1 + 2 * q22) - 4 * q12 ** 2)
        return (2 / math.pi) * np.arctan2(2 * q12, D), T * (4 / math.pi) / D
    raise ValueError(t)


def _np_act_var(layer, q):
    """E[phi(u)^2], u ~ N(0, q): the diagonal formulas."""
    t = layer["type"]
    if "quadrature_degree" in layer:
        xs, ws = np.polynomial.hermite.hermgauss(layer["quadrature_degree"])
        f = NP_ACT[t][0]
        return np.einsum("i,...i->...", ws, f(np.sqrt(2 * q)[..., None] * xs) ** 2) / math.sqrt(math.pi)
    if t == "identity":
        return q
    if t == "relu":
        return q / 2
    if t == "erf":
        return (2 / math.pi) * np.arctan2(q, np.sqrt(q + 0.25))
    raise ValueError(t)


def np_analytic(model, x1, x2):
    """NNGP and NTK by the recursion of docs/maths.md.

    A residual y = z + block(z) sums the two branches' kernels (K, the diagonals and T),
    as stax.FanInSum of independent branches does; both branches must be mean-zero
    Gaussian (the output of a dense layer, of an identity after one, or of such a sum):
    the inputs are not, nor is an activation's output. Otherwise NotImplementedError,
    as neural-tangents raises.
    """
    d = x1.shape[1]
    v1 = np.sum(x1 * x1, 1) / d
    v2 = np.sum(x2 * x2, 1) / d
    K = x1 @ x2.T / d
    T = np.zeros_like(K)

    def run(layers, K, v1, v2, T, n_in, gaussian):
        for layer in layers:
            if layer["type"] == "residual":
                Kb, v1b, v2b, Tb, nb, gb = run(layer["layers"], K, v1, v2, T, n_in, gaussian)
                assert nb == n_in, (nb, n_in)
                if not (gaussian and gb):
                    raise NotImplementedError("residual sum of a non-Gaussian branch "
                                              f"(skip Gaussian: {gaussian}, block Gaussian: {gb})")
                K, v1, v2, T = K + Kb, v1 + v1b, v2 + v2b, T + Tb
            elif layer["type"] == "dense":
                W2 = layer.get("W_std", 1.0) ** 2
                b2 = layer["b_std"] ** 2 if layer.get("b_std") is not None else 0.0
                if model["parameterization"] == "ntk":
                    K, v1, v2 = W2 * K + b2, W2 * v1 + b2, W2 * v2 + b2
                    T = K + W2 * T
                else:
                    T = n_in * K + W2 * T + (1.0 if layer.get("b_std") is not None else 0.0)
                    K, v1, v2 = W2 * K + b2, W2 * v1 + b2, W2 * v2 + b2
                n_in, gaussian = layer["width"], True
            else:
                q11, q22 = v1[:, None], v2[None, :]
                K, T = _np_act_kernel(layer, K, q11, q22, T)
                v1, v2 = _np_act_var(layer, v1), _np_act_var(layer, v2)
                # stax.Identity passes the kernel through unchanged; other activations
                # mark it non-Gaussian.
                gaussian = gaussian and layer["type"] == "identity"
        return K, v1, v2, T, n_in, gaussian

    K, _, _, T, _, _ = run(model["layers"], K, v1, v2, T, d, False)
    return K, T


# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------


def rel_err(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


WORST = {}  # kind of check -> (largest relative error seen, where)


def check(name, err, tol):
    if not err <= tol:
        raise AssertionError(f"{name}: relative error {err:.3e} > {tol:.0e}")
    kind = name.split(" ", 1)[1] if " " in name else name
    kind = kind.replace("11", "xx").replace("12", "xx")
    if name.startswith("residual/"):
        kind = "residual: " + kind
    if err >= WORST.get(kind, (-1.0, ""))[0]:
        WORST[kind] = (err, name)
    return err


def save(dirpath, name, arr, dtype=np.float64):
    arr = np.ascontiguousarray(np.asarray(arr), dtype=dtype)
    assert np.all(np.isfinite(arr)) if arr.dtype.kind == "f" else True
    np.save(os.path.join(dirpath, name), arr, allow_pickle=False)


def write_json(path, obj):
    with open(path, "w") as fh:
        json.dump(obj, fh, indent=2)
        fh.write("\n")


def fresh_dir(path):
    if os.path.isdir(path):
        shutil.rmtree(path)
    os.makedirs(path)


# ----------------------------------------------------------------------------
# Empirical fixtures
# ----------------------------------------------------------------------------

EMPIRICAL_CASES = [
    dict(name="relu_ntk", seed=101, n1=6, n2=4, d=4,
         description="ReLU, ntk parameterization, 2 hidden layers 16/24, W_std sqrt2, b_std 0.1, k=1",
         model={"parameterization": "ntk", "layers": [
             dense(16, SQRT2, 0.1), act("relu"), dense(24, SQRT2, 0.1), act("relu"), dense(1, SQRT2, 0.1)]}),
    dict(name="relu_standard", seed=102, n1=6, n2=4, d=4,
         description="ReLU, standard parameterization, 2 hidden layers 16/24, W_std sqrt2, b_std 0.1, k=1",
         model={"parameterization": "standard", "layers": [
             dense(16, SQRT2, 0.1), act("relu"), dense(24, SQRT2, 0.1), act("relu"), dense(1, SQRT2, 0.1)]}),
    dict(name="erf_ntk_nobias", seed=103, n1=5, n2=3, d=3,
         description="erf, ntk, first and last dense layers without bias (b_std absent / null), k=1",
         model={"parameterization": "ntk", "layers": [
             dense(12, 1.3), act("erf"), dense(10, 1.5, 0.2), act("erf"),
             {"type": "dense", "width": 1, "W_std": 1.0, "b_std": None}]}),
    dict(name="tanh_standard", seed=104, n1=5, n2=4, d=3,
         description="tanh, standard parameterization, 1 hidden layer of 16, W_std 1.2, b_std 0.3, k=1",
         model={"parameterization": "standard", "layers": [
             dense(16, 1.2, 0.3), act("tanh"), dense(1, 1.2, 0.3)]}),
    dict(name="identity_ntk", seed=105, n1=5, n2=3, d=4,
         description="linear network (identity activations), ntk, hidden 8/6, W_std 1.1, b_std 0.5, k=1",
         model={"parameterization": "ntk", "layers": [
             dense(8, 1.1, 0.5), act("identity"), dense(6, 1.1, 0.5), act("identity"), dense(1, 1.1, 0.5)]}),
    dict(name="relu_ntk_k3", seed=106, n1=5, n2=4, d=4,
         description="ReLU, ntk, hidden 16/12, W_std sqrt2, b_std 0.1, k=3 outputs",
         model={"parameterization": "ntk", "layers": [
             dense(16, SQRT2, 0.1), act("relu"), dense(12, SQRT2, 0.1), act("relu"), dense(3, SQRT2, 0.1)]}),
    dict(name="tanh_standard_k2_nobias", seed=107, n1=4, n2=6, d=5,
         description="tanh, standard, hidden 10 (no bias) / 14, k=2 outputs",
         model={"parameterization": "standard", "layers": [
             dense(10, 1.0), act("tanh"), dense(14, 1.3, 0.2), act("tanh"), dense(2, 1.0, 0.1)]}),
    dict(name="gelu_ntk", seed=108, n1=6, n2=3, d=3,
         description="exact (erf-based) GELU, ntk, hidden 16/16, W_std 1.5, b_std 0.2, k=1",
         model={"parameterization": "ntk", "layers": [
             dense(16, 1.5, 0.2), act("gelu"), dense(16, 1.5, 0.2), act("gelu"), dense(1, 1.5, 0.2)]}),
    dict(name="sigmoid_standard", seed=109, n1=5, n2=4, d=4,
         description="logistic sigmoid, standard, hidden 12/12, W_std 2.0, b_std 0.5, k=1",
         model={"parameterization": "standard", "layers": [
             dense(12, 2.0, 0.5), act("sigmoid"), dense(12, 2.0, 0.5), act("sigmoid"), dense(1, 2.0, 0.5)]}),
    dict(name="softplus_ntk", seed=110, n1=5, n2=6, d=2,
         description="softplus, ntk, hidden 20, W_std 1.0 (default, omitted in JSON for the last layer), b_std 0.3, k=1",
         model={"parameterization": "ntk", "layers": [
             dense(20, 1.0, 0.3), act("softplus"), {"type": "dense", "width": 1, "b_std": 0.3}]}),
    dict(name="leaky_relu_ntk", seed=111, n1=6, n2=4, d=3,
         description="leaky ReLU alpha 0.2, ntk, hidden 16/16, W_std sqrt2, b_std 0.1, k=1",
         model={"parameterization": "ntk", "layers": [
             dense(16, SQRT2, 0.1), act("leaky_relu", alpha=0.2), dense(16, SQRT2, 0.1),
             act("leaky_relu", alpha=0.2), dense(1, SQRT2, 0.1)]}),
    dict(name="consecutive_dense_ntk", seed=112, n1=5, n2=3, d=4,
         description="two consecutive dense layers (no activation between), W_std 0.8/1.7/2.5, middle one without bias, ReLU, ntk, k=2",
         model={"parameterization": "ntk", "layers": [
             dense(10, 0.8, 0.3), dense(12, 1.7), act("relu"), dense(2, 2.5, 0.05)]}),
    dict(name="single_dense_k2", seed=113, n1=4, n2=3, d=3,
         description="a single dense layer (linear model, no hidden layer), ntk, W_std 1.3, b_std 0.4, k=2: Theta = (1.69 x.x'/d + 0.16) I_2",
         model={"parameterization": "ntk", "layers": [dense(2, 1.3, 0.4)]}),
    dict(name="relu_standard_k2_deep", seed=114, n1=4, n2=5, d=5,
         description="ReLU, standard, three hidden layers 8/12/8 (middle without bias), W_std sqrt2, b_std 0.2, k=2",
         model={"parameterization": "standard", "layers": [
             dense(8, SQRT2, 0.2), act("relu"), dense(12, SQRT2), act("relu"), dense(8, SQRT2, 0.2),
             act("relu"), dense(2, SQRT2, 0.2)]}),
]


def make_empirical(cases=EMPIRICAL_CASES, rel="empirical"):
    base = os.path.join(FIX, rel)
    prefix = "residual/" if rel.startswith("residual") else ""
    os.makedirs(base, exist_ok=True)
    index = []
    for case in cases:
        name, model = case["name"], case["model"]
        n1, n2, d = case["n1"], case["n2"], case["d"]
        assert n1 != n2 and n1 <= 8 and n2 <= 8 and d <= 5
        assert all(l["width"] <= 24 for l in dense_layers(model))
        rng = np.random.RandomState(case["seed"])
        x1 = rng.standard_normal((n1, d))
        x2 = rng.standard_normal((n2, d))
        flat = draw_params(model, d, rng)
        k = dense_layers(model)[-1]["width"]

        init_fn, apply_fn, _ = build(model)
        params = to_stax_params(model, init_fn, d, flat)

        out = np.asarray(apply_fn(params, x1))
        f_np, _ = np_forward(model, flat, x1)
        assert out.shape == (n1, k)
        check(f"{prefix}{name} forward", rel_err(out, f_np) * max(np.max(np.abs(f_np)), 1.0), 1e-12)
        check(f"{prefix}{name} forward x2", rel_err(apply_fn(params, x2), np_forward(model, flat, x2)[0]), 1e-12)

        kernels = {}
        for trace_axes, tag in (((-1,), "mean"), ((), "full")):
            if tag == "full" and k == 1:
                continue
            fns = {impl: nt.empirical_ntk_fn(apply_fn, trace_axes=trace_axes, vmap_axes=0,
                                             implementation=impl)
                   for impl in (nt.NtkImplementation.STRUCTURED_DERIVATIVES,
                                nt.NtkImplementation.JACOBIAN_CONTRACTION)}
            for suffix, xb in (("11", None), ("12", x2)):
                sd = np.asarray(fns[nt.NtkImplementation.STRUCTURED_DERIVATIVES](x1, xb, params))
                jc = np.asarray(fns[nt.NtkImplementation.JACOBIAN_CONTRACTION](x1, xb, params))
                check(f"{prefix}{name} {tag}_{suffix} JC vs SD", rel_err(jc, sd), 1e-12)
                kernels[f"{tag}_{suffix}"] = sd

        # Independent numpy structured formula; also fixes the conventions:
        # mean = trace of the full kernel / k; full is [i, j, a, b].
        for suffix, xb in (("11", x1), ("12", x2)):
            full_np = np_full_ntk(model, flat, x1, xb)
            mean_np = np.trace(full_np, axis1=2, axis2=3) / k
            check(f"{prefix}{name} mean_{suffix} vs numpy", rel_err(kernels[f"mean_{suffix}"], mean_np), 1e-12)
            if k > 1:
                assert kernels[f"full_{suffix}"].shape == (n1, xb.shape[0], k, k)
                check(f"{prefix}{name} full_{suffix} vs numpy", rel_err(kernels[f"full_{suffix}"], full_np), 1e-12)
        check(f"{prefix}{name} symmetric", rel_err(kernels["mean_11"], kernels["mean_11"].T), 1e-13)

        out_dir = os.path.join(base, name)
        fresh_dir(out_dir)
        write_json(os.path.join(out_dir, "model.json"), model)
        np.savez(os.path.join(out_dir, "params.npz"),
                 **{key: np.ascontiguousarray(v, dtype=np.float64) for key, v in flat.items()})
        save(out_dir, "x1.npy", x1)
        save(out_dir, "x2.npy", x2)
        save(out_dir, "outputs_1.npy", out)
        save(out_dir, "ntk_mean_11.npy", kernels["mean_11"])
        save(out_dir, "ntk_mean_12.npy", kernels["mean_12"])
        if k > 1:
            save(out_dir, "ntk_full_11.npy", kernels["full_11"])
            save(out_dir, "ntk_full_12.npy", kernels["full_12"])
        index.append({"name": name, "description": case["description"], "k": k,
                      "n1": n1, "n2": n2, "d": d})
        print(f"{rel} {name}: k={k} n1={n1} n2={n2} d={d} ok")
    write_json(os.path.join(base, "cases.json"), index)


# ----------------------------------------------------------------------------
# Analytic fixtures
# ----------------------------------------------------------------------------

WORKED_X = np.array([[1.0, 0.0], [0.6, 0.8], [-0.5, 2.0]])
WORKED_NTK_ROW0 = [3.06, 1.5968012380296934, 1.0453387055054142]
WORKED_NNGP_ROW0 = [1.03, 0.7625666268148402, 0.9112608526523525]

ANALYTIC_CASES = [
    dict(name="relu_ntk", seed=201, n1=5, n2=4, d=3, tol=1e-7,
         description="ReLU, ntk, 2 hidden layers, W_std sqrt2, b_std 0.1 (widths irrelevant under ntk)",
         model={"parameterization": "ntk", "layers": [
             dense(16, SQRT2, 0.1), act("relu"), dense(24, SQRT2, 0.1), act("relu"), dense(1, SQRT2, 0.1)]}),
    dict(name="relu_standard", seed=202, n1=5, n2=4, d=3, tol=1e-7,
         description="ReLU, standard, hidden 16/24, W_std sqrt2, b_std 0.1: the NTK depends on the finite fan-ins (d, 16, 24)",
         model={"parameterization": "standard", "layers": [
             dense(16, SQRT2, 0.1), act("relu"), dense(24, SQRT2, 0.1), act("relu"), dense(1, SQRT2, 0.1)]}),
    dict(name="erf_ntk", seed=203, n1=6, n2=3, d=4, tol=1e-12,
         description="erf, ntk, 2 hidden layers, W_std 1.5, b_std 0.2",
         model={"parameterization": "ntk", "layers": [
             dense(20, 1.5, 0.2), act("erf"), dense(20, 1.5, 0.2), act("erf"), dense(1, 1.5, 0.2)]}),
    dict(name="erf_standard_nobias", seed=204, n1=4, n2=5, d=5, tol=1e-12,
         description="erf, standard, hidden 12 (no bias) / 10, last dense without bias",
         model={"parameterization": "standard", "layers": [
             dense(12, 1.3), act("erf"), dense(10, 1.2, 0.3), act("erf"), dense(1, 1.0)]}),
    dict(name="identity_ntk", seed=205, n1=5, n2=3, d=4, tol=1e-12,
         description="linear network (identity activations), ntk, W_std 1.1, b_std 0.5",
         model={"parameterization": "ntk", "layers": [
             dense(8, 1.1, 0.5), act("identity"), dense(6, 1.1, 0.5), act("identity"), dense(1, 1.1, 0.5)]}),
    dict(name="tanh_ntk_quad64", seed=206, n1=5, n2=4, d=3, tol=1e-10, quadrature_degree=64,
         description="tanh, ntk, W_std 1.5, b_std 0.1, kernel by stax.ElementwiseNumerical(tanh, deg=64) "
                     "(2-D Gauss-Hermite quadrature; the values are tied to deg=64: they differ from deg=256 by 1.2e-3 relative)",
         model={"parameterization": "ntk", "layers": [
             dense(16, 1.5, 0.1), act("tanh", quadrature_degree=64), dense(16, 1.5, 0.1),
             act("tanh", quadrature_degree=64), dense(1, 1.5, 0.1)]}),
    dict(name="worked_check", seed=None, n1=3, n2=2, d=2, tol=1e-7,
         description="the worked check of docs/maths.md: ReLU, ntk, W_std sqrt2, b_std 0.1, 2 hidden layers, "
                     "X = [[1,0],[0.6,0.8],[-0.5,2]]; x2 repeats x1[0] (a coincident pair off the 11 diagonal)",
         model={"parameterization": "ntk", "layers": [
             dense(8, SQRT2, 0.1), act("relu"), dense(8, SQRT2, 0.1), act("relu"), dense(1, SQRT2, 0.1)]}),
]


def make_analytic(cases=ANALYTIC_CASES, rel="analytic"):
    base = os.path.join(FIX, rel)
    prefix = "residual/" if rel.startswith("residual") else ""
    os.makedirs(base, exist_ok=True)
    index = []
    for case in cases:
        name, model = case["name"], case["model"]
        if case.get("refused"):
            index.append(refused_analytic(base, case))
            print(f"{rel} {name}: refused by stax and by the numpy recursion (NotImplementedError) ok")
            continue
        if case["seed"] is None:
            x1 = WORKED_X.copy()
            x2 = np.array([[1.0, 0.0], [0.0, 1.0]])
        else:
            rng = np.random.RandomState(case["seed"])
            x1 = rng.standard_normal((case["n1"], case["d"]))
            x2 = rng.standard_normal((case["n2"], case["d"]))
        n1, n2, d = x1.shape[0], x2.shape[0], x1.shape[1]
        assert (n1, n2, d) == (case["n1"], case["n2"], case["d"]) and n1 != n2
        _, _, kernel_fn = build(model, analytic=True)
        nngp_12, ntk_12 = (np.asarray(a) for a in kernel_fn(x1, x2, ("nngp", "ntk")))
        nngp_11, ntk_11 = (np.asarray(a) for a in kernel_fn(x1, None, ("nngp", "ntk")))
        assert nngp_11.shape == ntk_11.shape == (n1, n1) and ntk_12.shape == (n1, n2)

        for suffix, xb, nngp, ntk in (("11", x1, nngp_11, ntk_11), ("12", x2, nngp_12, ntk_12)):
            K, T = np_analytic(model, x1, xb)
            check(f"{prefix}{name} nngp_{suffix} vs numpy recursion", rel_err(nngp, K), case["tol"])
            check(f"{prefix}{name} ntk_{suffix} vs numpy recursion", rel_err(ntk, T), case["tol"])

        if name == "worked_check":
            check("worked check NTK row 0", rel_err(ntk_11[0], WORKED_NTK_ROW0), 1e-12)
            check("worked check NNGP row 0", rel_err(nngp_11[0], WORKED_NNGP_ROW0), 1e-12)
            print(f"  worked check: NTK row 0 = {list(ntk_11[0])}, NNGP row 0 = {list(nngp_11[0])}")

        out_dir = os.path.join(base, name)
        fresh_dir(out_dir)
        write_json(os.path.join(out_dir, "model.json"), model)
        save(out_dir, "x1.npy", x1)
        save(out_dir, "x2.npy", x2)
        save(out_dir, "nngp_11.npy", nngp_11)
        save(out_dir, "ntk_11.npy", ntk_11)
        save(out_dir, "nngp_12.npy", nngp_12)
        save(out_dir, "ntk_12.npy", ntk_12)
        entry = {"name": name, "description": case["description"],
                 "k": dense_layers(model)[-1]["width"], "n1": n1, "n2": n2, "d": d}
        if "quadrature_degree" in case:
            entry["quadrature_degree"] = case["quadrature_degree"]
        index.append(entry)
        print(f"{rel} {name}: n1={n1} n2={n2} d={d} ok")
    write_json(os.path.join(base, "cases.json"), index)


# ----------------------------------------------------------------------------
# Residual MLPs: {"type": "residual", "layers": [...]} is y = x + block(x)
# ----------------------------------------------------------------------------


def res_a(param="ntk", bias=True, quad=None):
    """(a)/(b): dense(16) -> residual[relu, dense(16)] -> relu -> dense(1)."""
    b = 0.1 if bias else None
    # without bias, the block's dense layer writes an explicit "b_std": null (the others omit it)
    inner = dense(16, SQRT2, b) if bias else {"type": "dense", "width": 16, "W_std": SQRT2, "b_std": None}
    return {"parameterization": param, "layers": [
        dense(16, SQRT2, b), residual(act("relu"), inner), act("relu"), dense(1, SQRT2, b)]}


def res_c():
    """(c): two blocks in a row, the second with two dense layers."""
    return {"parameterization": "ntk", "layers": [
        dense(16, 1.5, 0.2),
        residual(act("relu"), dense(16, SQRT2, 0.1)),
        residual(act("relu"), dense(16, 1.2, 0.1), act("erf"), dense(16, 0.8)),
        act("relu"), dense(1, 1.0, 0.1)]}


def res_d(tanh):
    """(d): a residual block nested in a residual block, k = 3."""
    return {"parameterization": "ntk", "layers": [
        dense(16, 1.3, 0.1),
        residual(act("relu"), dense(16, SQRT2, 0.1), residual(tanh, dense(16, 1.0, 0.2))),
        act("relu"), dense(3, SQRT2, 0.1)]}


def res_e():
    """(e): post-activation block (skip taken after a nonlinearity), k = 2."""
    return {"parameterization": "ntk", "layers": [
        dense(16, SQRT2, 0.1), act("relu"), residual(dense(16, SQRT2, 0.1), act("relu")),
        dense(2, 1.0, 0.1)]}


def res_f(d):
    """(f): a block directly on the data (width d), standard parameterization."""
    return {"parameterization": "standard", "layers": [
        residual(dense(d, 1.0, 0.2)), act("relu"), dense(1, SQRT2, 0.1)]}


RESIDUAL_EMPIRICAL_CASES = [
    dict(name="relu_block_ntk", seed=301, n1=6, n2=4, d=4,
         description="dense(16) -> residual[relu, dense(16)] -> relu -> dense(1), ntk, W_std sqrt2, b_std 0.1, k=1",
         model=res_a()),
    dict(name="relu_block_standard_nobias", seed=302, n1=7, n2=5, d=3,
         description="as relu_block_ntk under standard parameterization, no biases (b_std absent; null in the block), k=1",
         model=res_a("standard", bias=False)),
    dict(name="two_blocks_ntk", seed=303, n1=6, n2=5, d=5,
         description="dense(16) -> residual[relu, dense(16)] -> residual[relu, dense(16), erf, dense(16) (no bias)] "
                     "-> relu -> dense(1), ntk, k=1",
         model=res_c()),
    dict(name="nested_k3", seed=304, n1=6, n2=4, d=3,
         description="dense(16) -> residual[relu, dense(16), residual[tanh, dense(16)]] -> relu -> dense(3), ntk, k=3",
         model=res_d(act("tanh"))),
    dict(name="post_activation_k2", seed=305, n1=7, n2=4, d=4,
         description="dense(16) -> relu -> residual[dense(16), relu] -> dense(2), ntk, k=2: the skip is taken after "
                     "a nonlinearity (no analytic kernel: see residual/analytic post_activation_sum)",
         model=res_e()),
    dict(name="input_block_standard", seed=306, n1=6, n2=5, d=4,
         description="residual[dense(4)] on the data (width d=4) -> relu -> dense(1), standard, b_std 0.2/0.1, k=1 "
                     "(no analytic kernel: see residual/analytic input_block_sum)",
         model=res_f(4)),
]

RESIDUAL_ANALYTIC_CASES = [
    dict(name="relu_block_ntk", seed=401, n1=6, n2=4, d=4, tol=1e-7,
         description="dense(16) -> residual[relu, dense(16)] -> relu -> dense(1), ntk, W_std sqrt2, b_std 0.1",
         model=res_a()),
    dict(name="relu_block_standard_nobias", seed=402, n1=7, n2=5, d=3, tol=1e-7,
         description="as relu_block_ntk under standard parameterization, no biases: the NTK depends on the "
                     "finite fan-ins (d, 16, 16)",
         model=res_a("standard", bias=False)),
    dict(name="two_blocks_ntk", seed=403, n1=6, n2=5, d=5, tol=1e-7,
         description="dense(16) -> residual[relu, dense(16)] -> residual[relu, dense(16), erf, dense(16) (no bias)] "
                     "-> relu -> dense(1), ntk",
         model=res_c()),
    dict(name="nested_k3_tanh_quad64", seed=404, n1=6, n2=4, d=3, tol=1e-7, quadrature_degree=64,
         description="dense(16) -> residual[relu, dense(16), residual[tanh (quadrature_degree 64), dense(16)]] "
                     "-> relu -> dense(3), ntk; tanh by stax.ElementwiseNumerical(tanh, deg=64)",
         model=res_d(act("tanh", quadrature_degree=64))),
    dict(name="post_activation_sum", seed=405, d=4, refused=True,
         description="dense(16) -> relu -> residual[dense(16), relu] -> dense(2): both summed branches are relu "
                     "outputs (not mean-zero Gaussian); stax's kernel_fn raises NotImplementedError",
         model=res_e()),
    dict(name="input_block_sum", seed=406, d=4, refused=True,
         description="residual[dense(4)] on the data -> relu -> dense(1), standard: the skip branch is the input "
                     "itself (stax marks the input kernel is_gaussian=False); kernel_fn raises NotImplementedError",
         model=res_f(4)),
]


def refused_analytic(base, case):
    """A model whose analytic kernel stax refuses: check that it does, write model.json only."""
    name, model = case["name"], case["model"]
    rng = np.random.RandomState(case["seed"])
    x1 = rng.standard_normal((5, case["d"]))
    x2 = rng.standard_normal((3, case["d"]))
    _, apply_fn, kernel_fn = build(model, analytic=True)
    for xb in (None, x2):
        for get in ("nngp", "ntk", ("nngp", "ntk")):
            try:
                kernel_fn(x1, xb, get)
            except NotImplementedError as e:
                assert "FanInSum" in str(e), str(e)
            else:
                raise AssertionError(f"{name}: stax kernel_fn did not refuse ({get})")
        try:
            np_analytic(model, x1, x1 if xb is None else xb)
        except NotImplementedError:
            pass
        else:
            raise AssertionError(f"{name}: the numpy recursion did not refuse")
    out_dir = os.path.join(base, name)
    fresh_dir(out_dir)
    write_json(os.path.join(out_dir, "model.json"), model)
    return {"name": name, "refused": True, "description": case["description"],
            "k": dense_layers(model)[-1]["width"], "d": case["d"], "model": model}


def make_residual():
    for case in RESIDUAL_EMPIRICAL_CASES:
        assert case["n2"] <= 5 and all(l["width"] <= 16 for l in dense_layers(case["model"]))
    make_empirical(RESIDUAL_EMPIRICAL_CASES, os.path.join("residual", "empirical"))
    make_analytic(RESIDUAL_ANALYTIC_CASES, os.path.join("residual", "analytic"))


# ----------------------------------------------------------------------------
# Data set
# ----------------------------------------------------------------------------


def make_digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = np.ascontiguousarray(digits.data / 16.0, dtype=np.float32)
    y = np.ascontiguousarray(digits.target, dtype=np.int64)
    assert X.shape == (1797, 64) and y.shape == (1797,)
    assert X.min() == 0.0 and X.max() == 1.0
    os.makedirs(os.path.join(ROOT, "data"), exist_ok=True)
    np.save(os.path.join(ROOT, "data", "digits.npy"), X, allow_pickle=False)
    np.save(os.path.join(ROOT, "data", "digits_labels.npy"), y, allow_pickle=False)
    print(f"data/digits.npy {X.shape} {X.dtype}, data/digits_labels.npy {y.shape} {y.dtype}")


def main():
    print(f"jax {jax.__version__}, neural-tangents 0.6.5 expected, numpy {np.__version__}")
    assert jnp.zeros(1).dtype == jnp.float64
    make_empirical()
    make_analytic()
    make_residual()
    make_digits()
    print("largest relative error per check:")
    for kind, (err, where) in sorted(WORST.items()):
        print(f"  {err:9.2e}  {where}")
    print("all fixtures written and checked")


if __name__ == "__main__":
    sys.exit(main())
