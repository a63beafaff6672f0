"""What a run leaves: its output directory, read lazily.

Arrays are memory-mapped (``numpy.load(..., mmap_mode='r')``), not copied: a 50 000 ×
50 000 kernel costs no memory until it is read. A result whose directory is temporary
(``out=None``) owns it and removes it on :meth:`Result.close`, at the end of a ``with``
block, or when the result is garbage-collected. Arrays already taken from it stay valid
after that (on Linux a mapped file lives on until it is unmapped); open it again with
``out=`` to keep the files.
"""
from __future__ import annotations

import functools
import json
import shutil
import weakref
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

__all__ = ["Result", "GramResult", "PredictResult", "TrainResult", "ConvergeResult", "InitResult"]


def _remove(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


class Result:
    """One finished run: its directory, its output and its files.

    Attributes:
        out: the output directory.
        command: the command line that ran.
        stdout: what the tool printed on stdout (its report).
        stderr: what it printed on stderr (progress, warnings).
    """

    def __init__(self, out: str, *, owned: bool, command: Sequence[str] = (), stdout: str = "",
                 stderr: str = "") -> None:
        self.out = Path(out)
        self.command = list(command)
        self.stdout = stdout
        self.stderr = stderr
        self._finalizer = weakref.finalize(self, _remove, str(out)) if owned else None

    @property
    def owned(self) -> bool:
        """Whether the directory is temporary and removed with this result."""
        return self._finalizer is not None and self._finalizer.alive

    def close(self) -> None:
        """Removes the directory if it is temporary (arrays already taken stay valid)."""
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> "Result":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(out={str(self.out)!r}{', temporary' if self.owned else ''})"

    @property
    def files(self) -> List[str]:
        """The files in the directory."""
        return sorted(p.name for p in self.out.iterdir() if not p.name.startswith("."))

    def array(self, name: str) -> Optional[np.ndarray]:
        """The ``.npy`` file ``name``, memory-mapped read-only; None if the run wrote none."""
        path = self.out / name
        if not path.is_file():
            return None
        return np.load(path, mmap_mode="r")

    def json(self, name: str) -> Optional[Dict[str, Any]]:
        """The JSON file ``name``; None if the run wrote none."""
        path = self.out / name
        return json.loads(path.read_text()) if path.is_file() else None

    def path(self, name: str) -> Optional[Path]:
        """The path of the file ``name``, if the run wrote it (plots: ``.svg``)."""
        path = self.out / name
        return path if path.exists() else None

    @functools.cached_property
    def summary(self) -> Dict[str, Any]:
        """``summary.json``: sizes, ranks, seconds per stage, the spectrum."""
        return self.json("summary.json") or {}


class GramResult(Result):
    """``ntk gram``: the kernel, its spectrum and the network's outputs."""

    @functools.cached_property
    def spectrum_density(self) -> Optional[Dict[str, np.ndarray]]:
        """With ``eigen='density'``: ``spectrum_density.csv`` as arrays ``lambda``,
        ``eigenvalues_per_decade`` and ``eigenvalues_at_or_below``."""
        return _read_density(self.path("spectrum_density.csv"))

    @functools.cached_property
    def kernel(self) -> np.ndarray:
        """(N, N), (N, M) with ``x2``, or (N, N, k, k) for ``output_kernel='full'``; float64."""
        return self.array("kernel.npy")

    @functools.cached_property
    def eigenvalues(self) -> Optional[np.ndarray]:
        """Ascending (None with ``eigen='none'`` or ``x2``)."""
        return self.array("eigenvalues.npy")

    @functools.cached_property
    def eigenvectors(self) -> Optional[np.ndarray]:
        """Column j belongs to eigenvalue j (with ``eigen='vectors'``)."""
        return self.array("eigenvectors.npy")

    @functools.cached_property
    def outputs(self) -> Optional[np.ndarray]:
        """f(x) at the parameters, (N, k) (empirical kernel)."""
        return self.array("outputs.npy")

    @functools.cached_property
    def outputs2(self) -> Optional[np.ndarray]:
        """f(x2), (M, k) (with ``x2``)."""
        return self.array("outputs2.npy")


def _read_density(path) -> Optional[Dict[str, np.ndarray]]:
    if path is None:
        return None
    table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    return {"lambda": table[:, 0], "eigenvalues_per_decade": table[:, 1], "eigenvalues_at_or_below": table[:, 2]}


class PredictResult(Result):
    """``ntk predict``: the linearized network's predictions and the spectral diagnostics."""

    @functools.cached_property
    def train_predictions(self) -> np.ndarray:
        """(T, N, k): one row per time, then per step count, in the order given."""
        return self.array("train_predictions.npy")

    @functools.cached_property
    def test_predictions(self) -> Optional[np.ndarray]:
        """(T, M, k), with ``x_test``."""
        return self.array("test_predictions.npy")

    @functools.cached_property
    def train_variance(self) -> Optional[np.ndarray]:
        """(T, N): the NNGP ensemble's output variance on the train inputs (``kernel='nngp'``)."""
        return self.array("train_variance.npy")

    @functools.cached_property
    def test_variance(self) -> Optional[np.ndarray]:
        """(T, M): the NNGP ensemble's output variance on the test inputs (``kernel='nngp'``)."""
        return self.array("test_variance.npy")

    @functools.cached_property
    def train_kernel(self) -> Optional[np.ndarray]:
        """(N, N) Θ(X, X), with ``keep_kernels``."""
        return self.array("train_kernel.npy")

    @functools.cached_property
    def test_kernel(self) -> Optional[np.ndarray]:
        """(M, N) Θ(X*, X), with ``keep_kernels`` and ``x_test``."""
        return self.array("test_kernel.npy")

    @functools.cached_property
    def eigenvalues(self) -> Optional[np.ndarray]:
        """(N,) Θ(X, X)'s eigenvalues, ascending, with ``keep_kernels``."""
        return self.array("eigenvalues.npy")

    @functools.cached_property
    def metrics(self) -> Dict[str, Any]:
        """``metrics.json``: loss, MSE and (for integer labels) accuracy per time and step count."""
        return self.json("metrics.json") or {}

    @property
    def solver_errors(self) -> List[Dict[str, Any]]:
        """With ``solver='cg'``: per time, the solve's errors per output relative to
        ||Y - f0||: ``relative`` (the train predictions' a posteriori bound; at t = inf the
        coefficients' relative residual), ``test_relative`` (the test predictions' bound, finite times) and
        ``estimated`` (the stopping rule's estimate). Empty for the eigen solver."""
        return self.metrics.get("solver_errors", [])

    @property
    def report(self) -> str:
        """``report.txt``, the readable report."""
        path = self.path("report.txt")
        return path.read_text() if path is not None else ""


class TrainResult(Result):
    """``ntk train``: the real network trained by gradient descent against its NTK prediction."""

    @functools.cached_property
    def summary(self) -> Dict[str, Any]:
        """``training.json``: per recorded step, losses, distance to the NTK prediction; the kernel's change."""
        return self.json("training.json") or {}

    @property
    def training(self) -> Dict[str, Any]:
        """The same as :attr:`summary` (``training.json``)."""
        return self.summary

    @functools.cached_property
    def train_outputs(self) -> np.ndarray:
        return self.array("train_outputs.npy")

    @functools.cached_property
    def ntk_train_predictions(self) -> np.ndarray:
        return self.array("ntk_train_predictions.npy")

    @functools.cached_property
    def test_outputs(self) -> Optional[np.ndarray]:
        return self.array("test_outputs.npy")

    @functools.cached_property
    def ntk_test_predictions(self) -> Optional[np.ndarray]:
        return self.array("ntk_test_predictions.npy")

    @functools.cached_property
    def trained_params(self) -> Dict[str, np.ndarray]:
        """The parameters after the last step (``W0, b0, ...``), read into memory."""
        path = self.out / "trained_params.npz"
        with np.load(path) as archive:
            return {name: np.array(archive[name]) for name in archive.files}


class ConvergeResult(Result):
    """``ntk converge``: the distance of the empirical NTK to the analytic one over widths."""

    @functools.cached_property
    def summary(self) -> Dict[str, Any]:
        """``converge.json``."""
        return self.json("converge.json") or {}

    @property
    def points(self) -> List[Dict[str, Any]]:
        """One ``{"width", "seed", "relative_frobenius"}`` per run."""
        return list(self.summary.get("points", []))

    @property
    def slope(self) -> Optional[float]:
        """The fitted log-log slope (theory: about -1/2)."""
        return self.summary.get("slope")

    @property
    def mean_by_width(self) -> Dict[int, float]:
        """The mean distance per width."""
        return {int(w): v for w, v in self.summary.get("mean_by_width", {}).items()}


class InitResult(Result):
    """``ntk init``: the parameters that ``--seed`` draws."""

    def __init__(self, out: str, file: str, **kwargs: Any) -> None:
        super().__init__(out, **kwargs)
        self.file = Path(file)

    @functools.cached_property
    def params(self) -> Dict[str, np.ndarray]:
        """``{"W0": (n_in, n_out), "b0": (n_out,), ...}``, read into memory."""
        with np.load(self.file) as archive:
            return {name: np.array(archive[name]) for name in archive.files}

    @property
    def summary(self) -> Dict[str, Any]:  # type: ignore[override]
        return {"file": str(self.file), "arrays": {k: list(v.shape) for k, v in self.params.items()}}

