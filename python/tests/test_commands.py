"""predict, train, converge and init through Python, checked against NumPy on the
kernels that ntk gram writes."""
from __future__ import annotations

import math

import numpy as np
import pytest

import ntk
from ntk import stax
from conftest import DIGITS, REPOSITORY, cases, relative_error

LABELS = REPOSITORY / "data" / "digits_labels.npy"
MODEL = stax.serial(stax.Dense(64, W_std=2 ** 0.5, b_std=0.1), stax.Relu(), stax.Dense(10, W_std=2 ** 0.5, b_std=0.1))


def test_predict_is_gradient_descent_on_the_kernels_of_gram(digits):
    """neural-tangents' conventions: loss (1/(2c))‖f − Y‖², c = N·k; gradient flow
    f(t) = Y + exp(−ηtΘ/c)(f₀ − Y); kernel regression at t = inf; discrete steps."""
    labels = np.load(LABELS)
    x, y, xt, yt = digits[:120], labels[:120], digits[120:170], labels[120:170]
    eta, n, k = 1.0, 120, 10
    with ntk.predict(x, y, xt, yt, model=MODEL, seed=0, learning_rate=eta, times=[10, math.inf], steps=[5],
                     progress=False) as result, \
            ntk.gram(x, model=MODEL, seed=0, eigen="none", progress=False) as train_kernel, \
            ntk.gram(xt, x, model=MODEL, seed=0, eigen="none", progress=False) as test_kernel:
        K, Kt = np.asarray(train_kernel.kernel), np.asarray(test_kernel.kernel)
        f0, f0t = np.asarray(train_kernel.outputs), np.asarray(test_kernel.outputs)
        Y = np.eye(k)[y]  # integer labels: one-hot over the k outputs
        values, vectors = np.linalg.eigh(K)
        c = n * k

        def flow(t):
            decay = vectors @ np.diag(np.exp(-eta * t * values / c)) @ vectors.T
            regression = Kt @ vectors @ np.diag((1 - np.exp(-eta * t * values / c)) / values) @ vectors.T
            return Y + decay @ (f0 - Y), f0t + regression @ (Y - f0)

        train10, test10 = flow(10.0)
        test_inf = f0t + Kt @ np.linalg.solve(K, Y - f0)
        f, ft = f0.copy(), f0t.copy()
        for _ in range(5):
            f, ft = f - eta / c * K @ (f - Y), ft - eta / c * Kt @ (f - Y)
        predictions, test_predictions = result.train_predictions, result.test_predictions
        assert predictions.shape == (3, n, k) and test_predictions.shape == (3, 50, k)
        assert relative_error(predictions[0], train10) <= 1e-9
        assert relative_error(test_predictions[0], test10) <= 1e-9
        assert relative_error(predictions[1], Y) <= 1e-8
        assert relative_error(test_predictions[1], test_inf) <= 1e-8
        assert relative_error(predictions[2], f) <= 1e-9
        assert relative_error(test_predictions[2], ft) <= 1e-9
        at_inf = result.metrics["times"][1]
        assert at_inf["t"] == "inf"
        assert at_inf["test_accuracy"] == pytest.approx(np.mean(np.argmax(test_predictions[1], axis=1) == yt))
        assert result.summary and "t=inf" in result.report


def test_train_starts_at_the_networks_outputs_and_records_its_steps(digits):
    labels = np.load(LABELS)
    with ntk.train(digits[:40], labels[:40], digits[40:60], labels[40:60], width=32, out_dim=10, learning_rate=1.0,
                   steps=[0, 5], progress=False) as result, \
            ntk.gram(digits[:40], width=32, out_dim=10, eigen="none", progress=False) as initial:
        assert result.train_outputs.shape == (2, 40, 10) and result.test_outputs.shape == (2, 20, 10)
        assert relative_error(result.train_outputs[0], initial.outputs) <= 1e-12
        assert relative_error(result.ntk_train_predictions[0], initial.outputs) <= 1e-12
        assert [r["steps"] for r in result.summary["records"]] == [0, 5]
        assert result.summary["kernel_change"] > 0
        assert sorted(result.trained_params) == ["W0", "W1", "W2", "b0", "b1", "b2"]


def test_converge_measures_every_width_and_seed(digits):
    with ntk.converge(digits[:20], widths=[16, 64], seeds=[0, 1], depth=1, progress=False) as result:
        assert [(p["width"], p["seed"]) for p in result.points] == [(16, 0), (16, 1), (64, 0), (64, 1)]
        assert set(result.mean_by_width) == {16, 64}
        assert math.isfinite(result.slope)
        assert {"converge.csv", "converge.json", "converge.svg"} <= set(result.files)


def test_init_writes_the_parameters_of_the_seed(tmp_path, digits):
    with ntk.init(MODEL, input_width=64, seed=3) as drawn:
        params = drawn.params
    assert {k: v.shape for k, v in params.items()} == {"W0": (64, 64), "b0": (64,), "W1": (64, 10), "b1": (10,)}
    kept = ntk.init(MODEL, data=digits[:5], seed=3, out=tmp_path / "p.npz")
    kept.close()
    with np.load(tmp_path / "p.npz") as archive:
        assert all(np.array_equal(archive[name], params[name]) for name in params)
    with ntk.gram(digits[:5], model=MODEL, seed=3, eigen="none", progress=False) as by_seed, \
            ntk.gram(digits[:5], model=MODEL, params=params, eigen="none", progress=False) as by_params:
        assert np.array_equal(by_seed.kernel, by_params.kernel)


def test_float32_and_path_inputs_are_passed_as_they_are(digits):
    x32 = np.load(DIGITS)[:30]
    assert x32.dtype == np.float32
    with ntk.gram(x32, width=16, progress=False) as from_array, \
            ntk.gram(DIGITS, width=16, eigen="none", progress=False) as from_path:
        assert np.array_equal(from_array.kernel, np.asarray(from_path.kernel)[:30, :30])


def test_gram_seeds_is_the_monte_carlo_kernel(digits):
    x = digits[:20]
    model = stax.serial(stax.Dense(16, W_std=2 ** 0.5, b_std=0.1), stax.Relu(), stax.Dense(1, W_std=2 ** 0.5, b_std=0.1))
    kernels = []
    for seed in (0, 1):
        with ntk.gram(x, model=model, seed=seed, eigen="none", progress=False) as single:
            kernels.append(np.array(single.kernel))
    with ntk.gram(x, model=model, seeds=[0, 1], progress=False) as ensemble:
        assert relative_error(ensemble.kernel, (kernels[0] + kernels[1]) / 2) <= 1e-14
        assert ensemble.summary["ensemble"]["seeds"] == [0, 1]
        assert ensemble.summary["ensemble"]["relative_spread"] > 0


@pytest.mark.parametrize("case", cases("nngp"), ids=lambda case: case["name"])
def test_predict_nngp_is_the_neural_tangents_ensemble(case):
    """kernel='nngp': neural-tangents' gradient_descent_mse_ensemble(get='nngp',
    compute_cov=True) means and variances, to 1e-9 (as the Swift test: two
    eigendecompositions of kernels with condition numbers up to ~1e4)."""
    import json
    spec = json.loads((case["dir"] / "case.json").read_text())
    model = json.loads((case["dir"] / "model.json").read_text())
    with ntk.predict(case["dir"] / "x_train.npy", case["dir"] / "y_train.npy", case["dir"] / "x_test.npy",
                     model=model, kernel="nngp", learning_rate=spec["learning_rate"], times=",".join(spec["times"]),
                     diag_reg=spec["diag_reg"], diag_reg_absolute=spec["absolute"], keep_kernels=True,
                     progress=False) as result:
        assert relative_error(result.train_predictions, np.load(case["dir"] / "mean_train.npy")) <= 1e-9
        assert relative_error(result.test_predictions, np.load(case["dir"] / "mean_test.npy")) <= 1e-9
        prior = float(np.max(np.load(case["dir"] / "var_test.npy")))
        for ours, name in [(result.train_variance, "var_train.npy"), (result.test_variance, "var_test.npy")]:
            reference = np.load(case["dir"] / name)
            assert ours.shape == reference.shape
            assert float(np.max(np.abs(ours - reference))) / prior <= 1e-9
        assert result.train_kernel.shape == (len(result.train_variance[0]),) * 2
        assert result.summary["kernel"] == "nngp"


def test_predict_by_conjugate_gradients_and_the_spectral_density(digits):
    """solver='cg' gives the eigen path's t = inf to 1e-8 (CG stops at a relative residual
    of 1e-10; the test kernel amplifies it by at most the preconditioned conditioning), and
    at t = 50 the eigen path's predictions within the a posteriori bounds of ``solver_errors``
    (plus 1e-10 of ||Y - f0|| for the eigen path's rounding); eigen='density' (out of core)
    estimates the trace within 4 of its standard errors of the exact one."""
    labels = np.load(LABELS)
    x, y, xt = digits[:200], labels[:200], digits[200:240]
    with ntk.predict(x, y, xt, model=MODEL, seed=0, solver="cg", times=[0, 50, "inf"], progress=False) as cg, \
            ntk.predict(x, y, xt, model=MODEL, seed=0, solver="eigen", times=[0, 50, "inf"], progress=False) as eigen, \
            ntk.gram(x, model=MODEL, seed=0, eigen="density", density_probes=24, kernel_storage="disk",
                     progress=False) as density:
        assert cg.summary["solver"] == "cg" and eigen.summary["solver"] == "eigen"
        assert relative_error(cg.test_predictions, eigen.test_predictions) <= 1e-8
        # t = 0 is f0 and t = inf fits the targets: per output, ||Y - f0|| scales the bounds.
        scale = np.linalg.norm(eigen.train_predictions[2] - eigen.train_predictions[0], axis=0)
        errors = {entry["time"]: entry for entry in cg.solver_errors}
        assert set(errors) == {"t=0.0", "t=50.0", "t=inf"} and max(errors["t=inf"]["relative"]) <= 1e-10
        bound = errors["t=50.0"]
        for ours, reference, key in ((cg.train_predictions[1], eigen.train_predictions[1], "relative"),
                                     (cg.test_predictions[1], eigen.test_predictions[1], "test_relative")):
            error = np.linalg.norm(ours - reference, axis=0)
            assert np.all(error <= (np.asarray(bound[key]) + 1e-10) * scale), (error / scale, bound[key])
        # Out of core: the products streamed kernel.npy, which is complete all the same.
        assert density.summary["kernel_storage"] == "disk" and density.summary["out_of_core"]["passes"] > 80
        assert np.array_equal(np.asarray(density.kernel), np.asarray(density.kernel).T)
        trace = np.trace(np.asarray(density.kernel))
        estimate = density.summary["density"]["trace"]
        assert abs(estimate["value"] - trace) <= 4 * estimate["standard_error"]
        table = density.spectrum_density
        assert table["lambda"].shape == (200,) and abs(table["eigenvalues_at_or_below"][-1] - 200) <= 1e-9 * 200
