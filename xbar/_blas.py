"""Single-threaded BLAS while ``xbar`` runs its own worker threads (numpy's BLAS, threadpoolctl).

The ADC path runs many medium GEMMs. Multi-threaded OpenBLAS synchronises its threads on every
call; on a busy 2-core machine a call then waits for a descheduled peer (measured: a 1024 x
1024, 8-tile product took 0.13 s instead of 0.03 s). ``xbar`` instead runs disjoint batch blocks
in Python worker threads, each calling single-threaded BLAS. A BLAS library's thread count is
process-wide, so it is set to 1 by the first entrant of :func:`blas_single_threaded` and
restored by the last one to leave (guarded by a lock and a counter). The counts are read and
set through ``threadpoolctl`` (every BLAS it finds loaded: OpenBLAS, MKL, BLIS). Where none is
found the BLAS is left as is and the caller should run its blocks one after another.

The process-wide thread policy (torch, Numba, BLAS) is decided in ``mapping/threads.py``;
this is only the scoped override of the ADC path.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator

from threadpoolctl import ThreadpoolController

_LOCK = threading.Lock()
_STATE = {"users": 0, "saved": None}


@functools.cache
def _blas():
    """The controller (threadpoolctl) of the loaded BLAS libraries, or None if there is none."""
    ctl = ThreadpoolController().select(user_api="blas")
    return ctl if ctl.lib_controllers else None


def available() -> bool:
    """True when a BLAS thread count can be controlled."""
    return _blas() is not None


def num_threads() -> int | None:
    """Largest thread count of the loaded BLAS libraries (None without one)."""
    ctl = _blas()
    return None if ctl is None else max(c.num_threads for c in ctl.lib_controllers)


@contextlib.contextmanager
def blas_single_threaded() -> Iterator[bool]:
    """Context in which numpy's BLAS uses one thread; yields :func:`available`."""
    ctl = _blas()
    if ctl is None:
        yield False
        return
    with _LOCK:
        if _STATE["users"] == 0:
            _STATE["saved"] = [c.num_threads for c in ctl.lib_controllers]
            for c in ctl.lib_controllers:
                c.set_num_threads(1)
        _STATE["users"] += 1
    try:
        yield True
    finally:
        with _LOCK:
            _STATE["users"] -= 1
            if _STATE["users"] == 0:
                for c, n in zip(ctl.lib_controllers, _STATE["saved"]):
                    c.set_num_threads(n)
