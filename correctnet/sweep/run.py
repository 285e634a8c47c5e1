"""A sweep over a (checkpoint x sigma x tile x wire) grid, resumable: :func:`run_sweep`.

Results go to ``OUT/sweep.db`` (SQLite, one committed row per point, see
:mod:`correctnet.sweep.store`), then ``OUT/sweep.csv``, ``OUT/accuracy_vs_sigma.png`` and
``OUT/heatmap_sigma_tile.png``. Rerunning the same sweep skips stored points, so a sweep
stopped by Ctrl-C or ``kill -9`` continues where it stopped. Each point is
:func:`correctnet.sweep.point.evaluate_point` (in-process or on Dask workers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from correctnet.errors import UsageError
from correctnet.sweep.plots import plot_accuracy_vs_sigma, plot_sigma_tile_heatmap
from correctnet.sweep.point import evaluate_point
from correctnet.sweep.simulate import point_config
from correctnet.sweep.store import SweepStore, export_csv, file_digest, point_key, point_settings

__all__ = ["run_sweep", "checkpoint_labels", "plot_rows"]


def plot_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for the figures: with several line resistances, one label per (checkpoint, R)."""
    if len({float(r.get("line_resistance") or 0) for r in rows}) <= 1:
        return rows
    return [dict(r, label=f"{r['label']} {float(r.get('line_resistance') or 0):g} ohm")
            for r in rows]


def checkpoint_labels(paths: list[str | Path]) -> list[str]:
    """Short unique names: the folder name for ``.../NAME/checkpoint.pt``, else the file stem."""
    labels = []
    for p in paths:
        p = Path(p)
        base = p.parent.name if p.stem == "checkpoint" and p.parent.name else p.stem
        label, n = base, 2
        while label in labels:
            label, n = f"{base}-{n}", n + 1
        labels.append(label)
    return labels


def _refuse_identical_contents(paths: list[Path], digest) -> None:
    """Two paths holding the same bytes would share every point (and one label): refuse."""
    seen: dict[str, Path] = {}
    for path in paths:
        first = seen.setdefault(digest(path), path)
        if first != path:
            raise UsageError(f"--checkpoint {first} and {path} have identical contents (the "
                             "same network); give it once")


def run_sweep(checkpoints: list[str | Path], sigmas: list[float], tiles: list[int],
              out: str | Path, *, samples: int = 50, seed: int = 0, adc_bits: int | None = 8,
              dac_bits: int | None = 8, level: str = "weight", limit: int | None = None,
              data_dir: str | None = None, batch_size: int = 1000, backend: str | None = None,
              progress: bool = True, stop_after: int | None = None,
              on_point: Callable[[dict[str, Any]], None] | None = None,
              client: Any = None, worker_threads: int | None = None,
              line_resistances: list[float] | None = None,
              cost: str = "isaac-32nm") -> dict[str, Any]:
    """Evaluate every (checkpoint, sigma, tile, line resistance) point not in ``out/sweep.db``.

    Args:
        checkpoints: Checkpoint files.
        sigmas: Variation stds.
        tiles: Tile sides (square tiles).
        out: Output directory (``sweep.db``, ``sweep.csv``, two PNG figures).
        samples: Monte-Carlo device samples per point.
        seed: Seed of the device samples (the same for every point).
        adc_bits: ADC bits (None: ideal).
        dac_bits: DAC bits (None: ideal).
        level: ``"weight"`` or ``"device"`` variation.
        limit: First N test examples only.
        data_dir: Dataset directory.
        batch_size: Evaluation batch size.
        backend: Crossbar backend (None: mapping's default).
        progress: Per-point Monte-Carlo progress bars.
        stop_after: Stop after computing this many new points (for tests of resuming).
        on_point: Called with each new point's row dict (``label``, ``sigma``, ``tile``,
            ``mean``, ``std``, ...).
        client: ``dask.distributed.Client`` (see :mod:`correctnet.distributed`): the new
            points are computed on its workers and committed here as each arrives. None:
            in-process.
        worker_threads: Compute threads each worker task sets (None: leave the workers').
        line_resistances: Ohm per word/bit-line segment, a grid axis (None: ``[0.0]``, ideal
            wires; 0 keeps the point keys of sweeps stored before this axis existed).
        cost: :data:`mapping.COST_PRESETS` name of the energy / latency / area constants
            (CSV columns ``energy_j``, ``latency_s``, ``area_mm2``; part of the key unless
            the default).

    Returns:
        ``dict(rows, computed, skipped, stopped, database, csv, figures)``; ``rows`` are the
        points of this grid stored so far.
    """
    line_resistances = [0.0] if line_resistances is None else list(line_resistances)
    out = Path(out)
    paths = _checked_checkpoints(checkpoints)
    hardware = dict(adc_bits=adc_bits, dac_bits=dac_bits, level=level)
    for sigma in sigmas:                # bad settings fail here, before sweep.db exists
        for tile in tiles:
            for ohms in line_resistances:
                point_config(sigma, tile, line_resistance=ohms, **hardware)
    grid = _Grid(sigmas, tiles, line_resistances,
                 dict(hardware, samples=int(samples), seed=int(seed), limit=limit), cost)
    run = dict(data_dir=data_dir, batch_size=batch_size, backend=backend,
               threads=worker_threads)
    with SweepStore(out / "sweep.db") as store:
        keys, todo, skipped, stopped = _plan_points(store, paths, grid, run, stop_after)
        computed = _compute(store, todo, client, on_point, progress)
        rows = store.rows(keys)
    csv_path = export_csv(rows, out / "sweep.csv")
    figures = []
    if rows:
        shown = plot_rows(rows)
        figures = [plot_accuracy_vs_sigma(shown, out / "accuracy_vs_sigma.png"),
                   plot_sigma_tile_heatmap(shown, out / "heatmap_sigma_tile.png")]
    return {"rows": rows, "computed": computed, "skipped": skipped, "stopped": stopped,
            "database": out / "sweep.db", "csv": csv_path, "figures": figures}


def _checked_checkpoints(checkpoints: list[str | Path]) -> list[Path]:
    """The checkpoint paths, each an existing file and no two with the same contents."""
    paths = [Path(c) for c in checkpoints]
    for p in paths:
        if not p.is_file():
            raise UsageError(f"checkpoint {p} not found")
    _refuse_identical_contents(paths, file_digest)
    return paths


@dataclass(frozen=True)
class _Grid:
    """The sweep's axes and the settings every point shares."""

    sigmas: list[float]
    tiles: list[int]
    line_resistances: list[float]
    fixed: dict[str, Any]           # adc_bits, dac_bits, level, samples, seed, limit
    cost: str

    def points(self, digest: str) -> Iterator[tuple[dict[str, Any], float]]:
        """``(settings, line_resistance)`` per point of one checkpoint, in the stored order."""
        for ohms, sigma in ((o, s) for o in self.line_resistances for s in self.sigmas):
            for tile in self.tiles:
                f = self.fixed
                settings = point_settings(
                    {"checkpoint_sha256": digest, "sigma": round(float(sigma), 10),
                     "tile": int(tile), "adc_bits": f["adc_bits"], "dac_bits": f["dac_bits"],
                     "level": f["level"], "samples": f["samples"], "seed": f["seed"],
                     "limit": f["limit"]}, line_resistance=ohms, cost=self.cost)
                yield settings, ohms


def _plan_points(store: Any, paths: list[Path], grid: _Grid, run: dict[str, Any],
                 stop_after: int | None) -> tuple[list[str], list, int, bool]:
    """The grid's point keys and the tasks of the points not stored yet.

    Returns:
        ``(keys, todo, skipped, stopped)``: every point's key in order, ``(task, row)`` per
        point to compute (at most ``stop_after``), how many were stored already, and whether
        ``stop_after`` cut the list.
    """
    keys: list[str] = []
    todo: list[tuple[dict[str, Any], dict[str, Any]]] = []
    planned: set[str] = set()      # a checkpoint given twice has its points once
    skipped, stopped = 0, False
    for path, label in zip(paths, checkpoint_labels(paths)):
        digest = file_digest(path)
        for settings, ohms in grid.points(digest):
            key = point_key(settings)
            keys.append(key)
            if stopped or store.has(key) or key in planned:
                skipped += 0 if stopped else 1
                continue
            planned.add(key)
            if stop_after is not None and len(todo) >= stop_after:
                stopped = True
                continue
            todo.append(_point_task(path, digest, label, settings, key, run["data_dir"],
                                    run["batch_size"], run["backend"], run["threads"], ohms,
                                    grid.cost))
    return keys, todo, skipped, stopped


def _compute(store: Any, todo: list, client: Any,
             on_point: Callable[[dict[str, Any]], None] | None, progress: bool) -> int:
    """Compute the points (in-process in order, or on ``client``'s workers) and commit each."""
    if client is None:
        for task, row in todo:
            _commit(store, row, evaluate_point(task, progress=progress), on_point)
        return len(todo)
    from correctnet.distributed import as_results

    computed = 0
    for i, result in as_results(client, evaluate_point, [t for t, _ in todo],
                                progress=progress):
        _commit(store, todo[i][1], result, on_point)
        computed += 1
    return computed


def _commit(store: Any, row: dict[str, Any], result: dict[str, Any],
            on_point: Callable[[dict[str, Any]], None] | None) -> None:
    """Store one computed point (driver only) and report it to ``on_point``."""
    store.add(result=result, **row)
    if on_point is not None:
        on_point({"label": row["label"], "sigma": row["sigma"], "tile": row["tile"],
                  "line_resistance": row["line_resistance"],
                  "clean_accuracy": result["clean_accuracy"], "mean": result["mean"],
                  "std": result["std"], "seconds": result["seconds"]})


def _point_task(path: Path, digest: str, label: str, settings: dict[str, Any], key: str,
                data_dir: str | None, batch_size: int, backend: str | None,
                threads: int | None, line_resistance: float = 0.0,
                cost: str = "isaac-32nm") -> tuple[dict[str, Any], dict[str, Any]]:
    """A worker task for :func:`correctnet.sweep.point.evaluate_point` + its store row."""
    task = {k: settings[k] for k in ("sigma", "tile", "adc_bits", "dac_bits", "level",
                                     "samples", "seed", "limit")}
    task.update(path=str(path), digest=digest, data_dir=data_dir, batch_size=batch_size,
                backend=backend, threads=threads, line_resistance=float(line_resistance),
                cost=cost)
    row = {"key": key, "checkpoint": str(path), "label": label, "sigma": settings["sigma"],
           "tile": settings["tile"], "settings": settings,
           "line_resistance": float(line_resistance)}
    return task, row
