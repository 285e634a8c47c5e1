"""The process's thread policy: torch, Numba and BLAS threads decided in one place.

Three thread pools share the cores of a simulation: torch's intra-op pool (OpenMP), Numba's
pool (the ``xbar`` and fused kernels) and numpy's BLAS (OpenBLAS, controlled through
``threadpoolctl``). The policy:

* :func:`set_threads` sets all three to ``n`` (the ``correctnet`` commands and Dask workers
  call it through ``correctnet.distributed.set_compute_threads``). Numba's pool cannot grow
  past ``NUMBA_NUM_THREADS`` (fixed at import), so the count is clipped to it.
* While Numba kernels and torch ops alternate (the ``reference`` and ``fused`` executions,
  Monte-Carlo on the CPU), torch runs single-threaded (:func:`torch_single_threaded`): its
  OpenMP workers spin after every op and starve Numba's workers otherwise (measured:
  10-100x slowdowns on 2 cores).
* Inside ``xbar``'s ADC path, Python worker threads each call single-threaded BLAS (``xbar``
  holds that scoped override itself, with ``threadpoolctl``, since it cannot import this
  package).

So at any time at most ``n`` threads compute, whichever pool they belong to.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numba
import torch
from threadpoolctl import threadpool_limits

from .errors import ArgumentTypeError


def set_threads(threads: int) -> int:
    """Set torch's, Numba's and BLAS's thread counts of this process to ``threads``.

    Args:
        threads: Threads per pool (>= 1).

    Returns:
        The Numba thread count actually set (clipped to ``NUMBA_NUM_THREADS``).

    Raises:
        ArgumentTypeError: ``threads`` is not an int >= 1.
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ArgumentTypeError(f"threads must be an int >= 1, got {threads!r}")
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    n_numba = min(threads, numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(n_numba)
    threadpool_limits(limits=threads, user_api="blas")
    return n_numba


def thread_counts() -> dict[str, int]:
    """``{"torch": ..., "numba": ..., "blas": ...}`` threads of this process now."""
    from threadpoolctl import threadpool_info

    blas = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
    return {"torch": torch.get_num_threads(), "numba": numba.get_num_threads(),
            "blas": max(blas) if blas else 1}


@contextlib.contextmanager
def torch_single_threaded(active: bool = True) -> Iterator[None]:
    """Run torch with one intra-op thread inside the block, if ``active``.

    torch's count is set back on exit even when not ``active``: ``torch.set_num_threads``
    also fixes the count of the libraries under torch (OpenMP, its LAPACK), whose last bits
    (e.g. an SVD's) depend on it, so every evaluation leaves torch in the same state.
    """
    threads = torch.get_num_threads()
    if active:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
