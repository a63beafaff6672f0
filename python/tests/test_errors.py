"""Exit statuses as exceptions carrying the tool's one error line."""
from __future__ import annotations

import os

import numpy as np
import pytest

import ntk
from conftest import cases

X = np.random.default_rng(0).standard_normal((4, 3))


def test_a_bad_model_is_an_input_error_with_the_tools_message():
    with pytest.raises(ntk.InputError) as caught:
        ntk.gram(X, model={"layers": [{"type": "dense"}]}, progress=False)
    error = caught.value
    assert error.status == 65
    assert error.message.startswith("ntk: error: --model file ")
    assert error.message.endswith('layer 0: dense needs an integer "width"')
    assert str(error) == error.message and error.message in error.stderr
    assert error.command[1] == "gram"


def test_a_bad_flag_is_a_usage_error():
    with pytest.raises(ntk.UsageError) as caught:
        ntk.gram(X, width=8, extra_args=["--bogus"], progress=False)
    assert caught.value.status == 64
    assert caught.value.message.startswith("ntk: error: Unknown option '--bogus'")
    with pytest.raises(ntk.UsageError, match="--tile must be at least 1, got 0") as caught:
        ntk.gram(X, width=8, tile=0, progress=False)
    with pytest.raises(ntk.UsageError, match="--model excludes the shorthand flags"):
        ntk.gram(X, model=cases("empirical")[0]["dir"] / "model.json", width=8, progress=False)


def test_a_missing_input_is_an_input_error_66(tmp_path):
    with pytest.raises(ntk.InputError) as caught:
        ntk.gram(tmp_path / "missing.npy", width=8, progress=False)
    assert caught.value.status == 66 and "missing.npy" in caught.value.message


def test_an_existing_result_is_kept_unless_forced(tmp_path):
    out = tmp_path / "result"
    with ntk.gram(X, width=8, out=out, progress=False) as first:
        kernel = np.array(first.kernel)
    assert not first.owned and (out / "kernel.npy").exists()  # out= is kept after close
    with pytest.raises(ntk.OutputError) as caught:
        ntk.gram(X, width=8, seed=1, out=out, progress=False)
    assert caught.value.status == 73 and "--force" in caught.value.message
    assert np.array_equal(np.load(out / "kernel.npy"), kernel)
    with ntk.gram(X, width=8, seed=1, out=out, force=True, progress=False) as replaced:
        assert not np.array_equal(replaced.kernel, kernel)


def test_a_temporary_result_is_removed_by_close_and_its_arrays_stay_valid():
    result = ntk.gram(X, width=8, progress=False)
    kernel = result.kernel
    directory = result.out
    assert result.owned and directory.exists()
    result.close()
    assert not directory.exists()
    assert np.isfinite(np.asarray(kernel)).all() and kernel.shape == (4, 4)
    result = ntk.gram(X, width=8, progress=False)
    directory = result.out
    del result
    import gc
    gc.collect()
    assert not directory.exists()


def test_a_missing_binary_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("NTK_BIN", str(tmp_path / "no-such-ntk"))
    with pytest.raises(ntk.BinaryNotFound, match="NTK_BIN="):
        ntk.gram(X, width=8, progress=False)


def test_the_status_decides_the_class():
    from ntk.errors import error_for
    line = "ntk: error: something"
    for status, cls in [(64, ntk.UsageError), (65, ntk.InputError), (66, ntk.InputError), (70, ntk.InternalError),
                        (73, ntk.OutputError), (74, ntk.OutputError), (75, ntk.Interrupted), (1, ntk.NTKError)]:
        error = error_for(status, f"mpirun: noise\n{line}\nmore noise\n")
        assert type(error) is cls and error.status == status and error.message == line
    killed = error_for(-9, "")
    assert type(killed) is ntk.NTKError and "signal 9" in killed.message
    stopped = error_for(75, "ntk: error: stopped by SIGUSR1 after 3 of this rank's 9 tiles; the finished tiles "
                            "are saved in /tmp/x/checkpoint: rerun the same command with --resume to continue\n")
    assert stopped.checkpoint == "/tmp/x/checkpoint"
