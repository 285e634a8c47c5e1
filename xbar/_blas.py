"""Single-threaded BLAS while ``xbar`` runs its own worker threads (numpy's OpenBLAS).

The ADC path runs many medium GEMMs. Multi-threaded OpenBLAS synchronises its threads on every
call; on a busy 2-core machine a call then waits for a descheduled peer (measured: a 1024 x
1024, 8-tile product took 0.13 s instead of 0.03 s). ``xbar`` instead runs disjoint batch blocks
in Python worker threads, each calling single-threaded BLAS. OpenBLAS's thread count is
process-wide (``openblas_set_num_threads_local`` is global in pthreads builds), so it is set to
1 by the first entrant of :func:`blas_single_threaded` and restored by the last one to leave
(guarded by a lock and a counter). Where numpy's OpenBLAS cannot be found the BLAS is left as
is and the caller should run its blocks one after another.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import os
import threading
from collections.abc import Iterator

import numpy as np

_NAMES = (("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
          ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
          ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
          ("openblas_get_num_threads", "openblas_set_num_threads"))


@functools.cache
def _controls() -> tuple | None:
    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libs, "*openblas*.so*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get_name, set_name in _NAMES:
            get = getattr(lib, get_name, None)
            put = getattr(lib, set_name, None)
            if get is not None and put is not None:
                get.restype = ctypes.c_int
                put.argtypes = [ctypes.c_int]
                put.restype = None
                return get, put, threading.Lock(), [0, 1]   # users, saved count
    return None


def available() -> bool:
    """True when numpy's OpenBLAS thread count can be controlled."""
    return _controls() is not None


@contextlib.contextmanager
def blas_single_threaded() -> Iterator[bool]:
    """Context in which numpy's BLAS uses one thread; yields :func:`available`."""
    ctl = _controls()
    if ctl is None:
        yield False
        return
    get, put, lock, state = ctl
    with lock:
        if state[0] == 0:
            state[1] = get()
            put(1)
        state[0] += 1
    try:
        yield True
    finally:
        with lock:
            state[0] -= 1
            if state[0] == 0:
                put(state[1])
