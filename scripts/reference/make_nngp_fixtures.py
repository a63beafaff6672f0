#!/usr/bin/env python3
"""Generate the fixtures of `ntk predict --kernel nngp` (the infinite-width NNGP ensemble).

Run with the venv made by scripts/reference/setup.sh:

    "$(scripts/reference/setup.sh)" scripts/reference/make_nngp_fixtures.py

Writes Tests/Fixtures/nngp/<case>/ and Tests/Fixtures/nngp/cases.json. Each case holds the
inputs of a CLI run (x_train.npy, x_test.npy, y_train.npy, model.json, case.json with the
learning rate, diag_reg and times) and neural-tangents 0.6.5's
`predict.gradient_descent_mse_ensemble(kernel_fn, x_train, y_train, learning_rate,
diag_reg, diag_reg_absolute_scale)` answers with `get='nngp', compute_cov=True`:

* mean_train.npy (T, N, k), var_train.npy (T, N): `predict_fn(t, None, 'nngp', True)`
  (x_test=None: the train outputs), the diagonal of each covariance;
* mean_test.npy (T, M, k), var_test.npy (T, M): `predict_fn(t, x_test, 'nngp', True)`,
  with t = None (its Cholesky solve, the Gaussian-process posterior) for t = inf.

The script checks neural-tangents against the closed forms in numpy before writing
(posterior mean K*x (K + dI)^-1 Y and variance K** - K*x (K + dI)^-1 Kx*; the finite-time
formulas of GradientDescentMSE.testVariance), and t = None against t = inf on the
eigendecomposition path. Everything is float64 and deterministic (numpy seeds).
"""
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402  (jax x64, stax builders)

import numpy as np  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import neural_tangents as nt  # noqa: E402

assert jnp.zeros(1).dtype == jnp.float64

OUT = os.path.join(mf.FIX, "nngp")
SQRT2 = math.sqrt(2.0)

CASES = [
    {"name": "relu_k2_relreg",
     "description": "2 hidden relu layers (ntk parameterization), k = 2 real targets, "
                    "diag_reg = 1e-3 relative, learning rate 1",
     "model": {"parameterization": "ntk", "layers": [
         mf.dense(512, SQRT2, 0.1), mf.act("relu"), mf.dense(512, SQRT2, 0.1), mf.act("relu"),
         mf.dense(2, SQRT2, 0.1)]},
     "n": 12, "m": 5, "d": 4, "seed": 31, "learning_rate": 1.0, "diag_reg": 1e-3, "absolute": False,
     "times": [0.5, 5.0, 50.0, "inf"]},
    {"name": "erf_standard_k1_absreg",
     "description": "1 hidden erf layer (standard parameterization), k = 1, diag_reg = 0.02 "
                    "absolute, learning rate 0.7",
     "model": {"parameterization": "standard", "layers": [
         mf.dense(256, 1.3, 0.2), mf.act("erf"), mf.dense(1, 1.1, 0.05)]},
     "n": 9, "m": 4, "d": 3, "seed": 32, "learning_rate": 0.7, "diag_reg": 0.02, "absolute": True,
     "times": [0.0, 1.0, 20.0, "inf"]},
    {"name": "residual_relu_k3",
     "description": "a dense layer, a residual block (relu, dense), relu, dense readout; "
                    "k = 3 real targets, diag_reg = 1e-2 relative",
     "model": {"parameterization": "ntk", "layers": [
         mf.dense(64, 1.2, 0.1), mf.residual(mf.act("relu"), mf.dense(64, 1.0, 0.05)),
         mf.act("relu"), mf.dense(3, SQRT2, 0.1)]},
     "n": 10, "m": 6, "d": 5, "seed": 33, "learning_rate": 1.0, "diag_reg": 1e-2, "absolute": False,
     "times": [2.0, "inf"]},
]


def rel(a, b, scale=None):
    a, b = np.asarray(a), np.asarray(b)
    s = scale if scale is not None else max(float(np.max(np.abs(b))), 1e-300)
    return float(np.max(np.abs(a - b)) / s)


def check(name, err, tol):
    if not err <= tol:
        raise AssertionError(f"{name}: error {err:.3e} > {tol:.0e}")
    print(f"  {name}: {err:.2e} (<= {tol:.0e})")


def numpy_reference(kdd, ktd, ktt_diag, y, lr, shift, t):
    """The NNGP ensemble at time t from the closed forms (eigendecomposition of K + dI)."""
    n = kdd.shape[0]
    lam, v = np.linalg.eigh(kdd + shift * np.eye(n))
    lam = np.maximum(lam, 0.0)
    c = y.size
    e = np.expm1(-lr * lam * t / c) if math.isfinite(t) else -np.ones_like(lam)
    mean_train = -(v * e) @ v.T @ y
    mean_test = -(ktd @ v) * (e / lam) @ v.T @ y
    var_train = np.einsum("ji,i,ji->j", v, lam * (1 + e) ** 2, v)
    a = ktd @ v
    var_test = ktt_diag - np.einsum("ji,i,ji->j", a, -e * (2 + e) / lam, a)
    return mean_train, mean_test, var_train, var_test


def make_case(case):
    rng = np.random.default_rng(case["seed"])
    n, m, d = case["n"], case["m"], case["d"]
    model = case["model"]
    k = mf.dense_layers(model)[-1]["width"]
    x = rng.standard_normal((n, d))
    xs = rng.standard_normal((m, d))
    y = rng.standard_normal((n, k))
    _, _, kernel_fn = mf.build(model, analytic=True)
    lr = case["learning_rate"]
    predict_fn = nt.predict.gradient_descent_mse_ensemble(
        kernel_fn, x, y, learning_rate=lr, diag_reg=case["diag_reg"],
        diag_reg_absolute_scale=case["absolute"])
    kdd = np.asarray(kernel_fn(x, None, "nngp"))
    ktd = np.asarray(kernel_fn(xs, x, "nngp"))
    ktt = np.asarray(kernel_fn(xs, None, "nngp"))
    shift = case["diag_reg"] if case["absolute"] else case["diag_reg"] * np.trace(kdd) / n

    means_train, means_test, vars_train, vars_test = [], [], [], []
    print(case["name"])
    for t in case["times"]:
        finite = t != "inf"
        tt = float(t) if finite else math.inf
        # Train side: the eigendecomposition path (t = inf there too: every mode has
        # lambda > 0 thanks to diag_reg, so 0 * inf never occurs).
        train = predict_fn(t=tt, x_test=None, get="nngp", compute_cov=True)
        test = predict_fn(t=(tt if finite else None), x_test=xs, get="nngp", compute_cov=True)
        mt, vt = np.asarray(train.mean), np.diagonal(np.asarray(train.covariance))
        ms, vs = np.asarray(test.mean), np.diagonal(np.asarray(test.covariance))
        ref = numpy_reference(kdd, ktd, np.diagonal(ktt), y, lr, shift, tt)
        scale = float(np.max(np.diagonal(ktt)))
        check(f"{case['name']} t={t}: train mean vs numpy", rel(mt, ref[0]), 1e-9)
        check(f"{case['name']} t={t}: test mean vs numpy", rel(ms, ref[1]), 1e-9)
        check(f"{case['name']} t={t}: train variance vs numpy", rel(vt, ref[2], scale), 1e-9)
        check(f"{case['name']} t={t}: test variance vs numpy", rel(vs, ref[3], scale), 1e-9)
        if not finite:
            eig = predict_fn(t=math.inf, x_test=xs, get="nngp", compute_cov=True)
            check(f"{case['name']}: t=None (Cholesky) vs t=inf (eigh), mean", rel(ms, np.asarray(eig.mean)), 1e-9)
            check(f"{case['name']}: t=None vs t=inf, variance",
                  rel(vs, np.diagonal(np.asarray(eig.covariance)), scale), 1e-9)
            kinv = np.linalg.solve(kdd + shift * np.eye(n), np.eye(n))
            check(f"{case['name']}: GP posterior mean", rel(ms, ktd @ kinv @ y), 1e-9)
            check(f"{case['name']}: GP posterior variance", rel(vs, np.diagonal(ktt - ktd @ kinv @ ktd.T), scale), 1e-9)
        means_train.append(mt)
        means_test.append(ms)
        vars_train.append(vt)
        vars_test.append(vs)

    path = os.path.join(OUT, case["name"])
    mf.fresh_dir(path)
    mf.save(path, "x_train.npy", x)
    mf.save(path, "x_test.npy", xs)
    mf.save(path, "y_train.npy", y)
    mf.save(path, "mean_train.npy", np.stack(means_train))
    mf.save(path, "mean_test.npy", np.stack(means_test))
    mf.save(path, "var_train.npy", np.stack(vars_train))
    mf.save(path, "var_test.npy", np.stack(vars_test))
    mf.write_json(os.path.join(path, "model.json"), model)
    mf.write_json(os.path.join(path, "case.json"), {
        "description": case["description"], "learning_rate": lr, "diag_reg": case["diag_reg"],
        "absolute": case["absolute"], "times": [str(t) for t in case["times"]], "k": k})
    return {"name": case["name"], "k": k}


def main():
    os.makedirs(OUT, exist_ok=True)
    cases = [make_case(c) for c in CASES]
    mf.write_json(os.path.join(OUT, "cases.json"), cases)
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
