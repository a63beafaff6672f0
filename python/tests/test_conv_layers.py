"""ntk.stax's convolutional layers (Conv, AvgPool, GlobalAvgPool, Flatten): the model JSON
they write, the NumPy forward pass against jax.lax (where jax is installed), the committed
conv fixtures and neural-tangents 0.6.5 itself (the reference venv of scripts/reference,
where it exists), and from_stax on neural-tangents' conv parameter trees. The tests named
``test_the_binary_...`` run the binary; they skip while it does not take conv models."""
from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import ntk
from ntk import convert, stax
from conftest import REPOSITORY, cases, relative_error

REFERENCE_VENV = Path(os.environ.get("NTK_REF_VENV", Path.home() / ".cache" / "ntk-reference-venv"))
REFERENCE_PYTHON = REFERENCE_VENV / "bin" / "python"
EXAMPLE = REPOSITORY / "docs" / "examples" / "digits-cnn.json"
S2 = math.sqrt(2.0)


def myrtle_digits():
    return stax.serial(
        stax.Conv(64, (3, 3), padding="SAME", W_std=S2), stax.Relu(),
        stax.Conv(64, (3, 3), padding="SAME", W_std=S2), stax.Relu(),
        stax.AvgPool((2, 2), strides=(2, 2)),
        stax.Conv(64, (3, 3), padding="SAME", W_std=S2), stax.Relu(),
        stax.GlobalAvgPool(), stax.Dense(10),
        input_shape=(8, 8, 1))


# --- the model file ---------------------------------------------------------------------

def test_the_digits_cnn_example_is_the_myrtle_definition():
    example = json.loads(EXAMPLE.read_text())
    assert example.pop("name") == "digits-cnn" and example.pop("description")
    assert myrtle_digits().to_dict() == example
    assert list(example) == ["parameterization", "input_shape", "layers"]
    assert stax.load(EXAMPLE).to_dict() == example
    assert myrtle_digits()._output_shape((8, 8, 1)) == (10,)


def test_conv_and_pooling_write_the_model_file_with_explicit_strides():
    model = stax.serial(stax.Conv(8, (3, 2)), stax.Relu(), stax.Conv(4, [3, 3], strides=(2, 1), padding="CIRCULAR",
                                                                      W_std=1.5, b_std=0.1),
                        stax.AvgPool((2, 2)), stax.AvgPool((3, 3), (2, 2), "SAME"), stax.Flatten(), stax.Dense(1))
    layers = model.to_dict()["layers"]
    assert "input_shape" not in model.to_dict()
    assert layers[0] == {"type": "conv", "channels": 8, "kernel": [3, 2], "strides": [1, 1], "padding": "VALID",
                         "W_std": 1.0}
    assert layers[2] == {"type": "conv", "channels": 4, "kernel": [3, 3], "strides": [2, 1], "padding": "CIRCULAR",
                         "W_std": 1.5, "b_std": 0.1}
    # stax.AvgPool's default stride is 1; the file's default is the window: written explicitly.
    assert layers[3] == {"type": "avg_pool", "window": [2, 2], "strides": [1, 1], "padding": "VALID"}
    assert layers[4] == {"type": "avg_pool", "window": [3, 3], "strides": [2, 2], "padding": "SAME"}
    assert layers[5] == {"type": "flatten"}
    assert stax.from_dict(model.to_dict()).to_dict() == model.to_dict()
    assert json.loads(model.to_json()) == model.to_dict()
    # Read from a file: absent strides of avg_pool are the window, of conv 1; padding VALID.
    read = stax.from_dict({"input_shape": [6, 1], "layers": [
        {"type": "conv", "channels": 2, "kernel": [2]}, {"type": "avg_pool", "window": [2]},
        {"type": "global_avg_pool"}, {"type": "dense", "width": 1}]})
    assert read.input_shape == (6, 1)
    assert read.to_dict()["layers"][:2] == [
        {"type": "conv", "channels": 2, "kernel": [2], "strides": [1], "padding": "VALID", "W_std": 1.0},
        {"type": "avg_pool", "window": [2], "strides": [2], "padding": "VALID"}]
    assert read._output_shape((6, 1)) == (1,)


def test_output_shapes_follow_lax():
    assert stax.Conv(5, (3, 3))._output_shape((8, 7, 2)) == (6, 5, 5)
    assert stax.Conv(5, (3, 3), strides=(2, 3), padding="SAME")._output_shape((8, 7, 2)) == (4, 3, 5)
    assert stax.Conv(5, (4,), strides=(3,), padding="CIRCULAR")._output_shape((10, 2)) == (4, 5)
    assert stax.AvgPool((2, 2))._output_shape((8, 7, 2)) == (7, 6, 2)
    assert stax.AvgPool((2, 2), (2, 2))._output_shape((8, 7, 2)) == (4, 3, 2)
    assert stax.AvgPool((2, 2), (2, 2), "SAME")._output_shape((8, 7, 2)) == (4, 4, 2)
    assert stax.GlobalAvgPool()._output_shape((8, 7, 2)) == (2,)
    assert stax.Flatten()._output_shape((8, 7, 2)) == (112,)
    assert stax.Dense(3)._output_shape((8, 7, 2)) == (8, 7, 3)  # stax.Dense acts on the channel axis
    with pytest.raises(ValueError, match="spatial dimensions"):
        stax.Conv(5, (3, 3))._output_shape((64,))
    with pytest.raises(ValueError, match="keeps its input's shape"):
        stax.residual(stax.Conv(4, (3, 3)))._output_shape((8, 8, 4))
    assert stax.residual(stax.Relu(), stax.Conv(4, (3, 3), padding="SAME"))._output_shape((8, 8, 4)) == (8, 8, 4)


def test_what_the_tool_lacks_in_conv_layers_is_refused():
    with pytest.raises(NotImplementedError, match="1-D and 2-D"):
        stax.Conv(4, (3, 3, 3))
    with pytest.raises(NotImplementedError, match="channels-last"):
        stax.Conv(4, (3, 3), dimension_numbers=("NCHW", "OIHW", "NCHW"))
    assert stax.Conv(4, (3, 3), dimension_numbers=("NABC", "ABIO", "NABC")).filter_shape == (3, 3)
    with pytest.raises(NotImplementedError, match="normalize_edges"):
        stax.AvgPool((2, 2), padding="SAME", normalize_edges=True)
    assert stax.AvgPool((2, 2), padding="CIRCULAR", normalize_edges=True).padding == "CIRCULAR"  # no edges there
    with pytest.raises(ValueError, match="padding must be one of"):
        stax.Conv(4, (3, 3), padding="same")
    with pytest.raises(ValueError, match="different lengths"):
        stax.AvgPool((2, 2), strides=(2,))
    with pytest.raises(TypeError):
        stax.Conv(4, 3)
    with pytest.raises(ValueError, match="one parameterization per model"):
        stax.serial(stax.Conv(4, (3, 3), parameterization="standard"), parameterization="ntk").to_dict()
    with pytest.raises(ValueError, match="outermost"):
        stax.serial(stax.serial(stax.Relu(), input_shape=(4, 4, 1)))
    with pytest.raises(ValueError, match="Dense layers only"):
        convert.from_flax({"params": {}}, myrtle_digits())


# --- the NumPy forward pass --------------------------------------------------------------

def _params(model, sample, rng):
    """Raw parameters of the tool's layout for a model on samples of shape ``sample``."""
    params, shape, index = {}, tuple(sample), 0

    def visit(layer, shape):
        nonlocal index
        if isinstance(layer, (stax.Dense, stax.Conv)):
            if isinstance(layer, stax.Conv):
                params[f"W{index}"] = rng.standard_normal((*layer.filter_shape, shape[-1], layer.out_chan))
                width = layer.out_chan
            else:
                params[f"W{index}"] = rng.standard_normal((shape[-1], layer.out_dim))
                width = layer.out_dim
            if layer.b_std is not None:
                params[f"b{index}"] = rng.standard_normal(width)
            index += 1
            return layer._output_shape(shape)
        if isinstance(layer, stax._Serial):
            for child in layer.layers:
                shape = visit(child, shape)
            return shape
        if isinstance(layer, stax._Residual):
            visit(layer.block, shape)
            return shape
        return layer._output_shape(shape)

    visit(model, shape)
    return params


def test_forward_takes_flat_rows_with_the_models_input_shape():
    model = myrtle_digits()
    rng = np.random.default_rng(3)
    params = _params(model, (8, 8, 1), rng)
    assert params["W0"].shape == (3, 3, 1, 64) and params["W3"].shape == (64, 10) and "b0" not in params
    x = rng.standard_normal((5, 64))
    flat = model.apply_fn(params, x)
    assert flat.shape == (5, 10)
    assert np.array_equal(flat, model.apply_fn(params, x.reshape(5, 8, 8, 1)))
    with pytest.raises(ValueError, match="input_shape"):
        model.apply_fn(params, rng.standard_normal((5, 63)))


def test_forward_is_lax_conv_and_reduce_window():
    jax = pytest.importorskip("jax", reason="jax is not installed in the test venv")
    jax.config.update("jax_enable_x64", True)
    from jax import lax
    import jax.numpy as jnp
    rng = np.random.default_rng(4)
    for shape, window, spatial in (((7, 6, 3), (3, 2), "HW"), ((9, 2), (3,), "H")):
        n = len(window)
        numbers = ("N" + spatial + "C", spatial + "IO", "N" + spatial + "C")
        for padding in ("VALID", "SAME", "CIRCULAR"):
            for strides in ((1,) * n, (2,) * n, (3, 1)[:n]):
                x = rng.standard_normal((4, *shape))
                W = rng.standard_normal((*window, shape[-1], 5))
                b = rng.standard_normal(5)
                padded, pad = x, padding
                if padding == "CIRCULAR":  # neural-tangents: SAME's amounts wrapped, then VALID
                    padded, pad = jnp.pad(x, [(0, 0), *stax._same_pads(shape[:-1], window, strides), (0, 0)], "wrap"), "VALID"
                conv = np.asarray(lax.conv_general_dilated(padded, W, strides, pad, dimension_numbers=numbers))
                sums = np.asarray(lax.reduce_window(padded, 0.0, lax.add, (1, *window, 1), (1, *strides, 1), pad))
                for P in ("ntk", "standard"):
                    layer = stax.Conv(5, window, strides, padding, W_std=1.7, b_std=0.3)
                    model = stax.serial(layer, parameterization=P)
                    ours = model.apply_fn({"W0": W, "b0": b}, x)
                    expected = (1.7 / math.sqrt(shape[-1] * math.prod(window)) * conv + 0.3 * b) if P == "ntk" else conv + b
                    assert ours.shape == (4, *layer._output_shape(shape))
                    assert relative_error(ours, expected) <= 1e-13, (padding, strides, P)
                pool = stax.serial(stax.AvgPool(window, strides, padding))
                assert relative_error(pool.apply_fn({}, x), sums / math.prod(window)) <= 1e-13, (padding, strides)
    x = rng.standard_normal((3, 4, 5, 2))
    assert relative_error(stax.serial(stax.GlobalAvgPool()).apply_fn({}, x), x.mean(axis=(1, 2))) <= 1e-15
    assert np.array_equal(stax.serial(stax.Flatten()).apply_fn({}, x), x.reshape(3, 40))


CONV_FIXTURES = REPOSITORY / "Tests" / "Fixtures" / "conv" / "empirical"
CONV_CASES = cases("conv/empirical") if (CONV_FIXTURES / "cases.json").exists() else []


@pytest.mark.skipif(not CONV_CASES, reason="no Tests/Fixtures/conv/empirical (scripts/reference/make_conv_fixtures.py)")
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: c["name"])
def test_apply_fn_is_the_forward_pass_of_the_conv_fixtures(case):
    """The committed neural-tangents fixtures: the model file as written (its defaults:
    avg_pool strides = window, absent padding VALID) and as read by ntk.stax."""
    d = case["dir"]
    written = json.loads((d / "model.json").read_text())
    with np.load(d / "params.npz") as archive:
        params = {name: archive[name] for name in archive.files}
    x1, reference = np.load(d / "x1.npy"), np.load(d / "outputs_1.npy")
    assert relative_error(stax.forward(written, params, x1), reference) <= 1e-12
    model = stax.from_dict(written)
    assert relative_error(model.apply_fn(params, x1), reference) <= 1e-12
    assert stax.from_dict(model.to_dict()).to_dict() == model.to_dict()


# --- neural-tangents 0.6.5 --------------------------------------------------------------

# Definitions run with neural_tangents.stax in the reference venv and with ntk.stax here;
# each with the shape of its samples.
DEFINITIONS = {
    "conv2d_pools": ((9, 8, 2), """
model = stax.serial(
    stax.Conv(6, (3, 3), padding='SAME', W_std=1.4, b_std=0.1, parameterization=P), stax.Relu(),
    stax.Conv(5, (2, 3), strides=(2, 1), padding='VALID', W_std=1.2, parameterization=P), stax.Erf(),
    stax.AvgPool((2, 2), strides=(2, 2), padding='SAME'),
    stax.Conv(4, (3, 3), padding='CIRCULAR', b_std=0.2, parameterization=P), stax.Relu(),
    stax.AvgPool((2, 1)),
    stax.GlobalAvgPool(), stax.Dense(3, W_std=1.1, b_std=0.1, parameterization=P))
"""),
    "residual_flatten": ((6, 6, 1), """
model = stax.serial(
    stax.Conv(4, (3, 3), padding='SAME', b_std=0.1, parameterization=P),
    stax.serial(stax.FanOut(2),
                stax.parallel(stax.serial(stax.Relu(), stax.Conv(4, (3, 3), padding='CIRCULAR', W_std=1.3, b_std=0.1,
                                                                 parameterization=P)),
                              stax.Identity()),
                stax.FanInSum()),
    stax.AvgPool((3, 3), strides=(2, 2), padding='CIRCULAR'), stax.Flatten(), stax.Dense(2, parameterization=P))
"""),
    "conv1d": ((11, 2), """
model = stax.serial(
    stax.Conv(5, (3,), strides=(2,), padding='SAME', b_std=0.3, parameterization=P), stax.Gelu(),
    stax.AvgPool((2,), padding='VALID'),
    stax.Conv(3, (2,), W_std=0.9, parameterization=P), stax.Flatten(), stax.Dense(1, b_std=0.1, parameterization=P))
"""),
}

REFERENCE_SCRIPT = r"""
import json, os, sys
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import jax
jax.config.update("jax_enable_x64", True)
import neural_tangents as nt
from neural_tangents import stax

out = sys.argv[1]
definitions = json.loads(open(os.path.join(out, "definitions.json")).read())
arrays, trees = {}, {}

def encode(tree):
    if tree is None:
        return None
    if isinstance(tree, (tuple, list)):
        return [encode(t) for t in tree]
    name = f"a{len(arrays)}"
    arrays[name] = np.asarray(tree)
    return name

for name, (sample, definition) in definitions.items():
    rng = np.random.default_rng(len(name))
    x1 = rng.standard_normal((4, *sample)); x2 = rng.standard_normal((3, *sample))
    np.save(os.path.join(out, f"{name}_x1.npy"), x1); np.save(os.path.join(out, f"{name}_x2.npy"), x2)
    for P in ("ntk", "standard"):
        namespace = {"stax": stax, "P": P}
        exec(definition, namespace)
        init_fn, apply_fn, kernel_fn = namespace["model"]
        _, params = init_fn(jax.random.PRNGKey(3), x1.shape)
        empirical = nt.empirical_ntk_fn(apply_fn, vmap_axes=0)  # trace_axes=(-1,): the mean over outputs
        np.save(os.path.join(out, f"{name}_{P}_ntk_12.npy"), np.asarray(empirical(x1, x2, params)))
        np.save(os.path.join(out, f"{name}_{P}_outputs_1.npy"), np.asarray(apply_fn(params, x1)))
        if P == "ntk":
            both = kernel_fn(x1, x2, ("nngp", "ntk"))
            np.save(os.path.join(out, f"{name}_analytic_ntk_12.npy"), np.asarray(both.ntk))
            np.save(os.path.join(out, f"{name}_analytic_nngp_12.npy"), np.asarray(both.nngp))
        trees[f"{name}_{P}"] = encode(params)
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


def _ours(name, P):
    namespace = {"stax": stax, "P": P}
    exec(DEFINITIONS[name][1], namespace)
    return namespace["model"]


@pytest.fixture(scope="module")
def neural_tangents_run(tmp_path_factory):
    if not REFERENCE_PYTHON.exists():
        pytest.skip(f"no neural-tangents reference venv at {REFERENCE_VENV} (make it with scripts/reference/setup.sh)")
    out = tmp_path_factory.mktemp("nt-conv")
    (out / "definitions.json").write_text(json.dumps(DEFINITIONS))
    done = subprocess.run([str(REFERENCE_PYTHON), "-c", REFERENCE_SCRIPT, str(out)],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        pytest.fail(f"the neural-tangents reference run failed:\n{done.stderr[-3000:]}")
    with np.load(out / "leaves.npz") as archive:
        leaves = {name: archive[name] for name in archive.files}
    trees = json.loads((out / "trees.json").read_text())
    return out, {key: _decode(tree, leaves) for key, tree in trees.items()}


@pytest.mark.parametrize("P", ["ntk", "standard"])
@pytest.mark.parametrize("name", sorted(DEFINITIONS))
def test_apply_fn_and_from_stax_agree_with_neural_tangents(neural_tangents_run, name, P):
    out, trees = neural_tangents_run
    tree = trees[f"{name}_{P}"]
    model = _ours(name, P)
    params = convert.from_stax(tree, model)
    x1 = np.load(out / f"{name}_x1.npy")
    reference = np.load(out / f"{name}_{P}_outputs_1.npy")
    assert relative_error(model.apply_fn(params, x1), reference) <= 1e-12
    assert relative_error(model.apply_fn(tree, x1), reference) <= 1e-12  # the tree itself, converted
    # Flat rows with the model's input_shape: the same function.
    sample = DEFINITIONS[name][0]
    flat = stax.serial(*model.layers, parameterization=P, input_shape=sample)
    assert relative_error(flat.apply_fn(params, x1.reshape(len(x1), -1)), reference) <= 1e-12
    if name == "conv2d_pools":
        # neural-tangents' conv bias is (1, 1, 1, C_out); W is HWIO. The tool's: (C_out,), HWIO.
        conv_W, conv_b = tree[0]
        assert conv_W.shape == (3, 3, 2, 6) and conv_b.shape == (1, 1, 1, 6)
        assert params["W0"].shape == (3, 3, 2, 6) and params["b0"].shape == (6,)
        assert tree[2][1] is None and "b1" not in params
        assert sorted(params) == ["W0", "W1", "W2", "W3", "b0", "b2", "b3"]
    if name == "conv1d":
        assert tree[0][1].shape == (1, 1, 5) and params["b0"].shape == (5,)


def test_from_stax_refuses_conv_trees_of_another_network():
    model = stax.serial(stax.Conv(4, (3, 3), b_std=0.1), stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1))
    W0, b0, W1 = np.ones((3, 3, 2, 4)), np.ones((1, 1, 1, 4)), np.ones((4, 1))
    params = convert.from_stax([(W0, b0), (), (), (W1, None)], model)
    assert {k: v.shape for k, v in params.items()} == {"W0": (3, 3, 2, 4), "b0": (4,), "W1": (4, 1)}
    with pytest.raises(ValueError, match=r"expected \(3, 3, C_in, 4\)"):
        convert.from_stax([(np.ones((3, 2, 2, 4)), b0), (), (), (W1, None)], model)
    with pytest.raises(ValueError, match=r"expected \(1, 1, 1, 4\)"):
        convert.from_stax([(W0, np.ones((1, 1, 4, 1))), (), (), (W1, None)], model)
    with pytest.raises(ValueError, match="has b_std=0.1, but the tree holds no bias"):
        convert.from_stax([(W0, None), (), (), (W1, None)], model)
    with pytest.raises(ValueError, match="has no parameters"):
        convert.from_stax([(W0, b0), (), (np.ones(2),), (W1, None)], model)


# --- the binary (skipped while it does not know conv layers) ------------------------------

def _gram_or_skip(*args, **kwargs):
    try:
        return ntk.gram(*args, **kwargs)
    except ntk.InputError as error:
        if "unknown layer type" in error.message or "input_shape" in error.message:
            pytest.skip(f"the binary does not take conv models yet: {error.message}")
        raise


@pytest.mark.parametrize("P", ["ntk", "standard"])
@pytest.mark.parametrize("name", sorted(DEFINITIONS))
def test_the_binary_gives_neural_tangents_empirical_ntk_of_a_cnn(neural_tangents_run, name, P):
    out, trees = neural_tangents_run
    model = _ours(name, P)
    params = convert.from_stax(trees[f"{name}_{P}"], model)
    x1, x2 = np.load(out / f"{name}_x1.npy"), np.load(out / f"{name}_x2.npy")
    with _gram_or_skip(x1, x2, model=model, params=params, progress=False) as result:
        assert relative_error(result.kernel, np.load(out / f"{name}_{P}_ntk_12.npy")) <= 1e-10
        assert relative_error(result.outputs, np.load(out / f"{name}_{P}_outputs_1.npy")) <= 1e-10
    flat = stax.serial(*model.layers, parameterization=P, input_shape=DEFINITIONS[name][0])
    with _gram_or_skip(x1.reshape(len(x1), -1), x2.reshape(len(x2), -1), model=flat, params=params,
                       progress=False) as result:
        assert relative_error(result.kernel, np.load(out / f"{name}_{P}_ntk_12.npy")) <= 1e-10


@pytest.mark.parametrize("name", sorted(DEFINITIONS))
def test_the_binary_gives_neural_tangents_infinite_width_kernels_of_a_cnn(neural_tangents_run, name):
    out, _ = neural_tangents_run
    model = _ours(name, "ntk")
    x1, x2 = np.load(out / f"{name}_x1.npy"), np.load(out / f"{name}_x2.npy")
    for kind, file in (("analytic", "ntk"), ("nngp", "nngp")):
        with _gram_or_skip(x1, x2, model=model, kernel=kind, eigen="none", progress=False) as result:
            assert relative_error(result.kernel, np.load(out / f"{name}_analytic_{file}_12.npy")) <= 1e-10
