"""Several ranks under mpirun give what one process gives."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import ntk
from ntk import stax

pytestmark = pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun is not installed")

MODEL = stax.serial(stax.Dense(64, W_std=2 ** 0.5, b_std=0.1), stax.Relu(), stax.Dense(64, W_std=2 ** 0.5, b_std=0.1),
                    stax.Relu(), stax.Dense(10, W_std=2 ** 0.5, b_std=0.1))


def test_two_ranks_give_the_single_process_kernel(digits):
    x = digits[:300]
    with ntk.gram(x, model=MODEL, tile=64, progress=False) as alone, \
            ntk.gram(x, model=MODEL, tile=64, ranks=2, timeout=120, progress=False) as two:
        assert two.summary["ranks"] == 2 and alone.summary["ranks"] == 1
        assert np.array_equal(two.kernel, alone.kernel)
        assert np.array_equal(two.outputs, alone.outputs)
        np.testing.assert_allclose(two.eigenvalues, alone.eigenvalues, rtol=0, atol=1e-12 * alone.eigenvalues[-1])


def test_three_ranks_on_two_cores_write_the_cross_kernel_in_parallel(digits):
    x, x2 = digits[:100], digits[100:170]
    with ntk.gram(x, x2, model=MODEL, tile=32, progress=False) as alone, \
            ntk.gram(x, x2, model=MODEL, tile=32, ranks=3, timeout=120, progress=False) as three:
        assert np.array_equal(three.kernel, alone.kernel)
