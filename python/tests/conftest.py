"""Shared fixtures: the repository's neural-tangents fixtures and the tool's binary."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import ntk

REPOSITORY = Path(__file__).resolve().parents[2]
FIXTURES = REPOSITORY / "Tests" / "Fixtures"
DIGITS = REPOSITORY / "data" / "digits.npy"


def cases(group: str) -> list:
    """The cases of ``Tests/Fixtures/<group>/cases.json`` (their directory added as "dir")."""
    root = FIXTURES / group
    listed = json.loads((root / "cases.json").read_text())
    return [dict(case, dir=root / case["name"]) for case in listed]


def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    """max |ours - reference| / max |reference| (the fixtures' entries are O(1) or smaller)."""
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    scale = float(np.max(np.abs(reference)))
    return float(np.max(np.abs(np.asarray(ours) - reference))) / (scale if scale > 0 else 1.0)


@pytest.fixture(scope="session", autouse=True)
def binary() -> str:
    """The binary under test (NTK_BIN, the PATH or the repository's build); a missing
    binary fails every test instead of skipping them."""
    path = ntk.find_binary()
    print(f"ntk binary: {path}")
    return path


@pytest.fixture(scope="session")
def digits() -> np.ndarray:
    return np.load(DIGITS).astype(np.float64)
