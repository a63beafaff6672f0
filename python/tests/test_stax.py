"""ntk.stax: neural-tangents' names, the tool's model JSON, and the (init_fn, apply_fn,
kernel_fn) triple."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

import ntk
from ntk import stax
from conftest import cases, relative_error


def test_a_stax_definition_writes_the_fixture_model_file():
    d = cases("residual/empirical")[0]["dir"]  # dense(16) -> residual[relu, dense(16)] -> relu -> dense(1)
    s2 = math.sqrt(2.0)
    model = stax.serial(
        stax.Dense(16, W_std=s2, b_std=0.1), stax.residual(stax.Relu(), stax.Dense(16, W_std=s2, b_std=0.1)),
        stax.Relu(), stax.Dense(1, W_std=s2, b_std=0.1))
    assert model.to_dict() == json.loads((d / "model.json").read_text())
    assert json.loads(model.to_json()) == model.to_dict()


def test_neural_tangents_residual_spelling_is_a_residual_block():
    block = stax.serial(stax.Relu(), stax.Dense(8, b_std=0.1))
    nt_spelling = stax.serial(stax.Dense(8), stax.FanOut(2), stax.parallel(block, stax.Identity()), stax.FanInSum())
    ours = stax.serial(stax.Dense(8), stax.residual(stax.Relu(), stax.Dense(8, b_std=0.1)))
    assert nt_spelling.to_dict() == ours.to_dict()
    swapped = stax.serial(stax.Dense(8), stax.serial(stax.FanOut(2), stax.parallel(stax.Identity(), block), stax.FanInSum()))
    assert swapped.to_dict() == ours.to_dict()
    with pytest.raises(NotImplementedError):
        stax.serial(stax.FanOut(2), stax.parallel(stax.Dense(3), stax.Dense(3)), stax.FanInSum()).to_dict()


def test_every_activation_and_a_model_file_round_trip():
    model = stax.serial(*[stax.Dense(4, W_std=1.3, b_std=0.2), stax.Relu(), stax.Dense(4), stax.Erf(), stax.Dense(4),
                          stax.Gelu(), stax.Dense(4), stax.Tanh(quadrature_degree=32), stax.Dense(4), stax.Sigmoid(),
                          stax.Dense(4), stax.Softplus(), stax.Dense(4), stax.LeakyRelu(0.2), stax.Dense(4),
                          stax.Identity(), stax.Dense(2)], parameterization="standard")
    text = model.to_dict()
    assert [layer["type"] for layer in text["layers"][1::2]] == [
        "relu", "erf", "gelu", "tanh", "sigmoid", "softplus", "leaky_relu", "identity"]
    assert text["layers"][7] == {"type": "tanh", "quadrature_degree": 32}
    assert stax.from_dict(text).to_dict() == text


def test_parameterization_comes_from_serial_or_the_dense_layers_and_must_agree():
    assert stax.serial(stax.Dense(3)).to_dict()["parameterization"] == "ntk"
    assert stax.serial(stax.Dense(3, parameterization="standard"), stax.Relu(),
                       stax.Dense(1, parameterization="standard")).parameterization == "standard"
    with pytest.raises(ValueError, match="one parameterization per model"):
        stax.serial(stax.Dense(3, parameterization="standard"), parameterization="ntk").to_dict()
    with pytest.raises(ValueError, match="different parameterizations"):
        stax.serial(stax.Dense(3, parameterization="standard"), stax.Dense(1, parameterization="ntk")).to_dict()


def test_what_the_tool_lacks_is_refused_when_the_model_is_written():
    with pytest.raises(NotImplementedError):
        stax.Gelu(approximate=True)
    with pytest.raises(NotImplementedError):
        stax.Erf(a=2.0)
    with pytest.raises(NotImplementedError):
        stax.Dense(3, channel_axis=0)


@pytest.mark.parametrize("case", cases("empirical")[:6], ids=lambda c: c["name"])
def test_apply_fn_is_the_forward_pass_of_neural_tangents(case):
    d = case["dir"]
    _, apply_fn, _ = stax.load(d / "model.json")
    assert relative_error(apply_fn(d / "params.npz", np.load(d / "x1.npy")), np.load(d / "outputs_1.npy")) <= 1e-12


def test_init_fn_draws_what_the_tools_seed_draws():
    init_fn, apply_fn, _ = model = stax.serial(stax.Dense(8, W_std=1.5, b_std=0.1), stax.Relu(), stax.Dense(3))
    x = np.random.default_rng(1).standard_normal((5, 4))
    shape, params = init_fn(7, x.shape)
    assert shape == (5, 3)
    assert {k: v.shape for k, v in params.items()} == {"W0": (4, 8), "b0": (8,), "W1": (8, 3)}
    with ntk.gram(x, model=model, seed=7, eigen="none", progress=False) as drawn, \
            ntk.gram(x, model=model, params=params, eigen="none", progress=False) as given:
        assert np.array_equal(drawn.kernel, given.kernel)
        assert relative_error(apply_fn(params, x), drawn.outputs) <= 1e-12
    # A jax-style key gives a seed too; different keys, different parameters.
    _, other = init_fn(np.array([0, 8], dtype=np.uint32), x.shape)
    assert not np.array_equal(other["W0"], params["W0"])
