"""The tool's exit statuses as Python exceptions.

The tool prints exactly one ``ntk: error: ...`` line on stderr when it fails and exits
with a status of its own (README, "Exit statuses"). :func:`error_for` turns that status
and line into one of the classes below; the line is the exception's message.
"""
from __future__ import annotations

from typing import Optional, Sequence

__all__ = [
    "NTKError", "UsageError", "InputError", "OutputError", "Interrupted", "InternalError",
    "BinaryNotFound", "error_for",
]


class NTKError(Exception):
    """A failed run of the tool.

    Attributes:
        message: the tool's ``ntk: error: ...`` line (or, when the tool printed none,
            the last lines of its stderr).
        status: the exit status (negative: killed by that signal).
        stderr: everything the run printed on stderr (mpirun's own lines included).
        command: the command line that ran.
    """

    def __init__(self, message: str, status: int, *, stderr: str = "",
                 command: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.stderr = stderr
        self.command = list(command)

    def __str__(self) -> str:
        return self.message


class UsageError(NTKError):
    """Status 64: bad flags or flag combinations, or a memory plan over the budget."""


class InputError(NTKError):
    """Status 65 (an input is malformed or inconsistent) or 66 (an input is missing or unreadable)."""


class OutputError(NTKError):
    """Status 73 (the output cannot be created or is held by another run) or 74 (I/O error while writing)."""


class InternalError(NTKError):
    """Status 70: an internal error (a failed eigendecomposition check included)."""


class Interrupted(NTKError):
    """Status 75: the run was stopped at a tile boundary and can be resumed.

    Attributes:
        checkpoint: the directory holding the finished tiles (None when checkpointing was off).
        out: the output directory of the stopped run; it is kept, also when it was a
            temporary directory, so that ``resume=True`` can continue it.
    """

    def __init__(self, message: str, status: int = 75, *, stderr: str = "",
                 command: Sequence[str] = (), checkpoint: Optional[str] = None,
                 out: Optional[str] = None) -> None:
        super().__init__(message, status, stderr=stderr, command=command)
        self.checkpoint = checkpoint
        self.out = out

    def __str__(self) -> str:
        return (f"{self.message}\n(from Python: call again with the same arguments and resume=True"
                f"{'' if self.out is None else f'; the run is kept in {self.out}'})")


class BinaryNotFound(FileNotFoundError):
    """The ``ntk`` binary or the requested launcher (mpirun, srun) was not found."""


_CLASSES = {64: UsageError, 65: InputError, 66: InputError, 70: InternalError,
            73: OutputError, 74: OutputError, 75: Interrupted}


def error_for(status: int, stderr: str, command: Sequence[str] = (), *,
              out: Optional[str] = None) -> NTKError:
    """The exception for a run that exited with ``status`` and printed ``stderr``."""
    lines = stderr.splitlines()
    tool_lines = [line.strip() for line in lines if line.lstrip().startswith("ntk: error:")]
    if tool_lines:
        message = tool_lines[0]
    else:
        tail = [line for line in lines if line.strip()][-5:]
        how = f"killed by signal {-status}" if status < 0 else f"exit status {status}"
        message = f"ntk failed ({how})" + (": " + " | ".join(tail) if tail else "")
    cls = _CLASSES.get(status, NTKError)
    if cls is Interrupted:
        return Interrupted(message, status, stderr=stderr, command=command,
                           checkpoint=_checkpoint_in(message), out=out)
    return cls(message, status, stderr=stderr, command=command)


def _checkpoint_in(message: str) -> Optional[str]:
    """The checkpoint directory named by the tool's "stopped by ..." line."""
    marker = "the finished tiles are saved in "
    start = message.find(marker)
    if start < 0:
        return None
    rest = message[start + len(marker):]
    end = rest.find(": rerun")
    return rest if end < 0 else rest[:end]
