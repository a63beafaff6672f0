"""Python -> tool -> NumPy against neural-tangents 0.6.5 (the committed fixtures of
Tests/Fixtures, made by scripts/reference/make_fixtures.py): 1e-10 relative to the
largest entry."""
from __future__ import annotations

import json

import numpy as np
import pytest

import ntk
from ntk import stax
from conftest import cases, relative_error

TOLERANCE = 1e-10
EMPIRICAL = cases("empirical") + cases("residual/empirical")
ANALYTIC = [c for c in cases("analytic") + cases("residual/analytic") if not c.get("refused")]
REFUSED = [c for c in cases("residual/analytic") if c.get("refused")]


def _inputs(case: dict, form: str):
    """The same case as paths, as in-memory arrays and dicts, or as an ntk.stax model."""
    d = case["dir"]
    if form == "paths":
        return d / "x1.npy", d / "x2.npy", d / "model.json", d / "params.npz"
    model = json.loads((d / "model.json").read_text())
    with np.load(d / "params.npz") as archive:
        params = {name: archive[name] for name in archive.files}
    if form == "stax":
        model = stax.from_dict(model)
    return np.load(d / "x1.npy"), np.load(d / "x2.npy"), model, params


@pytest.mark.parametrize("case", EMPIRICAL, ids=lambda c: c["name"])
def test_empirical_kernel_outputs_and_spectrum_agree_with_neural_tangents(case):
    form = ("paths", "arrays", "stax")[EMPIRICAL.index(case) % 3]
    x1, x2, model, params = _inputs(case, form)
    d = case["dir"]
    reference = np.load(d / "ntk_mean_11.npy")
    with ntk.gram(x1, model=model, params=params, eigen="vectors", progress=False) as result:
        assert isinstance(result.kernel, np.memmap)
        assert relative_error(result.kernel, reference) <= TOLERANCE
        assert relative_error(result.outputs, np.load(d / "outputs_1.npy")) <= TOLERANCE
        assert relative_error(result.eigenvalues, np.linalg.eigvalsh(reference)) <= TOLERANCE
        vectors, values = np.asarray(result.eigenvectors), np.asarray(result.eigenvalues)
        assert relative_error(reference @ vectors, vectors * values) <= TOLERANCE
        assert result.summary["n"] == case["n1"] and result.summary["outputs_k"] == case["k"]
    with ntk.gram(x1, x2, model=model, params=params, progress=False) as cross:
        assert relative_error(cross.kernel, np.load(d / "ntk_mean_12.npy")) <= TOLERANCE
        assert cross.eigenvalues is None
        expected = stax.forward(json.loads((d / "model.json").read_text()),
                                dict(np.load(d / "params.npz")), np.load(d / "x2.npy"))
        assert relative_error(cross.outputs2, expected) <= 1e-12
    if case["k"] > 1:
        # One run over x1 then x2 holds both (N, N, k, k) fixtures as blocks.
        both = np.concatenate([np.load(d / "x1.npy"), np.load(d / "x2.npy")])
        with ntk.gram(both, model=model, params=params, output_kernel="full", eigen="none", progress=False) as full:
            n = case["n1"]
            assert relative_error(full.kernel[:n, :n], np.load(d / "ntk_full_11.npy")) <= TOLERANCE
            assert relative_error(full.kernel[:n, n:], np.load(d / "ntk_full_12.npy")) <= TOLERANCE


@pytest.mark.parametrize("case", ANALYTIC, ids=lambda c: c["name"])
@pytest.mark.parametrize("kind", ["analytic", "nngp"])
def test_infinite_width_kernels_agree_with_neural_tangents_kernel_fn(case, kind):
    """One run over x1 then x2 gives both fixtures: its upper triangle holds the pairs
    (x1_i, x1_j), i < j, and (x1_i, x2_j), oriented as neural-tangents' kernel_fn(x1, x2).
    There: 1e-10. On the diagonal: 1e-7, since neural-tangents' relu formula leaves ~1e-9
    of sqrt-of-cancellation rounding there (scripts/reference/README.md). The lower
    triangle is the tool's mirror image, while neural-tangents' quadrature (tanh) is not
    symmetric (~1e-4), so it is checked for symmetry only. (The cross-kernel path,
    x2=..., is checked against the empirical fixtures above.)"""
    d = case["dir"]
    name = "ntk" if kind == "analytic" else "nngp"
    x1, x2 = np.load(d / "x1.npy"), np.load(d / "x2.npy")
    reference, cross = np.load(d / f"{name}_11.npy"), np.load(d / f"{name}_12.npy")
    n = len(x1)
    with ntk.gram(np.concatenate([x1, x2]), model=d / "model.json", kernel=kind, eigen="none",
                  progress=False) as result:
        kernel = np.asarray(result.kernel)
    scale = np.max(np.abs(reference))
    upper = np.triu_indices(n, 1)
    assert np.max(np.abs(kernel[:n, :n][upper] - reference[upper])) <= TOLERANCE * scale
    assert np.max(np.abs(np.diag(kernel)[:n] - np.diag(reference))) <= 1e-7 * scale
    assert relative_error(kernel[:n, n:], cross) <= TOLERANCE
    assert np.array_equal(kernel, kernel.T)


def test_stax_kernel_fn_is_neural_tangents_kernel_fn():
    d = cases("analytic")[0]["dir"]
    model = stax.load(d / "model.json")
    _, _, kernel_fn = model
    both = kernel_fn(np.load(d / "x1.npy"), np.load(d / "x2.npy"))
    assert relative_error(both.ntk, np.load(d / "ntk_12.npy")) <= TOLERANCE
    assert relative_error(both.nngp, np.load(d / "nngp_12.npy")) <= TOLERANCE
    assert relative_error(kernel_fn(np.load(d / "x1.npy"), None, "nngp"), np.load(d / "nngp_11.npy")) <= 1e-7


@pytest.mark.parametrize("case", REFUSED, ids=lambda c: c["name"])
def test_sums_neural_tangents_refuses_are_input_errors_naming_the_layer(case):
    x = np.random.default_rng(0).standard_normal((3, case["d"]))
    with pytest.raises(ntk.InputError) as caught:
        ntk.gram(x, model=case["model"], kernel="analytic", progress=False)
    assert caught.value.status == 65
    assert caught.value.message.startswith("ntk: error: the analytic kernel of this model is not defined: layer")
