"""ntk from Python: the empirical and infinite-width Neural Tangent Kernel on every core.

The package runs the ``ntk`` binary (one process, ``mpirun -np K`` or ``srun``) and
reads its outputs memory-mapped::

    import ntk
    from ntk import stax

    model = stax.serial(stax.Dense(512, W_std=2**0.5, b_std=0.1), stax.Relu(),
                        stax.Dense(10, W_std=2**0.5, b_std=0.1))
    with ntk.gram(x, model=model, seed=0, ranks=2) as result:
        print(result.eigenvalues[-5:], result.summary["spectrum"])

Commands: :func:`gram`, :func:`predict`, :func:`train`, :func:`converge`, :func:`init`;
failures raise the classes of :mod:`ntk.errors`; :func:`stop` stops the runs in progress
(as Ctrl-C does) with their finished tiles saved for ``resume=True``.
"""
from . import convert, stax
from ._launch import find_binary, stop
from .api import converge, gram, init, predict, train
from .errors import (BinaryNotFound, InputError, InternalError, Interrupted, NTKError, OutputError,
                     UsageError)
from .results import ConvergeResult, GramResult, InitResult, PredictResult, Result, TrainResult

__version__ = "0.1.0"

__all__ = [
    "gram", "predict", "train", "converge", "init", "stop", "find_binary",
    "stax", "convert",
    "NTKError", "UsageError", "InputError", "OutputError", "Interrupted", "InternalError", "BinaryNotFound",
    "Result", "GramResult", "PredictResult", "TrainResult", "ConvergeResult", "InitResult",
]
