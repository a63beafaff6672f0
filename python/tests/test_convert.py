"""Converters: neural-tangents stax parameter trees and PyTorch modules."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ntk
from ntk import convert, stax
from conftest import relative_error

REFERENCE_VENV = Path(os.environ.get("NTK_REF_VENV", Path.home() / ".cache" / "ntk-reference-venv"))
REFERENCE_PYTHON = REFERENCE_VENV / "bin" / "python"

# One definition, run with neural_tangents.stax in the reference venv and with ntk.stax
# here: the same names, the same nesting (a residual block in neural-tangents' spelling).
DEFINITION = """
model = stax.serial(
    stax.Dense(12, W_std=1.5, b_std=0.1, parameterization=P), stax.Relu(),
    stax.serial(stax.FanOut(2),
                stax.parallel(stax.serial(stax.Dense(12, W_std=1.2, b_std=0.2, parameterization=P), stax.Erf()),
                              stax.Identity()),
                stax.FanInSum()),
    stax.Dense(10, W_std=1.3, parameterization=P), stax.Gelu(approximate=False),
    stax.Dense(3, W_std=1.0, b_std=0.3, parameterization=P))
"""

REFERENCE_SCRIPT = r"""
import json, os, sys
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import jax
jax.config.update("jax_enable_x64", True)
import neural_tangents as nt
from neural_tangents import stax

out, definition = sys.argv[1], sys.argv[2]
x1 = np.load(os.path.join(out, "x1.npy")); x2 = np.load(os.path.join(out, "x2.npy"))
arrays = {}

def encode(tree):
    if tree is None:
        return None
    if isinstance(tree, (tuple, list)):
        return [encode(t) for t in tree]
    name = f"a{len(arrays)}"
    arrays[name] = np.asarray(tree)
    return name

trees = {}
for P in ("ntk", "standard"):
    namespace = {"stax": stax, "P": P}
    exec(definition, namespace)
    init_fn, apply_fn, _ = namespace["model"]
    _, params = init_fn(jax.random.PRNGKey(3), x1.shape)
    kernel_fn = nt.empirical_ntk_fn(apply_fn, vmap_axes=0)  # trace_axes=(-1,): the mean over outputs
    np.save(os.path.join(out, f"{P}_ntk_12.npy"), np.asarray(kernel_fn(x1, x2, params)))
    np.save(os.path.join(out, f"{P}_outputs_1.npy"), np.asarray(apply_fn(params, x1)))
    trees[P] = encode(params)
np.savez(os.path.join(out, "leaves.npz"), **arrays)
with open(os.path.join(out, "trees.json"), "w") as f:
    json.dump(trees, f)
"""


def _decode(tree, leaves):
    if tree is None:
        return None
    if isinstance(tree, list):
        return tuple(_decode(t, leaves) for t in tree)
    return leaves[tree]


@pytest.fixture(scope="module")
def neural_tangents_run(tmp_path_factory):
    if not REFERENCE_PYTHON.exists():
        pytest.skip(f"no neural-tangents reference venv at {REFERENCE_VENV} (make it with scripts/reference/setup.sh)")
    out = tmp_path_factory.mktemp("nt")
    rng = np.random.default_rng(5)
    np.save(out / "x1.npy", rng.standard_normal((6, 5)))
    np.save(out / "x2.npy", rng.standard_normal((4, 5)))
    done = subprocess.run([str(REFERENCE_PYTHON), "-c", REFERENCE_SCRIPT, str(out), DEFINITION],
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        pytest.fail(f"the neural-tangents reference run failed:\n{done.stderr[-3000:]}")
    with np.load(out / "leaves.npz") as archive:
        leaves = {name: archive[name] for name in archive.files}
    trees = json.loads((out / "trees.json").read_text())
    return out, {P: _decode(tree, leaves) for P, tree in trees.items()}


@pytest.mark.parametrize("P", ["ntk", "standard"])
def test_from_stax_gives_neural_tangents_empirical_ntk(neural_tangents_run, P):
    out, trees = neural_tangents_run
    namespace = {"stax": stax, "P": P}
    exec(DEFINITION, namespace)
    model = namespace["model"]
    params = convert.from_stax(trees[P], model)
    assert params["W0"].shape == (5, 12) and params["b0"].shape == (12,) and "b2" not in params
    x1, x2 = np.load(out / "x1.npy"), np.load(out / "x2.npy")
    with ntk.gram(x1, x2, model=model, params=params, progress=False) as result:
        assert relative_error(result.kernel, np.load(out / f"{P}_ntk_12.npy")) <= 1e-10
        assert relative_error(result.outputs, np.load(out / f"{P}_outputs_1.npy")) <= 1e-10
    # The tree itself is taken too, converted with the model.
    with ntk.gram(x1, x2, model=model, params=trees[P], progress=False) as result:
        assert relative_error(result.kernel, np.load(out / f"{P}_ntk_12.npy")) <= 1e-10
    assert relative_error(model.apply_fn(trees[P], x1), np.load(out / f"{P}_outputs_1.npy")) <= 1e-12


def test_from_stax_refuses_a_tree_of_another_network():
    model = stax.serial(stax.Dense(4, b_std=0.1), stax.Relu(), stax.Dense(1))
    W0, b0, W1 = np.ones((3, 4)), np.ones((1, 4)), np.ones((4, 1))
    assert set(convert.from_stax([(W0, b0), (), (W1, None)], model)) == {"W0", "b0", "W1"}
    with pytest.raises(ValueError, match="has no bias"):
        convert.from_stax([(W0, b0), (), (W1, np.ones((1, 1)))], model)
    with pytest.raises(ValueError, match="serial of 3 layers"):
        convert.from_stax([(W0, b0), (W1, None)], model)
    with pytest.raises(ValueError, match="expected \\(n_in, 4\\)"):
        convert.from_stax([(np.ones((3, 5)), b0), (), (W1, None)], model)


# --- PyTorch ---------------------------------------------------------------------------
# Stand-ins with PyTorch's class names and attributes: from_torch reads only those.

class Linear:
    def __init__(self, n_in, n_out, rng, bias=True):
        bound = 1 / math.sqrt(n_in)  # PyTorch's default initialization
        self.weight = rng.uniform(-bound, bound, (n_out, n_in)).astype(np.float32)
        self.bias = rng.uniform(-bound, bound, n_out).astype(np.float32) if bias else None


class ReLU:
    pass


class Tanh:
    pass


class Sequential(list):
    pass


def _numpy_ntk(layers, x1, x2):
    """The empirical NTK of a chain of Linear layers and elementwise activations, k = 1,
    by backpropagation in NumPy: Σ_l (δ_l·δ_l')(z_l·z_l' + [bias])."""
    def passes(x):
        zs, derivatives, z = [], [], x.astype(np.float64)
        for layer in layers:
            if isinstance(layer, Linear):
                zs.append(z)
                derivatives.append(None)
                z = z @ layer.weight.T.astype(np.float64) + (0 if layer.bias is None else layer.bias.astype(np.float64))
            elif isinstance(layer, ReLU):
                derivatives[-1] = (z > 0).astype(np.float64)
                z = np.maximum(z, 0)
            else:
                derivatives[-1] = 1 - np.tanh(z) ** 2
                z = np.tanh(z)
        deltas, delta = [], np.ones((x.shape[0], 1))
        linears = [layer for layer in layers if isinstance(layer, Linear)]
        for index in reversed(range(len(linears))):
            deltas.insert(0, delta)
            delta = delta @ linears[index].weight.astype(np.float64)
            if index > 0 and derivatives[index - 1] is not None:
                delta = delta * derivatives[index - 1]
        return zs, deltas, linears

    z1, d1, linears = passes(x1)
    z2, d2, _ = passes(x2)
    kernel = np.zeros((x1.shape[0], x2.shape[0]))
    for a, b, da, db, layer in zip(z1, z2, d1, d2, linears):
        kernel += (da @ db.T) * (a @ b.T + (0 if layer.bias is None else 1))
    return kernel


def _forward(layers, x):
    z = x.astype(np.float64)
    for layer in layers:
        if isinstance(layer, Linear):
            z = z @ layer.weight.T.astype(np.float64) + (0 if layer.bias is None else layer.bias.astype(np.float64))
        else:
            z = np.maximum(z, 0) if isinstance(layer, ReLU) else np.tanh(z)
    return z


def test_from_torch_reads_a_sequential_as_standard_parameterization():
    rng = np.random.default_rng(2)
    module = Sequential([Linear(5, 16, rng), ReLU(), Sequential([Linear(16, 8, rng, bias=False), Tanh()]),
                         Linear(8, 1, rng)])
    model, params = convert.from_torch(module)
    assert model.parameterization == "standard"
    assert [layer["type"] for layer in model.to_dict()["layers"]] == ["dense", "relu", "dense", "tanh", "dense"]
    dense = model.to_dict()["layers"][0]
    assert dense["W_std"] == pytest.approx(1 / math.sqrt(3)) and dense["b_std"] == pytest.approx(1 / math.sqrt(15))
    assert "b_std" not in model.to_dict()["layers"][2] and "b1" not in params
    assert params["W0"].shape == (5, 16) and params["W0"].dtype == np.float64
    flat = [m for part in module for m in (part if isinstance(part, list) else [part])]
    x1, x2 = rng.standard_normal((7, 5)), rng.standard_normal((3, 5))
    assert relative_error(model.apply_fn(params, x1), _forward(flat, x1)) <= 1e-12
    with ntk.gram(x1, x2, model=model, params=params, progress=False) as result:
        assert relative_error(result.kernel, _numpy_ntk(flat, x1, x2)) <= 1e-10
        assert relative_error(result.outputs, _forward(flat, x1)) <= 1e-12


def test_from_torch_refuses_what_the_tool_lacks():
    class Conv2d:
        pass
    with pytest.raises(ValueError, match="Conv2d is not in the tool"):
        convert.from_torch(Sequential([Linear(2, 2, np.random.default_rng(0)), Conv2d()]))


def test_from_torch_with_torch_itself():
    try:
        import torch
    except ImportError:
        pytest.skip("torch is not installed in the test venv: PyPI's default torch wheel brings several GB of "
                    "CUDA libraries; scripts/test-python.sh installs a CPU wheel found through PIP_FIND_LINKS")
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 8), torch.nn.ReLU(),
                                 torch.nn.Linear(8, 1)).double()
    model, params = convert.from_torch(module)
    x1 = torch.randn(6, 4, dtype=torch.float64)
    x2 = torch.randn(3, 4, dtype=torch.float64)
    names = [name for name, _ in module.named_parameters()]
    values = {name: p.detach() for name, p in module.named_parameters()}

    def f(parameters, x):
        return torch.func.functional_call(module, parameters, (x,))

    j1 = torch.func.jacrev(f)(values, x1)
    j2 = torch.func.jacrev(f)(values, x2)
    reference = sum(j1[n].reshape(6, -1) @ j2[n].reshape(3, -1).T for n in names).numpy()
    with ntk.gram(x1.numpy(), x2.numpy(), model=model, params=params, progress=False) as result:
        assert relative_error(result.kernel, reference) <= 1e-10
        assert relative_error(result.outputs, module(x1).detach().numpy()) <= 1e-12


# --- Flax ------------------------------------------------------------------------------------

def _flax_variables(rng, bias=(True, False, True)):
    """Flax-shaped variables of Dense(16) -> relu -> Dense(8) -> tanh -> Dense(1) on 5 inputs
    (``kernel`` (n_in, n_out), ``bias`` (n_out,)), without Flax itself."""
    shapes = [(5, 16), (16, 8), (8, 1)]
    params = {}
    for i, ((n_in, n_out), has_bias) in enumerate(zip(shapes, bias)):
        layer = {"kernel": rng.standard_normal((n_in, n_out)) / math.sqrt(n_in)}
        if has_bias:
            layer["bias"] = 0.1 * rng.standard_normal(n_out)
        params[f"Dense_{i}"] = layer
    return {"params": params}


def _flax_forward(variables, x):
    z = x
    layers = variables["params"]
    for i in range(3):
        layer = layers[f"Dense_{i}"]
        z = z @ layer["kernel"] + layer.get("bias", 0)
        if i == 0:
            z = np.maximum(z, 0)
        elif i == 1:
            z = np.tanh(z)
    return z


@pytest.mark.parametrize("parameterization", ["standard", "ntk"])
def test_from_flax_gives_the_flax_network_in_both_parameterizations(parameterization):
    rng = np.random.default_rng(5)
    variables = _flax_variables(rng)
    model = ntk.stax.serial(ntk.stax.Dense(16, W_std=1.3, b_std=0.2), ntk.stax.Relu(), ntk.stax.Dense(8, W_std=0.9),
                            ntk.stax.Tanh(), ntk.stax.Dense(1, b_std=0.1), parameterization=parameterization)
    params = convert.from_flax(variables, model)
    assert sorted(params) == ["W0", "W1", "W2", "b0", "b2"]
    if parameterization == "standard":
        assert np.array_equal(params["W1"], variables["params"]["Dense_1"]["kernel"])
    else:  # raw = kernel / (W_std / sqrt(n_in)), bias / b_std
        assert relative_error(params["W0"], variables["params"]["Dense_0"]["kernel"] / (1.3 / math.sqrt(5))) <= 1e-15
        assert relative_error(params["b2"], variables["params"]["Dense_2"]["bias"] / 0.1) <= 1e-15
    x = rng.standard_normal((6, 5))
    assert relative_error(model.apply_fn(params, x), _flax_forward(variables, x)) <= 1e-12
    with ntk.gram(x, model=model, params=params, progress=False) as result:
        assert relative_error(result.outputs, _flax_forward(variables, x)) <= 1e-12


def test_from_flax_refuses_another_network():
    rng = np.random.default_rng(6)
    model = ntk.stax.serial(ntk.stax.Dense(16, b_std=0.2), ntk.stax.Relu(), ntk.stax.Dense(8, b_std=0.1), ntk.stax.Tanh(),
                            ntk.stax.Dense(1, b_std=0.1), parameterization="standard")
    with pytest.raises(ValueError, match="dense layer 1: the model has bias"):
        convert.from_flax(_flax_variables(rng), model)
    with pytest.raises(ValueError, match="hold 2 Dense layers, the model 3"):
        variables = _flax_variables(rng)
        del variables["params"]["Dense_2"]
        convert.from_flax(variables, model)


def test_from_flax_with_flax_itself():
    try:
        import flax.linen as nn
        import jax
    except ImportError:
        pytest.skip("flax is not installed in the test venv (it brings jax); the stand-in variables above test the converter")
    jax.config.update("jax_enable_x64", True)
    module = nn.Sequential([nn.Dense(16), nn.relu, nn.Dense(1)])
    x = np.random.default_rng(7).standard_normal((5, 4))
    variables = module.init(jax.random.PRNGKey(0), x)
    model = ntk.stax.serial(ntk.stax.Dense(16, b_std=0.0), ntk.stax.Relu(), ntk.stax.Dense(1, b_std=0.0),
                            parameterization="standard")
    params = convert.from_flax(variables, model)
    with ntk.gram(x, model=model, params=params, progress=False) as result:
        assert relative_error(result.outputs, np.asarray(module.apply(variables, x))) <= 1e-12
