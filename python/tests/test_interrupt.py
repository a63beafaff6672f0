"""Ctrl-C and ntk.stop() stop every rank at a tile boundary (status 75, finished tiles
saved); resume=True continues and gives the uninterrupted kernel bit for bit.

NTK_TILE_DELAY_MS=200 makes each tile last 200 ms (the tool's test hook), so that 24
samples in tiles of 4 (21 tiles) take about 4 s and a stop lands in the middle."""
from __future__ import annotations

import _thread
import importlib.util
import os
import shutil
import threading
import time

import numpy as np
import pytest

import ntk

SLOW = {"NTK_TILE_DELAY_MS": "200"}
OPTIONS = dict(width=16, tile=4, eigen="values")
TILES = 21




def _saved_tiles(checkpoint):
    """The whole tile records in a checkpoint's logs (cluster/checkpoint-tiles.py)."""
    spec = importlib.util.spec_from_file_location(
        "checkpoint_tiles", os.path.join(os.path.dirname(__file__), "..", "..", "cluster", "checkpoint-tiles.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.count(checkpoint)

def _after_first_progress_line(action, lines):
    """A progress callback that records lines and runs ``action`` 0.5 s after the first
    tile is reported."""
    started = threading.Event()

    def callback(line: str) -> None:
        lines.append(line)
        if line.startswith("ntk: tiles") and not started.is_set():
            started.set()
            threading.Timer(0.5, action).start()
    return callback


@pytest.fixture(scope="module")
def data(digits):
    x = digits[:24]
    with ntk.gram(x, progress=False, **OPTIONS) as reference:
        return x, np.array(reference.kernel), np.array(reference.eigenvalues)


def test_ctrl_c_stops_the_run_and_resume_continues_it_bitwise(data):
    x, kernel, eigenvalues = data
    lines = []
    start = time.monotonic()
    with pytest.raises(ntk.Interrupted) as caught:
        ntk.gram(x, env=SLOW, progress=_after_first_progress_line(_thread.interrupt_main, lines), **OPTIONS)
    assert time.monotonic() - start < TILES * 0.2  # stopped before the end
    error = caught.value
    assert error.status == 75 and isinstance(error.__cause__, KeyboardInterrupt)
    assert error.message.startswith("ntk: error: stopped by SIGINT after ")
    assert "resume=True" in str(error)
    saved = _saved_tiles(error.checkpoint)
    assert 0 < saved < TILES
    assert any(line.startswith("ntk: tiles") for line in lines)
    with ntk.gram(x, resume=True, progress=False, **OPTIONS) as resumed:
        assert 0 < resumed.summary["tiles_reused"] < TILES
        assert np.array_equal(resumed.kernel, kernel)
        assert np.array_equal(resumed.eigenvalues, eigenvalues)
        assert str(resumed.out) == error.out  # the kept temporary directory, now owned by the result
    assert not os.path.exists(error.out)


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun is not installed")
def test_stop_reaches_every_rank_under_mpirun_and_any_rank_count_resumes(data, tmp_path):
    x, kernel, _ = data
    out = tmp_path / "run"
    with pytest.raises(ntk.Interrupted) as caught:
        ntk.gram(x, env=SLOW, ranks=2, out=out, timeout=120,
                 progress=_after_first_progress_line(ntk.stop, []), **OPTIONS)
    error = caught.value
    assert error.message.startswith("ntk: error: stopped by SIGUSR1 after ")
    assert error.out == str(out) and error.checkpoint == str(out / "checkpoint")
    with ntk.gram(x, resume=True, out=out, progress=False, **OPTIONS) as resumed:
        assert 0 < resumed.summary["tiles_reused"] < TILES
        assert np.array_equal(resumed.kernel, kernel)
    assert (out / "kernel.npy").exists() and not (out / "checkpoint").exists()


def test_a_timeout_stops_the_run_resumably(data):
    x, kernel, _ = data
    with pytest.raises(ntk.Interrupted, match="timeout=1.5") as caught:
        ntk.gram(x, env=SLOW, timeout=1.5, progress=False, **OPTIONS)
    assert caught.value.__cause__ is None
    with ntk.gram(x, resume=True, progress=False, **OPTIONS) as resumed:
        assert resumed.summary["tiles_reused"] > 0
        assert np.array_equal(resumed.kernel, kernel)
