#!/usr/bin/env python3
"""The driver behind scripts/bench.sh (which builds ntk and the C programs first).

Needs no third-party module itself; the data are made by make_data.py with a python that
has numpy (NTK_BENCH_DATA_PYTHON), the references run in their own environments.
See scripts/bench/README.md for what is measured and how.
"""
import argparse
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
STAGES = ["load", "gradients", "tile_products", "tiles", "gather", "eigen", "write", "total"]
# Processes that mean someone is building on this (2-core) machine.
# Also another mpirun (someone's tests): when this is called, bench.py has no child running.
BUSY = {"swift-build", "swift-frontend", "swift-driver", "swift-test", "clang", "ld", "ld.gold",
        "ld.lld", "cc1", "cc1plus", "swiftc", "mpirun", "orterun", "prterun", "ntkPackageTests"}

# name, N, d, depth, width, k, output kernel, rank counts, eigen, references?, dsyevd?
FULL = {
    1: dict(title="N=4000 d=64, 3 hidden relu x 512, k=1, 2 ranks", n=4000, d=64, depth=3, width=512, k=1,
            ranks=[2], eigen="none", reference=True),
    2: dict(title="N=1000 d=64, 3 hidden relu x 2048, k=1, 2 ranks", n=1000, d=64, depth=3, width=2048, k=1,
            ranks=[2], eigen="none", reference=True),
    3: dict(title="N=4000 d=64, 3 hidden relu x 512, k=10, --output-kernel mean, 2 ranks", n=4000, d=64,
            depth=3, width=512, k=10, ranks=[2], eigen="none", reference=True),
    4: dict(title="config 1 on 1 rank and on 2 ranks (speed-up)", n=4000, d=64, depth=3, width=512, k=1,
            ranks=[1, 2], eigen="none", reference=False),
    5: dict(title="config 1 with --eigen vectors, 2 ranks, vs standalone LAPACKE_dsyevd", n=4000, d=64, depth=3,
            width=512, k=1, ranks=[2], eigen="vectors", reference=False, dsyevd=True),
}
QUICK = {1: dict(n=512, width=256), 2: dict(n=256, width=1024), 3: dict(n=512, width=256),
         4: dict(n=512, width=256), 5: dict(n=512, width=256)}
# Config 6: the convolutional benchmark (issue "Convolutional networks"): scikit-learn's digits
# as 8 x 8 x 1 images through the Myrtle-like CNN of docs/examples/digits-cnn.json, float64,
# 2 ranks: the empirical kernel at N = 400 and 1797 and the CNTK at N = 400, against
# neural-tangents (scripts/bench/cnn_reference.py) on the same parameters.
CNN = dict(model="docs/examples/digits-cnn.json", data="data/digits.npy", n=[400, 1797], analytic_n=[400], ranks=2)
CNN_QUICK = dict(n=[64], analytic_n=[32])


def log(*a):
    print(*a, flush=True)


def run(cmd, env=None, timeout=None, check=True):
    """Runs cmd in its own process group; returns (rc, stdout, stderr, seconds, timed_out)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        timed_out = False
    except BaseException as e:  # interrupted: take the child's whole session down with us
        if not isinstance(e, subprocess.TimeoutExpired):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            raise
        os.killpg(p.pid, signal.SIGTERM)
        try:
            out, err = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, err = p.communicate()
        timed_out = True
    dt = time.perf_counter() - t0
    if check and (p.returncode != 0 or timed_out):
        sys.exit(f"bench: command failed (rc {p.returncode}{', timed out' if timed_out else ''}): {' '.join(cmd)}\n{err[-3000:]}")
    return p.returncode, out, err, dt, timed_out


def busy_processes():
    """Builds and other mpiruns on the machine, excluding this driver's own descendants."""
    me = os.getpid()
    parent, comms = {}, {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may hold spaces and parentheses.
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        parent[int(pid)] = int(stat[stat.rindex(")") + 2:].split()[1])
        comms[int(pid)] = comm
    found = []
    for pid, comm in comms.items():
        if comm not in BUSY and not comm.startswith("ntkPackageTest"):
            continue
        p, ours = pid, False
        for _ in range(64):
            if p == me:
                ours = True
                break
            p = parent.get(p, 0)
            if p <= 1:
                break
        if not ours:
            found.append(f"{comm}[{pid}]")
    return found


def wait_for_quiet(max_wait, settle=10.0):
    """Waits (up to max_wait s) until no compiler, linker, test runner or other mpirun has
    been seen for `settle` consecutive seconds (test suites start builds in bursts)."""
    start = time.time()
    busy = busy_processes()
    if not busy:
        return
    log(f"  (waiting: busy: {', '.join(busy[:5])})")
    quiet_since = None
    while time.time() - start < max_wait:
        time.sleep(1)
        busy = busy_processes()
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.time()
        elif time.time() - quiet_since >= settle:
            break
    waited = time.time() - start
    log(f"  (waited {waited:.0f} s; {'still busy: ' + ', '.join(busy[:5]) + ' - numbers below may be disturbed' if busy else f'quiet for {settle:.0f} s'})")


DISTURBED = {"repeated": 0, "still": []}


def cpu_busy_seconds():
    """Busy CPU seconds of the whole machine so far (all cores), steal included."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (v + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds():
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Watcher:
    """Watches a measurement for other work on the machine: polls every 0.5 s for builds,
    test runners and other mpiruns, and compares the machine's busy CPU time with that of
    this driver and its (reaped) descendants; 'others' cores = the difference / wall."""

    def __init__(self, threshold):
        self.seen = []
        self.threshold = threshold
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self):
        while not self._stop.is_set():
            busy = busy_processes()
            if busy and not self.seen:
                self.seen = busy
            self._stop.wait(0.5)

    def __enter__(self):
        self.t0, self.m0, self.o0 = time.perf_counter(), cpu_busy_seconds(), own_cpu_seconds()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        wall = time.perf_counter() - self.t0
        self.others = max(0.0, (cpu_busy_seconds() - self.m0) - (own_cpu_seconds() - self.o0)) / max(wall, 1e-9)
        if not self.seen and wall > 0.5 and self.others > self.threshold:
            self.seen = [f"other CPU load {self.others:.2f} cores"]


def measured(a, what, fn, attempts=3):
    """Runs fn() on a quiet machine; if a build, test runner or another mpirun showed up
    meanwhile (polled every 0.5 s), waits and runs it again, up to `attempts` times in all
    (repeats are counted; a last attempt that is disturbed too is kept and reported)."""
    for attempt in range(attempts):
        wait_for_quiet(a.max_wait)
        with Watcher(a.other_load) as w:
            result = fn()
        if not w.seen:
            return result
        DISTURBED["repeated"] += attempt < attempts - 1
        if attempt < attempts - 1:
            log(f"  ({what}: disturbed by {', '.join(w.seen[:3])}; repeating on a quiet machine)")
    DISTURBED["still"].append(what)
    log(f"  ({what}: disturbed in all {attempts} attempts, last by {', '.join(w.seen[:3])}; kept)")
    return result


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, digits=3):
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if abs(x) >= 100:
        return f"{x:.1f}"
    return f"{x:.{digits}f}"


def flops_per_pair(c):
    """Structured cost model: 2 * sum_l (n_{l-1} + k * n_l) over the dense layers."""
    dims = [c["d"]] + [c["width"]] * c["depth"] + [c["k"]]
    return 2 * sum(dims[i] + c["k"] * dims[i + 1] for i in range(len(dims) - 1))


def useful_flops(c):
    n = c["n"]
    return n * (n + 1) // 2 * flops_per_pair(c)


def pass_flops(c):
    """The per-sample forward and backward passes: 2 N sum_l n_{l-1} n_l forward, and
    2 N k n_{l-1} n_l backward through every dense layer but the first."""
    dims = [c["d"]] + [c["width"]] * c["depth"] + [c["k"]]
    layers = [dims[i] * dims[i + 1] for i in range(len(dims) - 1)]
    return 2 * c["n"] * (sum(layers) + c["k"] * sum(layers[1:]))


# ----------------------------------------------------------------------------------------
# dgemm peak
# ----------------------------------------------------------------------------------------

def parse_kv(line):
    return dict(tok.split("=", 1) for tok in line.split() if "=" in tok)


def dgemm_section(a, env):
    log("== One-core dgemm (cblas_dgemm, row-major A * B^T, OPENBLAS_NUM_THREADS=1; median GFLOP/s over repeated calls)")
    variants = []
    env_core = os.environ.get("OPENBLAS_CORETYPE")
    variants.append(("env: " + (env_core or "(unset)"), env_core))
    for core in ["Haswell", "SkylakeX", None]:
        if core != env_core:
            variants.append(("unset" if core is None else core, core))
    budget = "0.3" if a.quick else "2"
    rows = []
    for label, core in variants:
        e = dict(env, OPENBLAS_NUM_THREADS="1")
        e.pop("OPENBLAS_CORETYPE", None)
        if core:
            e["OPENBLAS_CORETYPE"] = core
        _, out, _, _, _ = measured(a, f"dgemm {label}", lambda: run([a.dgemm, budget], env=e))
        lines = [parse_kv(x) for x in out.splitlines() if x.strip()]
        head = lines[0]
        shapes = {kv["shape"]: float(kv["median_gflops"]) for kv in lines[1:]}
        best = {kv["shape"]: float(kv["best_gflops"]) for kv in lines[1:]}
        fallback = head["corename"].lower() in ("prescott", "core2", "generic", "unknown")
        rows.append(dict(label=label, core=core, corename=head["corename"], shapes=shapes, best=best, fallback=fallback))
    log(f"  {'OPENBLAS_CORETYPE':<20} {'corename':<12} {'n=2000':>9} {'256x256,k=512':>14} {'256x256,k=64':>13}")
    for r in rows:
        s = r["shapes"]
        note = "  <- generic fallback kernel, NOT a peak" if r["fallback"] else ""
        log(f"  {r['label']:<20} {r['corename']:<12} {s['square2000']:>9.1f} {s['tile256x256_k512']:>14.1f} "
            f"{s['tile256x256_k64']:>13.1f}{note}")
    usable = [r for r in rows if not r["fallback"]]
    peak_row = max(usable, key=lambda r: r["shapes"]["square2000"]) if usable else rows[0]
    env_row = rows[0]
    log(f"  OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE', '(unset)')} in every variant.")
    log(f"  Peak used below: {peak_row['shapes']['square2000']:.1f} GFLOP/s per core ({peak_row['corename']} kernel, n=2000, median)"
        + ("  [WARNING: only the generic fallback was measured]" if peak_row["fallback"] else ""))
    log("")
    return dict(rows=rows, peak=peak_row["shapes"]["square2000"], peak_core=peak_row["corename"],
                env_core=env_row["corename"])


# ----------------------------------------------------------------------------------------
# ntk runs
# ----------------------------------------------------------------------------------------

def prepare_inputs(a, c, env):
    data_dir = os.path.join(a.workdir, "data")
    os.makedirs(data_dir, exist_ok=True)
    x = os.path.join(data_dir, f"X_n{c['n']}_d{c['d']}_seed0.npy")
    if not os.path.exists(x):
        run([a.data_python, os.path.join(HERE, "make_data.py"), x, str(c["n"]), str(c["d"]), "0"], env=env)
    p = os.path.join(data_dir, f"P_d{c['d']}_L{c['depth']}_w{c['width']}_k{c['k']}_seed0.npz")
    if not os.path.exists(p):
        run([a.ntk, "init", "--depth", str(c["depth"]), "--width", str(c["width"]), "--out-dim", str(c["k"]),
             "--activation", "relu", "--input-width", str(c["d"]), "--seed", "0", "--out", p, "--force"], env=env)
    return x, p


def run_ntk(a, cid, c, ranks, x, p, env):
    out = os.path.join(a.workdir, "out", f"c{cid}_np{ranks}")
    rss = os.path.join(a.workdir, "rss", f"c{cid}_np{ranks}")
    os.makedirs(os.path.dirname(rss), exist_ok=True)
    for r in range(ranks):
        if os.path.exists(f"{rss}.{r}"):
            os.remove(f"{rss}.{r}")
    cmd = ["mpirun", "--oversubscribe", "--bind-to", "none", "-np", str(ranks),
           os.path.join(HERE, "rank_rss.sh"), rss, a.ntk, "gram", "--data", x,
           "--depth", str(c["depth"]), "--width", str(c["width"]), "--activation", "relu", "--out-dim", str(c["k"]),
           "--params", p, "--out", out, "--force", "--quiet", "--no-progress", "--eigen", c["eigen"]]
    if c["k"] > 1:
        cmd += ["--output-kernel", "mean"]
    _, _, _, wall, _ = run(cmd, env=env, timeout=a.ntk_timeout)
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    rss_mb = []
    for r in range(ranks):
        try:
            with open(f"{rss}.{r}") as f:
                rss_mb.append(int(f.read().strip().splitlines()[-1]) / 1024)
        except (OSError, ValueError, IndexError):
            rss_mb.append(None)
    return dict(seconds=summary.get("seconds", {}), blas_core=summary.get("blas_core"), wall=wall, rss=rss_mb,
                out=out, tile_size=summary.get("tile_size"), tiles=summary.get("tiles"))


def cnn_config(a, env, peak):
    """Config 6: the CNN benchmark. Returns its figures and summary lines."""
    c = dict(CNN)
    if a.quick:
        c.update(CNN_QUICK)
    ranks = c["ranks"]
    work = os.path.join(a.workdir, "cnn")
    kernels = os.path.join(work, "kernels")
    os.makedirs(kernels, exist_ok=True)
    model, data = os.path.join(ROOT, c["model"]), os.path.join(ROOT, c["data"])
    log(f"== Config 6: CNN {c['model']} on {c['data']} (8 x 8 x 1 images), float64, {ranks} ranks; "
        f"empirical N={','.join(map(str, c['n']))}, analytic N={','.join(map(str, c['analytic_n']))}; load average {loadavg()}")
    params = os.path.join(work, "P.npz")
    run([a.ntk, "init", "--model", model, "--data", data, "--seed", "0", "--out", params, "--force"], env=env)
    xs = {}
    for n in sorted(set(c["n"]) | set(c["analytic_n"])):
        xs[n] = os.path.join(work, f"x{n}.npy")
        run([a.data_python, "-c", f"import numpy as np; np.save({xs[n]!r}, np.load({data!r})[:{n}])"], env=env)
    figures = dict(empirical={}, analytic={})
    lines = []

    def one(kind, n):
        out = os.path.join(work, "out", f"{kind}_{n}")
        cmd = ["mpirun", "--oversubscribe", "--bind-to", "none", "-np", str(ranks), a.ntk, "gram", "--data", xs[n],
               "--model", model, "--out", out, "--force", "--quiet", "--no-progress", "--eigen", "none"]
        cmd += ["--params", params] if kind == "empirical" else ["--kernel", "analytic"]
        _, _, _, wall, _ = run(cmd, env=env, timeout=a.ntk_timeout)
        with open(os.path.join(out, "summary.json")) as f:
            summary = json.load(f)
        shutil.copyfile(os.path.join(out, "kernel.npy"), os.path.join(kernels, f"{kind}_{n}.npy"))
        return dict(seconds=summary["seconds"], wall=wall, work=summary.get("work"), layers=summary.get("layers"),
                    tile=summary.get("tile_size"), tiles=summary.get("tiles"))

    for kind, ns in (("empirical", c["n"]), ("analytic", c["analytic_n"])):
        for n in ns:
            rs = [measured(a, f"cnn {kind} N={n}", lambda: one(kind, n)) for _ in range(a.runs)]
            sec = {k: med([r["seconds"].get(k) for r in rs]) for k in ("gradients", "tile_products", "tiles", "total")}
            f = dict(total=sec["total"], seconds=sec)
            text = f"  ntk {kind} N={n}: total {fmt(sec['total'])} s (median of {a.runs}; tiles {fmt(sec['tiles'])} s"
            if kind == "empirical":
                text += f", per-sample passes {fmt(sec['gradients'])} s, tile products {fmt(sec['tile_products'])} s"
            text += f"; tile {rs[0]['tile']}, {rs[0]['tiles']} tiles)"
            log(text)
            w = rs[0]["work"]
            if kind == "empirical" and w:
                pairs = n * (n + 1) / 2
                pair_flops, sample_flops = 2 * w["pair_multiply_adds"] * pairs, 2 * w["per_sample_multiply_adds"] * n
                # The per-sample passes run before the tile loop when they are shared
                # ("gradients"), inside it otherwise; products and passes together:
                both = (pair_flops + sample_flops) / (sec["tile_products"] + sec["gradients"]) / 1e9
                f.update(gflops=both, frac=both / (ranks * peak))
                log(f"    useful work {(pair_flops + sample_flops) / 1e9:.1f} GFLOP ({pair_flops / 1e9:.1f} in pair products: "
                    f"{w['pair_multiply_adds']:.0f} multiply-adds per pair; {sample_flops / 1e9:.1f} in per-sample passes); "
                    f"{both:.1f} GFLOP/s over the per-sample passes and tile products = {100 * both / (ranks * peak):.1f}% of {ranks} x {peak:.1f} "
                    f"(dgemm peak); the products alone {pair_flops / sec['tile_products'] / 1e9:.1f} GFLOP/s = "
                    f"{100 * pair_flops / sec['tile_products'] / 1e9 / (ranks * peak):.1f}%")
                log("    layer forms: " + ", ".join(f"{l['layer']} {l['form']}{' (1 row)' if l['collapsed'] else ''}" for l in rs[0]["layers"] or []))
            figures[kind][n] = f

    if a.nt_python and not a.no_reference:
        ref_json = os.path.join(work, "reference.json")
        cmd = [a.nt_python, os.path.join(HERE, "cnn_reference.py"), "--model", model, "--data", data, "--params", params,
               "--kinds", "empirical,analytic", "--empirical-n", ",".join(map(str, c["n"])),
               "--analytic-n", ",".join(map(str, c["analytic_n"])), "--repeats", str(a.runs), "--budget", str(a.nt_budget),
               "--workdir", os.path.join(work, "reference"), "--compare", kernels, "--json", ref_json]
        rc, _, err, _, _ = run(cmd, env=env, timeout=None, check=False)
        results = []
        if rc == 0 and os.path.exists(ref_json):
            with open(ref_json) as f:
                results = json.load(f).get("results", [])
        else:
            log(f"  neural-tangents: failed ({err.strip().splitlines()[-1] if err.strip() else rc})")
        for r in results:
            kind, n = r.get("kind"), r.get("n")
            ours = figures.get(kind, {}).get(n)
            if not ours or r.get("median_seconds") is None:
                continue
            diff = next((x["max_abs_diff_over_max"] for x in r.get("compare", []) if x["reference"].startswith(kernels)), float("nan"))
            ratio = r["median_seconds"] / ours["total"]
            ours.update(nt=r["median_seconds"], ratio=ratio)
            log(f"  neural-tangents 0.6.5 {kind} N={n} ({r.get('mode', '')}): {fmt(r['median_seconds'])} s (median of {r.get('runs_done')}, "
                f"{r.get('cpu_per_wall', float('nan')):.2f} cores busy, peak RSS {r.get('max_rss_mb', float('nan')):.0f} MiB); "
                f"max|diff|/max vs ntk {diff:.1e}; neural-tangents / ntk = {ratio:.1f}x")
    for kind in ("empirical", "analytic"):
        for n, f in figures[kind].items():
            lines.append(f"  cnn {kind:<9} N={n:<5} ntk {fmt(f['total'])} s"
                         + (f", {100 * f['frac']:.0f}% of peak over passes and products" if "frac" in f else "")
                         + (f"; neural-tangents {fmt(f['nt'])} s = {f['ratio']:.1f}x" if "nt" in f else ""))
    log("")
    return dict(figures=figures, summary=["== CNN (config 6)"] + lines)


def stage_table(results_by_ranks, runs):
    cols = sorted(results_by_ranks)
    keys = list(STAGES)
    for res in results_by_ranks.values():
        for r in res:
            for k in r["seconds"]:
                if k not in keys:
                    keys.append(k)
    head = f"  {'stage (median s over ' + str(runs) + ' runs)':<34}" + "".join(f"{str(n) + ' rank' + ('s' if n > 1 else ''):>11}" for n in cols)
    log(head)
    for k in keys + ["mpirun wall"]:
        vals = []
        for n in cols:
            if k == "mpirun wall":
                vals.append(med([r["wall"] for r in results_by_ranks[n]]))
            else:
                vals.append(med([r["seconds"].get(k) for r in results_by_ranks[n]]))
        log(f"  {k:<34}" + "".join(f"{fmt(v):>11}" for v in vals))


def ntk_kernel_seconds(r):
    """ntk's time for the kernel alone: total minus eigendecomposition and file writing."""
    s = r["seconds"]
    if "total" not in s:
        return None
    return s["total"] - s.get("eigen", 0.0) - s.get("write", 0.0)


# ----------------------------------------------------------------------------------------
# references
# ----------------------------------------------------------------------------------------

def nt_batch_size(n):
    """0 (one call) when the full N x N computation fits comfortably, else a divisor of N."""
    try:
        with open("/proc/meminfo") as f:
            avail = next(int(l.split()[1]) * 1024 for l in f if l.startswith("MemAvailable"))
    except (OSError, StopIteration):
        avail = 8 << 30
    # Measured: N=4000 (k=1 and k=10) peaked at ~2.3 GB, about 18 N^2 doubles.
    if 8 * 24 * n * n < 0.5 * avail:
        return 0
    for b in range(min(n, 2000), 0, -1):
        if n % b == 0:
            return b
    return 0


def reference_nt(a, c, x, p, kernel, env):
    batch = nt_batch_size(c["n"])
    cmd = [a.nt_python, os.path.join(HERE, "reference_nt.py"), "--data", x, "--params", p, "--depth", str(c["depth"]),
           "--width", str(c["width"]), "--out-dim", str(c["k"]), "--runs", str(a.runs), "--batch", str(batch),
           "--budget", str(a.nt_budget), "--compare", kernel]
    e = dict(env)
    e.pop("OPENBLAS_NUM_THREADS", None)  # not used by jax; leave XLA its default thread pool
    rc, out, err, wall, timed_out = run(cmd, env=e, timeout=a.nt_budget * 2 + 300, check=False)
    if timed_out:
        return dict(error=f"killed after {wall:.0f} s (cap)")
    if rc != 0:
        return dict(error=f"failed (rc {rc}): {err.strip().splitlines()[-1] if err.strip() else ''}")
    res = json.loads(out.strip().splitlines()[-1])
    res["process_wall"] = wall
    return res


def reference_torch(a, c, x, p, kernel, env):
    cmd = [a.torch_python, os.path.join(HERE, "reference_torch.py"), "--data", x, "--params", p,
           "--depth", str(c["depth"]), "--width", str(c["width"]), "--out-dim", str(c["k"]),
           "--budget", str(a.torch_budget), "--threads", str(os.cpu_count() or 1), "--compare", kernel]
    e = dict(env)
    e.pop("OPENBLAS_NUM_THREADS", None)
    rc, out, err, wall, timed_out = run(cmd, env=e, timeout=a.torch_budget * 3 + 300, check=False)
    if timed_out:
        return dict(error=f"killed after {wall:.0f} s (cap)")
    if rc != 0:
        return dict(error=f"failed (rc {rc}): {err.strip().splitlines()[-1] if err.strip() else ''}")
    return json.loads(out.strip().splitlines()[-1])


def run_dsyevd(a, kernel, threads, core, jobz, env):
    e = dict(env, OPENBLAS_NUM_THREADS=str(threads))
    e.pop("OPENBLAS_CORETYPE", None)
    if core:
        e["OPENBLAS_CORETYPE"] = core
    _, out, _, _, _ = run([a.dsyevd, kernel, str(a.runs), jobz], env=e, timeout=3600)
    lines = [parse_kv(l) for l in out.splitlines() if l.strip()]
    head = lines[0]
    median = float(lines[-1]["median_seconds"])
    return dict(corename=head["corename"], threads=int(head["threads"]), median=median,
                runs=[float(l["seconds"]) for l in lines if "seconds" in l and "run" in l])


# ----------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int)
    ap.add_argument("--configs", default="1,2,3,4,5")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--workdir", default=os.environ.get("NTK_BENCH_WORKDIR", "/tmp/ntk-bench"))
    ap.add_argument("--ntk", required=True)
    ap.add_argument("--dgemm", required=True)
    ap.add_argument("--dsyevd", required=True)
    ap.add_argument("--data-python", required=True)
    ap.add_argument("--nt-python")
    ap.add_argument("--torch-python")
    ap.add_argument("--nt-budget", type=float, default=300.0)
    ap.add_argument("--torch-budget", type=float, default=240.0)
    ap.add_argument("--ntk-timeout", type=float, default=1800.0)
    ap.add_argument("--max-wait", type=float, default=600.0)
    ap.add_argument("--other-load", type=float, default=0.25,
                    help="cores of CPU time used by other processes during a measurement that count as disturbance")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if a.runs is None:
        a.runs = 1 if a.quick else 3
    if a.quick:
        a.nt_budget = min(a.nt_budget, 30.0)
        if not a.no_torch and a.torch_python:
            a.no_torch = True
            a.quick_skipped_torch = True
    configs = [int(s) for s in a.configs.split(",") if s.strip()]
    for cid in configs:
        if cid not in FULL and cid != 6:
            sys.exit(f"bench: unknown config {cid} (1-6)")
    os.makedirs(a.workdir, exist_ok=True)
    env = dict(os.environ)
    started = time.time()

    try:
        rev = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
    except OSError:
        rev = "?"
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    log(f"ntk benchmark  {time.strftime('%Y-%m-%d %H:%M:%S')}  ntk {rev}{'  (--quick)' if a.quick else ''}")
    log(f"machine: {cpu}, {os.cpu_count()} cores, {platform.machine()}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')} "
        f"OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE', '(unset)')} OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', '(unset)')}")
    log(f"runs per measurement R={a.runs}; ntk runs: mpirun --oversubscribe --bind-to none -np K, one BLAS thread per rank "
        f"(ntk sets it; eigen uses K threads on rank 0), OPENBLAS_CORETYPE as in the environment")
    log("cost model (structured path, useful flops): per pair 2*sum_l (n_{l-1} + k*n_l) over the dense layers l=1..L+1")
    log("  (n_0=d, n_{L+1}=k; for k=1 this is 2*sum_l (n_{l-1}+n_l)); only the N(N+1)/2 pairs i<=j are counted;")
    log("  the Hadamard/sum, per-sample gradients, gather, eigendecomposition and writing are not counted.")
    log("")

    dg = dgemm_section(a, env)
    peak = dg["peak"]

    summary_rows = []
    raw = []
    cnn = None
    for cid in configs:
        if cid == 6:
            cnn = cnn_config(a, env, peak)
            raw.append(dict(config=6, cnn=cnn))
            continue
        c = dict(FULL[cid])
        if a.quick:
            c.update(QUICK[cid])
            c["title"] = f"[quick] N={c['n']} width={c['width']}: " + c["title"]
        log(f"== Config {cid}: {c['title']}")
        log(f"  N={c['n']} d={c['d']} depth={c['depth']} width={c['width']} k={c['k']} eigen={c['eigen']}; "
            f"flops/pair={flops_per_pair(c)}, useful GFLOP={useful_flops(c) / 1e9:.2f}; load average {loadavg()}")
        x, p = prepare_inputs(a, c, env)
        results = {n: [] for n in c["ranks"]}
        for _ in range(a.runs):
            for n in c["ranks"]:  # interleaved, so that slow phases of the machine hit both
                results[n].append(measured(a, f"config {cid} ntk {n} rank(s)", lambda: run_ntk(a, cid, c, n, x, p, env)))
        stage_table(results, a.runs)
        cores = sorted({r["blas_core"] for rs in results.values() for r in rs})
        log(f"  blas_core (from summary.json): {', '.join(str(s) for s in cores)}; tile {results[c['ranks'][-1]][0]['tile_size']}, "
            f"{results[c['ranks'][-1]][0]['tiles']} tiles")
        uf = useful_flops(c)
        row = dict(cid=cid, n=c["n"], width=c["width"], k=c["k"])
        for n in c["ranks"]:
            rs = results[n]
            prod = med([r["seconds"].get("tile_products") for r in rs])
            tiles = med([r["seconds"].get("tiles") for r in rs])
            total = med([r["seconds"].get("total") for r in rs])
            gp = uf / prod / 1e9 if prod else None
            gt = uf / tiles / 1e9 if tiles else None
            gtot = uf / total / 1e9 if total else None
            frac = gp / (n * peak) if gp else None
            rss = [med([r["rss"][i] for r in rs]) for i in range(n)]
            gall = (uf + pass_flops(c)) / total / 1e9 if total else None
            log(f"  {n} rank{'s' if n > 1 else ''}: useful GFLOP/s  tile_products {fmt(gp, 1)}  tiles(products+gradients) {fmt(gt, 1)}  "
                f"total {fmt(gtot, 1)};  tile_products = {fmt(100 * frac if frac else None, 1)}% of {n} x {peak:.1f} "
                f"(dgemm peak, {dg['peak_core']})")
            log(f"  {n} rank{'s' if n > 1 else ''}: end to end: {fmt(100 * gtot / (n * peak) if gtot else None, 1)}% of {n} x peak "
                f"(pair products only); {fmt(gall, 1)} GFLOP/s = {fmt(100 * gall / (n * peak) if gall else None, 1)}% "
                f"counting the forward and backward passes too ({pass_flops(c) / 1e9:.2f} GFLOP)")
            log(f"  {n} rank{'s' if n > 1 else ''}: peak RSS per rank (MiB, median): " + ", ".join(f"rank {i} {fmt(v, 0)}" for i, v in enumerate(rss)))
            row.update({f"total_{n}": total, f"prod_{n}": prod, f"gflops_{n}": gp, f"frac_{n}": frac,
                        f"rss_{n}": max([v for v in rss if v is not None], default=None)})
        if len(c["ranks"]) > 1:
            lo, hi = c["ranks"][0], c["ranks"][-1]
            for key in ["total", "tiles", "tile_products", "eigen"]:
                t_lo = med([r["seconds"].get(key) for r in results[lo]])
                t_hi = med([r["seconds"].get(key) for r in results[hi]])
                if t_lo and t_hi:
                    log(f"  speed-up {lo}->{hi} ranks, {key:<14}: {t_lo / t_hi:.2f}x  ({fmt(t_lo)} s -> {fmt(t_hi)} s)")
            t_lo, t_hi = med([r["wall"] for r in results[lo]]), med([r["wall"] for r in results[hi]])
            log(f"  speed-up {lo}->{hi} ranks, {'mpirun wall':<14}: {t_lo / t_hi:.2f}x  ({fmt(t_lo)} s -> {fmt(t_hi)} s)")
            row["speedup"] = med([r["seconds"].get("total") for r in results[lo]]) / med([r["seconds"].get("total") for r in results[hi]])
        main_n = c["ranks"][-1]
        last = results[main_n][-1]
        kernel = os.path.join(last["out"], "kernel.npy")
        t_total = med([r["seconds"].get("total") for r in results[main_n]])
        t_kernel = med([ntk_kernel_seconds(r) for r in results[main_n]])

        if c.get("dsyevd"):
            threads = main_n  # ntk's rank 0 uses one BLAS thread per local rank for the eigensolver
            t_tool = med([r["seconds"].get("eigen") for r in results[main_n]])
            log(f"  eigendecomposition of the same kernel.npy ({c['n']}x{c['n']}), {threads} OpenBLAS threads, median of {a.runs}:")
            log(f"    ntk 'eigen' stage (--eigen vectors; dsyevd + its checks): {fmt(t_tool)} s  [blas_core {cores[0]}]")
            variants = [(os.environ.get("OPENBLAS_CORETYPE"), "V"), (os.environ.get("OPENBLAS_CORETYPE"), "N")]
            best_core = next((r["core"] for r in dg["rows"] if r["corename"] == dg["peak_core"]), None)
            if dg["peak_core"] != dg["env_core"]:
                variants += [(best_core, "V"), (best_core, "N")]
            for core, jobz in variants:
                d = measured(a, f"dsyevd {jobz}", lambda: run_dsyevd(a, kernel, threads, core, jobz, env))
                extra = f"  -> ntk eigen / dsyevd = {t_tool / d['median']:.2f}" if jobz == "V" and t_tool else ""
                log(f"    standalone LAPACKE_dsyevd jobz={jobz}, OPENBLAS_CORETYPE={core or '(unset)'} ({d['corename']}), "
                    f"{d['threads']} threads: {d['median']:.3f} s{extra}")
                row[f"dsyevd_{jobz}_{d['corename']}"] = d["median"]
            row["eigen_tool"] = t_tool

        if c.get("reference") and not a.no_reference:
            if a.nt_python:
                nt = measured(a, "neural-tangents", lambda: reference_nt(a, c, x, p, kernel, env))
                if "error" in nt:
                    log(f"  neural-tangents: {nt['error']}")
                    row["nt"] = nt["error"]
                else:
                    gf = uf / nt["median_seconds"] / 1e9
                    log(f"  neural-tangents 0.6.5 (jax {nt['jax']}, STRUCTURED_DERIVATIVES, float64, jit; {nt['mode']}; all N^2 pairs): "
                        f"compile {fmt(nt.get('compile_seconds'))} s, run {fmt(nt['median_seconds'])} s (median of {nt['runs_done']}"
                        f"{', CAPPED by budget' if nt['capped'] else ''}; {nt['cpu_per_wall']:.2f} cores busy), "
                        f"useful GFLOP/s {gf:.1f}, peak RSS {nt['max_rss_mb']:.0f} MiB, max|diff|/max = {nt.get('max_abs_diff_over_max', float('nan')):.1e}")
                    log(f"    ratio neural-tangents / ntk: {nt['median_seconds'] / t_total:.2f} vs ntk total ({fmt(t_total)} s, incl. eigen+write); "
                        f"{nt['median_seconds'] / t_kernel:.2f} vs ntk kernel only (total - eigen - write = {fmt(t_kernel)} s)")
                    row["nt"] = nt["median_seconds"]
                    row["nt_ratio_total"] = nt["median_seconds"] / t_total
                    row["nt_ratio_kernel"] = nt["median_seconds"] / t_kernel
            else:
                log("  neural-tangents: reference venv not found; skipped (scripts/reference/setup.sh makes it)")
            if getattr(a, "quick_skipped_torch", False):
                a.quick_skipped_torch = False
                log("  torch.func: skipped in --quick (its explicit Jacobians take tens of seconds even at quick sizes)")
            if a.torch_python and not a.no_torch:
                tr = measured(a, "torch.func", lambda: reference_torch(a, c, x, p, kernel, env), attempts=2)
                if "error" in tr:
                    log(f"  torch.func: {tr['error']}")
                elif tr["capped"]:
                    log(f"  torch.func {tr['version']} (explicit Jacobians, float64, {tr['threads']} threads, tile {tr['tile']}): CAPPED at "
                        f"{tr['seconds']:.0f} s after {tr['pairs_done']}/{tr['pairs_total']} pairs; linear projection "
                        f"{tr['projected_seconds']:.0f} s (not measured) = {tr['projected_seconds'] / t_total:.0f}x ntk total")
                    row["torch"] = f">{tr['seconds']:.0f} (proj {tr['projected_seconds']:.0f})"
                else:
                    log(f"  torch.func {tr['version']} (explicit Jacobians, float64, {tr['threads']} threads, tile {tr['tile']}, pairs i<=j only): "
                        f"{tr['seconds']:.2f} s (1 run; {tr['cpu_per_wall']:.2f} cores busy), peak RSS {tr['max_rss_mb']:.0f} MiB, "
                        f"max|diff|/max = {tr.get('max_abs_diff_over_max', float('nan')):.1e}; ratio torch.func / ntk total: {tr['seconds'] / t_total:.1f}")
                    row["torch"] = tr["seconds"]
        summary_rows.append(row)
        raw.append(dict(config=cid, spec=c, ntk={str(n): results[n] for n in results}, summary=row))
        log("")

    # Summary table.
    if cnn:
        for line in cnn["summary"]:
            log(line)
    log("== Summary (medians; seconds are ntk's summary.json 'total'; ranks as configured)")
    log(f"  {'cfg':<4}{'N':>6}{'width':>7}{'k':>4}{'ntk s':>9}{'GF/s prod':>11}{'% peak':>8}{'RSS MiB':>9}{'nt s':>9}{'nt/ntk':>8}  other")
    for r in summary_rows:
        n = max(int(k.split("_")[1]) for k in r if k.startswith("total_"))
        other = []
        if "speedup" in r:
            other.append(f"1->2 rank speed-up {r['speedup']:.2f}x (1 rank {fmt(r['total_1'])} s)")
        if "eigen_tool" in r:
            other.append("eigen " + fmt(r["eigen_tool"]) + " s vs dsyevd V " +
                         ", ".join(f"{fmt(v)} s ({k.split('_', 2)[2]})" for k, v in r.items() if k.startswith("dsyevd_V")))
        if "torch" in r:
            other.append(f"torch.func {fmt(r['torch']) if not isinstance(r['torch'], str) else r['torch']} s")
        nt = r.get("nt")
        log(f"  {r['cid']:<4}{r['n']:>6}{r['width']:>7}{r['k']:>4}{fmt(r[f'total_{n}']):>9}{fmt(r[f'gflops_{n}'], 1):>11}"
            f"{fmt(100 * r[f'frac_{n}'] if r[f'frac_{n}'] else None, 1):>8}{fmt(r[f'rss_{n}'], 0):>9}"
            f"{(fmt(nt) if not isinstance(nt, str) else 'err'):>9}{fmt(r.get('nt_ratio_total'), 2):>8}  {'; '.join(other)}")
    log(f"  (% peak: tile_products useful GFLOP/s / (ranks x {peak:.1f} GFLOP/s one-core dgemm, {dg['peak_core']}); "
        f"nt/ntk > 1 means ntk is faster)")
    log(f"  measurements repeated because a build or another mpirun ran meanwhile: {DISTURBED['repeated']}"
        + (f"; disturbed even when repeated: {', '.join(DISTURBED['still'])}" if DISTURBED["still"] else ""))
    with open(os.path.join(a.workdir, "results.json"), "w") as f:
        json.dump(dict(dgemm=dg, configs=raw, runs=a.runs, quick=a.quick), f, indent=1, default=str)
    log(f"bench: done in {time.time() - started:.0f} s (raw numbers: {os.path.join(a.workdir, 'results.json')})")


if __name__ == "__main__":
    main()
