"""Parameters (and models) from other libraries into the tool's form.

The tool's parameters are ``W0, b0, W1, b1, ...`` over the dense and conv layers in
depth-first order, a dense ``W{l}`` of shape (fan_in, fan_out), a conv ``W{l}`` of shape
(kh, kw, C_in, C_out) (HWIO) or (k, C_in, C_out), and ``b{l}`` of shape (fan_out,) or
(C_out,): the raw trainable arrays of the model's parameterization (README, "File formats").

- :func:`from_stax`: neural-tangents' ``stax`` parameter trees (0.6.5: a dense layer's
  ``(W, b)`` has W of shape (n_in, n_out) and b of shape (1, n_out), or None without
  bias; a conv layer's ``(W, b)`` has W in HWIO and b of shape (1, 1, 1, C_out) (one
  1 per input axis but the channels), or None; a layer without parameters (pooling,
  flatten, activations) has ``()``; ``serial`` holds one entry per layer).
- :func:`from_torch`: a PyTorch ``nn.Sequential`` of ``Linear`` layers and activations,
  which is the ``standard`` parameterization (``h = z Wᵀ + b``).
- :func:`from_flax`: Flax ``nn.Dense`` parameters (``{"params": {"Dense_0": {"kernel",
  "bias"}, ...}}``, ``kernel`` of shape (n_in, n_out)): Flax computes ``h = z kernel +
  bias``, the ``standard`` parameterization; for an ``ntk`` model the raw arrays are
  ``kernel / (W_std/√n_in)`` and ``bias / b_std``, so that the network computes the same
  function.

Neither library is needed to import this module: the converters read attributes.
"""
from __future__ import annotations

import math
import os
from typing import Any, Dict, Iterable, List, Mapping, Tuple, Union

import numpy as np

from . import stax

__all__ = ["from_stax", "from_flax", "from_torch", "parameters_of"]


def _array(value: Any) -> np.ndarray:
    """A float64 NumPy array from a NumPy, jax or torch array (or anything array-like)."""
    if hasattr(value, "detach"):  # torch.Tensor
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype != np.float64:
        array = array.astype(np.float64)
    return array


def _model_of(model: Any) -> stax.Layer:
    if isinstance(model, stax.Layer):
        return model
    if isinstance(model, Mapping):
        return stax.from_dict(model)
    if isinstance(model, (str, os.PathLike)):
        return stax.load(model)
    raise TypeError(f"a model is an ntk.stax layer, a model dict or a JSON path, got {type(model).__name__}")


def from_stax(params: Any, model: Any) -> Dict[str, np.ndarray]:
    """The tool's parameters from neural-tangents' ``stax`` parameter tree.

    Args:
        params: what ``init_fn`` of ``neural_tangents.stax.serial(...)`` returned (jax
            or NumPy arrays), for the same network as ``model``.
        model: the network, written with :mod:`ntk.stax` in the same structure as the
            neural-tangents definition (the same names, the same nesting), or a model
            file's dict or path.

    Returns:
        ``{"W0": (n_in, n_out), "b0": (n_out,), ...}`` in float64 (jax arrays are copied);
        a conv layer's ``W{l}`` as it is (HWIO) and ``b{l}`` of shape (C_out,).

    Raises:
        ValueError: the tree does not have the model's structure or shapes, or a
            layer's bias does not match its ``b_std`` (None means no bias).
    """
    layer = _model_of(model)
    found: List[Tuple[Any, Any, stax.Layer]] = []
    layer._stax_parameters(params, found)
    result: Dict[str, np.ndarray] = {}
    for index, (W, b, owner) in enumerate(found):
        W = _array(W)
        if isinstance(owner, stax.Conv):
            kind, out = "conv", owner.out_chan
            n = len(owner.filter_shape)
            if W.ndim != n + 2 or tuple(W.shape[:n]) != owner.filter_shape or W.shape[-1] != out:
                expected = ", ".join(map(str, owner.filter_shape))
                raise ValueError(f"conv layer {index} ({owner!r}): W has shape {W.shape}, expected ({expected}, C_in, {out})")
            bias_shape = "(" + ", ".join(["1"] * (n + 1) + [str(out)]) + ")"
        else:
            kind, out = "dense", owner.out_dim  # type: ignore[attr-defined]
            if W.ndim != 2 or W.shape[1] != out:
                raise ValueError(f"dense layer {index} ({owner!r}): W has shape {W.shape}, expected (n_in, {out})")
            bias_shape = f"(1, {out})"
        result[f"W{index}"] = W
        b_std = owner.b_std  # type: ignore[attr-defined]
        if b_std is None:
            if b is not None:
                raise ValueError(f"{kind} layer {index} ({owner!r}) has no bias (b_std=None), but the tree holds one")
            continue
        if b is None:
            raise ValueError(f"{kind} layer {index} ({owner!r}) has b_std={b_std}, but the tree holds no bias")
        b = _array(b)
        # stax's bias broadcasts against the output: (1, n_out) dense, (1, 1, 1, C_out) conv.
        if b.size != out or (b.ndim > 0 and b.shape[-1] != out) or b.ndim > (2 if kind == "dense" else W.ndim):
            raise ValueError(f"{kind} layer {index}: b has shape {b.shape}, expected {bias_shape}")
        result[f"b{index}"] = b.reshape(out)
    return result


def _dense_layers(layers: List[Mapping[str, Any]]) -> List[Mapping[str, Any]]:
    """The dense layers of a model's JSON layer list, depth-first (blocks in place)."""
    found: List[Mapping[str, Any]] = []
    for layer in layers:
        if layer.get("type") == "dense":
            found.append(layer)
        elif layer.get("type") == "residual":
            found += _dense_layers(layer["layers"])
    return found


def _natural_key(name: str) -> Tuple[Any, ...]:
    """``Dense_10`` after ``Dense_9``: digits compare as numbers."""
    import re
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def _flax_denses(tree: Any) -> List[Mapping[str, Any]]:
    """The ``{"kernel", "bias"}`` dicts of a Flax parameter tree in module order."""
    if isinstance(tree, Mapping):
        if "kernel" in tree:
            return [tree]
        found: List[Mapping[str, Any]] = []
        for name in sorted(tree.keys(), key=lambda key: _natural_key(str(key))):
            found += _flax_denses(tree[name])
        return found
    return []


def from_flax(variables: Any, model: Any) -> Dict[str, np.ndarray]:
    """The tool's parameters from a Flax model's variables.

    Args:
        variables: what ``module.init(...)`` returned (``{"params": {...}}``) or its
            ``"params"`` part. Every ``nn.Dense`` is a dict with ``kernel`` (n_in, n_out)
            and optionally ``bias`` (n_out,); they are taken in module order (``Dense_0,
            Dense_1, …`` or ``layers_0, layers_2, …`` of ``nn.Sequential``).
        model: the same network written with :mod:`ntk.stax` (or a model dict or path):
            its dense layers in the same order, a bias exactly where Flax has one.

    Returns:
        ``{"W0": (n_in, n_out), "b0": (n_out,), ...}`` in float64: Flax's arrays under the
        ``standard`` parameterization, scaled to the raw arrays of ``ntk``.

    Raises:
        ValueError: the numbers of dense layers, their widths, or their biases differ, or an
            ``ntk`` layer has a bias with ``b_std`` = 0 (no raw array gives it).
    """
    layer_model = _model_of(model)
    if layer_model._is_spatial():
        raise ValueError("from_flax converts Dense layers only; the model has conv, pooling or flatten layers")
    description = layer_model.to_dict()
    parameterization = description.get("parameterization", "ntk")
    denses = _dense_layers(description["layers"])
    tree = variables.get("params", variables) if isinstance(variables, Mapping) else variables
    found = _flax_denses(tree)
    if len(found) != len(denses):
        raise ValueError(f"the Flax variables hold {len(found)} Dense layers, the model {len(denses)}")
    result: Dict[str, np.ndarray] = {}
    for index, (flax, layer) in enumerate(zip(found, denses)):
        kernel = _array(flax["kernel"])
        if kernel.ndim != 2 or kernel.shape[1] != layer["width"]:
            raise ValueError(f"dense layer {index}: kernel has shape {kernel.shape}, expected (n_in, {layer['width']})")
        has_bias = layer.get("b_std") is not None
        if has_bias != ("bias" in flax and flax["bias"] is not None):
            raise ValueError(f"dense layer {index}: the model {'has' if has_bias else 'has no'} bias (b_std={layer.get('b_std')}) "
                             f"but the Flax layer {'has none' if has_bias else 'has one'} (use_bias)")
        scale, shift = 1.0, 1.0
        if parameterization == "ntk":
            scale = float(layer.get("W_std", 1.0)) / math.sqrt(kernel.shape[0])
            shift = float(layer["b_std"]) if has_bias else 1.0
            if scale == 0 or shift == 0:
                raise ValueError(f"dense layer {index}: W_std or b_std is 0 under the ntk parameterization; no raw array gives Flax's values")
        result[f"W{index}"] = kernel / scale
        if has_bias:
            bias = _array(flax["bias"]).reshape(-1)
            if bias.shape != (layer["width"],):
                raise ValueError(f"dense layer {index}: bias has shape {bias.shape}, expected ({layer['width']},)")
            result[f"b{index}"] = bias / shift
    return result


def parameters_of(params: Any, model: Any = None) -> Dict[str, np.ndarray]:
    """The tool's parameters as a dict from a dict of arrays, an ``.npz`` path, or (with
    ``model``) a neural-tangents parameter tree."""
    if isinstance(params, (str, os.PathLike)):
        with np.load(params) as archive:
            return {name: np.array(archive[name]) for name in archive.files}
    if isinstance(params, Mapping):
        return {str(name): _array(value) for name, value in params.items()}
    if isinstance(params, (tuple, list)):
        if model is None:
            raise TypeError("a neural-tangents parameter tree needs its model (ntk.stax) to be converted")
        return from_stax(params, model)
    raise TypeError(f"parameters are a dict of arrays, an .npz path or a stax tree, got {type(params).__name__}")


# --- PyTorch -----------------------------------------------------------------------------

#: PyTorch's default initialization of ``nn.Linear``: W, b ~ U(-1/√n_in, 1/√n_in)
#: (kaiming_uniform with a = √5), variance 1/(3 n_in). The model records W_std = 1/√3 and
#: b_std = 1/√(3 n_in), the same variances with the tool's Gaussian draws.
TORCH_W_STD = 1.0 / math.sqrt(3.0)


def _modules(module: Any) -> Iterable[Any]:
    """The layers of a Sequential, nested Sequentials flattened."""
    if type(module).__name__ == "Sequential" or isinstance(module, (list, tuple)):
        for child in module:
            yield from _modules(child)
    else:
        yield module


def from_torch(module: Any) -> Tuple[stax.Layer, Dict[str, np.ndarray]]:
    """The model and parameters of a PyTorch ``nn.Sequential``.

    Takes ``Linear`` layers (with or without bias) and the activations ``ReLU``,
    ``LeakyReLU``, ``Tanh``, ``Sigmoid``, ``Softplus`` (beta 1), ``GELU``
    (``approximate='none'``) and ``Identity``; nested ``Sequential`` modules are flattened.
    The parameterization is ``standard`` (``h = z Wᵀ + b``); ``W{l}`` is ``weight.T``
    (PyTorch stores (out, in)) and ``b{l}`` is ``bias``, both in float64.

    Where the two differ:
        - Initialization: PyTorch draws W and b from U(-1/√n_in, 1/√n_in); the model says
          W_std = 1/√3 and b_std = 1/√(3 n_in), the same variances, so ``ntk.init`` and
          ``--seed`` draw Gaussians of PyTorch's variances (not its values), and the
          infinite-width kernels (``kernel='analytic'``) are the limit of PyTorch's
          default initialization. The empirical kernel at these parameters is exact.
        - ``nn.Softplus`` returns x itself above its ``threshold`` (20): within e^-20 of
          log(1 + e^x), below float64 resolution relative to x.
        - Float32 weights are converted exactly; the tool computes in float64 (PyTorch's
          own float32 kernels differ from it by ~1e-7).

    Args:
        module: an ``nn.Sequential`` (or a list of modules); anything with the same
            class names and ``weight``/``bias`` attributes works (torch is not imported).

    Returns:
        ``(model, params)``: an :mod:`ntk.stax` model and ``{"W0": ..., "b0": ..., ...}``.

    Raises:
        ValueError: a module the tool has no layer for, or widths that do not chain.
    """
    layers: List[stax.Layer] = []
    params: Dict[str, np.ndarray] = {}
    width = None
    for child in _modules(module):
        name = type(child).__name__
        if name == "Linear":
            weight = _array(child.weight)
            if weight.ndim != 2:
                raise ValueError(f"Linear weight of shape {weight.shape}: expected (out, in)")
            n_out, n_in = weight.shape
            if width is not None and n_in != width:
                raise ValueError(f"Linear({n_in}, {n_out}) follows a layer of width {width}")
            bias = getattr(child, "bias", None)
            index = sum(1 for key in params if key.startswith("W"))
            params[f"W{index}"] = np.ascontiguousarray(weight.T)
            b_std = None
            if bias is not None:
                params[f"b{index}"] = _array(bias).reshape(n_out)
                b_std = 1.0 / math.sqrt(3.0 * n_in)
            layers.append(stax.Dense(int(n_out), W_std=TORCH_W_STD, b_std=b_std))
            width = n_out
        elif name == "ReLU":
            layers.append(stax.Relu())
        elif name == "LeakyReLU":
            layers.append(stax.LeakyRelu(float(getattr(child, "negative_slope", 0.01))))
        elif name == "Tanh":
            layers.append(stax.Tanh())
        elif name == "Sigmoid":
            layers.append(stax.Sigmoid())
        elif name == "Softplus":
            if float(getattr(child, "beta", 1.0)) != 1.0:
                raise ValueError("Softplus with beta != 1 is not in the tool")
            layers.append(stax.Softplus())
        elif name == "GELU":
            if getattr(child, "approximate", "none") != "none":
                raise ValueError("GELU(approximate='tanh') is not in the tool: use approximate='none'")
            layers.append(stax.Gelu())
        elif name == "Identity":
            layers.append(stax.Identity())
        else:
            raise ValueError(f"{name} is not in the tool: from_torch takes Linear, ReLU, LeakyReLU, Tanh, "
                             "Sigmoid, Softplus, GELU and Identity in an nn.Sequential")
    if not params:
        raise ValueError("the module has no Linear layer")
    return stax.serial(*layers, parameterization="standard"), params
