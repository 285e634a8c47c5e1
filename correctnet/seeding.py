"""Reproducible seeds for resumable runs: every draw from a seed derived from names.

A resumable run must not read the process-wide random state: its value depends on what ran
earlier in the same process, so a run resumed in a fresh process would draw other numbers.
:func:`derive_seed` maps ``(seed, "stage", "plan", ...)`` to a 63-bit seed with SHA-256
(stable across processes and Python versions, unlike ``hash``), and :func:`isolated_rng`
runs a block with the global torch / numpy / Python generators seeded from it and restores
them afterwards, so library code that draws from the global generators (``nn.Module``
initialisation) gives the same numbers wherever the block runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
from collections.abc import Iterator

import numpy as np
import torch

__all__ = ["derive_seed", "isolated_rng"]


def derive_seed(seed: int, *parts: object) -> int:
    """A seed in ``[0, 2**63)`` determined by ``seed`` and the ``parts`` (names, numbers).

    Args:
        seed: The run's base seed.
        *parts: Stage name, plan key, epoch, ...; their ``str`` is hashed.

    Returns:
        ``int.from_bytes(sha256("seed|part1|part2...")[:8]) >> 1``.
    """
    text = "|".join([str(int(seed)), *(str(p) for p in parts)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


@contextlib.contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Run a block with the global torch, numpy and ``random`` generators seeded from ``seed``.

    Their previous states (torch: CPU and initialised CUDA devices) are restored on exit.

    Args:
        seed: Seed (any int >= 0; numpy gets ``seed % 2**32``).
    """
    py_state = random.getstate()
    np_state = np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
