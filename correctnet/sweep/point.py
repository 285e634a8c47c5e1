"""One sweep point as a picklable, self-contained task (what a Dask worker runs).

:func:`evaluate_point` loads the checkpoint (cached per worker process), evaluates its
digital accuracy once, and runs the point's Monte-Carlo with the point's own seed, exactly as
the in-process sweep does, so the result is the same whichever process computes it.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.lru_cache(maxsize=2)
def _loaded(path: str, digest: str, limit: int | None, data_dir: str | None,
            batch_size: int) -> tuple[Any, Any, float]:
    """``(model, loader, clean_accuracy)`` of a checkpoint; ``digest`` keys the cache."""
    from correctnet.sweep.simulate import prepare_checkpoint
    from mapping import evaluate_accuracy

    model, _, loader = prepare_checkpoint(path, limit=limit, data_dir=data_dir,
                                          batch_size=batch_size)
    return model, loader, float(evaluate_accuracy(model, loader))


def evaluate_point(task: dict[str, Any], *, progress: bool = False) -> dict[str, Any]:
    """Compute one sweep point.

    Args:
        task: ``path``, ``digest`` (checkpoint SHA-256), ``limit``, ``data_dir``,
            ``batch_size``, ``sigma``, ``tile``, ``adc_bits``, ``dac_bits``, ``level``,
            ``samples``, ``seed``, ``backend``, ``line_resistance`` (ohm per segment, default
            0), ``cost`` (preset name, default ``isaac-32nm``) and ``threads`` (compute
            threads of this process, None: leave as is).
        progress: Show the Monte-Carlo progress bar (the in-process sweep; workers: off).

    Returns:
        :func:`correctnet.sweep.simulate.simulate_model`'s dict (JSON-safe).
    """
    from correctnet.sweep.simulate import point_config, simulate_model

    if task.get("threads"):
        from correctnet.distributed import set_compute_threads

        set_compute_threads(task["threads"])
    model, loader, clean = _loaded(str(task["path"]), task["digest"], task["limit"],
                                   task["data_dir"], task["batch_size"])
    config = point_config(task["sigma"], task["tile"], adc_bits=task["adc_bits"],
                          dac_bits=task["dac_bits"], level=task["level"],
                          line_resistance=task.get("line_resistance", 0.0))
    return simulate_model(model, loader, config, samples=task["samples"], seed=task["seed"],
                          backend=task["backend"], progress=progress, clean_accuracy=clean,
                          cost=task.get("cost", "isaac-32nm"))
