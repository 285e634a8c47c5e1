"""Simulating one network on crossbars: load a checkpoint with its test set, map, Monte-Carlo.

What ``correctnet simulate`` and every sweep point run (:func:`simulate_model`). The crossbar
config is :meth:`xbar.XbarConfig.rram_lognormal` (square tiles: ``n_rows = n_cols = tile``),
with :func:`with_line_resistance` for IR drop.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

__all__ = ["point_config", "with_line_resistance", "prepare_checkpoint", "simulate_model"]


def with_line_resistance(config: Any, ohms: float) -> Any:
    """``config`` with ``tile.line_resistance = ohms`` (0: ``config`` itself, ideal wires).

    :meth:`xbar.XbarConfig.rram_lognormal` has no wire-resistance argument; this is the one
    place it is set on top of it.

    Args:
        config: An ``xbar.XbarConfig``.
        ohms: Ohm per word/bit-line segment (>= 0; > 0 solves every tile with IR drop).

    Returns:
        The config (a new one when ``ohms`` is not 0).
    """
    if not ohms:
        return config
    return dataclasses.replace(config, tile=dataclasses.replace(
        config.tile, line_resistance=float(ohms)))


def point_config(sigma: float, tile: int, *, adc_bits: int | None, dac_bits: int | None,
                 level: str, line_resistance: float = 0.0) -> Any:
    """A sweep point's ``xbar.XbarConfig``: :meth:`~xbar.XbarConfig.rram_lognormal`, square tiles.

    Raises:
        xbar.ConfigError: a value out of range (the message names the field).
    """
    from xbar import XbarConfig

    return with_line_resistance(XbarConfig.rram_lognormal(
        sigma, level=level, n_rows=tile, n_cols=tile, dac_bits=dac_bits, adc_bits=adc_bits),
        line_resistance)


def prepare_checkpoint(path: str | Path, *, limit: int | None = None,
                       data_dir: str | None = None, batch_size: int = 1000,
                       expect_model: str | None = None) -> tuple[Any, dict, Any]:
    """Load a checkpoint and its dataset's test split.

    Args:
        path: Checkpoint file.
        limit: First N test examples only.
        data_dir: Dataset directory (default: the one recorded in the checkpoint, else the
            system Fashion-MNIST).
        batch_size: Evaluation batch size.
        expect_model: Required model name, if any.

    Returns:
        ``(model, meta, loader)``.
    """
    from correctnet.workloads.checkpoint import load_checkpoint
    from correctnet.workloads.data import load_dataset, make_loader

    model, meta = load_checkpoint(path, expect_model=expect_model)
    data_dir = data_dir if data_dir is not None else meta.get("data_dir")
    test = load_dataset(meta.get("dataset", "fashion-mnist"), "test", data_dir=data_dir,
                        limit=limit)
    return model, meta, make_loader(test, batch_size)


def simulate_model(model: Any, loader: Any, config: Any, *, samples: int = 250, seed: int = 0,
                   backend: str | None = None, progress: bool = True,
                   clean_accuracy: float | None = None,
                   cost: str = "isaac-32nm") -> dict[str, Any]:
    """Map ``model`` onto crossbars and run the Monte-Carlo evaluation.

    Args:
        model: Digital network (not modified).
        loader: Test batches.
        config: ``xbar.XbarConfig`` of every layer.
        samples: Monte-Carlo device samples.
        seed: Seed of the device samples.
        backend: ``"numba"`` / ``"torch"`` / None (mapping's default).
        progress: Show a progress bar.
        clean_accuracy: Digital accuracy if already known (else computed).
        cost: :data:`mapping.COST_PRESETS` name of the energy / latency / area constants.

    Returns:
        JSON-safe dict: ``clean_accuracy``, ``mean``, ``std``, ``accuracies`` (fractions),
        ``samples``, ``seed``, ``config`` (``XbarConfig.to_dict()``), ``hardware``
        (``hardware_report(...).to_dict()``), ``report`` (its table), ``cost`` (per inference
        ``energy_j``, ``latency_s``, ``area_mm2``, analog + digital, constants
        ``hardware["cost"]``), ``seconds``.
    """
    from mapping import convert_to_crossbar, evaluate_accuracy, hardware_report, run_monte_carlo
    from mapping import set_backend

    t0 = time.perf_counter()
    if clean_accuracy is None:
        clean_accuracy = float(evaluate_accuracy(model, loader))
    analog = convert_to_crossbar(model, config)
    if backend is not None:
        set_backend(analog, backend)
    result = run_monte_carlo(analog, loader, samples=samples, seed=seed, progress=progress)
    report = hardware_report(analog, cost=cost)
    return {"clean_accuracy": float(clean_accuracy), "mean": float(result.mean),
            "std": float(result.std),
            "accuracies": [float(a) for a in result.accuracies], "samples": int(samples),
            "seed": int(seed), "config": config.to_dict(), "hardware": report.to_dict(),
            "report": str(report), "cost": dict(report.cost_total),
            "seconds": time.perf_counter() - t0}
