"""Run independent work items (sweep points) on Dask: a local cluster or an existing scheduler.

``dask[distributed]`` is optional (``pip install correctnet-sim[distributed]``) and imported only
when a command is given ``--workers N`` or ``--scheduler ADDRESS``; without them nothing here
imports Dask and commands run in-process.

Division of labour: workers *compute* (a module-level, picklable function of one item that
returns a JSON-safe result); only the driver *writes* (it commits each result to the SQLite
store as it arrives, :func:`as_results`). A driver killed with ``kill -9`` therefore loses at
most the points in flight, and a rerun skips every committed point; a worker lost mid-task has
its tasks rescheduled by the Dask scheduler, and the driver still commits each point once.
Every item carries its own seed, so a result does not depend on which worker ran it.

Threads: a local cluster has ``N`` worker processes with one Dask task thread each, and each
task sets torch's and Numba's thread pools to ``max(1, cpu_count // N)`` compute threads
(:func:`set_compute_threads`); the BLAS/OpenMP pools get the same count through the worker
environment, so ``N`` workers never use more than the machine's cores.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from correctnet.errors import DistributedError, UsageError

INSTALL_HINT = "pip install correctnet-sim[distributed]"



def import_distributed() -> Any:
    """Import and return ``dask.distributed``.

    Raises:
        DistributedError: Dask is not installed (the message names the pip extra).
    """
    try:
        import dask.distributed as dd
    except ImportError:
        raise DistributedError("--workers/--scheduler need dask[distributed]: "
                               f"{INSTALL_HINT}") from None
    return dd


def compute_threads(workers: int, cpus: int | None = None) -> int:
    """Compute threads per worker so ``workers`` processes fit ``cpus`` cores: ``max(1, c//w)``."""
    cpus = cpus if cpus is not None else (os.cpu_count() or 1)
    return max(1, cpus // max(1, workers))


def set_compute_threads(threads: int) -> None:
    """Set torch's, Numba's and BLAS's thread pools of this process to ``threads``.

    The policy lives in ``mapping.set_threads`` (``mapping/README.md``, "Threads"); Numba's
    pool cannot grow past ``NUMBA_NUM_THREADS`` (fixed at start), so it is clipped to it.
    """
    from mapping import set_threads

    set_threads(max(1, int(threads)))


def _thread_environment(threads: int) -> dict[str, str]:
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
    return {name: str(threads) for name in names}


@contextlib.contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None, *,
                log: Callable[[str], None] = print, timeout: float = 20.0) -> Iterator[Any]:
    """Context yielding a ``dask.distributed.Client``, or None when neither option is given.

    Args:
        workers: Start a ``LocalCluster`` of this many worker processes (one task thread each).
        scheduler: Connect to the scheduler at this address instead.
        log: Receives one line naming the cluster and its dashboard address.
        timeout: Seconds to wait for the scheduler.

    Yields:
        The client (closed, with its local cluster, on exit) or None.

    Raises:
        UsageError: Both options given, or ``workers < 1``.
        DistributedError: Dask missing, or the scheduler cannot be reached.
    """
    if workers is None and scheduler is None:
        yield None
        return
    if workers is not None and scheduler is not None:
        raise UsageError("give --workers or --scheduler, not both")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be >= 1, got {workers}")
    dd = import_distributed()
    if scheduler is not None:
        try:
            client = dd.Client(scheduler, timeout=f"{timeout}s")
        except (OSError, TimeoutError) as exc:
            raise DistributedError(f"cannot reach the Dask scheduler {scheduler}: {exc}") \
                from None
        log(f"dask: connected to {scheduler}; dashboard {client.dashboard_link}")
        with client:
            yield client
        return
    threads = compute_threads(workers)
    cluster = dd.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                              dashboard_address=":0", env=_thread_environment(threads))
    with cluster, dd.Client(cluster) as client:
        log(f"dask: local cluster of {workers} worker(s) x {threads} compute thread(s); "
            f"dashboard {cluster.dashboard_link}")
        yield client


def as_results(client: Any, fn: Callable[[Any], Any], items: Sequence[Any], *,
               progress: bool = True, desc: str = "points") -> Iterator[tuple[int, Any]]:
    """Submit ``fn(item)`` for every item; yield ``(index, result)`` as each one finishes.

    Each task's key names its index, so a task lost with its worker is recomputed by the
    scheduler and still yielded once. A task that raises re-raises here (the driver stops; a
    rerun resumes from what it committed).

    Args:
        client: ``dask.distributed.Client``.
        fn: Module-level (picklable) function of one item.
        items: Work items (picklable).
        progress: Show a tqdm bar that advances as results arrive.
        desc: Label of the bar.
    """
    from tqdm.auto import tqdm

    dd = import_distributed()
    import uuid

    tag = uuid.uuid4().hex[:8]
    futures = [client.submit(fn, item, key=f"{desc}-{tag}-{i}", pure=False)
               for i, item in enumerate(items)]
    index = {f.key: i for i, f in enumerate(futures)}
    with tqdm(total=len(futures), desc=desc, disable=not progress) as bar:
        for future in dd.as_completed(futures):
            result = future.result()
            i = index[future.key]
            future.release()
            bar.update(1)
            yield i, result


def map_evaluator(client: Any, evaluator: Callable[[Any], tuple[float, float]], *,
                  progress: bool = False) -> Callable[[list], Iterator[tuple[int, Any]]]:
    """A placement-search ``map_evaluator`` that evaluates plans on the client's workers.

    Args:
        client: ``dask.distributed.Client``.
        evaluator: Picklable ``plan -> (mean, std)`` (a module-level function or a
            ``functools.partial`` of one).
        progress: Progress bar per batch of plans.

    Returns:
        ``plans -> iterator of (index, (mean, std))`` in completion order.
    """
    def run(plans: list) -> Iterator[tuple[int, Any]]:
        return as_results(client, evaluator, plans, progress=progress, desc="plans")

    return run
