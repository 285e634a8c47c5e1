"""Shared test settings: headless plots, quiet progress bars, one torch thread.

The test networks are tiny; on a 2-core machine shared with Numba's threads,
torch's intra-op threads only add contention (seen: 10-60x slower steps).
Numba keeps its own thread pool (tests that compare thread counts set it).
"""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402  (after the environment is set)

torch.set_num_threads(1)
