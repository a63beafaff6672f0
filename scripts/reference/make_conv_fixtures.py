#!/usr/bin/env python3
"""Generate the convolutional reference fixtures (conv, avg_pool, global_avg_pool, global_sum_pool, flatten).

Run with the venv made by scripts/reference/setup.sh:

    ~/.cache/ntk-reference-venv/bin/python scripts/reference/make_conv_fixtures.py

(or "$(scripts/reference/setup.sh)" scripts/reference/make_conv_fixtures.py). Takes about a
minute and a half (mostly jax compiling). It imports the helpers of make_fixtures.py (dense/act/residual builders, rel_err,
check, save, write_json, fresh_dir) and follows its conventions.

Writes (relative to the repository root), float64 everywhere:
  Tests/Fixtures/conv/empirical/<case>/  model.json, params.npz, x1.npy, x2.npy, outputs_1.npy,
      ntk_mean_11.npy, ntk_mean_12.npy (trace_axes=(-1,): the MEAN over the k outputs) and,
      when k > 1, ntk_full_11.npy, ntk_full_12.npy ((n1, n2, k, k), [i, j, a, b]);
  Tests/Fixtures/conv/empirical/cases.json
      [{name, description, k, n1, n2, input_shape, flat}]
  Tests/Fixtures/conv/analytic/<case>/   model.json, x1.npy, x2.npy, nngp_11.npy, ntk_11.npy,
      nngp_12.npy, ntk_12.npy (stax kernel_fn(x1, None) / kernel_fn(x1, x2));
  Tests/Fixtures/conv/analytic/cases.json
      [{name, description, k, n1, n2, input_shape, flat}], and for a model whose analytic
      kernel stax refuses {name, refused: true, description, k, input_shape, flat, model}
      (its directory then holds model.json only).

Model schema (the tool's JSON) and its stax mapping:
  "input_shape": [H, W, C] or [L, C] (optional, top level): each flat data row (x*.npy of shape
      (n, prod(input_shape)), `flat` true in cases.json) is reshaped in C order to it. Without
      it, x*.npy is already shaped (n, H, W, C) / (n, L, C), channels last (`flat` false).
  conv {channels, kernel, strides (default 1s), padding VALID (default) | SAME | CIRCULAR,
      W_std (default 1), b_std (absent / null: no bias)}
      -> stax.Conv(channels, kernel, strides, padding, W_std, b_std, parameterization=...)
      with the default dimension numbers (NHWC / HWIO; 1-D: NWC / WIO).
  avg_pool {window, strides (default = window, unlike stax whose default is 1s),
      padding VALID (default) | SAME | CIRCULAR}
      -> stax.AvgPool(window, strides, padding) (normalize_edges False: always / prod(window),
      zero-padded entries included).
  global_avg_pool -> stax.GlobalAvgPool(); global_sum_pool -> stax.GlobalSumPool(); flatten -> stax.Flatten() (C order over (H, W, C)).
  dense / activations / residual as in make_fixtures.py; dense on spatial data acts on the
      channel axis at each position (fan-in = channels).
  params.npz: W0, b0, W1, ... over the layers with parameters (conv and dense), depth-first
      (a residual block's layers numbered in place). Conv W{i}: (kh, kw, C_in, C_out) or
      (k, C_in, C_out); b{i}: (C_out,); dense W{i}: (n_in, n_out), b{i}: (n_out,). Raw
      trainable arrays of the declared parameterization: ntk W, b ~ N(0, 1) with
      h = W_std / sqrt(fan_in) * conv(z, W) + b_std * b, fan_in = prod(kernel) * C_in;
      standard W ~ N(0, W_std^2 / fan_in), b ~ N(0, b_std^2) with h = conv(z, W) + b.
      Drawn with numpy after x1 and x2 from RandomState(seed), W then b per layer.

Padding amounts (lax.padtype_to_pads; the script checks its own formula against it):
  VALID: none, out = floor((n - k) / s) + 1.  SAME and CIRCULAR: out = ceil(n / s),
  total = max((out - 1) * s + k - n, 0), low = total // 2, high = total - low (the extra one
  at the END); SAME pads zeros, CIRCULAR pads by wrapping (np.pad mode 'wrap'), then a VALID
  conv / pool. E.g. kernel 4, n = 7, s = 1: low 1, high 2; kernel 3, n = 6, s = 2: low 0, high 1.

Checks (any failure raises; nothing is reported as done otherwise):
  * stax apply_fn(params, x) == an independent numpy forward pass (explicit gather-matrix
    im2col for conv / pool, 1e-12 relative), for x1 and x2;
  * JACOBIAN_CONTRACTION == STRUCTURED_DERIVATIVES (1e-12 relative) for every kernel;
  * the empirical NTK == per-sample Jacobians from a numpy backward pass, contracted (1e-12);
  * the analytic NNGP / NTK == an independent numpy recursion over the full
    (sample, sample, position, position) covariance (1e-12; 1e-7 with ReLU, whose
    sqrt(q11 q22 - q12^2) leaves rounding noise near coincident points: stax's ntk_11 diagonal
    of conv2d_valid_relu_flatten_ntk is 7.6e-10 relative off the exact theta = 0 value, the
    numpy recursion being exact there; everything else agrees to ~1e-15);
  * stax kernel_fn refuses (NotImplementedError) the residual sums it cannot do, and so does
    the numpy recursion.
"""
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402  (jax x64, stax builders, helpers; no side effects)

import warnings  # noqa: E402

import numpy as np  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402
import neural_tangents as nt  # noqa: E402
from neural_tangents import stax  # noqa: E402

from make_fixtures import SQRT2, act, check, dense, fresh_dir, rel_err, residual, save, write_json  # noqa: E402

OUT = os.path.join(mf.FIX, "conv")
PARAM_LAYERS = ("conv", "dense")

# every residual branch here starts or ends with a conv / dense, as the warning asks
warnings.filterwarnings("ignore", message=".*`FanIn` layers assume independent inputs.*")


# ----------------------------------------------------------------------------
# Model description helpers
# ----------------------------------------------------------------------------


def conv(channels, kernel, padding=None, strides=None, W_std=None, b_std=None):
    """A conv layer; keys left out fall back to the schema defaults (VALID, 1s, W_std 1, no bias)."""
    d = {"type": "conv", "channels": channels, "kernel": list(kernel)}
    if strides is not None:
        d["strides"] = list(strides)
    if padding is not None:
        d["padding"] = padding
    if W_std is not None:
        d["W_std"] = W_std
    if b_std is not None:
        d["b_std"] = b_std
    return d


def avg_pool(window, strides=None, padding=None):
    d = {"type": "avg_pool", "window": list(window)}
    if strides is not None:
        d["strides"] = list(strides)
    if padding is not None:
        d["padding"] = padding
    return d


GAP = {"type": "global_avg_pool"}
GSP = {"type": "global_sum_pool"}
FLATTEN = {"type": "flatten"}


def conv_strides(layer):
    return tuple(layer.get("strides") or (1,) * len(layer["kernel"]))


def pool_strides(layer):
    # the tool's default is the window (stax's would be 1s)
    return tuple(layer.get("strides") or layer["window"])


def stax_layer(layer, param, analytic):
    t = layer["type"]
    if t == "residual":
        block = stax.serial(*[stax_layer(l, param, analytic) for l in layer["layers"]])
        return stax.serial(stax.FanOut(2), stax.parallel(block, stax.Identity()), stax.FanInSum())
    if t == "conv":
        return stax.Conv(layer["channels"], tuple(layer["kernel"]), conv_strides(layer),
                         layer.get("padding", "VALID"), W_std=layer.get("W_std", 1.0),
                         b_std=layer.get("b_std"), parameterization=param)
    if t == "avg_pool":
        return stax.AvgPool(tuple(layer["window"]), pool_strides(layer), layer.get("padding", "VALID"),
                            normalize_edges=False)
    if t == "global_avg_pool":
        return stax.GlobalAvgPool()
    if t == "global_sum_pool":
        return stax.GlobalSumPool()
    if t == "flatten":
        return stax.Flatten()
    return mf.stax_layer(layer, param, analytic)


def build(model, analytic=False):
    p = model["parameterization"]
    return stax.serial(*[stax_layer(l, p, analytic) for l in model["layers"]])


def shaped(model, x, input_shape):
    """The data as stax sees it: (n, *input_shape)."""
    return x.reshape((x.shape[0],) + tuple(input_shape))


def output_width(model):
    for layer in reversed(model["layers"]):
        if layer["type"] == "dense":
            return layer["width"]
    raise AssertionError("the output must come from a dense layer")


# ----------------------------------------------------------------------------
# Spatial operators as explicit 0/1 gather matrices (independent of lax)
# ----------------------------------------------------------------------------


def pads_1d(n, k, s, padding):
    """(out, low, high) of one spatial axis."""
    if padding == "VALID":
        return (n - k) // s + 1, 0, 0
    assert padding in ("SAME", "CIRCULAR"), padding
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return out, total // 2, total - total // 2


PADS_SEEN = set()


def gather(in_shape, kernel, strides, padding):
    """A[o, q, p] = 1 when tap q of output position o reads input position p (C-order flat
    indices over the spatial axes); a zero-padded tap reads nothing."""
    axes = []
    for n, k, s in zip(in_shape, kernel, strides):
        out, lo, hi = pads_1d(n, k, s, padding)
        if padding != "VALID":
            assert lax.padtype_to_pads((n,), (k,), (s,), "SAME") == [(lo, hi)], (n, k, s)
        PADS_SEEN.add((padding, n, k, s, out, lo, hi))
        assert out >= 1, (in_shape, kernel, strides, padding)
        idx = np.full((out, k), -1)
        for o in range(out):
            for q in range(k):
                i = o * s + q - lo
                if padding == "CIRCULAR":
                    idx[o, q] = i % n
                elif 0 <= i < n:
                    idx[o, q] = i
        axes.append(idx)
    out_shape = tuple(a.shape[0] for a in axes)
    P, O, Q = int(np.prod(in_shape)), int(np.prod(out_shape)), int(np.prod(kernel))
    A = np.zeros((O, Q, P))
    for o_multi in np.ndindex(*out_shape):
        o = np.ravel_multi_index(o_multi, out_shape) if out_shape else 0
        for q_multi in np.ndindex(*kernel):
            q = np.ravel_multi_index(q_multi, tuple(kernel))
            src = [axes[a][o_multi[a], q_multi[a]] for a in range(len(kernel))]
            if min(src) >= 0:
                A[o, q, np.ravel_multi_index(tuple(src), tuple(in_shape))] = 1.0
    return A, out_shape


# ----------------------------------------------------------------------------
# Shapes and parameters
# ----------------------------------------------------------------------------


def walk_params(layers, shape):
    """Yields (layer, fan-in shape info) for conv / dense depth-first; returns the output shape.

    shape = (spatial..., C); after flatten / global_avg_pool it is (C,).
    Yields (layer, W shape, b shape, fan_in).
    """
    for layer in layers:
        t = layer["type"]
        if t == "residual":
            out = yield from walk_params(layer["layers"], shape)
            assert out == shape, f"residual block maps {shape} to {out}"
        elif t == "conv":
            sp, c = shape[:-1], shape[-1]
            assert len(layer["kernel"]) == len(sp), (layer, shape)
            _, out_sp = gather(sp, layer["kernel"], conv_strides(layer), layer.get("padding", "VALID"))
            yield layer, tuple(layer["kernel"]) + (c, layer["channels"]), (layer["channels"],), \
                int(np.prod(layer["kernel"])) * c
            shape = out_sp + (layer["channels"],)
        elif t == "dense":
            yield layer, (shape[-1], layer["width"]), (layer["width"],), shape[-1]
            shape = shape[:-1] + (layer["width"],)
        elif t == "avg_pool":
            _, out_sp = gather(shape[:-1], layer["window"], pool_strides(layer), layer.get("padding", "VALID"))
            shape = out_sp + shape[-1:]
        elif t in ("global_avg_pool", "global_sum_pool"):
            shape = shape[-1:]
        elif t == "flatten":
            shape = (int(np.prod(shape)),)
    return shape


def draw_params(model, input_shape, rng):
    out = {}
    for l, (layer, w_shape, b_shape, fan_in) in enumerate(walk_params(model["layers"], tuple(input_shape))):
        W = rng.standard_normal(w_shape)
        b = rng.standard_normal(b_shape) if layer.get("b_std") is not None else None
        if model["parameterization"] == "standard":
            W = W * (layer.get("W_std", 1.0) / math.sqrt(fan_in))
            if b is not None:
                b = b * layer["b_std"]
        out[f"W{l}"] = W
        if b is not None:
            out[f"b{l}"] = b
    return out


STAX_PARAM_SHAPES = {}  # (layer type, rank of its input) -> (W shape, b shape) seen in init_fn


def to_stax_params(model, init_fn, input_shape, flat):
    """The stax.serial pytree: conv / dense -> (W, b) with b reshaped to init_fn's broadcastable
    shape ((1, 1, 1, C_out) for a 2-D conv, (1, 1, C_out) for 1-D, (1, n) for a flat dense,
    (1, 1, 1, n) for a dense on (N, H, W, C)); None without bias; everything else ()."""
    _, ref = init_fn(jax.random.PRNGKey(0), (1,) + tuple(input_shape))
    counter = [0]

    def fill(layers, refs, rank):
        assert len(layers) == len(refs), (len(layers), len(refs))
        params = []
        for layer, ref_p in zip(layers, refs):
            t = layer["type"]
            if t == "residual":
                assert len(ref_p) == 3 and ref_p[0] == () and ref_p[2] == (), ref_p
                block_ref, id_ref = ref_p[1]
                assert id_ref == (), id_ref
                par = type(ref_p[1])((fill(layer["layers"], block_ref, rank), ()))
                params.append(type(ref_p)([(), par, ()]))
                continue
            if t in ("flatten", "global_avg_pool", "global_sum_pool"):
                rank = 2
            if t not in PARAM_LAYERS:
                assert ref_p == (), ref_p
                params.append(())
                continue
            l = counter[0]
            W, b = flat[f"W{l}"], flat.get(f"b{l}")
            refW, refb = ref_p
            assert refW.shape == W.shape, (t, refW.shape, W.shape)
            if b is None:
                assert refb is None
                params.append((jnp.asarray(W), None))
            else:
                assert refb.shape == (1,) * (rank - 1) + b.shape, (t, rank, refb.shape, b.shape)
                STAX_PARAM_SHAPES[(t, rank)] = (tuple(refW.shape), tuple(refb.shape))
                params.append((jnp.asarray(W), jnp.asarray(b.reshape(refb.shape))))
            counter[0] += 1
        return type(refs)(params)

    params = fill(model["layers"], ref, len(input_shape) + 1)
    assert counter[0] == len(flat) - sum(k.startswith("b") for k in flat)
    return params


# ----------------------------------------------------------------------------
# Independent numpy forward / backward (per-sample Jacobians)
# ----------------------------------------------------------------------------
# Activations are (N, P, C): P = prod(spatial) positions in C order; flat data is P = 1.


def np_forward(model, flat, x, input_shape):
    """f(x) (N, k) and a trace for the backward pass."""
    counter = [0]
    p = model["parameterization"]
    z = x.reshape(x.shape[0], -1, input_shape[-1])

    def run(layers, z, sp):
        trace = []
        for layer in layers:
            t = layer["type"]
            if t == "residual":
                y, sub, sp_b = run(layer["layers"], z, sp)
                assert y.shape == z.shape and sp_b == sp
                trace.append(("residual", sub))
                z = z + y
            elif t in PARAM_LAYERS:
                l = counter[0]
                counter[0] += 1
                if t == "conv":
                    A, out_sp = gather(sp, layer["kernel"], conv_strides(layer), layer.get("padding", "VALID"))
                else:  # dense: a 1x1 conv at each position
                    A, out_sp = np.eye(z.shape[1])[:, None, :], sp
                W = flat[f"W{l}"].reshape(-1, flat[f"W{l}"].shape[-1])
                b = flat.get(f"b{l}")
                patches = np.einsum("oqp,npc->noqc", A, z).reshape(z.shape[0], A.shape[0], -1)
                fan_in = patches.shape[-1]
                has_b = b is not None
                if p == "ntk":
                    s, tb = layer.get("W_std", 1.0) / math.sqrt(fan_in), (layer["b_std"] if has_b else 0.0)
                else:
                    s, tb = 1.0, (1.0 if has_b else 0.0)
                h = s * (patches @ W)
                if has_b:
                    h = h + tb * b
                trace.append(("param", l, s, tb, patches, A, W))
                z, sp = h, out_sp
            elif t == "avg_pool":
                A, out_sp = gather(sp, layer["window"], pool_strides(layer), layer.get("padding", "VALID"))
                M = A.sum(1) / A.shape[1]
                trace.append(("linear", M))
                z, sp = np.einsum("op,npc->noc", M, z), out_sp
            elif t in ("global_avg_pool", "global_sum_pool"):
                M = np.full((1, z.shape[1]), 1.0 / z.shape[1] if t == "global_avg_pool" else 1.0)
                trace.append(("linear", M))
                z, sp = np.einsum("op,npc->noc", M, z), ()
            elif t == "flatten":
                trace.append(("flatten", z.shape))
                z, sp = z.reshape(z.shape[0], 1, -1), ()
            else:
                trace.append(("act", layer, z))
                z = mf.np_act(layer, z)
        return z, trace, sp

    z, trace, sp = run(model["layers"], z, tuple(input_shape[:-1]))
    assert sp == () and z.shape[1] == 1, (sp, z.shape)
    return z[:, 0, :], trace


def np_jacobian(model, flat, x, input_shape):
    """Per-sample Jacobian (N, k, n_params) w.r.t. W0, b0, W1, ... in file order."""
    f, trace = np_forward(model, flat, x, input_shape)
    n, k = f.shape
    grads = {}

    def back(trace, delta):  # delta: (N, k, P, C)
        for item in reversed(trace):
            kind = item[0]
            if kind == "act":
                delta = delta * mf.np_dact(item[1], item[2])[:, None]
            elif kind == "residual":
                delta = delta + back(item[1], delta)
            elif kind == "linear":
                delta = np.einsum("op,naoc->napc", item[1], delta)
            elif kind == "flatten":
                delta = delta.reshape((n, k) + item[1][1:])
            else:
                _, l, s, tb, patches, A, W = item
                grads[f"W{l}"] = s * np.einsum("noi,naoj->naij", patches, delta)
                if f"b{l}" in flat:
                    grads[f"b{l}"] = tb * delta.sum(2)
                dpatch = s * (delta @ W.T)
                dpatch = dpatch.reshape(dpatch.shape[:3] + (A.shape[1], -1))
                delta = np.einsum("oqp,naoqc->napc", A, dpatch)
        return delta

    back(trace, np.broadcast_to(np.eye(k)[None, :, None, :], (n, k, 1, k)).copy())
    assert sorted(grads) == sorted(flat), (sorted(grads), sorted(flat))
    return np.concatenate([grads[key].reshape(n, k, -1) for key in flat], axis=2)


# ----------------------------------------------------------------------------
# Independent numpy infinite-width recursion over full spatial covariances
# ----------------------------------------------------------------------------


def np_analytic(model, x, input_shape):
    """NNGP and NTK (N, N) for all pairs of the rows of x (flat or shaped).

    K[i, j, p, r] (positions p, r in C order) is the covariance per channel; the input's is
    x_i[p] . x_j[r] / C. Conv: K' = W_std^2 / Q sum_q K[g(o, q), g(r, q)] + b_std^2 (zero pad
    reads 0). Activations act entrywise with the per-position variances K[i, i, p, p].
    avg_pool: M K M^T. global_avg_pool: mean over (p, r); flatten: mean over p of K[p, p].
    T follows Conv/Dense as in stax: ntk T' = K' + W^2 conv(T); standard
    T' = fan_in conv(K) + W^2 conv(T) (+ 1 with bias), conv unscaled = 1/Q sum_q.
    """
    p = model["parameterization"]
    z = x.reshape(x.shape[0], -1, input_shape[-1])
    K = np.einsum("ipc,jrc->ijpr", z, z) / input_shape[-1]
    T = np.zeros_like(K)

    def lin(M, K):  # M (O, P): K' = M K M^T on both position axes
        return np.einsum("op,ijpr,sr->ijos", M, K, M, optimize=True)

    def run(layers, K, T, sp, c, gaussian):
        for layer in layers:
            t = layer["type"]
            if t == "residual":
                Kb, Tb, spb, cb, gb = run(layer["layers"], K, T, sp, c, gaussian)
                assert spb == sp and cb == c
                if not (gaussian and gb):
                    raise NotImplementedError("residual sum of a non-Gaussian branch")
                K, T = K + Kb, T + Tb
            elif t in PARAM_LAYERS:
                if t == "conv":
                    A, sp2 = gather(sp, layer["kernel"], conv_strides(layer), layer.get("padding", "VALID"))
                    c2 = layer["channels"]
                else:
                    A, sp2, c2 = np.eye(K.shape[2])[:, None, :], sp, layer["width"]
                Q = A.shape[1]

                def cv(K):
                    return np.einsum("oqp,ijpr,sqr->ijos", A, K, A, optimize=True) / Q

                W2 = layer.get("W_std", 1.0) ** 2
                has_b = layer.get("b_std") is not None
                b2 = layer["b_std"] ** 2 if has_b else 0.0
                Ku, Tu = cv(K), cv(T)
                K2 = W2 * Ku + b2
                if p == "ntk":
                    T = K2 + W2 * Tu
                else:
                    T = Q * c * Ku + W2 * Tu + (1.0 if has_b else 0.0)
                K, sp, c, gaussian = K2, sp2, c2, True
            elif t == "avg_pool":
                A, sp = gather(sp, layer["window"], pool_strides(layer), layer.get("padding", "VALID"))
                M = A.sum(1) / A.shape[1]
                K, T = lin(M, K), lin(M, T)
            elif t in ("global_avg_pool", "global_sum_pool"):
                M = np.full((1, K.shape[2]), 1.0 / K.shape[2] if t == "global_avg_pool" else 1.0)
                K, T, sp = lin(M, K), lin(M, T), ()
            elif t == "flatten":
                c = c * K.shape[2]
                K = np.einsum("ijpp->ij", K)[:, :, None, None] / K.shape[2]
                T = np.einsum("ijpp->ij", T)[:, :, None, None] / T.shape[2]
                sp = ()
            else:
                V = np.einsum("iipp->ip", K)
                K, T = mf._np_act_kernel(layer, K, V[:, None, :, None], V[None, :, None, :], T)
                gaussian = gaussian and t == "identity"
        return K, T, sp, c, gaussian

    K, T, sp, _, _ = run(model["layers"], K, T, tuple(input_shape[:-1]), input_shape[-1], False)
    assert sp == () and K.shape[2:] == (1, 1)
    return K[:, :, 0, 0], T[:, :, 0, 0]


# ----------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------

EMPIRICAL_CASES = [
    dict(name="conv2d_valid_relu_flatten_ntk", seed=501, n1=4, n2=3, input_shape=[5, 5, 2], flat=False,
         description="conv(4, 3x3, VALID (default), W_std sqrt2, b_std 0.1) on 5x5x2 -> relu -> flatten (3*3*4=36) "
                     "-> dense(1, W_std 1, b_std 0.1), ntk, k=1",
         model={"parameterization": "ntk", "layers": [
             conv(4, [3, 3], W_std=SQRT2, b_std=0.1), act("relu"), FLATTEN, dense(1, 1.0, 0.1)]}),
    dict(name="conv2d_same_stride2_circular_gap_standard", seed=502, n1=5, n2=3, input_shape=[6, 6, 2],
         flat=False,
         description="conv(5, 3x3, SAME, strides 2x2: 6x6 -> 3x3, pads (0,1) per axis, W_std 1.5, b_std 0.2) -> erf "
                     "-> conv(4, 2x3, CIRCULAR: wrap pads (0,1) x (1,1), W_std sqrt2, b_std 0.1) -> relu "
                     "-> global_avg_pool -> dense(3, W_std 1, b_std 0.1), standard, k=3",
         model={"parameterization": "standard", "layers": [
             conv(5, [3, 3], "SAME", [2, 2], 1.5, 0.2), act("erf"),
             conv(4, [2, 3], "CIRCULAR", None, SQRT2, 0.1), act("relu"), GAP, dense(3, 1.0, 0.1)]}),
    dict(name="conv1d_same_tanh_avgpool_flatten", seed=503, n1=4, n2=5, input_shape=[8, 3], flat=False,
         description="1-D: data (N, 8, 3); conv(4, [3], SAME, W_std 1.3, no bias) -> tanh -> avg_pool [2] "
                     "(strides default = window = [2]) -> flatten (4*4=16) -> dense(2, W_std 1, b_std 0.1), ntk, k=2",
         model={"parameterization": "ntk", "layers": [
             conv(4, [3], "SAME", W_std=1.3), act("tanh"), avg_pool([2]), FLATTEN, dense(2, 1.0, 0.1)]}),
    dict(name="conv2d_stride21_avgpool_same_gap", seed=504, n1=3, n2=5, input_shape=[6, 5, 2], flat=False,
         description="6x5x2 -> conv(4, 3x2, strides [2,1], VALID: -> 2x4) -> relu -> avg_pool [2,2] SAME strides "
                     "[1,1] (zero pads (0,1) per axis, / 4 everywhere) -> conv(3, 2x2, SAME) -> relu "
                     "-> global_avg_pool -> dense(4) -> relu -> dense(2), ntk, W_std sqrt2 / b_std 0.1, k=2",
         model={"parameterization": "ntk", "layers": [
             conv(4, [3, 2], "VALID", [2, 1], SQRT2, 0.1), act("relu"), avg_pool([2, 2], [1, 1], "SAME"),
             conv(3, [2, 2], "SAME", None, SQRT2, 0.1), act("relu"), GAP,
             dense(4, SQRT2, 0.1), act("relu"), dense(2, 1.0, 0.1)]}),
    dict(name="residual_conv_block_ntk", seed=505, n1=4, n2=3, input_shape=[4, 4, 2], flat=False,
         description="4x4x2 -> conv(3, 3x3, SAME) -> relu -> residual[conv(3, 3x3, SAME) -> relu -> conv(3, 3x3, "
                     "SAME, W_std omitted (default 1), no bias)] -> relu -> global_avg_pool -> dense(1), ntk, W_std sqrt2, "
                     "b_std 0.1, k=1 "
                     "(no analytic kernel: see analytic residual_post_activation_sum)",
         model={"parameterization": "ntk", "layers": [
             conv(3, [3, 3], "SAME", None, SQRT2, 0.1), act("relu"),
             residual(conv(3, [3, 3], "SAME", None, SQRT2, 0.1), act("relu"),
                      conv(3, [3, 3], "SAME")),
             act("relu"), GAP, dense(1, 1.0, 0.1)]}),
    dict(name="flat_input_shape_standard", seed=506, n1=5, n2=4, input_shape=[4, 4, 1], flat=True,
         description="flat data (n, 16) with \"input_shape\": [4, 4, 1] (C-order reshape) -> conv(3, 3x3, SAME, "
                     "W_std 1.5, b_std 0.2) -> relu -> avg_pool [2,2] (strides omitted: default = window) "
                     "-> flatten (2*2*3=12) -> dense(3, W_std 1, b_std 0.1), standard, k=3",
         model={"parameterization": "standard", "input_shape": [4, 4, 1], "layers": [
             conv(3, [3, 3], "SAME", None, 1.5, 0.2), act("relu"), avg_pool([2, 2]), FLATTEN,
             dense(3, 1.0, 0.1)]}),
    dict(name="dense_per_position_gap", seed=507, n1=4, n2=5, input_shape=[3, 4, 3], flat=False,
         description="a dense(5, W_std 1.2, b_std 0.2) on spatial data 3x4x3 (acts on the channel axis at each "
                     "position; stax's bias has shape (1,1,1,5)) -> relu -> global_avg_pool -> dense(2, W_std 1, "
                     "b_std 0.1), standard, k=2",
         model={"parameterization": "standard", "layers": [
             dense(5, 1.2, 0.2), act("relu"), GAP, dense(2, 1.0, 0.1)]}),
    dict(name="myrtle_small", seed=508, n1=5, n2=4, input_shape=[4, 4, 1], flat=False,
         description="Myrtle-like on 4x4x1: conv(4, 3x3, SAME) -> relu -> conv(4, 3x3, SAME) -> relu -> avg_pool "
                     "[2,2] -> conv(4, 3x3, SAME) -> relu -> global_avg_pool -> dense(2), ntk, W_std sqrt2, "
                     "conv biases 0.1 / none (explicit \"b_std\": null) / 0.1, dense b_std 0.1, k=2",
         model={"parameterization": "ntk", "layers": [
             conv(4, [3, 3], "SAME", None, SQRT2, 0.1), act("relu"),
             dict(conv(4, [3, 3], "SAME", None, SQRT2), b_std=None), act("relu"), avg_pool([2, 2]),
             conv(4, [3, 3], "SAME", None, SQRT2, 0.1), act("relu"), GAP, dense(2, 1.0, 0.1)]}),
    dict(name="conv1d_circular_even_kernel_pool_circular", seed=509, n1=3, n2=4, input_shape=[7, 2], flat=False,
         description="1-D, data (N, 7, 2): conv(3, [4], CIRCULAR: wrap pads (1,2), W_std 1.4, b_std 0.3) -> "
                     "leaky_relu(0.2) -> avg_pool [3] strides [2] CIRCULAR (7 -> 4, wrap pads (1,1)) "
                     "-> flatten (4*3=12) -> dense(2, W_std 1, b_std 0.1), ntk, k=2",
         model={"parameterization": "ntk", "layers": [
             conv(3, [4], "CIRCULAR", None, 1.4, 0.3), act("leaky_relu", alpha=0.2),
             avg_pool([3], [2], "CIRCULAR"), FLATTEN, dense(2, 1.0, 0.1)]}),
    dict(name="global_sum_pool_standard", seed=510, n1=4, n2=3, input_shape=[5, 4, 2], flat=False,
         description="5x4x2 -> conv(3, 3x3, SAME, W_std 1.3, b_std 0.2) -> relu -> conv(4, 2x2, VALID, W_std 1.3) -> "
                     "gelu -> global_sum_pool (sum over 4x3 positions) -> dense(2, W_std 1, b_std 0.1), standard, k=2",
         model={"parameterization": "standard", "layers": [
             conv(3, [3, 3], "SAME", None, 1.3, 0.2), act("relu"), conv(4, [2, 2], "VALID", None, 1.3),
             act("gelu"), GSP, dense(2, 1.0, 0.1)]}),
]


ANALYTIC_CASES = [
    dict(name="conv2d_valid_relu_flatten_ntk", seed=601, n1=4, n2=3, input_shape=[5, 5, 2], flat=False, tol=1e-7,
         description="conv(4, 3x3, VALID, W_std sqrt2, b_std 0.1) -> relu -> flatten -> dense(1, W_std 1, b_std 0.1), "
                     "ntk (flatten: only per-position variances matter)",
         model={"parameterization": "ntk", "layers": [
             conv(4, [3, 3], W_std=SQRT2, b_std=0.1), act("relu"), FLATTEN, dense(1, 1.0, 0.1)]}),
    dict(name="conv2d_same_stride2_erf_gap", seed=602, n1=5, n2=3, input_shape=[6, 6, 2], flat=False, tol=1e-12,
         description="conv(4, 3x3, SAME, strides 2x2: pads (0,1), W_std 1.5, b_std 0.2) -> erf -> global_avg_pool "
                     "-> dense(1, W_std 1, b_std 0.1), ntk (global pooling: the full position-position covariance)",
         model={"parameterization": "ntk", "layers": [
             conv(4, [3, 3], "SAME", [2, 2], 1.5, 0.2), act("erf"), GAP, dense(1, 1.0, 0.1)]}),
    dict(name="conv2d_tanh_quad16_pool_gap", seed=611, n1=4, n2=3, input_shape=[4, 4, 1], flat=False, tol=1e-10,
         description="conv(3, 3x3, SAME, W_std 1.5, b_std 0.1) -> tanh (ElementwiseNumerical, deg 16) -> avg_pool [2,2] "
                     "-> conv(3, 2x2, SAME, W_std 1.5) -> tanh (deg 16) -> global_avg_pool -> dense(1, W_std 1, b_std 0.1), "
                     "ntk (quadrature on full spatial blocks; its rule is not symmetric in x, x')",
         model={"parameterization": "ntk", "layers": [
             conv(3, [3, 3], "SAME", None, 1.5, 0.1), act("tanh", quadrature_degree=16),
             {"type": "avg_pool", "window": [2, 2]}, conv(3, [2, 2], "SAME", None, 1.5),
             act("tanh", quadrature_degree=16), GAP, dense(1, 1.0, 0.1)]}),
    dict(name="conv1d_circular_relu_gap", seed=603, n1=4, n2=5, input_shape=[8, 2], flat=False, tol=1e-7,
         description="1-D, data (N, 8, 2): conv(3, [3], CIRCULAR, W_std sqrt2, b_std 0.1) -> relu -> conv(3, [4], "
                     "CIRCULAR: wrap pads (1,2), W_std sqrt2) -> relu -> global_avg_pool -> dense(1, W_std 1, "
                     "b_std 0.1), ntk",
         model={"parameterization": "ntk", "layers": [
             conv(3, [3], "CIRCULAR", None, SQRT2, 0.1), act("relu"), conv(3, [4], "CIRCULAR", None, SQRT2),
             act("relu"), GAP, dense(1, 1.0, 0.1)]}),
    dict(name="avgpool_same_valid_flatten", seed=604, n1=3, n2=4, input_shape=[5, 5, 1], flat=False, tol=1e-7,
         description="5x5x1 -> conv(3, 2x2, SAME: pads (0,1), W_std sqrt2, b_std 0.1) -> relu -> avg_pool [2,2] "
                     "strides [1,1] SAME (/4 incl. zero pads) -> avg_pool [2,2] VALID (strides default = window: "
                     "5x5 -> 2x2) -> flatten -> dense(1, W_std 1, b_std 0.1), ntk",
         model={"parameterization": "ntk", "layers": [
             conv(3, [2, 2], "SAME", None, SQRT2, 0.1), act("relu"), avg_pool([2, 2], [1, 1], "SAME"),
             avg_pool([2, 2], None, "VALID"), FLATTEN, dense(1, 1.0, 0.1)]}),
    dict(name="residual_conv_block_pre_activation", seed=605, n1=4, n2=3, input_shape=[4, 4, 2], flat=False,
         tol=1e-7,
         description="4x4x2 -> conv(3, 3x3, SAME, W_std sqrt2, b_std 0.1) -> residual[relu -> conv(3, 3x3, SAME, "
                     "W_std sqrt2, b_std 0.1)] -> relu -> global_avg_pool -> dense(1, W_std 1, b_std 0.1), ntk "
                     "(both summed branches are conv outputs: Gaussian)",
         model={"parameterization": "ntk", "layers": [
             conv(3, [3, 3], "SAME", None, SQRT2, 0.1),
             residual(act("relu"), conv(3, [3, 3], "SAME", None, SQRT2, 0.1)),
             act("relu"), GAP, dense(1, 1.0, 0.1)]}),
    dict(name="residual_post_activation_sum", seed=606, input_shape=[4, 4, 2], flat=False, refused=True,
         description="the empirical residual_conv_block_ntk model: conv -> relu -> residual[conv -> relu -> conv] "
                     "-> ...: the skip branch is a relu output (not mean-zero Gaussian); stax's kernel_fn raises "
                     "NotImplementedError",
         model=EMPIRICAL_CASES[4]["model"]),
    dict(name="flat_input_shape_standard", seed=607, n1=5, n2=4, input_shape=[4, 4, 1], flat=True, tol=1e-7,
         description="flat data (n, 16) with \"input_shape\": [4, 4, 1] -> conv(3, 3x3, SAME, W_std 1.5, b_std 0.2) "
                     "-> relu -> avg_pool [2,2] -> flatten (12) -> dense(1, W_std 1, b_std 0.1), standard: the NTK "
                     "depends on the finite fan-ins (9*1, 2*2*3)",
         model={"parameterization": "standard", "input_shape": [4, 4, 1], "layers": [
             conv(3, [3, 3], "SAME", None, 1.5, 0.2), act("relu"), avg_pool([2, 2]), FLATTEN,
             dense(1, 1.0, 0.1)]}),
    dict(name="conv_relu_conv_relu_flatten_no_pool", seed=608, n1=3, n2=5, input_shape=[6, 6, 1], flat=False,
         tol=1e-7,
         description="no pooling: 6x6x1 -> conv(4, 3x3, VALID, W_std sqrt2, b_std 0.1) -> relu -> conv(4, 2x2, "
                     "strides [2,2], VALID, W_std sqrt2, b_std 0.1) -> relu -> flatten (2*2*4) -> dense(1, W_std 1, "
                     "b_std 0.1), ntk: only per-position variances are needed (stax diagonal_spatial)",
         model={"parameterization": "ntk", "layers": [
             conv(4, [3, 3], "VALID", None, SQRT2, 0.1), act("relu"),
             conv(4, [2, 2], "VALID", [2, 2], SQRT2, 0.1), act("relu"), FLATTEN, dense(1, 1.0, 0.1)]}),
    dict(name="myrtle_small_gap", seed=609, n1=4, n2=3, input_shape=[4, 4, 1], flat=False, tol=1e-7,
         description="Myrtle-like with global pooling, 4x4x1: conv(4, 3x3, SAME) -> relu -> conv(4, 3x3, SAME) -> "
                     "relu -> avg_pool [2,2] -> conv(4, 3x3, SAME) -> relu -> global_avg_pool -> dense(1), ntk, "
                     "W_std sqrt2, biases 0.1 except the second conv",
         model={"parameterization": "ntk", "layers": [
             conv(4, [3, 3], "SAME", None, SQRT2, 0.1), act("relu"),
             conv(4, [3, 3], "SAME", None, SQRT2), act("relu"), avg_pool([2, 2]),
             conv(4, [3, 3], "SAME", None, SQRT2, 0.1), act("relu"), GAP, dense(1, 1.0, 0.1)]}),
    dict(name="identity_conv_standard_gap", seed=610, n1=5, n2=3, input_shape=[3, 4, 2], flat=False, tol=1e-12,
         description="linear: 3x4x2 -> conv(3, 2x2, SAME, W_std 1.2, b_std 0.3) -> identity -> dense(4) per position "
                     "(W_std 1.1, b_std 0.2) -> global_avg_pool -> dense(1, W_std 1, no bias), standard",
         model={"parameterization": "standard", "layers": [
             conv(3, [2, 2], "SAME", None, 1.2, 0.3), act("identity"), dense(4, 1.1, 0.2), GAP, dense(1, 1.0)]}),
    dict(name="global_sum_pool_relu", seed=611, n1=4, n2=3, input_shape=[4, 5, 2], flat=False, tol=1e-7,
         description="4x5x2 -> conv(4, 3x3, SAME, W_std sqrt2, b_std 0.1) -> relu -> avg_pool [2,2] SAME -> "
                     "conv(4, 2x2, SAME, W_std sqrt2) -> relu -> global_sum_pool (sum over 2x3 positions: "
                     "36 times the global mean's kernels) -> dense(1, W_std 1, b_std 0.1), ntk",
         model={"parameterization": "ntk", "layers": [
             conv(4, [3, 3], "SAME", None, SQRT2, 0.1), act("relu"), avg_pool([2, 2], None, "SAME"),
             conv(4, [2, 2], "SAME", None, SQRT2), act("relu"), GSP, dense(1, 1.0, 0.1)]}),
]


def make_data(case, rng):
    shape = tuple(case["input_shape"])
    x1 = rng.standard_normal((case["n1"],) + shape)
    x2 = rng.standard_normal((case["n2"],) + shape)
    if case["flat"]:
        assert case["model"].get("input_shape") == list(shape)
        x1, x2 = x1.reshape(case["n1"], -1), x2.reshape(case["n2"], -1)
    else:
        assert "input_shape" not in case["model"]
    return x1, x2


def check_sizes(case):
    shape = case["input_shape"]
    assert case["n1"] != case["n2"] and case["n1"] <= 5 and case["n2"] <= 5
    assert (len(shape) == 3 and max(shape[:2]) <= 6) or (len(shape) == 2 and shape[0] <= 8), shape
    assert shape[-1] <= 5
    out_shape = None
    gen = walk_params(case["model"]["layers"], tuple(shape))
    try:
        while True:
            layer, w_shape, _, _ = next(gen)
            assert w_shape[-1] <= 5 or layer["type"] == "dense"
    except StopIteration as e:
        out_shape = e.value
    assert out_shape == (output_width(case["model"]),), out_shape


def make_empirical():
    base = os.path.join(OUT, "empirical")
    os.makedirs(base, exist_ok=True)
    index = []
    for case in EMPIRICAL_CASES:
        name, model, shape = case["name"], case["model"], case["input_shape"]
        check_sizes(case)
        n1, n2 = case["n1"], case["n2"]
        rng = np.random.RandomState(case["seed"])
        x1, x2 = make_data(case, rng)
        flat = draw_params(model, shape, rng)
        k = output_width(model)
        s1, s2 = shaped(model, x1, shape), shaped(model, x2, shape)

        init_fn, apply_fn, _ = build(model)
        params = to_stax_params(model, init_fn, shape, flat)

        out = np.asarray(apply_fn(params, s1))
        assert out.shape == (n1, k)
        check(f"conv/{name} forward", rel_err(out, np_forward(model, flat, x1, shape)[0]), 1e-12)
        check(f"conv/{name} forward x2", rel_err(apply_fn(params, s2), np_forward(model, flat, x2, shape)[0]),
              1e-12)

        kernels = {}
        for trace_axes, tag in (((-1,), "mean"), ((), "full")):
            if tag == "full" and k == 1:
                continue
            fns = {impl: nt.empirical_ntk_fn(apply_fn, trace_axes=trace_axes, vmap_axes=0, implementation=impl)
                   for impl in (nt.NtkImplementation.STRUCTURED_DERIVATIVES,
                                nt.NtkImplementation.JACOBIAN_CONTRACTION)}
            for suffix, xb in (("11", None), ("12", s2)):
                sd = np.asarray(fns[nt.NtkImplementation.STRUCTURED_DERIVATIVES](s1, xb, params))
                jc = np.asarray(fns[nt.NtkImplementation.JACOBIAN_CONTRACTION](s1, xb, params))
                check(f"conv/{name} {tag}_{suffix} JC vs SD", rel_err(jc, sd), 1e-12)
                kernels[f"{tag}_{suffix}"] = sd

        J1 = np_jacobian(model, flat, x1, shape)
        for suffix, xb in (("11", x1), ("12", x2)):
            full_np = np.einsum("iap,jbp->ijab", J1, np_jacobian(model, flat, xb, shape))
            mean_np = np.trace(full_np, axis1=2, axis2=3) / k
            check(f"conv/{name} mean_{suffix} vs numpy", rel_err(kernels[f"mean_{suffix}"], mean_np), 1e-12)
            if k > 1:
                assert kernels[f"full_{suffix}"].shape == (n1, xb.shape[0], k, k)
                check(f"conv/{name} full_{suffix} vs numpy", rel_err(kernels[f"full_{suffix}"], full_np), 1e-12)
        check(f"conv/{name} symmetric", rel_err(kernels["mean_11"], kernels["mean_11"].T), 1e-13)

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
        index.append({"name": name, "description": case["description"], "k": k, "n1": n1, "n2": n2,
                      "input_shape": list(shape), "flat": case["flat"]})
        n_params = sum(v.size for v in flat.values())
        print(f"conv/empirical {name}: k={k} n1={n1} n2={n2} input_shape={shape} flat={case['flat']} "
              f"params={n_params} ok")
    write_json(os.path.join(base, "cases.json"), index)


def refused_analytic(base, case):
    name, model, shape = case["name"], case["model"], case["input_shape"]
    rng = np.random.RandomState(case["seed"])
    x1 = rng.standard_normal((3,) + tuple(shape))
    x2 = rng.standard_normal((2,) + tuple(shape))
    _, _, kernel_fn = build(model, analytic=True)
    for xb in (None, x2):
        for get in ("nngp", "ntk", ("nngp", "ntk")):
            try:
                kernel_fn(x1, xb, get)
            except NotImplementedError as e:
                assert "FanInSum" in str(e), str(e)
            else:
                raise AssertionError(f"{name}: stax kernel_fn did not refuse ({get})")
    try:
        np_analytic(model, np.concatenate([x1, x2]), shape)
    except NotImplementedError:
        pass
    else:
        raise AssertionError(f"{name}: the numpy recursion did not refuse")
    out_dir = os.path.join(base, name)
    fresh_dir(out_dir)
    write_json(os.path.join(out_dir, "model.json"), model)
    return {"name": name, "refused": True, "description": case["description"], "k": output_width(model),
            "input_shape": list(shape), "flat": case["flat"], "model": model}


def make_analytic():
    base = os.path.join(OUT, "analytic")
    os.makedirs(base, exist_ok=True)
    index = []
    for case in ANALYTIC_CASES:
        name, model, shape = case["name"], case["model"], case["input_shape"]
        if case.get("refused"):
            index.append(refused_analytic(base, case))
            print(f"conv/analytic {name}: refused by stax and by the numpy recursion (NotImplementedError) ok")
            continue
        check_sizes(case)
        n1, n2 = case["n1"], case["n2"]
        rng = np.random.RandomState(case["seed"])
        x1, x2 = make_data(case, rng)
        s1, s2 = shaped(model, x1, shape), shaped(model, x2, shape)
        _, _, kernel_fn = build(model, analytic=True)
        nngp_12, ntk_12 = (np.asarray(a) for a in kernel_fn(s1, s2, ("nngp", "ntk")))
        nngp_11, ntk_11 = (np.asarray(a) for a in kernel_fn(s1, None, ("nngp", "ntk")))
        assert nngp_11.shape == ntk_11.shape == (n1, n1) and nngp_12.shape == ntk_12.shape == (n1, n2)

        K, T = np_analytic(model, np.concatenate([x1, x2]), shape)
        blocks = {"11": (slice(0, n1), slice(0, n1)), "12": (slice(0, n1), slice(n1, n1 + n2))}
        for suffix, nngp, ntk in (("11", nngp_11, ntk_11), ("12", nngp_12, ntk_12)):
            check(f"conv/{name} nngp_{suffix} vs numpy recursion", rel_err(nngp, K[blocks[suffix]]), case["tol"])
            check(f"conv/{name} ntk_{suffix} vs numpy recursion", rel_err(ntk, T[blocks[suffix]]), case["tol"])

        out_dir = os.path.join(base, name)
        fresh_dir(out_dir)
        write_json(os.path.join(out_dir, "model.json"), model)
        save(out_dir, "x1.npy", x1)
        save(out_dir, "x2.npy", x2)
        save(out_dir, "nngp_11.npy", nngp_11)
        save(out_dir, "ntk_11.npy", ntk_11)
        save(out_dir, "nngp_12.npy", nngp_12)
        save(out_dir, "ntk_12.npy", ntk_12)
        index.append({"name": name, "description": case["description"], "k": output_width(model),
                      "n1": n1, "n2": n2, "input_shape": list(shape), "flat": case["flat"]})
        print(f"conv/analytic {name}: n1={n1} n2={n2} input_shape={shape} flat={case['flat']} ok")
    write_json(os.path.join(base, "cases.json"), index)


def main():
    print(f"jax {jax.__version__}, neural-tangents 0.6.5 expected, numpy {np.__version__}")
    assert jnp.zeros(1).dtype == jnp.float64
    os.makedirs(OUT, exist_ok=True)
    make_empirical()
    make_analytic()
    print("stax (W, b) shapes seen, by (layer type, rank of its input):")
    for key, shapes in sorted(STAX_PARAM_SHAPES.items()):
        print(f"  {key}: W {shapes[0]}, b {shapes[1]}")
    print("padding amounts used (padding, n, k, stride, out, low, high):")
    for row in sorted(PADS_SEEN):
        print(f"  {row}")
    print("largest relative error per check:")
    for kind, (err, where) in sorted(mf.WORST.items()):
        print(f"  {err:9.2e}  {where}")
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"Tests/Fixtures/conv: {total} bytes")
    print("all conv fixtures written and checked")


if __name__ == "__main__":
    sys.exit(main())
