"""A model builder with neural-tangents' ``stax`` names, writing the tool's model JSON.

A definition written for ``neural_tangents.stax`` moves across by changing the import::

    from ntk import stax                      # was: from neural_tangents import stax

    init_fn, apply_fn, kernel_fn = stax.serial(
        stax.Dense(512, W_std=1.5, b_std=0.05), stax.Erf(),
        stax.Dense(1, W_std=1.5, b_std=0.05))

    _, params = init_fn(0, x_train.shape)     # the tool's parameters for seed 0
    y = apply_fn(params, x_train)             # the forward pass, in NumPy
    k = kernel_fn(x_train, x_test, 'ntk')     # the infinite-width NTK, computed by the tool

Every layer and combination is a value: it unpacks into ``(init_fn, apply_fn,
kernel_fn)`` as neural-tangents' layers do, and it is a model that :func:`ntk.gram` and
the other commands take (``model=``) and that :meth:`Layer.to_json` writes.

Conventions are neural-tangents': ``Dense(out_dim, W_std=1., b_std=None)`` has no bias
unless ``b_std`` is given; the parameterization (``'ntk'`` or ``'standard'``) is one for
the whole model, given to :func:`serial` or to the ``Dense`` layers (which must agree).
``Tanh``, ``Sigmoid`` (the logistic function) and ``Softplus`` are not neural-tangents
layers (there, ``stax.Elementwise(jnp.tanh)`` or ``stax.ElementwiseNumerical``); their
infinite-width kernels use Gauss–Hermite quadrature of ``quadrature_degree`` points
(the tool's default 64).

Convolutional networks: ``Conv``, ``AvgPool``, ``GlobalAvgPool``, ``GlobalSumPool`` and ``Flatten`` as
neural-tangents' (channels last: inputs (N, H, W, C) or (N, L, C), filters HWIO). One
difference: ``AvgPool(window)`` without ``strides`` has neural-tangents' stride 1, while a
model file's ``avg_pool`` without ``"strides"`` has strides equal to the window, so the
file is always written with its strides. ``serial(..., input_shape=(H, W, C))`` records the
shape of one sample in the model file (``"input_shape"``): the tool then reads flat data
rows and reshapes each (C order), as ``apply_fn`` does here.

Residual blocks: :func:`residual` (``y = x + block(x)``), or neural-tangents' own spelling
``serial(FanOut(2), parallel(serial(*block), Identity()), FanInSum())``, which is
recognized; other uses of ``FanOut``, ``parallel`` and ``FanInSum`` are refused.
"""
from __future__ import annotations

import json
import math
import os
from collections import namedtuple
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = [
    "Layer", "Dense", "Conv", "AvgPool", "GlobalAvgPool", "GlobalSumPool", "Flatten", "Relu", "LeakyRelu", "Erf",
    "Gelu", "Tanh", "Sigmoid", "Softplus", "Identity", "serial", "residual", "FanOut", "parallel",
    "FanInSum", "Kernel", "from_dict", "load",
]

PARAMETERIZATIONS = ("ntk", "standard")
PADDINGS = ("VALID", "SAME", "CIRCULAR")

#: ``kernel_fn(x1, x2)`` without ``get``: both infinite-width kernels.
Kernel = namedtuple("Kernel", ["nngp", "ntk"])


class Layer:
    """A layer, or layers combined: a model of the tool.

    Unpacks into ``(init_fn, apply_fn, kernel_fn)`` like a neural-tangents layer.
    """

    # --- the model file ---------------------------------------------------------------

    def _json_layers(self) -> List[Dict[str, Any]]:
        raise NotImplementedError

    def _explicit_parameterizations(self) -> List[str]:
        return []

    def _children(self) -> Sequence["Layer"]:
        return ()

    #: The shape of one sample, ``(H, W, C)``, ``(L, C)`` or ``(d,)``, when the model records it
    #: (``serial(..., input_shape=...)``, or a model file's ``"input_shape"``).
    input_shape: Optional[Tuple[int, ...]] = None

    def _is_spatial(self) -> bool:
        """Whether the model has a convolution, a pooling or a flattening layer."""
        return any(child._is_spatial() for child in self._children())

    @property
    def parameterization(self) -> str:
        """The model's parameterization: the one given, or ``'ntk'``."""
        found = set(self._explicit_parameterizations())
        if len(found) > 1:
            raise ValueError(f"the layers ask for different parameterizations {sorted(found)}: "
                             "the tool takes one per model")
        return found.pop() if found else "ntk"

    def to_dict(self) -> Dict[str, Any]:
        """The model as the tool's JSON object: ``{"parameterization": ..., "layers": [...]}``
        (and ``"input_shape"`` when the model records one)."""
        result: Dict[str, Any] = {"parameterization": self.parameterization}
        if self.input_shape is not None:
            result["input_shape"] = list(self.input_shape)
        result["layers"] = self._json_layers()
        return result

    def to_json(self, path: Union[str, os.PathLike, None] = None, *, indent: Optional[int] = 2) -> str:
        """The model file's text; written to ``path`` too when given."""
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=False) + "\n"
        if path is not None:
            Path(path).write_text(text)
        return text

    # --- neural-tangents' triple ------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        return iter((self.init_fn, self.apply_fn, self.kernel_fn))

    def init_fn(self, rng: Any, input_shape: Sequence[int], **kwargs: Any) -> Tuple[Tuple[int, ...], Dict[str, np.ndarray]]:
        """``(output_shape, params)``: the parameters that the tool's ``--seed`` draws.

        Args:
            rng: the seed: an integer, or a key array (jax's ``PRNGKey``; its bits make
                the seed). The values differ from neural-tangents' for the same key: the
                tool draws with its own generator (the same distributions).
            input_shape: ``(N, d)``; only d is used. For a convolutional model, ``(N, H,
                W, C)`` or ``(N, L, C)`` (recorded as the model's ``input_shape`` for the
                tool, which then takes flat rows of H·W·C), or ``(N, H·W·C)`` when the
                model records its ``input_shape``.
            kwargs: passed to :func:`ntk.init` (``binary=``, ``env=``).

        Returns:
            ``((N, k), {"W0": ..., "b0": ..., ...})``; a convolution's ``W{l}`` has
            shape (kh, kw, C_in, C_out) and ``b{l}`` (C_out,).
        """
        from .api import init
        shape = tuple(int(s) for s in input_shape)
        model: Union[Layer, Dict[str, Any]] = self
        if self.input_shape is not None:
            sample = self.input_shape
            width = math.prod(sample)
            if math.prod(shape[1:]) != width:
                raise ValueError(f"input_shape {shape}: the model's samples have shape {sample}")
        elif self._is_spatial() and len(shape) > 2:
            sample = shape[1:]
            width = math.prod(sample)
            written = self.to_dict()
            model = {"parameterization": written["parameterization"], "input_shape": list(sample),
                     "layers": written["layers"]}
        else:
            sample = shape[1:]
            width = shape[-1]
        with init(model, input_width=width, seed=_seed_of(rng), **kwargs) as result:
            params = result.params
        return (shape[0], *self._output_shape(tuple(sample))), params

    def apply_fn(self, params: Any, inputs: Any, **kwargs: Any) -> np.ndarray:
        """The network's outputs f(inputs), shape (N, k), computed in NumPy (float64).

        ``params``: the tool's arrays (a dict ``W0, b0, ...`` or an ``.npz`` path) or a
        neural-tangents parameter tree of this model.
        """
        from .convert import parameters_of
        flat = parameters_of(params, self)
        x = np.asarray(inputs, dtype=np.float64)
        return forward(self.to_dict(), flat, x)

    def kernel_fn(self, x1: Any, x2: Any = None, get: Union[str, Sequence[str], None] = None,
                  **kwargs: Any) -> Any:
        """The infinite-width kernels, computed by the tool (``ntk gram --kernel analytic|nngp``).

        Args:
            x1: (N, d) inputs.
            x2: (M, d) inputs, or None for the kernel of x1 with itself.
            get: ``'ntk'`` or ``'nngp'`` (an array), a tuple of them (a named tuple), or
                None (both: ``Kernel(nngp, ntk)``), as neural-tangents' ``get``.
            kwargs: passed to :func:`ntk.gram` (``ranks=``, ``tile=``, ``binary=``, ...).

        For k > 1 outputs the limit is Θ ⊗ I_k; this returns Θ, as neural-tangents does.
        """
        from .api import gram
        names = ("nngp", "ntk") if get is None else (get,) if isinstance(get, str) else tuple(get)
        values = []
        for name in names:
            if name not in ("nngp", "ntk"):
                raise ValueError(f"get must name 'nngp' or 'ntk', got {name!r}")
            kernel = "nngp" if name == "nngp" else "analytic"
            kwargs.setdefault("progress", False)
            kwargs.setdefault("verbose", False)
            with gram(x1, x2, model=self, kernel=kernel, eigen="none", **kwargs) as result:
                values.append(np.array(result.kernel))
        if isinstance(get, str):
            return values[0]
        if get is None:
            return Kernel(*values)
        return namedtuple("Kernel", names)(*values)

    # --- shapes and parameters ----------------------------------------------------------

    def _output_shape(self, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        """The shape of one sample's output for one sample's input shape (no batch axis)."""
        return shape

    def _stax_parameters(self, tree: Any, out: List[Tuple[Any, Any, "Layer"]]) -> None:
        """Collects ``(W, b, layer)`` of every dense and conv layer from neural-tangents'
        parameter tree of this layer, depth-first."""
        if not _is_empty(tree):
            raise ValueError(f"{self!r} has no parameters, but its part of the tree holds {_describe(tree)}")


class Dense(Layer):
    """A dense layer, as ``neural_tangents.stax.Dense``.

    ``ntk``: ``h = (W_std/√n_in) z W + b_std b`` with W, b ~ N(0, 1); ``standard``:
    ``h = z W + b`` with W ~ N(0, W_std²/n_in), b ~ N(0, b_std²). ``b_std=None``: no bias.
    ``parameterization=None`` takes the model's.
    """

    def __init__(self, out_dim: int, W_std: float = 1.0, b_std: Optional[float] = None,
                 batch_axis: int = 0, channel_axis: int = -1,
                 parameterization: Optional[str] = None, s: Tuple[int, int] = (1, 1)) -> None:
        if isinstance(out_dim, bool) or not isinstance(out_dim, (int, np.integer)) or out_dim < 1:
            raise ValueError(f"Dense: out_dim must be a positive integer, got {out_dim!r}")
        if batch_axis != 0 or channel_axis not in (-1, 1):
            raise NotImplementedError("Dense: the tool takes 2-D inputs (batch_axis=0, channel_axis=-1)")
        if tuple(s) != (1, 1):
            raise NotImplementedError("Dense: s other than (1, 1) (width scaling) is not in the tool")
        if parameterization is not None and parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"Parameterization not supported: {parameterization}")
        for name, value in (("W_std", W_std), ("b_std", b_std)):
            if value is not None and not (math.isfinite(float(value)) and float(value) >= 0):
                raise ValueError(f"Dense: {name} must be a finite non-negative number, got {value!r}")
        self.out_dim = int(out_dim)
        self.W_std = float(W_std)
        self.b_std = None if b_std is None else float(b_std)
        self.parameterization_requested = parameterization

    def __repr__(self) -> str:
        extra = "" if self.parameterization_requested is None else f", parameterization={self.parameterization_requested!r}"
        return f"Dense({self.out_dim}, W_std={self.W_std!r}, b_std={self.b_std!r}{extra})"

    def _json_layers(self) -> List[Dict[str, Any]]:
        layer: Dict[str, Any] = {"type": "dense", "width": self.out_dim, "W_std": self.W_std}
        if self.b_std is not None:
            layer["b_std"] = self.b_std
        return [layer]

    def _explicit_parameterizations(self) -> List[str]:
        return [] if self.parameterization_requested is None else [self.parameterization_requested]

    def _output_shape(self, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return (*shape[:-1], self.out_dim)

    def _stax_parameters(self, tree: Any, out: List[Tuple[Any, Any, Layer]]) -> None:
        if not isinstance(tree, (tuple, list)) or len(tree) != 2:
            raise ValueError(f"{self!r}: expected (W, b), got {_describe(tree)}")
        out.append((tree[0], tree[1], self))


def _positive_ints(value: Any, what: str) -> Tuple[int, ...]:
    if isinstance(value, (int, np.integer)) or isinstance(value, (str, bytes)):
        raise TypeError(f"{what} must be a sequence of positive integers, got {value!r}")
    try:
        items = tuple(value)
    except TypeError:
        raise TypeError(f"{what} must be a sequence of positive integers, got {value!r}") from None
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, np.integer)) or item < 1:
            raise ValueError(f"{what} must be a sequence of positive integers, got {value!r}")
    return tuple(int(item) for item in items)


def _padding_of(padding: Any, what: str) -> str:
    name = str(getattr(padding, "name", padding))  # neural-tangents' Padding enum, or its name
    if name not in PADDINGS:
        raise ValueError(f"{what}: padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
    return name


def _strides_of(strides: Optional[Sequence[int]], window: Tuple[int, ...], what: str) -> Tuple[int, ...]:
    """neural-tangents' ``strides or (1,) * n``: None (or empty) is stride 1."""
    if strides is None or (isinstance(strides, (tuple, list)) and len(strides) == 0):
        return (1,) * len(window)
    result = _positive_ints(strides, f"{what}: strides")
    if len(result) != len(window):
        raise ValueError(f"{what}: strides {result} and window {window} have different lengths")
    return result


def _spatial_output(shape: Tuple[int, ...], window: Tuple[int, ...], strides: Tuple[int, ...],
                    padding: str, what: str) -> Tuple[int, ...]:
    """The spatial sizes after a window of ``window`` at ``strides`` (lax's rule)."""
    n = len(window)
    if len(shape) != n + 1:
        raise ValueError(f"{what} takes samples of {n} spatial dimensions and channels last, got shape {shape}: "
                         "give serial(..., input_shape=...) or shaped inputs (N, *spatial, C)")
    out = []
    for size, k, s in zip(shape[:-1], window, strides):
        if padding == "VALID":
            if size < k:
                raise ValueError(f"{what}: the window {window} is larger than the input {shape[:-1]} (VALID padding)")
            out.append((size - k) // s + 1)
        else:  # SAME, and CIRCULAR (padded as SAME with wrapped values)
            out.append(-(-size // s))
    return tuple(out)


class Conv(Layer):
    """A convolution, as ``neural_tangents.stax.Conv`` (channels last: inputs (N, H, W, C)
    or (N, L, C), filters W of shape (kh, kw, C_in, C_out), HWIO, or (k, C_in, C_out)).

    ``ntk``: ``h = (W_std/√(C_in·kh·kw)) conv(z, W) + b_std b`` with W, b ~ N(0, 1);
    ``standard``: ``h = conv(z, W) + b``. ``b_std=None``: no bias. ``strides=None``: 1.
    ``padding``: ``'VALID'``, ``'SAME'`` (zeros, lax's split: the extra one at the end) or
    ``'CIRCULAR'`` (SAME's amounts, with the values wrapped around). ``parameterization=None``
    takes the model's. Writes ``{"type": "conv", "channels", "kernel", "strides", "padding",
    "W_std"[, "b_std"]}``.
    """

    def __init__(self, out_chan: int, filter_shape: Sequence[int], strides: Optional[Sequence[int]] = None,
                 padding: str = "VALID", W_std: float = 1.0, b_std: Optional[float] = None,
                 dimension_numbers: Optional[Tuple[str, str, str]] = None,
                 parameterization: Optional[str] = None, s: Tuple[int, int] = (1, 1)) -> None:
        if isinstance(out_chan, bool) or not isinstance(out_chan, (int, np.integer)) or out_chan < 1:
            raise ValueError(f"Conv: out_chan must be a positive integer, got {out_chan!r}")
        self.filter_shape = _positive_ints(filter_shape, "Conv: filter_shape")
        if len(self.filter_shape) not in (1, 2):
            raise NotImplementedError(f"Conv: the tool takes 1-D and 2-D convolutions, got filter_shape {self.filter_shape}")
        self.strides = _strides_of(strides, self.filter_shape, "Conv")
        self.padding = _padding_of(padding, "Conv")
        if dimension_numbers is not None and not _channels_last(dimension_numbers, len(self.filter_shape)):
            raise NotImplementedError(f"Conv: the tool takes channels-last inputs and HWIO filters (dimension_numbers=None), "
                                      f"got {dimension_numbers!r}")
        if tuple(s) != (1, 1):
            raise NotImplementedError("Conv: s other than (1, 1) (width scaling) is not in the tool")
        if parameterization is not None and parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"Parameterization not supported: {parameterization}")
        for name, value in (("W_std", W_std), ("b_std", b_std)):
            if value is not None and not (math.isfinite(float(value)) and float(value) >= 0):
                raise ValueError(f"Conv: {name} must be a finite non-negative number, got {value!r}")
        self.out_chan = int(out_chan)
        self.W_std = float(W_std)
        self.b_std = None if b_std is None else float(b_std)
        self.parameterization_requested = parameterization

    def __repr__(self) -> str:
        extra = "" if self.parameterization_requested is None else f", parameterization={self.parameterization_requested!r}"
        return (f"Conv({self.out_chan}, {self.filter_shape}, strides={self.strides}, padding={self.padding!r}, "
                f"W_std={self.W_std!r}, b_std={self.b_std!r}{extra})")

    def _is_spatial(self) -> bool:
        return True

    def _json_layers(self) -> List[Dict[str, Any]]:
        layer: Dict[str, Any] = {"type": "conv", "channels": self.out_chan, "kernel": list(self.filter_shape),
                                 "strides": list(self.strides), "padding": self.padding, "W_std": self.W_std}
        if self.b_std is not None:
            layer["b_std"] = self.b_std
        return [layer]

    def _explicit_parameterizations(self) -> List[str]:
        return [] if self.parameterization_requested is None else [self.parameterization_requested]

    def _output_shape(self, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return (*_spatial_output(shape, self.filter_shape, self.strides, self.padding, repr(self)), self.out_chan)

    def _stax_parameters(self, tree: Any, out: List[Tuple[Any, Any, Layer]]) -> None:
        if not isinstance(tree, (tuple, list)) or len(tree) != 2:
            raise ValueError(f"{self!r}: expected (W, b), got {_describe(tree)}")
        out.append((tree[0], tree[1], self))


def _channels_last(numbers: Any, n: int) -> bool:
    """Whether conv dimension numbers are neural-tangents' default (channels last, HWIO)."""
    try:
        lhs, rhs, out = (str(part) for part in numbers)
    except (TypeError, ValueError):
        return False
    return (len(lhs) == n + 2 and lhs[0] == "N" and lhs[-1] == "C" and rhs == lhs[1:-1] + "IO" and out == lhs)


class AvgPool(Layer):
    """Average pooling, as ``neural_tangents.stax.AvgPool`` (``normalize_edges=False``:
    every window's sum is divided by the window's size, padding included).

    ``strides=None`` is neural-tangents' default, stride 1 (not the window); the model file
    is written with the strides. ``padding``: ``'VALID'``, ``'SAME'`` (zeros) or
    ``'CIRCULAR'`` (wrapped values). Writes ``{"type": "avg_pool", "window", "strides",
    "padding"}``.
    """

    def __init__(self, window_shape: Sequence[int], strides: Optional[Sequence[int]] = None,
                 padding: str = "VALID", normalize_edges: bool = False, batch_axis: int = 0,
                 channel_axis: int = -1) -> None:
        self.window_shape = _positive_ints(window_shape, "AvgPool: window_shape")
        if len(self.window_shape) not in (1, 2):
            raise NotImplementedError(f"AvgPool: the tool takes 1-D and 2-D pooling, got window_shape {self.window_shape}")
        self.strides = _strides_of(strides, self.window_shape, "AvgPool")
        self.padding = _padding_of(padding, "AvgPool")
        if normalize_edges and self.padding == "SAME":
            raise NotImplementedError("AvgPool: normalize_edges=True with SAME padding (dividing by the window's "
                                      "part inside the input) is not in the tool")
        if batch_axis != 0 or channel_axis not in (-1, len(self.window_shape) + 1):
            raise NotImplementedError("AvgPool: the tool takes channels-last inputs (batch_axis=0, channel_axis=-1)")

    def __repr__(self) -> str:
        return f"AvgPool({self.window_shape}, strides={self.strides}, padding={self.padding!r})"

    def _is_spatial(self) -> bool:
        return True

    def _json_layers(self) -> List[Dict[str, Any]]:
        return [{"type": "avg_pool", "window": list(self.window_shape), "strides": list(self.strides),
                 "padding": self.padding}]

    def _output_shape(self, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return (*_spatial_output(shape, self.window_shape, self.strides, self.padding, repr(self)), shape[-1])


class GlobalAvgPool(Layer):
    """The mean over all spatial positions, as ``neural_tangents.stax.GlobalAvgPool``:
    (N, *spatial, C) to (N, C)."""

    def __init__(self, batch_axis: int = 0, channel_axis: int = -1) -> None:
        if batch_axis != 0 or channel_axis != -1:
            raise NotImplementedError("GlobalAvgPool: the tool takes channels-last inputs (batch_axis=0, channel_axis=-1)")

    def __repr__(self) -> str:
        return "GlobalAvgPool()"

    def _is_spatial(self) -> bool:
        return True

    def _json_layers(self) -> List[Dict[str, Any]]:
        return [{"type": "global_avg_pool"}]

    def _output_shape(self, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        if len(shape) < 2:
            raise ValueError(f"GlobalAvgPool takes samples of spatial dimensions and channels last, got shape {shape}")
        return (shape[-1],)


class GlobalSumPool(GlobalAvgPool):
    """The sum over all spatial positions, as ``neural_tangents.stax.GlobalSumPool``:
    (N, *spatial, C) to (N, C)."""

    def __repr__(self) -> str:
        return "GlobalSumPool()"

    def _json_layers(self) -> List[Dict[str, Any]]:
        return [{"type": "global_sum_pool"}]


class Flatten(Layer):
    """All of a sample's axes into one, in C order (channels fastest), as
    ``neural_tangents.stax.Flatten``: (N, H, W, C) to (N, H·W·C)."""

    def __init__(self, batch_axis: int = 0, batch_axis_out: int = 0) -> None:
        if batch_axis != 0 or batch_axis_out not in (0, -2):
            raise NotImplementedError("Flatten: the tool takes batch_axis=0 and batch_axis_out=0")

    def __repr__(self) -> str:
        return "Flatten()"

    def _is_spatial(self) -> bool:
        return True

    def _json_layers(self) -> List[Dict[str, Any]]:
        return [{"type": "flatten"}]

    def _output_shape(self, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return (math.prod(shape),)


class _Activation(Layer):
    """An elementwise layer without parameters."""

    kind = ""

    def _fields(self) -> Dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self._fields().items())
        return f"{type(self).__name__}({fields})"

    def _json_layers(self) -> List[Dict[str, Any]]:
        return [{"type": self.kind, **self._fields()}]


class Relu(_Activation):
    """max(x, 0), as ``stax.Relu`` (``do_stabilize`` is accepted and has no effect)."""

    kind = "relu"

    def __init__(self, do_stabilize: bool = False) -> None:
        pass


class LeakyRelu(_Activation):
    """x for x > 0, alpha·x otherwise, as ``stax.LeakyRelu(alpha)``."""

    kind = "leaky_relu"

    def __init__(self, alpha: float, do_stabilize: bool = False) -> None:
        self.alpha = float(alpha)

    def _fields(self) -> Dict[str, Any]:
        return {"alpha": self.alpha}


class Erf(_Activation):
    """erf(x), as ``stax.Erf()`` (only its default a = 1, b = 1, c = 0)."""

    kind = "erf"

    def __init__(self, a: float = 1.0, b: float = 1.0, c: float = 0.0) -> None:
        if (a, b, c) != (1.0, 1.0, 0.0):
            raise NotImplementedError("Erf: only a=1, b=1, c=0 is in the tool")


class Gelu(_Activation):
    """The exact GELU x·Φ(x), as ``stax.Gelu(approximate=False)``."""

    kind = "gelu"

    def __init__(self, approximate: bool = False) -> None:
        if approximate:
            raise NotImplementedError("Gelu: only approximate=False (the exact, erf-based GELU) is in the tool")


class _Quadrature(_Activation):
    def __init__(self, quadrature_degree: Optional[int] = None) -> None:
        if quadrature_degree is not None and (isinstance(quadrature_degree, bool) or int(quadrature_degree) < 1):
            raise ValueError(f"quadrature_degree must be a positive integer, got {quadrature_degree!r}")
        self.quadrature_degree = None if quadrature_degree is None else int(quadrature_degree)

    def _fields(self) -> Dict[str, Any]:
        return {} if self.quadrature_degree is None else {"quadrature_degree": self.quadrature_degree}


class Tanh(_Quadrature):
    """tanh(x); infinite-width kernels by Gauss–Hermite quadrature (neural-tangents:
    ``stax.ElementwiseNumerical(jnp.tanh, deg)``)."""

    kind = "tanh"


class Sigmoid(_Quadrature):
    """The logistic function 1/(1 + e^-x) (not neural-tangents' erf-based ``Sigmoid_like``);
    infinite-width kernels by quadrature."""

    kind = "sigmoid"


class Softplus(_Quadrature):
    """log(1 + e^x); infinite-width kernels by quadrature."""

    kind = "softplus"


class Identity(_Activation):
    """The identity, as ``stax.Identity()`` (also the skip branch of a residual block)."""

    kind = "identity"


class _Serial(Layer):
    def __init__(self, layers: Sequence[Layer], parameterization: Optional[str],
                 input_shape: Optional[Sequence[int]] = None) -> None:
        for layer in layers:
            if not isinstance(layer, Layer):
                raise TypeError(f"serial: {layer!r} is not an ntk.stax layer")
            if layer.input_shape is not None:
                raise ValueError("serial: input_shape belongs to the outermost serial (the model), "
                                 f"but the inner {layer!r} has one")
        if parameterization is not None and parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"Parameterization not supported: {parameterization}")
        self.layers = tuple(layers)
        self.parameterization_requested = parameterization
        if input_shape is not None:
            shape = _positive_ints(input_shape, "serial: input_shape")
            if len(shape) not in (1, 2, 3):
                raise ValueError(f"serial: input_shape is (H, W, C), (L, C) or (d,), got {shape}")
            self.input_shape = shape

    def __repr__(self) -> str:
        inner = ", ".join(map(repr, self.layers))
        extra = "" if self.parameterization_requested is None else f", parameterization={self.parameterization_requested!r}"
        return f"serial({inner}{extra})"

    def _children(self) -> Sequence[Layer]:
        return self.layers

    @property
    def parameterization(self) -> str:
        found = set(self._explicit_parameterizations())
        requested = self.parameterization_requested
        if requested is not None and found - {requested}:
            raise ValueError(f"serial(parameterization={requested!r}) holds layers that ask for "
                             f"{sorted(found - {requested})}: the tool takes one parameterization per model")
        return requested if requested is not None else Layer.parameterization.fget(self)  # type: ignore[attr-defined]

    def _explicit_parameterizations(self) -> List[str]:
        found = [] if self.parameterization_requested is None else [self.parameterization_requested]
        for layer in self.layers:
            found += layer._explicit_parameterizations()
        return found

    def _json_layers(self) -> List[Dict[str, Any]]:
        result: List[Dict[str, Any]] = []
        i = 0
        layers = self.layers
        while i < len(layers):
            layer = layers[i]
            if isinstance(layer, (_FanOut, _Parallel, _FanInSum)):
                block = _residual_pattern(layers[i:i + 3])
                result.append({"type": "residual", "layers": block._json_layers()})
                i += 3
                continue
            result += layer._json_layers()
            i += 1
        return result

    def _output_shape(self, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        for layer in self.layers:
            shape = layer._output_shape(shape)
        return shape

    def _stax_parameters(self, tree: Any, out: List[Tuple[Any, Any, Layer]]) -> None:
        if not isinstance(tree, (tuple, list)) or len(tree) != len(self.layers):
            raise ValueError(f"serial of {len(self.layers)} layers: expected a sequence of {len(self.layers)} "
                             f"parameter entries, got {_describe(tree)}")
        for layer, part in zip(self.layers, tree):
            layer._stax_parameters(part, out)


class _Residual(Layer):
    def __init__(self, block: _Serial) -> None:
        self.block = block

    def __repr__(self) -> str:
        return "residual(" + ", ".join(map(repr, self.block.layers)) + ")"

    def _children(self) -> Sequence[Layer]:
        return (self.block,)

    def _explicit_parameterizations(self) -> List[str]:
        return self.block._explicit_parameterizations()

    def _json_layers(self) -> List[Dict[str, Any]]:
        return [{"type": "residual", "layers": self.block._json_layers()}]

    def _output_shape(self, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        out = self.block._output_shape(shape)
        if out != shape:
            raise ValueError(f"{self!r} maps shape {shape} to {out}: a residual block keeps its input's shape")
        return shape

    def _stax_parameters(self, tree: Any, out: List[Tuple[Any, Any, Layer]]) -> None:
        # neural-tangents: serial(FanOut(2), parallel(serial(*block), Identity()), FanInSum())
        # has the parameters ((), (block's, ()), ()).
        try:
            fan_out, (block, skip), fan_in = tree
        except (TypeError, ValueError):
            raise ValueError(f"{self!r}: expected ((), (block parameters, ()), ()), got {_describe(tree)}") from None
        if not (_is_empty(fan_out) and _is_empty(skip) and _is_empty(fan_in)):
            raise ValueError(f"{self!r}: expected ((), (block parameters, ()), ()), got {_describe(tree)}")
        self.block._stax_parameters(block, out)


class _FanOut(Layer):
    def __init__(self, num: int) -> None:
        self.num = num

    def __repr__(self) -> str:
        return f"FanOut({self.num})"

    def _json_layers(self) -> List[Dict[str, Any]]:
        raise NotImplementedError("FanOut is in the tool only as serial(FanOut(2), parallel(block, Identity()), FanInSum())")


class _FanInSum(Layer):
    def __repr__(self) -> str:
        return "FanInSum()"

    def _json_layers(self) -> List[Dict[str, Any]]:
        raise NotImplementedError("FanInSum is in the tool only as serial(FanOut(2), parallel(block, Identity()), FanInSum())")


class _Parallel(Layer):
    def __init__(self, layers: Sequence[Layer]) -> None:
        for layer in layers:
            if not isinstance(layer, Layer):
                raise TypeError(f"parallel: {layer!r} is not an ntk.stax layer")
        self.layers = tuple(layers)

    def __repr__(self) -> str:
        return "parallel(" + ", ".join(map(repr, self.layers)) + ")"

    def _children(self) -> Sequence[Layer]:
        return self.layers

    def _explicit_parameterizations(self) -> List[str]:
        return [p for layer in self.layers for p in layer._explicit_parameterizations()]

    def _json_layers(self) -> List[Dict[str, Any]]:
        raise NotImplementedError("parallel is in the tool only as serial(FanOut(2), parallel(block, Identity()), FanInSum())")

    def _stax_parameters(self, tree: Any, out: List[Tuple[Any, Any, Layer]]) -> None:
        if not isinstance(tree, (tuple, list)) or len(tree) != len(self.layers):
            raise ValueError(f"{self!r}: expected {len(self.layers)} parameter entries, got {_describe(tree)}")
        for layer, part in zip(self.layers, tree):
            layer._stax_parameters(part, out)


def _is_skip(layer: Layer) -> bool:
    return isinstance(layer, Identity) or (isinstance(layer, _Serial) and all(map(_is_skip, layer.layers)))


def _residual_pattern(layers: Sequence[Layer]) -> Layer:
    """The block of ``FanOut(2), parallel(block, Identity()), FanInSum()``."""
    if (len(layers) == 3 and isinstance(layers[0], _FanOut) and layers[0].num == 2
            and isinstance(layers[1], _Parallel) and len(layers[1].layers) == 2
            and isinstance(layers[2], _FanInSum)):
        first, second = layers[1].layers
        if _is_skip(second):
            return first
        if _is_skip(first):
            return second
    raise NotImplementedError(
        "FanOut, parallel and FanInSum are in the tool only as a residual block, "
        "serial(FanOut(2), parallel(block, Identity()), FanInSum()), or use ntk.stax.residual(*block)")


def serial(*layers: Layer, parameterization: Optional[str] = None,
           input_shape: Optional[Sequence[int]] = None) -> Layer:
    """Layers in order, as ``stax.serial``; the model.

    ``parameterization``: ``'ntk'`` or ``'standard'`` for every dense and conv layer; None
    takes the one the ``Dense`` and ``Conv`` layers give (they must agree), or ``'ntk'``.
    ``input_shape`` (not in neural-tangents): the shape of one sample, ``(H, W, C)``,
    ``(L, C)`` or ``(d,)``, written to the model file; flat rows are then reshaped to it
    (C order).
    """
    return _Serial(layers, parameterization, input_shape)


def residual(*layers: Layer) -> Layer:
    """``y = x + block(x)`` with ``block = serial(*layers)``; the block keeps its input's
    width. neural-tangents: ``serial(FanOut(2), parallel(serial(*layers), Identity()), FanInSum())``."""
    return _Residual(_Serial(layers, None))


def FanOut(num: int) -> Layer:  # noqa: N802 - neural-tangents' name
    """``stax.FanOut``: only as the start of a residual block."""
    return _FanOut(num)


def parallel(*layers: Layer) -> Layer:
    """``stax.parallel``: only as the middle of a residual block."""
    return _Parallel(layers)


def FanInSum() -> Layer:  # noqa: N802 - neural-tangents' name
    """``stax.FanInSum``: only as the end of a residual block."""
    return _FanInSum()


# --- reading model files ------------------------------------------------------------------

_ACTIVATIONS = {"relu": Relu, "erf": Erf, "gelu": Gelu, "identity": Identity,
                "tanh": Tanh, "sigmoid": Sigmoid, "softplus": Softplus}


def _layer_from_dict(entry: Mapping[str, Any]) -> Layer:
    kind = entry.get("type")
    if kind == "dense":
        return Dense(entry["width"], W_std=entry.get("W_std", 1.0), b_std=entry.get("b_std"))
    if kind == "conv":
        return Conv(entry["channels"], entry["kernel"], strides=entry.get("strides"),
                    padding=_file_padding(entry), W_std=entry.get("W_std", 1.0), b_std=entry.get("b_std"))
    if kind == "avg_pool":
        # The file's default strides are the window (neural-tangents': 1).
        strides = entry.get("strides")
        return AvgPool(entry["window"], strides=entry["window"] if strides is None else strides,
                       padding=_file_padding(entry))
    if kind == "global_avg_pool":
        return GlobalAvgPool()
    if kind == "global_sum_pool":
        return GlobalSumPool()
    if kind == "flatten":
        return Flatten()
    if kind == "residual":
        return residual(*[_layer_from_dict(e) for e in entry["layers"]])
    if kind == "leaky_relu":
        return LeakyRelu(entry["alpha"])
    if kind in ("tanh", "sigmoid", "softplus"):
        return _ACTIVATIONS[kind](entry.get("quadrature_degree"))
    if kind in _ACTIVATIONS:
        return _ACTIVATIONS[kind]()
    raise ValueError(f"unknown layer type {kind!r}")


def _file_padding(entry: Mapping[str, Any]) -> Any:
    """A model file's padding (the tool takes any case); neural-tangents' names are upper case."""
    padding = entry.get("padding")
    return "VALID" if padding is None else padding.upper() if isinstance(padding, str) else padding


def from_dict(model: Mapping[str, Any]) -> Layer:
    """The builder's model for a model file's JSON object."""
    return serial(*[_layer_from_dict(e) for e in model["layers"]],
                  parameterization=model.get("parameterization", "ntk"), input_shape=model.get("input_shape"))


def load(path: Union[str, os.PathLike]) -> Layer:
    """The builder's model for a model file."""
    return from_dict(json.loads(Path(path).read_text()))


# --- the forward pass in NumPy -------------------------------------------------------------

def _erf(x: np.ndarray) -> np.ndarray:
    try:
        from scipy.special import erf  # type: ignore[import-not-found]
        return erf(x)
    except ImportError:
        return np.vectorize(math.erf, otypes=[np.float64])(x)


def _activation(entry: Mapping[str, Any], h: np.ndarray) -> np.ndarray:
    kind = entry["type"]
    if kind == "relu":
        return np.maximum(h, 0.0)
    if kind == "leaky_relu":
        return np.where(h > 0, h, entry["alpha"] * h)
    if kind == "erf":
        return _erf(h)
    if kind == "gelu":
        return 0.5 * h * (1.0 + _erf(h / math.sqrt(2.0)))
    if kind == "tanh":
        return np.tanh(h)
    if kind == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * h))
    if kind == "softplus":
        return np.logaddexp(0.0, h)
    if kind == "identity":
        return h
    raise ValueError(f"unknown layer type {kind!r}")


def _same_pads(sizes: Sequence[int], window: Sequence[int], strides: Sequence[int]) -> List[Tuple[int, int]]:
    """lax.padtype_to_pads(..., 'SAME'): out = ceil(size/stride), the odd one at the end."""
    pads = []
    for size, k, s in zip(sizes, window, strides):
        total = max((-(-size // s) - 1) * s + k - size, 0)
        pads.append((total // 2, total - total // 2))
    return pads


def _windows(z: np.ndarray, window: Sequence[int], strides: Sequence[int], padding: str) -> np.ndarray:
    """The windows of z (N, *spatial, C): a view (N, *out, C, *window)."""
    n = len(window)
    if z.ndim != n + 2:
        raise ValueError(f"a {n}-D window takes inputs (N, {n} spatial axes, C), got shape {z.shape}")
    if padding != "VALID":
        pads = [(0, 0), *_same_pads(z.shape[1:-1], window, strides), (0, 0)]
        z = np.pad(z, pads, mode="wrap" if padding == "CIRCULAR" else "constant")
    if any(size < k for size, k in zip(z.shape[1:-1], window)):
        raise ValueError(f"the window {tuple(window)} is larger than the input's {z.shape[1:-1]}")
    view = np.lib.stride_tricks.sliding_window_view(z, tuple(window), axis=tuple(range(1, n + 1)))
    return view[(slice(None), *(slice(None, None, s) for s in strides))]


def _conv(z: np.ndarray, W: np.ndarray, strides: Sequence[int], padding: str) -> np.ndarray:
    """lax.conv_general_dilated with channels last and W (*window, C_in, C_out)."""
    n = W.ndim - 2
    if z.shape[-1] != W.shape[-2]:
        raise ValueError(f"a conv filter of shape {W.shape} takes {W.shape[-2]} input channels, got shape {z.shape}")
    view = _windows(z, W.shape[:n], strides, padding)  # (N, *out, C_in, *window)
    axes_view = [n + 1, *range(n + 2, 2 * n + 2)]
    axes_W = [n, *range(n)]
    return np.tensordot(view, W, axes=(axes_view, axes_W))


def forward(model: Mapping[str, Any], params: Mapping[str, Any], x: np.ndarray) -> np.ndarray:
    """f(x) of a model file's network at the tool's parameters (``W0, b0, ...``), float64.

    With the model's ``input_shape``, flat rows (N, H·W·C) are reshaped (C order); inputs
    of a convolutional model are channels last."""
    parameterization = model.get("parameterization", "ntk")
    counter = [0]
    x = np.asarray(x, dtype=np.float64)
    shape = model.get("input_shape")
    if shape is not None and x.ndim >= 1 and tuple(x.shape[1:]) != tuple(shape):
        if math.prod(x.shape[1:]) != math.prod(shape):
            raise ValueError(f"inputs of shape {x.shape} do not hold samples of the model's input_shape {list(shape)}")
        x = x.reshape((x.shape[0], *shape))

    def run(layers: Sequence[Mapping[str, Any]], z: np.ndarray) -> np.ndarray:
        for entry in layers:
            kind = entry["type"]
            if kind == "conv":
                index = counter[0]
                counter[0] += 1
                W = np.asarray(params[f"W{index}"], dtype=np.float64)
                b = params.get(f"b{index}")
                b_std = entry.get("b_std")
                padding = entry.get("padding", "VALID")
                strides = entry.get("strides") or [1] * (W.ndim - 2)
                h = _conv(z, W, strides, padding)
                if parameterization == "ntk":
                    h = (entry.get("W_std", 1.0) / math.sqrt(z.shape[-1] * math.prod(W.shape[:-2]))) * h
                    if b_std is not None and b is not None:
                        h = h + b_std * np.asarray(b, dtype=np.float64).reshape(-1)
                elif b_std is not None and b is not None:
                    h = h + np.asarray(b, dtype=np.float64).reshape(-1)
                z = h
            elif kind == "avg_pool":
                window = entry["window"]
                strides = entry.get("strides") or window
                z = _windows(z, window, strides, entry.get("padding", "VALID")).sum(
                    axis=tuple(range(-len(window), 0))) / math.prod(window)
            elif kind == "global_avg_pool":
                z = z.mean(axis=tuple(range(1, z.ndim - 1)))
            elif kind == "global_sum_pool":
                z = z.sum(axis=tuple(range(1, z.ndim - 1)))
            elif kind == "flatten":
                z = z.reshape(z.shape[0], -1)
            elif kind == "dense":
                index = counter[0]
                counter[0] += 1
                W = np.asarray(params[f"W{index}"], dtype=np.float64)
                b = params.get(f"b{index}")
                b_std = entry.get("b_std")
                if parameterization == "ntk":
                    z = (entry.get("W_std", 1.0) / math.sqrt(z.shape[-1])) * (z @ W)
                    if b_std is not None and b is not None:
                        z = z + b_std * np.asarray(b, dtype=np.float64).reshape(-1)
                else:
                    z = z @ W
                    if b_std is not None and b is not None:
                        z = z + np.asarray(b, dtype=np.float64).reshape(-1)
            elif entry["type"] == "residual":
                z = z + run(entry["layers"], z)
            else:
                z = _activation(entry, z)
        return z

    return run(model["layers"], x)


# --- helpers ------------------------------------------------------------------------------

def _seed_of(rng: Any) -> int:
    """A seed from an integer or a key array (jax's PRNGKey: its 32-bit words)."""
    if rng is None:
        return 0
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        if rng < 0:
            raise ValueError(f"a seed must be non-negative, got {rng}")
        return int(rng) % (1 << 64)
    words = np.asarray(rng).astype(np.uint64).reshape(-1)
    seed = 0
    for word in words:
        seed = ((seed << 32) | (int(word) & 0xFFFFFFFF)) % (1 << 64)
    return seed


def _is_empty(tree: Any) -> bool:
    return tree is None or (isinstance(tree, (tuple, list)) and all(_is_empty(t) for t in tree))


def _describe(tree: Any) -> str:
    if isinstance(tree, (tuple, list)):
        return f"a {type(tree).__name__} of {len(tree)}"
    shape = getattr(tree, "shape", None)
    return f"an array of shape {tuple(shape)}" if shape is not None else repr(tree)
