#!/usr/bin/env python3
"""Generate the learning-dynamics fixtures that LearningDynamicsTests compare against.

Run with the venv made by scripts/reference/setup.sh:

    "$(scripts/reference/setup.sh)" scripts/reference/make_dynamics_fixtures.py

Writes Tests/Fixtures/dynamics/<case>/ and Tests/Fixtures/dynamics/cases.json.

Every case holds a train kernel Theta(X, X) (N x N), a test kernel Theta(X*, X) (M x N),
initial outputs f0(X) (N x k), f0(X*) (M x k), targets Y (N x k), Y* (M x k), and:

* `nt.predict.gradient_descent_mse(k_train_train, y_train, learning_rate, diag_reg,
  diag_reg_absolute_scale)`'s predictions at finite times (`times.npy`, in neural-tangents'
  units: absolute time = learning_rate * t), at t = inf (its eigendecomposition path) and
  at t = None (its Cholesky solve);
* discrete gradient-descent predictions after `steps.npy` steps. neural-tangents has no
  discrete-step predictor (`gradient_descent_mse` is closed-form gradient flow, and
  `gradient_descent(loss, ..., momentum=None)` integrates the same flow with an ODE
  solver), so the reference is the iteration itself: f <- f - (eta / c) Theta (f - Y)
  in numpy, and for the k = 1 empirical case also real gradient descent on the
  linearized network (`nt.linearize`) in jax;
* losses, MSEs and accuracies computed in numpy from those predictions;
* spectral diagnostics computed directly in numpy from the matrices (`diagnostics.json`).

Everything is float64 and deterministic (numpy seeds; jax's RNG is not used for any
written value). The script checks its own references before writing (see `check`).
"""
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402  (jax x64, stax builders, param helpers)

import numpy as np  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import neural_tangents as nt  # noqa: E402

assert jnp.zeros(1).dtype == jnp.float64

OUT = os.path.join(mf.FIX, "dynamics")

TIMES = [0.0, 0.3, 1.0, 3.0, 10.0, 100.0, 1e3, 1e4]
STEPS = [0, 1, 2, 3, 10, 50, 200]

CASES = [
    {"name": "empirical_relu_k1",
     "description": "empirical NTK of a width-64 relu net (ntk parameterization), k = 1, "
                    "real targets, eta = 0.8 * max_learning_rate (the top mode oscillates "
                    "in discrete steps); steps also checked against GD on nt.linearize",
     "kernel": "empirical",
     "model": {"parameterization": "ntk", "layers": [
         mf.dense(64, math.sqrt(2.0), 0.1), mf.act("relu"),
         mf.dense(64, math.sqrt(2.0), 0.1), mf.act("relu"),
         mf.dense(1, math.sqrt(2.0), 0.1)]},
     "n": 10, "m": 5, "d": 4, "seed": 11, "lr_fraction": 0.8, "diag_reg": 0.0,
     "absolute": False, "labels": False},
    {"name": "empirical_erf_k3_labels",
     "description": "empirical NTK (mean over k = 3 outputs) of a width-48 erf net "
                    "(standard parameterization), one-hot 0/1 targets of integer labels, "
                    "eta = 0.95 * max_learning_rate",
     "kernel": "empirical",
     "model": {"parameterization": "standard", "layers": [
         mf.dense(48, 1.5, 0.05), mf.act("erf"), mf.dense(3, 1.5, 0.05)]},
     "n": 12, "m": 6, "d": 3, "seed": 12, "lr_fraction": 0.95, "diag_reg": 0.0,
     "absolute": False, "labels": True},
    {"name": "analytic_relu_k2_diagreg",
     "description": "infinite-width NTK of a 2-hidden-layer relu net, k = 2 real targets, "
                    "diag_reg = 0.01 (relative: adds 0.01 * trace / N), eta = 0.5 * max",
     "kernel": "analytic",
     "model": {"parameterization": "ntk", "layers": [
         mf.dense(512, math.sqrt(2.0), 0.1), mf.act("relu"),
         mf.dense(512, math.sqrt(2.0), 0.1), mf.act("relu"),
         mf.dense(2, math.sqrt(2.0), 0.1)]},
     "n": 8, "m": 4, "d": 3, "seed": 13, "lr_fraction": 0.5, "diag_reg": 0.01,
     "absolute": False, "labels": False},
    {"name": "analytic_erf_k1_absreg",
     "description": "infinite-width NTK of a 1-hidden-layer erf net, k = 1, diag_reg = 0.05 "
                    "with diag_reg_absolute_scale=True, eta = 1 (neural-tangents' default)",
     "kernel": "analytic",
     "model": {"parameterization": "ntk", "layers": [
         mf.dense(512, 1.3, 0.2), mf.act("erf"), mf.dense(1, 1.3, 0.2)]},
     "n": 9, "m": 3, "d": 5, "seed": 14, "learning_rate": 1.0, "diag_reg": 0.05,
     "absolute": True, "labels": False},
    {"name": "indefinite_clamp_k2",
     "description": "an empirical relu NTK whose smallest eigenvalue is moved to -0.3 "
                    "(rank-one change): neural-tangents clamps it to 0 "
                    "(mode frozen on train, no test contribution); its t = inf is NaN, so "
                    "the infinite-time reference is t = 1e12, where every positive mode has died",
     "kernel": "empirical",
     "model": {"parameterization": "ntk", "layers": [
         mf.dense(32, math.sqrt(2.0), 0.1), mf.act("relu"), mf.dense(2, math.sqrt(2.0), 0.1)]},
     "n": 7, "m": 4, "d": 3, "seed": 15, "lr_fraction": 0.6, "diag_reg": 0.0,
     "absolute": False, "labels": False, "negative_eigenvalue": -0.3},
]

WORST = {}


def check(name, err, tol):
    if not err <= tol:
        raise AssertionError(f"{name}: error {err:.3e} > {tol:.0e}")
    if err >= WORST.get(name.split(": ")[-1], (-1.0, ""))[0]:
        WORST[name.split(": ")[-1]] = (err, name)


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def kernels_and_outputs(case, rng):
    """Theta(X, X), Theta(X*, X), f0(X), f0(X*), X, X*, and (for k = 1 empirical) the
    pieces needed for gradient descent on the linearized network."""
    model, n, m, d = case["model"], case["n"], case["m"], case["d"]
    x = rng.standard_normal((n, d))
    xs = rng.standard_normal((m, d))
    k = mf.dense_layers(model)[-1]["width"]
    if case["kernel"] == "empirical":
        flat = mf.draw_params(model, d, rng)
        init_fn, apply_fn, _ = mf.build(model)
        params = mf.to_stax_params(model, init_fn, d, flat)
        ntk = nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), vmap_axes=0,
                                  implementation=nt.NtkImplementation.STRUCTURED_DERIVATIVES)
        ktt = np.asarray(ntk(x, None, params))
        kst = np.asarray(ntk(xs, x, params))
        f0 = np.asarray(apply_fn(params, x))
        f0s = np.asarray(apply_fn(params, xs))
        net = (apply_fn, params)
    else:
        _, _, kernel_fn = mf.build(model, analytic=True)
        ktt = np.asarray(kernel_fn(x, None, "ntk"))
        kst = np.asarray(kernel_fn(xs, x, "ntk"))
        # An infinite-width network's initial outputs are a draw from the NNGP; any fixed
        # values serve the dynamics, so small deterministic numbers are used.
        f0 = 0.3 * rng.standard_normal((n, k))
        f0s = 0.3 * rng.standard_normal((m, k))
        net = None
    assert ktt.shape == (n, n) and kst.shape == (m, n) and f0.shape == (n, k)
    return x, xs, ktt, kst, f0, f0s, k, net


def regularized(ktt, diag_reg, absolute):
    """neural-tangents' _add_diagonal_regularizer on a 2-D kernel."""
    n = ktt.shape[0]
    shift = diag_reg if absolute else diag_reg * np.trace(ktt) / n
    return ktt + shift * np.eye(n), shift


def discrete_reference(k_train, k_test, f0, f0s, y, lr, steps):
    """Gradient descent on (1/(2c)) ||f(X) - Y||^2 in function space, step by step."""
    c = y.size
    out_train, out_test = [], []
    f, fs = f0.copy(), f0s.copy()
    done = 0
    for s in steps:
        while done < s:
            r = f - y
            f = f - (lr / c) * (k_train @ r)
            fs = fs - (lr / c) * (k_test @ r)
            done += 1
        out_train.append(f.copy())
        out_test.append(fs.copy())
    return np.array(out_train), np.array(out_test)


def linearized_gd(net, x, xs, y, lr, steps):
    """Real gradient descent on the linearized network (k = 1: the traced kernel is the
    full one), loss 0.5 * mean((f - y)^2) = (1/(2c)) ||f - y||^2."""
    apply_fn, params0 = net
    f_lin = nt.linearize(apply_fn, params0)
    loss = lambda p: 0.5 * jnp.mean((f_lin(p, x) - y) ** 2)
    grad = jax.jit(jax.grad(loss))
    p = params0
    out_train, out_test, done = [], [], 0
    for s in steps:
        while done < s:
            g = grad(p)
            p = jax.tree_util.tree_map(lambda a, b: a - lr * b, p, g)
            done += 1
        out_train.append(np.asarray(f_lin(p, x)))
        out_test.append(np.asarray(f_lin(p, xs)))
    return np.array(out_train), np.array(out_test)


def diagnostics(ktt, y):
    """The spectral diagnostics, computed directly from the matrices with numpy."""
    n = ktt.shape[0]
    w, v = np.linalg.eigh(ktt)
    wp = np.maximum(w, 0.0)
    p = wp / wp.sum()
    p = p[p > 0]
    desc = w[::-1]
    fit = max(2, math.ceil(n / 2))
    ranks = [i + 1 for i in range(fit) if desc[i] > n * np.finfo(float).eps * desc[0]]
    slope = np.polyfit(np.log(ranks), np.log(desc[np.array(ranks) - 1]), 1)[0]
    yy = y @ y.T
    h = np.eye(n) - np.ones((n, n)) / n
    kc, lc = h @ ktt @ h, h @ yy @ h
    proj = ((v[:, ::-1].T @ y) ** 2).sum(axis=1)
    return {
        "n": n,
        "lambda_min": float(w[0]),
        "lambda_max": float(w[-1]),
        "condition_number": float(w[-1] / w[0]) if w[0] > 0 else None,
        "trace": float(np.trace(ktt)),
        "negative_eigenvalues": int(np.sum(w < 0)),
        "effective_rank": float(np.exp(-np.sum(p * np.log(p)))),
        "participation_ratio": float(wp.sum() ** 2 / np.sum(wp ** 2)),
        "stable_rank": float(np.sum(ktt * ktt) / np.max(np.abs(w)) ** 2),
        "decay_exponent": float(-slope),
        "decay_fit_modes": len(ranks),
        "kernel_target_alignment": float(np.sum(ktt * yy) / (np.linalg.norm(ktt) * np.linalg.norm(yy))),
        "centered_kernel_target_alignment": float(np.sum(kc * lc) / (np.linalg.norm(kc) * np.linalg.norm(lc))),
        "cumulative_label_power": [float(a) for a in np.cumsum(proj) / np.sum(y ** 2)],
    }


def accuracy(pred, labels):
    return float(np.mean(np.argmax(pred, axis=-1) == labels))


def make_case(case):
    name = case["name"]
    rng = np.random.RandomState(case["seed"])
    x, xs, ktt, kst, f0, f0s, k, net = kernels_and_outputs(case, rng)
    n, m = case["n"], case["m"]

    if "negative_eigenvalue" in case:
        w, v = np.linalg.eigh(ktt)
        ktt = ktt + (case["negative_eigenvalue"] - w[0]) * np.outer(v[:, 0], v[:, 0])
        ktt = 0.5 * (ktt + ktt.T)
        w2 = np.linalg.eigvalsh(ktt)
        check(f"{name}: moved eigenvalue", abs(w2[0] - case["negative_eigenvalue"]), 1e-12)
        assert w2[1] > 0

    if case["labels"]:
        proj = rng.standard_normal((case["d"], k))
        labels = np.argmax(x @ proj, axis=1).astype(np.int64)
        labels_s = np.argmax(xs @ proj, axis=1).astype(np.int64)
        y = np.eye(k)[labels]
        ys = np.eye(k)[labels_s]
    else:
        a = rng.standard_normal((case["d"], k))
        y = np.sin(x @ a) + 0.1 * rng.standard_normal((n, k))
        ys = np.sin(xs @ a) + 0.1 * rng.standard_normal((m, k))
        labels = labels_s = None
    c = y.size

    k_reg, shift = regularized(ktt, case["diag_reg"], case["absolute"])
    w_reg, v_reg = np.linalg.eigh(k_reg)
    max_lr = float(nt.predict.max_learning_rate(k_reg, y_train_size=c))
    check(f"{name}: max_learning_rate vs 2c/lambda_max", rel(max_lr, 2 * c / w_reg[-1]), 1e-10)
    lr = case.get("learning_rate", None) or case["lr_fraction"] * max_lr
    assert lr < max_lr, "discrete steps must be stable"

    predict = nt.predict.gradient_descent_mse(ktt, y, learning_rate=lr, diag_reg=case["diag_reg"],
                                              diag_reg_absolute_scale=case["absolute"])
    times = np.array(TIMES)
    tr_t, te_t = (np.asarray(a) for a in predict(times, f0, f0s, kst))
    assert tr_t.shape == (len(TIMES), n, k) and te_t.shape == (len(TIMES), m, k)
    check(f"{name}: t = 0 returns f0", max(rel(tr_t[0], f0), rel(te_t[0], f0s)), 0.0)

    # The closed form, written out, against neural-tangents (independent of its einsums).
    lam = np.maximum(w_reg, 0.0)
    r = v_reg.T @ (f0 - y)
    for i, t in enumerate(TIMES):
        e = np.expm1(-lam * lr * t / c)
        g = np.divide(e, np.abs(w_reg), out=np.zeros_like(e), where=lam > 0)
        check(f"{name}: closed form train vs nt", rel(f0 + v_reg @ (e[:, None] * r), tr_t[i]), 1e-12)
        check(f"{name}: closed form test vs nt", rel(f0s + kst @ v_reg @ (g[:, None] * r), te_t[i]), 1e-12)

    if w_reg[0] > 0:
        tr_inf, te_inf = (np.asarray(a) for a in predict(np.inf, f0, f0s, kst))
        tr_sol, te_sol = (np.asarray(a) for a in predict(None, f0, f0s, kst))
        check(f"{name}: t = inf vs t = None (eigh vs Cholesky)", max(rel(tr_inf, tr_sol), rel(te_inf, te_sol)), 1e-11)
        inf_reference = "t=inf"
    else:
        nan_train, nan_test = predict(np.inf, f0, f0s, kst)
        assert np.all(np.isnan(np.asarray(nan_test))), "neural-tangents' t = inf was expected to be NaN here"
        t_big = 1e12
        positive = lam[lam > 0]
        assert np.exp(-positive.min() * lr * t_big / c) < 1e-300
        tr_inf, te_inf = (np.asarray(a) for a in predict(t_big, f0, f0s, kst))
        tr_sol = te_sol = None
        inf_reference = f"t={t_big:g}"

    # Discrete steps: Theta_reg drives the train outputs (as neural-tangents' train
    # predictions), Theta(X*, X) the test outputs; clamped modes are dropped as
    # neural-tangents drops them (frozen on train, no test contribution).
    k_train_eff = v_reg @ np.diag(lam) @ v_reg.T
    keep = v_reg[:, lam > 0]
    k_test_eff = kst @ keep @ keep.T
    steps = np.array(STEPS, dtype=np.int64)
    st_tr, st_te = discrete_reference(k_train_eff, k_test_eff, f0, f0s, y, lr, STEPS)
    if net is not None and k == 1 and case["diag_reg"] == 0.0 and w_reg[0] > 0:
        lin_tr, lin_te = linearized_gd(net, x, xs, y, lr, STEPS)
        check(f"{name}: numpy iteration vs GD on nt.linearize", max(rel(st_tr, lin_tr), rel(st_te, lin_te)), 1e-10)
        st_tr, st_te = lin_tr, lin_te
        steps_reference = "gradient descent on nt.linearize(apply_fn, params) in jax"
    else:
        steps_reference = "numpy iteration f <- f - (eta / c) Theta (f - Y)"

    def loss(pred):
        return 0.5 * np.sum((pred - y) ** 2, axis=(-2, -1)) / c

    # The mode-sum loss formula against the predictions' loss.
    for i, t in enumerate(TIMES):
        l_modes = np.sum(np.exp(-2 * lam * lr * t / c)[:, None] * r ** 2) / (2 * c)
        check(f"{name}: loss mode sum", abs(l_modes - loss(tr_t[i])) / loss(tr_t[0]), 1e-13)

    out = os.path.join(OUT, name)
    mf.fresh_dir(out)
    for file, arr in (("kernel_train.npy", ktt), ("kernel_test.npy", kst), ("f0_train.npy", f0),
                      ("f0_test.npy", f0s), ("y_train.npy", y), ("y_test.npy", ys),
                      ("times.npy", times), ("train_times.npy", tr_t), ("test_times.npy", te_t),
                      ("train_inf.npy", tr_inf), ("test_inf.npy", te_inf),
                      ("train_steps.npy", st_tr), ("test_steps.npy", st_te),
                      ("loss_times.npy", loss(tr_t)), ("loss_steps.npy", loss(st_tr)),
                      ("mse_train_times.npy", np.mean((tr_t - y) ** 2, axis=(1, 2))),
                      ("mse_test_times.npy", np.mean((te_t - ys) ** 2, axis=(1, 2))),
                      ("eigenvalues_regularized.npy", w_reg)):
        mf.save(out, file, arr)
    mf.save(out, "steps.npy", steps, dtype=np.int64)
    if tr_sol is not None:
        mf.save(out, "train_solve.npy", tr_sol)
        mf.save(out, "test_solve.npy", te_sol)
    if labels is not None:
        mf.save(out, "labels_train.npy", labels, dtype=np.int64)
        mf.save(out, "labels_test.npy", labels_s, dtype=np.int64)
        mf.save(out, "accuracy_train_times.npy", [accuracy(p, labels) for p in tr_t])
        mf.save(out, "accuracy_test_times.npy", [accuracy(p, labels_s) for p in te_t])
    mf.write_json(os.path.join(out, "diagnostics.json"), diagnostics(ktt, y))
    meta = {"name": name, "description": case["description"], "n": n, "m": m, "k": k,
            "learning_rate": lr, "diag_reg": case["diag_reg"],
            "diag_reg_absolute_scale": case["absolute"], "diagonal_shift": float(shift),
            "max_learning_rate": max_lr, "normalization": c,
            "inf_reference": inf_reference, "has_solve": tr_sol is not None,
            "steps_reference": steps_reference, "labels": labels is not None,
            "classes": k if labels is not None else None}
    mf.write_json(os.path.join(out, "case.json"), meta)
    cond = w_reg[-1] / w_reg[0] if w_reg[0] > 0 else float("inf")
    print(f"dynamics {name}: N={n} M={m} k={k} eta={lr:.6g} cond={cond:.3g} ({steps_reference})")
    return meta


def main():
    print(f"jax {jax.__version__}, numpy {np.__version__}")
    os.makedirs(OUT, exist_ok=True)
    index = [make_case(case) for case in CASES]
    mf.write_json(os.path.join(OUT, "cases.json"), [{"name": e["name"], "k": e["k"]} for e in index])
    print("largest error per check:")
    for kind, (err, where) in sorted(WORST.items()):
        print(f"  {err:9.2e}  {where}")
    print("all dynamics fixtures written and checked")


if __name__ == "__main__":
    sys.exit(main())
