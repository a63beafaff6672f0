"""Finding the binary and the launcher, and running one command of the tool.

One run is one child process: the binary itself (``ranks=None``), ``mpirun -np K``, or
``srun -n K``. The child gets its own process group, so that a Ctrl-C in a terminal or
a notebook reaches Python only; Python then asks the run to stop (SIGINT to the tool,
SIGUSR1 to a launcher, which forwards it to every rank), and every rank stops at its
next tile boundary with status 75 and its finished tiles in the checkpoint.
"""
from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Mapping, Optional, Sequence, Union

from .errors import BinaryNotFound

__all__ = ["find_binary", "launch_command", "launch_environment", "run", "stop", "Completed", "Progress"]

#: Environment variable naming the binary.
BINARY_VARIABLE = "NTK_BIN"

#: A progress setting: True (relay the tool's progress lines to stderr), False, or a
#: callable that receives each line of the tool's stderr except its error line.
Progress = Union[bool, Callable[[str], None]]


def _repository_root() -> Optional[Path]:
    """The repository holding this package when it is installed from a checkout (editable)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "Package.swift").is_file() and (parent / "Sources" / "ntk").is_dir():
            return parent
    return None


def find_binary(binary: Union[str, os.PathLike, None] = None) -> str:
    """The ``ntk`` binary to run.

    In order: ``binary`` if given; the environment variable ``NTK_BIN``; ``ntk`` on the
    PATH; the release, then the debug build of the repository this package was
    installed from (``.build/release/ntk``, ``.build/debug/ntk``).

    Raises:
        BinaryNotFound: none of these is an executable file.
    """
    explicit = binary if binary is not None else os.environ.get(BINARY_VARIABLE) or None
    if explicit is not None:
        path = Path(explicit).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return str(path.resolve())
        found = shutil.which(str(explicit))
        if found:
            return found
        origin = "binary=" if binary is not None else f"{BINARY_VARIABLE}="
        raise BinaryNotFound(f"{origin}{explicit} is not an executable file")
    found = shutil.which("ntk")
    if found:
        return found
    searched = ["the PATH"]
    root = _repository_root()
    if root is not None:
        for configuration in ("release", "debug"):
            path = root / ".build" / configuration / "ntk"
            searched.append(str(path))
            if path.is_file() and os.access(path, os.X_OK):
                return str(path)
    raise BinaryNotFound(
        f"the ntk binary was not found (searched {', '.join(searched)}): build it with "
        f"`swift build -c release` in the repository, put it on the PATH, or set {BINARY_VARIABLE}")


@functools.lru_cache(maxsize=8)
def _is_open_mpi(mpirun: str) -> bool:
    """Whether ``mpirun`` is Open MPI's (its flags differ from MPICH's Hydra)."""
    try:
        text = subprocess.run([mpirun, "--version"], capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "Open MPI" in text or "OpenRTE" in text


def launch_command(binary: str, arguments: Sequence[str], *, ranks: Optional[int] = None,
                   launcher: Optional[str] = None, launcher_args: Sequence[str] = (),
                   environ: Optional[Mapping[str, str]] = None,
                   cpu_count: Optional[int] = None) -> List[str]:
    """The command line of one run.

    Args:
        binary: the ``ntk`` binary.
        arguments: the tool's arguments (``["gram", "--data", ...]``).
        ranks: None for one process without MPI's launcher; K for K ranks.
        launcher: None (one process for ``ranks=None``, else ``mpirun``), ``"mpirun"``,
            ``"srun"`` (inside a Slurm allocation) or ``"none"`` (one process).
        launcher_args: extra arguments for the launcher (a hostfile, ``--map-by``, ...).
        environ: the environment to look the launcher up in (default: os.environ).
        cpu_count: the cores of this machine (default: os.cpu_count()); with Open MPI,
            more ranks than cores adds ``--oversubscribe``.

    Raises:
        ValueError: an unknown launcher, a rank count below 1, or ``srun`` outside Slurm.
        BinaryNotFound: the launcher is not on the PATH.
    """
    environ = os.environ if environ is None else environ
    if ranks is not None and (not isinstance(ranks, int) or isinstance(ranks, bool) or ranks < 1):
        raise ValueError(f"ranks must be a positive integer or None, got {ranks!r}")
    if launcher is None:
        launcher = "none" if ranks is None else "mpirun"
    if launcher == "none":
        if ranks not in (None, 1):
            raise ValueError(f"launcher='none' runs one process; ranks={ranks} needs mpirun or srun")
        return [binary, *arguments]
    count = 1 if ranks is None else ranks
    if launcher == "mpirun":
        name = environ.get("NTK_MPIRUN", "mpirun")
        mpirun = shutil.which(name, path=environ.get("PATH"))
        if mpirun is None:
            raise BinaryNotFound(f"{name} is not on the PATH (install Open MPI, or run with ranks=None)")
        command = [mpirun, "-np", str(count)]
        if _is_open_mpi(mpirun):
            command += ["--bind-to", "none"]
            if count > (cpu_count or os.cpu_count() or 1):
                command.append("--oversubscribe")
        return [*command, *launcher_args, binary, *arguments]
    if launcher == "srun":
        if not environ.get("SLURM_JOB_ID"):
            raise ValueError("launcher='srun' runs inside a Slurm allocation, and SLURM_JOB_ID is not set")
        srun = shutil.which("srun", path=environ.get("PATH"))
        if srun is None:
            raise BinaryNotFound("srun is not on the PATH")
        return [srun, "-n", str(count), *launcher_args, binary, *arguments]
    raise ValueError(f"launcher must be None, 'mpirun', 'srun' or 'none', got {launcher!r}")


def launch_environment(command: Sequence[str], binary: str, *,
                       env: Optional[Mapping[str, str]] = None,
                       base: Optional[Mapping[str, str]] = None) -> dict:
    """The environment of one run: this process's, then ``env`` on top.

    Under mpirun as root, Open MPI's two permission variables are set (Open MPI refuses
    root otherwise); with several ranks, one OpenBLAS thread per rank. A value already
    set is kept.
    """
    result = dict(os.environ if base is None else base)
    if env:
        result.update({key: str(value) for key, value in env.items()})
    launched = command[0] != binary
    if launched and Path(command[0]).name != "srun" and _is_root():
        result.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        result.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    if launched:
        result.setdefault("OPENBLAS_NUM_THREADS", "1")
    return result


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


#: The runs in progress in this process: (process, launched).
_active: "set[tuple[subprocess.Popen, bool]]" = set()
_active_lock = threading.Lock()


def stop() -> int:
    """Asks every run in progress in this process to stop at its next tile boundary, as a
    Ctrl-C does; each then raises :class:`ntk.Interrupted` (status 75) in its caller,
    with its finished tiles saved for ``resume=True``. Safe to call from any thread.

    Returns:
        The number of runs asked to stop.
    """
    with _active_lock:
        runs = list(_active)
    for process, launched in runs:
        request_stop(process, launched=launched)
    return len(runs)


@dataclass
class Completed:
    """What one run left: its status and output.

    ``stop_requested`` is True when Python asked the run to stop (Ctrl-C or timeout).
    """
    command: List[str]
    status: int
    stdout: str
    stderr: str
    stop_requested: bool = False
    timed_out: bool = False


def _set_parent_death_signal() -> None:
    """In the child: SIGTERM when the Python process dies (Linux), so an orphaned run
    stops at a tile boundary instead of running on."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort, not every libc has prctl
        pass


def _relay(progress: Progress) -> Callable[[str], None]:
    """Where stderr lines go while the run goes on: a callable gets every line; True
    prints the tool's progress and warning lines on sys.stderr, False its warnings only.
    mpirun's own lines are kept for the exception, not printed."""
    if callable(progress):
        return progress
    prefix = "ntk: " if progress else "ntk: warning:"

    def show(line: str) -> None:
        if line.startswith(prefix):
            print(line, file=sys.stderr, flush=True)
    return show


def run(command: Sequence[str], *, launched: bool, env: Mapping[str, str], progress: Progress = False,
        timeout: Optional[float] = None, stop_timeout: float = 120.0,
        on_start: Optional[Callable[[subprocess.Popen], None]] = None) -> Completed:
    """Runs ``command`` to its end and returns what it printed.

    Stderr is read line by line while the run goes on; each line goes to ``progress``
    (True: the tool's progress and warning lines are printed on sys.stderr; a callable:
    every line but the error line). A KeyboardInterrupt (or ``timeout`` seconds) asks the
    run to stop: SIGINT to a lone tool, SIGUSR1 to a launcher, which forwards it to every
    rank. The run is then awaited for at most ``stop_timeout`` seconds (a second
    KeyboardInterrupt cuts the wait short), after which its process group is killed.

    ``launched`` says whether ``command`` starts a launcher (mpirun, srun) rather than
    the tool itself.

    Returns:
        The run's status and output; ``stop_requested`` tells whether Python stopped it.
        The caller raises the KeyboardInterrupt again when a stopped run left nothing to
        resume (its status is not 75).
    """
    command = list(command)
    relay = _relay(progress)
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=dict(env), start_new_session=True,
        preexec_fn=_set_parent_death_signal if sys.platform.startswith("linux") else None)
    entry = (process, launched)
    with _active_lock:
        _active.add(entry)
    if on_start is not None:
        on_start(process)
    out_chunks: List[bytes] = []
    err_lines: List[str] = []

    def read_stdout() -> None:
        assert process.stdout is not None
        for chunk in iter(lambda: process.stdout.read(65536), b""):
            out_chunks.append(chunk)

    def read_stderr() -> None:
        assert process.stderr is not None
        for raw in iter(process.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            err_lines.append(line)
            if not line.startswith("ntk: error:"):
                try:
                    relay(line)
                except Exception:  # noqa: BLE001 - a failing callback must not hang the run
                    pass

    readers = [threading.Thread(target=read_stdout, daemon=True),
               threading.Thread(target=read_stderr, daemon=True)]
    for reader in readers:
        reader.start()
    stop_requested = False
    timed_out = False
    interrupt: Optional[KeyboardInterrupt] = None
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            try:
                process.wait(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                if deadline is not None and time.monotonic() > deadline:
                    timed_out = True
                    raise KeyboardInterrupt from None
    except KeyboardInterrupt as caught:
        interrupt = caught
        stop_requested = True
        request_stop(process, launched=launched)
        _await_stop(process, stop_timeout)
    finally:
        if process.poll() is None:  # an exception other than KeyboardInterrupt
            _kill_group(process)
        with _active_lock:
            _active.discard(entry)
        for reader in readers:
            reader.join(timeout=10)
    completed = Completed(command=command, status=process.returncode,
                          stdout=b"".join(out_chunks).decode("utf-8", "replace"),
                          stderr="\n".join(err_lines) + ("\n" if err_lines else ""),
                          stop_requested=stop_requested, timed_out=timed_out)
    if interrupt is not None and not timed_out and completed.status != 75:
        raise interrupt
    return completed


def request_stop(process: subprocess.Popen, *, launched: bool) -> None:
    """Asks a run to stop at its next tile boundary (status 75, finished tiles saved):
    SIGUSR1 to a launcher (mpirun and srun forward it to every rank), SIGINT to a lone
    tool."""
    if process.poll() is not None:
        return
    try:
        process.send_signal(signal.SIGUSR1 if launched else signal.SIGINT)
    except ProcessLookupError:
        pass


def _await_stop(process: subprocess.Popen, limit: float) -> None:
    """Waits (bounded) for a run asked to stop; kills its process group past the bound or
    on a second KeyboardInterrupt."""
    try:
        process.wait(timeout=limit)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        _kill_group(process)


def _kill_group(process: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            process.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue
