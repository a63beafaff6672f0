"""The launcher's command line and environment."""
from __future__ import annotations

import os
import shutil
import stat

import pytest

from ntk._launch import launch_command, launch_environment

BINARY = "/opt/ntk/bin/ntk"
ARGS = ["gram", "--data", "x.npy"]


def test_no_ranks_is_one_process_without_a_launcher():
    assert launch_command(BINARY, ARGS) == [BINARY, *ARGS]
    assert launch_command(BINARY, ARGS, ranks=1, launcher="none") == [BINARY, *ARGS]
    with pytest.raises(ValueError):
        launch_command(BINARY, ARGS, ranks=2, launcher="none")
    with pytest.raises(ValueError):
        launch_command(BINARY, ARGS, ranks=0)


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun is not installed")
def test_mpirun_binds_to_no_core_and_oversubscribes_only_past_the_cores():
    command = launch_command(BINARY, ARGS, ranks=2, cpu_count=2, launcher_args=["--map-by", "slot"])
    assert os.path.basename(command[0]) == "mpirun" and command[1:3] == ["-np", "2"]
    assert command[-len(ARGS) - 3:] == ["--map-by", "slot", BINARY, *ARGS]
    assert "--bind-to" in command and "--oversubscribe" not in command
    assert "--oversubscribe" in launch_command(BINARY, ARGS, ranks=3, cpu_count=2)


def _fake(tmp_path, name):
    path = tmp_path / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_srun_inside_a_slurm_allocation_only(tmp_path):
    srun = _fake(tmp_path, "srun")
    environ = {"PATH": str(tmp_path), "SLURM_JOB_ID": "42"}
    assert launch_command(BINARY, ARGS, ranks=4, launcher="srun", environ=environ) == [srun, "-n", "4", BINARY, *ARGS]
    with pytest.raises(ValueError, match="SLURM_JOB_ID"):
        launch_command(BINARY, ARGS, ranks=4, launcher="srun", environ={"PATH": str(tmp_path)})


def test_environment_passes_through_and_sets_open_mpis_root_variables_only_as_root(tmp_path):
    mpirun = _fake(tmp_path, "mpirun")
    base = {"PATH": "/usr/bin", "KEEP": "1"}
    environment = launch_environment([mpirun, "-np", "2", BINARY], BINARY, env={"EXTRA": 2}, base=base)
    assert environment["KEEP"] == "1" and environment["EXTRA"] == "2"
    assert environment["OPENBLAS_NUM_THREADS"] == "1"
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    assert ("OMPI_ALLOW_RUN_AS_ROOT" in environment) == root
    assert ("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM" in environment) == root
    alone = launch_environment([BINARY], BINARY, base=base)
    assert "OMPI_ALLOW_RUN_AS_ROOT" not in alone and "OPENBLAS_NUM_THREADS" not in alone
