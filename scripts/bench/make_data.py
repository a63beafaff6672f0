#!/usr/bin/env python3
"""Seeded random-normal inputs for the benchmark: make_data.py OUT.npy N D SEED (float64)."""
import sys

import numpy as np

out, n, d, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
x = np.random.default_rng(seed).standard_normal((n, d))
np.save(out, x.astype(np.float64))
