"""The tool's commands as Python functions: ``gram``, ``predict``, ``train``, ``converge``, ``init``.

Each call writes its inputs (arrays, model, parameters) to a temporary directory as
``.npy``, ``.json`` and ``.npz``, runs the binary (one process, ``mpirun -np K`` or
``srun``), and returns a :class:`~ntk.results.Result` over the output directory, whose
arrays are memory-mapped. A failed run raises the :mod:`ntk.errors` class of its exit
status with the tool's ``ntk: error:`` line as message.

Flags: every keyword is one of the tool's flags with ``-`` spelled ``_`` (``eigen_top``
is ``--eigen-top``); ``None`` leaves the tool's default. ``extra_args`` passes anything
else verbatim.

Interruption: Ctrl-C (KeyboardInterrupt), :func:`ntk.stop` or ``timeout`` stop every
rank at its next tile boundary; the call raises :class:`~ntk.errors.Interrupted`.
Calling again with the same arguments and ``resume=True`` continues from the saved
tiles (with ``out=None`` this process remembers where they are; with ``out=DIR`` they
are in ``DIR/checkpoint``), on any number of ranks.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import math
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Type, TypeVar, Union

import numpy as np

from . import stax
from ._launch import Progress, find_binary, launch_command, launch_environment, run
from .convert import parameters_of
from .errors import Interrupted, NTKError, error_for
from .results import ConvergeResult, GramResult, InitResult, PredictResult, Result, TrainResult

__all__ = ["gram", "predict", "train", "converge", "init"]

PathLike = Union[str, os.PathLike]
ArrayOrPath = Union[np.ndarray, Sequence[Any], PathLike]
Model = Union[stax.Layer, Mapping[str, Any], PathLike, None]
Params = Union[Mapping[str, Any], Sequence[Any], PathLike, None]
R = TypeVar("R", bound=Result)

#: Flags whose value is an input file: the key of a run hashes the file's content.
_INPUT_FLAGS = {"--data", "--data2", "--model", "--params", "--train", "--targets", "--test", "--test-targets"}
#: Flags that do not change what a run computes (left out of its key).
_PLACE_FLAGS = {"--out", "--force", "--progress", "--no-progress", "--quiet", "--resume", "--checkpoint"}

#: Temporary output directories of interrupted runs (``out=None``), by run key, kept
#: for ``resume=True`` until this process exits.
_pending: Dict[str, str] = {}
_pending_lock = threading.Lock()


@atexit.register
def _remove_pending() -> None:
    with _pending_lock:
        for path in _pending.values():
            shutil.rmtree(path, ignore_errors=True)
        _pending.clear()


def _temporary_root() -> Optional[str]:
    """Where temporary directories go: ``NTK_TMPDIR`` (a directory every node sees, for
    runs over several hosts), or Python's default."""
    return os.environ.get("NTK_TMPDIR") or None


def _number(value: Any) -> str:
    """A flag's number: integers as integers, floats to the last bit, inf as 'inf'."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"expected a number, got {value!r}")
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, str):
        return value
    number = float(value)
    if math.isinf(number) and number > 0:
        return "inf"
    return repr(number)


def _list(values: Union[str, Sequence[Any], None]) -> Optional[str]:
    if values is None or isinstance(values, str):
        return values
    return ",".join(_number(v) for v in values)


class _Invocation:
    """The arguments of one command, with its inputs written to a temporary directory."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.pairs: List[Tuple[str, Optional[str]]] = []
        self._inputs: Optional[str] = None

    @property
    def arguments(self) -> List[str]:
        words = [self.command]
        for flag, value in self.pairs:
            words.append(flag)
            if value is not None:
                words.append(value)
        return words

    def flag(self, name: str, value: Any) -> None:
        """``--name value``; a bool is a switch; None leaves the tool's default."""
        if value is None or value is False:
            return
        if value is True:
            self.pairs.append((name, None))
        elif isinstance(value, (str, os.PathLike)):
            self.pairs.append((name, os.fspath(value)))
        else:
            self.pairs.append((name, _number(value)))

    def _directory(self) -> str:
        if self._inputs is None:
            self._inputs = tempfile.mkdtemp(prefix=f"ntk-{self.command}-inputs-", dir=_temporary_root())
        return self._inputs

    def _file(self, name: str) -> str:
        return os.path.join(self._directory(), name)

    def array(self, flag: str, value: Optional[ArrayOrPath], *, labels: bool = False) -> None:
        """An array flag: a path is passed on; an array is written as ``.npy`` (float32
        and float64 as they are, integer targets as int64 labels, anything else as float64)."""
        if value is None:
            return
        if isinstance(value, (str, os.PathLike)):
            self.pairs.append((flag, os.fspath(value)))
            return
        array = np.asarray(value)
        if labels and array.dtype.kind in "iu":
            array = array.astype(np.int64, copy=False)
        elif array.dtype not in (np.float32, np.float64):
            array = array.astype(np.float64)
        path = self._file(flag.strip("-") + ".npy")
        np.save(path, array, allow_pickle=False)
        self.pairs.append((flag, path))

    def model(self, model: Model, shorthand: Mapping[str, Any]) -> None:
        """``--model``: an ntk.stax model or a dict (written as JSON) or a path; and the
        shorthand flags (``--depth``, ``--width``, ...), which the tool refuses with a model."""
        if model is not None:
            if isinstance(model, stax.Layer):
                model = model.to_dict()
            if isinstance(model, Mapping):
                path = self._file("model.json")
                Path(path).write_text(json.dumps(model, allow_nan=False))
                self.pairs.append(("--model", path))
            else:
                self.pairs.append(("--model", os.fspath(model)))
        for name, value in shorthand.items():
            self.flag("--" + name.replace("_", "-"), value)

    def params(self, params: Params, model: Model) -> None:
        """``--params``: a path is passed on; a dict of arrays or a neural-tangents tree
        (converted with the model) is written as ``.npz``."""
        if params is None:
            return
        if isinstance(params, (str, os.PathLike)):
            self.pairs.append(("--params", os.fspath(params)))
            return
        arrays = parameters_of(params, model)
        path = self._file("params.npz")
        np.savez(path, **arrays)
        self.pairs.append(("--params", path))

    def key(self) -> str:
        """What the run computes: its flags, with input files by content, and without the
        flags that only say where results go. Two calls with equal keys can resume each other."""
        digest = hashlib.sha256(self.command.encode())
        for flag, value in self.pairs:
            if flag in _PLACE_FLAGS:
                continue
            digest.update(b"\0" + flag.encode() + b"\0")
            if value is None:
                continue
            if flag in _INPUT_FLAGS and os.path.isfile(value):
                content = hashlib.sha256()
                with open(value, "rb") as stream:
                    for block in iter(lambda: stream.read(1 << 20), b""):
                        content.update(block)
                digest.update(content.digest())
            else:
                digest.update(value.encode())
        return digest.hexdigest()

    def close(self) -> None:
        if self._inputs is not None:
            shutil.rmtree(self._inputs, ignore_errors=True)
            self._inputs = None


def _engine(invocation: _Invocation, *, tile: Optional[int], method: Optional[str],
            precision: Optional[str], cache_mb: Optional[int], checkpoint: Optional[PathLike],
            checkpointing: bool, memory_budget_mb: Optional[int]) -> None:
    invocation.flag("--tile", tile)
    invocation.flag("--method", method)
    invocation.flag("--precision", precision)
    invocation.flag("--cache-mb", cache_mb)
    invocation.flag("--checkpoint", checkpoint)
    invocation.flag("--no-checkpoint", not checkpointing)
    invocation.flag("--memory-budget-mb", memory_budget_mb)


def _execute(invocation: _Invocation, result_class: Type[R], *, out: Optional[PathLike], force: bool,
             resume: bool, progress: Progress, verbose: bool, ranks: Optional[int],
             launcher: Optional[str], launcher_args: Sequence[str], env: Optional[Mapping[str, str]],
             binary: Optional[PathLike], timeout: Optional[float], extra_args: Sequence[str],
             checkpoint: Optional[PathLike]) -> R:
    """Runs the command and returns its result, or raises its error (see the module's doc)."""
    try:
        executable = find_binary(binary)
        owned = out is None
        key: Optional[str] = None
        if owned:
            kept = None
            if resume and checkpoint is None:
                key = invocation.key()
                with _pending_lock:
                    kept = _pending.pop(key, None)
            directory = kept or tempfile.mkdtemp(prefix=f"ntk-{invocation.command}-", dir=_temporary_root())
        else:
            directory = os.fspath(out)
        invocation.flag("--out", directory)
        invocation.flag("--force", force)
        invocation.flag("--resume", resume)
        invocation.flag("--progress" if progress else "--no-progress", True)
        arguments = invocation.arguments + [str(a) for a in extra_args]
        command = launch_command(executable, arguments, ranks=ranks, launcher=launcher,
                                 launcher_args=[str(a) for a in launcher_args])
        environment = launch_environment(command, executable, env=env)
        try:
            completed = run(command, launched=command[0] != executable, env=environment,
                            progress=progress, timeout=timeout)
        except BaseException:
            if owned:
                shutil.rmtree(directory, ignore_errors=True)
            raise
        if completed.status == 0:
            if verbose and completed.stdout:
                print(completed.stdout, end="", flush=True)
            return result_class(directory, owned=owned, command=command, stdout=completed.stdout,
                                stderr=completed.stderr)
        error: NTKError = error_for(completed.status, completed.stderr, command, out=directory)
        if completed.timed_out:
            error.message = f"{error.message} (stopped by ntk after timeout={timeout} s)"
        if isinstance(error, Interrupted) and owned:
            with _pending_lock:
                _pending[key or invocation.key()] = directory
        elif owned:
            shutil.rmtree(directory, ignore_errors=True)
        if completed.stop_requested and not completed.timed_out:
            raise error from KeyboardInterrupt()
        raise error
    finally:
        invocation.close()


def gram(x: ArrayOrPath, x2: Optional[ArrayOrPath] = None, *, model: Model = None, params: Params = None,
         seed: Optional[int] = None, seeds: Union[str, Sequence[int], None] = None,
         kernel: str = "empirical", output_kernel: str = "mean",
         eigen: str = "values", eigen_solver: Optional[str] = None, eigen_top: Optional[int] = None,
         density_probes: Optional[int] = None, density_steps: Optional[int] = None,
         kernel_storage: Optional[str] = None,
         depth: Optional[int] = None, width: Optional[int] = None, activation: Optional[str] = None,
         w_std: Optional[float] = None, b_std: Union[float, str, None] = None, out_dim: Optional[int] = None,
         parameterization: Optional[str] = None,
         tile: Optional[int] = None, method: Optional[str] = None, precision: Optional[str] = None,
         cache_mb: Optional[int] = None, checkpoint: Optional[PathLike] = None, checkpointing: bool = True,
         resume: bool = False, memory_budget_mb: Optional[int] = None,
         out: Optional[PathLike] = None, force: bool = False, progress: Progress = True, verbose: bool = False,
         ranks: Optional[int] = None, launcher: Optional[str] = None, launcher_args: Sequence[str] = (),
         env: Optional[Mapping[str, str]] = None, binary: Optional[PathLike] = None,
         timeout: Optional[float] = None, extra_args: Sequence[str] = ()) -> GramResult:
    """The kernel of a network over a data set: ``ntk gram``.

    Args:
        x: (N, d) inputs (an array, float64 or float32 kept as is, or an ``.npy`` path).
        x2: (M, d) inputs for the cross kernel Θ(x, x2), (N, M); no eigendecomposition then.
        model: an :mod:`ntk.stax` model, a model dict, or a JSON path; None: the tool's
            default network, or the shorthand ``depth``, ``width``, ``activation``,
            ``w_std``, ``b_std`` (a number, or ``'none'``), ``out_dim``, ``parameterization``.
        params: a dict ``W0, b0, ...`` of arrays, an ``.npz`` path, or a neural-tangents
            parameter tree of ``model``; None draws them with ``seed`` (the tool's default 0).
        kernel: ``'empirical'``, ``'analytic'`` (infinite-width NTK) or ``'nngp'``.
        output_kernel: ``'mean'`` (neural-tangents' default), ``'sum'`` or ``'full'`` (N, N, k, k).
        eigen: ``'none'``, ``'values'``, ``'vectors'`` or ``'density'`` (the spectral density
            and its diagnostics by stochastic Lanczos quadrature on the distributed kernel:
            ``.spectrum_density``, ``.summary['density']``; ``density_probes``,
            ``density_steps``); ``eigen_solver``: ``'auto'``, ``'lapack'``, ``'krylov'``,
            ``'scalapack'`` or ``'elpa'``; ``eigen_top``: only the K largest eigenpairs.
        kernel_storage: for block Lanczos (``eigen_top``) and ``eigen='density'``: ``'memory'``
            (each rank keeps its tiles), ``'disk'`` (out of core: the kernel stays in
            kernel.npy and every product streams it back) or ``'auto'`` (the default: disk
            only when the tiles do not fit); ``.summary['out_of_core']`` records the reads.
        tile, method, precision, cache_mb, checkpoint, memory_budget_mb: the engine's
            flags (``ntk gram --help``); ``checkpointing=False`` is ``--no-checkpoint``.
        resume: continue an interrupted run of the same arguments from its saved tiles.
        out: the output directory, kept; None: a temporary one that the result owns.
        force: replace a result already in ``out``.
        progress: True (the tool's progress lines on stderr while it runs), False, or a
            callable given each stderr line.
        verbose: print the tool's report (its stdout) after the run.
        ranks: None for one process; K for ``mpirun -np K`` (``--oversubscribe`` when K
            exceeds the cores, ``--bind-to none``), or ``srun -n K`` with ``launcher='srun'``.
        launcher: None, ``'mpirun'``, ``'srun'`` or ``'none'``; ``launcher_args``: its extra flags.
        env: variables added to this process's environment for the run.
        binary: the ``ntk`` binary (default: ``NTK_BIN``, the PATH, the repository's build).
        timeout: seconds after which the run is stopped as by Ctrl-C (resumable).
        extra_args: more flags, verbatim.

    Returns:
        A :class:`~ntk.results.GramResult`: ``.kernel``, ``.eigenvalues``,
        ``.eigenvectors``, ``.outputs``, ``.outputs2``, ``.summary``.

    Raises:
        UsageError (64), InputError (65, 66), InternalError (70), OutputError (73, 74),
        Interrupted (75), NTKError (others), BinaryNotFound.
    """
    invocation = _Invocation("gram")
    try:
        invocation.array("--data", x)
        invocation.array("--data2", x2)
        invocation.model(model, dict(depth=depth, width=width, activation=activation, w_std=w_std, b_std=b_std,
                                     out_dim=out_dim, parameterization=parameterization))
        invocation.params(params, model)
        invocation.flag("--seed", seed)
        invocation.flag("--seeds", _list(seeds))
        invocation.flag("--kernel", kernel)
        invocation.flag("--output-kernel", output_kernel)
        invocation.flag("--eigen", eigen)
        invocation.flag("--eigen-solver", eigen_solver)
        invocation.flag("--eigen-top", eigen_top)
        invocation.flag("--kernel-storage", kernel_storage)
        invocation.flag("--density-probes", density_probes)
        invocation.flag("--density-steps", density_steps)
        _engine(invocation, tile=tile, method=method, precision=precision, cache_mb=cache_mb,
                checkpoint=checkpoint, checkpointing=checkpointing, memory_budget_mb=memory_budget_mb)
    except BaseException:
        invocation.close()
        raise
    return _execute(invocation, GramResult, out=out, force=force, resume=resume, progress=progress,
                    verbose=verbose, ranks=ranks, launcher=launcher, launcher_args=launcher_args, env=env,
                    binary=binary, timeout=timeout, extra_args=extra_args, checkpoint=checkpoint)


def predict(x_train: ArrayOrPath, y_train: ArrayOrPath, x_test: Optional[ArrayOrPath] = None,
            y_test: Optional[ArrayOrPath] = None, *, learning_rate: float = 1.0,
            times: Union[str, Sequence[float], None] = None, steps: Union[str, Sequence[int], None] = None,
            diag_reg: Optional[float] = None, diag_reg_absolute: bool = False, kernel: str = "empirical",
            f0_zero: bool = False, keep_kernels: bool = False, solver: Optional[str] = None,
            cg_tolerance: Optional[float] = None, cg_max_iterations: Optional[int] = None,
            cg_preconditioner_rank: Optional[int] = None, kernel_storage: Optional[str] = None,
            model: Model = None, params: Params = None, seed: Optional[int] = None,
            depth: Optional[int] = None, width: Optional[int] = None, activation: Optional[str] = None,
            w_std: Optional[float] = None, b_std: Union[float, str, None] = None, out_dim: Optional[int] = None,
            parameterization: Optional[str] = None,
            tile: Optional[int] = None, method: Optional[str] = None, precision: Optional[str] = None,
            cache_mb: Optional[int] = None, checkpoint: Optional[PathLike] = None, checkpointing: bool = True,
            resume: bool = False, memory_budget_mb: Optional[int] = None,
            out: Optional[PathLike] = None, force: bool = False, progress: Progress = True, verbose: bool = False,
            ranks: Optional[int] = None, launcher: Optional[str] = None, launcher_args: Sequence[str] = (),
            env: Optional[Mapping[str, str]] = None, binary: Optional[PathLike] = None,
            timeout: Optional[float] = None, extra_args: Sequence[str] = ()) -> PredictResult:
    """How the linearized network learns: ``ntk predict`` (neural-tangents'
    ``predict.gradient_descent_mse``: loss (1/(2c))‖f − Y‖², c = N·k).

    Args:
        x_train, y_train: (N, d) inputs and targets: floats (N,) or (N, k), or integer class
            labels (N,) (one-hot over the model's k outputs; accuracy is reported).
        x_test, y_test: test inputs (M, d) and targets.
        learning_rate: η. ``times``: gradient-flow times (``math.inf`` or ``'inf'`` is kernel
            regression; the tool's default ``[inf]``); ``steps``: discrete step counts.
        diag_reg: r, adding r·trace(Θ)/N to the diagonal (r itself with ``diag_reg_absolute``).
        kernel: ``'empirical'``, ``'analytic'`` (the infinite-width NTK, f₀ = 0) or ``'nngp'``
            (the infinite-width NNGP ensemble, neural-tangents'
            ``gradient_descent_mse_ensemble(..., get='nngp')``: means and variances; at t = inf
            the Gaussian-process posterior).
        f0_zero: start from f₀ = 0 (t = inf is then plain kernel regression Θ(X*, X) Θ⁻¹ Y).
        keep_kernels: also keep Θ(X, X), Θ(X*, X) and Θ(X, X)'s eigenvalues.
        solver: ``'auto'`` (the tool's default), ``'eigen'`` or ``'cg'`` (t = inf by
            preconditioned conjugate gradients on the distributed kernels, which no rank
            gathers; ``cg_tolerance``, ``cg_max_iterations``, ``cg_preconditioner_rank``;
            ``.summary['cg']`` records the solve); with it ``kernel_storage='disk'`` keeps
            the kernels on disk (out of core; ``keep_kernels`` then keeps those files).
        Everything else: as :func:`gram`.

    Returns:
        A :class:`~ntk.results.PredictResult`: ``.train_predictions`` (T, N, k),
        ``.test_predictions`` (T, M, k), ``.metrics``, ``.summary`` (spectral diagnostics),
        ``.report``; ``.train_variance`` (T, N) and ``.test_variance`` (T, M) for ``'nngp'``;
        ``.train_kernel``, ``.test_kernel``, ``.eigenvalues`` with ``keep_kernels``.
    """
    invocation = _Invocation("predict")
    try:
        invocation.array("--train", x_train)
        invocation.array("--targets", y_train, labels=True)
        invocation.array("--test", x_test)
        invocation.array("--test-targets", y_test, labels=True)
        invocation.model(model, dict(depth=depth, width=width, activation=activation, w_std=w_std, b_std=b_std,
                                     out_dim=out_dim, parameterization=parameterization))
        invocation.params(params, model)
        invocation.flag("--seed", seed)
        invocation.flag("--kernel", kernel)
        invocation.flag("--f0-zero", f0_zero)
        invocation.flag("--keep-kernels", keep_kernels)
        invocation.flag("--learning-rate", learning_rate)
        invocation.flag("--times", _list(times))
        invocation.flag("--steps", _list(steps))
        invocation.flag("--diag-reg", diag_reg)
        invocation.flag("--diag-reg-absolute", diag_reg_absolute)
        invocation.flag("--solver", solver)
        invocation.flag("--cg-tolerance", cg_tolerance)
        invocation.flag("--cg-max-iterations", cg_max_iterations)
        invocation.flag("--cg-preconditioner-rank", cg_preconditioner_rank)
        invocation.flag("--kernel-storage", kernel_storage)
        _engine(invocation, tile=tile, method=method, precision=precision, cache_mb=cache_mb,
                checkpoint=checkpoint, checkpointing=checkpointing, memory_budget_mb=memory_budget_mb)
    except BaseException:
        invocation.close()
        raise
    return _execute(invocation, PredictResult, out=out, force=force, resume=resume, progress=progress,
                    verbose=verbose, ranks=ranks, launcher=launcher, launcher_args=launcher_args, env=env,
                    binary=binary, timeout=timeout, extra_args=extra_args, checkpoint=checkpoint)


def train(x_train: ArrayOrPath, y_train: ArrayOrPath, x_test: Optional[ArrayOrPath] = None,
          y_test: Optional[ArrayOrPath] = None, *, learning_rate: float = 1.0,
          steps: Union[str, Sequence[int], None] = None,
          model: Model = None, params: Params = None, seed: Optional[int] = None,
          depth: Optional[int] = None, width: Optional[int] = None, activation: Optional[str] = None,
          w_std: Optional[float] = None, b_std: Union[float, str, None] = None, out_dim: Optional[int] = None,
          parameterization: Optional[str] = None,
          tile: Optional[int] = None, method: Optional[str] = None, precision: Optional[str] = None,
          cache_mb: Optional[int] = None, checkpoint: Optional[PathLike] = None, checkpointing: bool = True,
          resume: bool = False, memory_budget_mb: Optional[int] = None,
          out: Optional[PathLike] = None, force: bool = False, progress: Progress = True, verbose: bool = False,
          ranks: Optional[int] = None, launcher: Optional[str] = None, launcher_args: Sequence[str] = (),
          env: Optional[Mapping[str, str]] = None, binary: Optional[PathLike] = None,
          timeout: Optional[float] = None, extra_args: Sequence[str] = ()) -> TrainResult:
    """The finite network trained by full-batch gradient descent against its NTK
    prediction: ``ntk train``.

    Args:
        steps: the step counts to record (training runs to the largest; the tool's default
            0, 10, 100, 1000). Everything else: as :func:`predict`.

    Returns:
        A :class:`~ntk.results.TrainResult`: ``.train_outputs``, ``.ntk_train_predictions``,
        ``.test_outputs``, ``.ntk_test_predictions`` (T, ·, k), ``.trained_params``,
        ``.summary`` (``training.json``).
    """
    invocation = _Invocation("train")
    try:
        invocation.array("--train", x_train)
        invocation.array("--targets", y_train, labels=True)
        invocation.array("--test", x_test)
        invocation.array("--test-targets", y_test, labels=True)
        invocation.model(model, dict(depth=depth, width=width, activation=activation, w_std=w_std, b_std=b_std,
                                     out_dim=out_dim, parameterization=parameterization))
        invocation.params(params, model)
        invocation.flag("--seed", seed)
        invocation.flag("--learning-rate", learning_rate)
        invocation.flag("--steps", _list(steps))
        _engine(invocation, tile=tile, method=method, precision=precision, cache_mb=cache_mb,
                checkpoint=checkpoint, checkpointing=checkpointing, memory_budget_mb=memory_budget_mb)
    except BaseException:
        invocation.close()
        raise
    return _execute(invocation, TrainResult, out=out, force=force, resume=resume, progress=progress,
                    verbose=verbose, ranks=ranks, launcher=launcher, launcher_args=launcher_args, env=env,
                    binary=binary, timeout=timeout, extra_args=extra_args, checkpoint=checkpoint)


def converge(x: ArrayOrPath, *, widths: Union[str, Sequence[int], None] = None,
             seeds: Union[str, Sequence[int], None] = None, model: Model = None,
             depth: Optional[int] = None, width: Optional[int] = None, activation: Optional[str] = None,
             w_std: Optional[float] = None, b_std: Union[float, str, None] = None, out_dim: Optional[int] = None,
             parameterization: Optional[str] = None,
             tile: Optional[int] = None, method: Optional[str] = None, precision: Optional[str] = None,
             cache_mb: Optional[int] = None, checkpoint: Optional[PathLike] = None, checkpointing: bool = True,
             resume: bool = False, memory_budget_mb: Optional[int] = None,
             out: Optional[PathLike] = None, force: bool = False, progress: Progress = True, verbose: bool = False,
             ranks: Optional[int] = None, launcher: Optional[str] = None, launcher_args: Sequence[str] = (),
             env: Optional[Mapping[str, str]] = None, binary: Optional[PathLike] = None,
             timeout: Optional[float] = None, extra_args: Sequence[str] = ()) -> ConvergeResult:
    """The empirical NTK against the infinite-width NTK as every hidden layer widens:
    ``ntk converge``.

    Args:
        x: (N, d) inputs.
        widths: hidden widths (the tool's default 64, 128, 256, 512, 1024).
        seeds: seeds per width (the tool's default 0, 1, 2).
        Everything else: as :func:`gram`.

    Returns:
        A :class:`~ntk.results.ConvergeResult`: ``.points``, ``.mean_by_width``, ``.slope``,
        ``.summary`` (``converge.json``); ``converge.csv``, ``converge.svg`` (and ``converge.png``) in ``.out``.
    """
    invocation = _Invocation("converge")
    try:
        invocation.array("--data", x)
        invocation.model(model, dict(depth=depth, width=width, activation=activation, w_std=w_std, b_std=b_std,
                                     out_dim=out_dim, parameterization=parameterization))
        invocation.flag("--widths", _list(widths))
        invocation.flag("--seeds", _list(seeds))
        _engine(invocation, tile=tile, method=method, precision=precision, cache_mb=cache_mb,
                checkpoint=checkpoint, checkpointing=checkpointing, memory_budget_mb=memory_budget_mb)
    except BaseException:
        invocation.close()
        raise
    return _execute(invocation, ConvergeResult, out=out, force=force, resume=resume, progress=progress,
                    verbose=verbose, ranks=ranks, launcher=launcher, launcher_args=launcher_args, env=env,
                    binary=binary, timeout=timeout, extra_args=extra_args, checkpoint=checkpoint)


def init(model: Model = None, *, input_width: Optional[int] = None, data: Optional[ArrayOrPath] = None,
         seed: Optional[int] = None,
         depth: Optional[int] = None, width: Optional[int] = None, activation: Optional[str] = None,
         w_std: Optional[float] = None, b_std: Union[float, str, None] = None, out_dim: Optional[int] = None,
         parameterization: Optional[str] = None,
         out: Optional[PathLike] = None, force: bool = False, env: Optional[Mapping[str, str]] = None,
         binary: Optional[PathLike] = None, extra_args: Sequence[str] = ()) -> InitResult:
    """The parameters that ``--seed`` draws: ``ntk init``.

    Args:
        model: as :func:`gram` (or the shorthand flags).
        input_width: d; or ``data``, whose width is taken (exactly one of the two).
        seed: the seed (the tool's default 0).
        out: the ``.npz`` file to write (kept); None: a temporary file the result owns.
        force: replace an existing ``out``.

    Returns:
        An :class:`~ntk.results.InitResult`: ``.params`` (``{"W0": ..., "b0": ..., ...}``).
    """
    invocation = _Invocation("init")
    try:
        invocation.model(model, dict(depth=depth, width=width, activation=activation, w_std=w_std, b_std=b_std,
                                     out_dim=out_dim, parameterization=parameterization))
        invocation.flag("--seed", seed)
        invocation.flag("--input-width", input_width)
        invocation.array("--data", data)
        executable = find_binary(binary)
        owned = out is None
        directory = tempfile.mkdtemp(prefix="ntk-init-", dir=_temporary_root()) if owned else None
        file = os.path.join(directory, "params.npz") if directory else os.fspath(out)  # type: ignore[arg-type]
        invocation.flag("--out", file)
        invocation.flag("--force", force)
        command = [executable, *invocation.arguments, *[str(a) for a in extra_args]]
        try:
            completed = run(command, launched=False, env=launch_environment(command, executable, env=env))
        except BaseException:
            if directory:
                shutil.rmtree(directory, ignore_errors=True)
            raise
        if completed.status != 0:
            if directory:
                shutil.rmtree(directory, ignore_errors=True)
            raise error_for(completed.status, completed.stderr, command)
        return InitResult(directory or os.path.dirname(os.path.abspath(file)), file, owned=owned,
                          command=command, stdout=completed.stdout, stderr=completed.stderr)
    finally:
        invocation.close()
