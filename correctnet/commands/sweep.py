"""``correctnet sweep``: accuracy over a (checkpoint x sigma x tile x wire) grid, resumable.

Results go to ``OUT/sweep.db`` (SQLite, one committed row per point, see
:mod:`correctnet.sweep.store`), then ``OUT/sweep.csv``, ``OUT/accuracy_vs_sigma.png`` and
``OUT/heatmap_sigma_tile.png``. Rerunning the same command skips stored points, so a sweep
stopped by Ctrl-C or ``kill -9`` continues where it stopped.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from correctnet.commands.simulate import add_hardware_arguments, make_xbar_config
from correctnet.errors import UsageError
from correctnet.fileio import ensure_output_dir

EPILOG = """\
examples:
  correctnet sweep --checkpoint runs/plain/checkpoint.pt runs/lip/checkpoint.pt \\
      --sigma 0:1:0.1 --tile 32,64,128,256 --samples 50 --out runs/sweep
  correctnet sweep --checkpoint C --sigma 0.1,0.3,0.5 --tile 128 --samples 20 --limit 1000 \\
      --out /tmp/sweep
  correctnet sweep --checkpoint C --sigma 0:0.5:0.1 --tile 32,64,128,256 \\
      --line-resistance 0,2 --adc-bits none --dac-bits none --out runs/irdrop

--sigma takes START:STOP:STEP (STOP included), a comma list, or one value. Rerun the same
command after Ctrl-C or a crash: finished points are kept in OUT/sweep.db and skipped.
"""


#: Most sigma values one ``--sigma`` may expand to.
MAX_SIGMAS = 1000


def parse_sigmas(text: str) -> list[float]:
    """Parse ``START:STOP:STEP`` (inclusive), ``a,b,c`` or ``a`` into sorted unique sigmas.

    Raises:
        UsageError: Bad syntax, negative or non-finite values, step <= 0, or > 1000 values.
    """
    text = text.strip()
    hint = "use START:STOP:STEP (e.g. 0:1:0.1), a comma list (0.1,0.5) or one number"
    def number(part: str) -> float:
        try:
            return float(part)
        except ValueError:
            raise UsageError(f"--sigma {text!r} is not a sigma range; {hint}") from None

    if ":" in text:
        parts = [number(p) for p in text.split(":")]
        if len(parts) != 3:
            raise UsageError(f"--sigma {text!r}: expected 3 fields START:STOP:STEP; {hint}")
        start, stop, step = parts
        if not all(math.isfinite(v) for v in parts):
            raise UsageError(f"--sigma {text!r}: START, STOP and STEP must be finite; {hint}")
        if not step > 0:
            raise UsageError(f"--sigma {text!r}: STEP must be > 0; {hint}")
        if stop < start:
            raise UsageError(f"--sigma {text!r}: STOP must be >= START; {hint}")
        span = (stop - start) / step          # may overflow to inf (0:1e308:1e-308)
        if not span < MAX_SIGMAS:
            raise UsageError(f"--sigma {text!r} gives more than {MAX_SIGMAS} values; at "
                             f"most {MAX_SIGMAS} (use a larger STEP)")
        count = int(math.floor(span + 1e-9)) + 1
        if count > MAX_SIGMAS:
            raise UsageError(f"--sigma {text!r} gives {count} values; at most {MAX_SIGMAS}")
        values = [round(start + i * step, 10) for i in range(count)]
    else:
        values = [number(p) for p in text.split(",") if p.strip() != ""]
        if len(values) > MAX_SIGMAS:
            raise UsageError(f"--sigma {text!r} gives {len(values)} values; at most {MAX_SIGMAS}")
    if not values:
        raise UsageError(f"--sigma {text!r} is empty; {hint}")
    bad = [v for v in values if not (math.isfinite(v) and v >= 0)]
    if bad:
        raise UsageError(f"--sigma {text!r}: sigma must be >= 0, got {bad[0]:g}")
    return sorted(set(values))


def parse_tiles(text: str) -> list[int]:
    """Parse a comma list of tile sides (integers >= 1), e.g. ``32,64,128,256``.

    Raises:
        UsageError: Not integers, or a value < 1.
    """
    try:
        values = [int(p) for p in text.split(",") if p.strip() != ""]
    except ValueError:
        raise UsageError(f"--tile {text!r}: expected comma-separated integers >= 1, "
                         "e.g. 32,64,128") from None
    if not values or min(values) < 1:
        raise UsageError(f"--tile {text!r}: every tile size must be an integer >= 1")
    return sorted(set(values))


def parse_line_resistances(text: str) -> list[float]:
    """Parse a comma list of wire resistances (ohm per segment, finite, >= 0), e.g. ``0,1,2``.

    Raises:
        UsageError: Not numbers, empty, or a negative or non-finite value.
    """
    try:
        values = [float(p) for p in text.split(",") if p.strip() != ""]
    except ValueError:
        raise UsageError(f"--line-resistance {text!r}: expected comma-separated numbers of "
                         "ohms >= 0, e.g. 0,1,2") from None
    if not values or not all(math.isfinite(v) and v >= 0 for v in values):
        raise UsageError(f"--line-resistance {text!r}: every value must be a finite number "
                         "of ohms >= 0")
    return sorted(set(values))


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
    from correctnet.sweep.plots import plot_accuracy_vs_sigma, plot_sigma_tile_heatmap
    from correctnet.sweep.point import evaluate_point
    from correctnet.sweep.store import (
        SweepStore, export_csv, file_digest, point_key, point_settings)

    line_resistances = [0.0] if line_resistances is None else list(line_resistances)

    out = Path(out)
    paths = [Path(c) for c in checkpoints]
    for p in paths:
        if not p.is_file():
            raise UsageError(f"checkpoint {p} not found")
    labels = checkpoint_labels(paths)
    _refuse_identical_contents(paths, file_digest)
    for sigma in sigmas:                # bad settings fail here, before sweep.db exists
        for tile in tiles:
            for ohms in line_resistances:
                make_xbar_config(sigma, tile, adc_bits=adc_bits, dac_bits=dac_bits,
                                 level=level, line_resistance=ohms)
    computed = skipped = 0
    stopped = False
    keys: list[str] = []
    pending: list[tuple[dict[str, Any], dict[str, Any]]] = []   # (task, store.add kwargs)
    with SweepStore(out / "sweep.db") as store:
        for path, label in zip(paths, labels):
            digest = file_digest(path)
            for ohms, sigma in ((o, s) for o in line_resistances for s in sigmas):
                for tile in tiles:
                    settings = point_settings(
                        {"checkpoint_sha256": digest, "sigma": round(float(sigma), 10),
                         "tile": int(tile), "adc_bits": adc_bits, "dac_bits": dac_bits,
                         "level": level, "samples": int(samples), "seed": int(seed),
                         "limit": limit}, line_resistance=ohms, cost=cost)
                    key = point_key(settings)
                    keys.append(key)
                    if stopped or store.has(key):
                        skipped += 0 if stopped else 1
                        continue
                    if stop_after is not None and computed + len(pending) >= stop_after:
                        stopped = True
                        continue
                    task = _point_task(path, digest, label, settings, key, data_dir,
                                       batch_size, backend, worker_threads, ohms, cost)
                    if client is not None:
                        pending.append(task)
                        continue
                    _commit(store, task[1], evaluate_point(task[0], progress=progress),
                            on_point)
                    computed += 1
        if pending:
            from correctnet.distributed import as_results

            for i, result in as_results(client, evaluate_point, [t for t, _ in pending],
                                        progress=progress):
                _commit(store, pending[i][1], result, on_point)
                computed += 1
        rows = store.rows(keys)
    csv_path = export_csv(rows, out / "sweep.csv")
    figures = []
    if rows:
        shown = plot_rows(rows)
        figures = [plot_accuracy_vs_sigma(shown, out / "accuracy_vs_sigma.png"),
                   plot_sigma_tile_heatmap(shown, out / "heatmap_sigma_tile.png")]
    return {"rows": rows, "computed": computed, "skipped": skipped, "stopped": stopped,
            "database": out / "sweep.db", "csv": csv_path, "figures": figures}


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


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sweep`` subcommand."""
    p = subparsers.add_parser(
        "sweep", help="accuracy over a checkpoint x sigma x tile grid (resumable)",
        description="Monte-Carlo accuracy of checkpoints over a grid of device variation "
                    "(sigma) and tile sizes; results in OUT/sweep.db, OUT/sweep.csv and plots.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, nargs="+", help="checkpoint file(s)")
    p.add_argument("--sigma", required=True, type=str,
                   help="START:STOP:STEP (inclusive), comma list, or one value")
    p.add_argument("--tile", default="128", type=str,
                   help="comma list of tile sides, e.g. 32,64,128,256 (128)")
    p.add_argument("--line-resistance", default="0", type=str, metavar="OHMS[,OHMS...]",
                   help="comma list of wire resistances per word/bit-line segment, a grid "
                        "axis; > 0 solves every tile with IR drop (0)")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    add_hardware_arguments(p)
    p.set_defaults(samples=50)
    p.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)
    from correctnet.distributed import add_dask_arguments

    add_dask_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``correctnet sweep``."""
    sigmas = parse_sigmas(args.sigma)
    tiles = parse_tiles(args.tile)
    ohms = parse_line_resistances(args.line_resistance)
    ensure_output_dir(args.out)
    total = len(args.checkpoint) * len(sigmas) * len(tiles) * len(ohms)
    print(f"sweep: {len(args.checkpoint)} checkpoint(s) x {len(sigmas)} sigma x "
          f"{len(tiles)} tile x {len(ohms)} line resistance = {total} points, "
          f"{args.samples} samples each -> {args.out}",
          flush=True)
    import mapping

    print(f"numba kernels ready in {mapping.warmup():.2f} s (compiled on first use, then cached)",
          flush=True)
    t0 = time.perf_counter()

    def show(point: dict[str, Any]) -> None:
        print(f"  {point['label']:<20} sigma {point['sigma']:<5g} tile {point['tile']:<4d} "
              f"wire {point['line_resistance']:<4g} ohm "
              f"{100 * point['mean']:6.2f}% +- {100 * point['std']:5.2f}%  "
              f"(clean {100 * point['clean_accuracy']:.2f}%, {point['seconds']:.1f} s)",
              flush=True)

    from correctnet.distributed import compute_threads, dask_client

    threads = compute_threads(args.workers) if args.workers else None
    with dask_client(args.workers, args.scheduler) as client:
        result = run_sweep(args.checkpoint, sigmas, tiles, args.out, samples=args.samples,
                           seed=args.seed, adc_bits=args.adc_bits, dac_bits=args.dac_bits,
                           level=args.level, limit=args.limit, data_dir=args.data_dir,
                           batch_size=args.batch_size, backend=args.backend,
                           progress=True, stop_after=args.stop_after, on_point=show,
                           client=client, worker_threads=threads, line_resistances=ohms,
                           cost=args.cost_preset)
    if result["stopped"]:
        print(f"stopped after {result['computed']} new point(s) (--stop-after); rerun to "
              "continue", flush=True)
        return 3
    print(f"{result['computed']} computed, {result['skipped']} already stored, "
          f"{time.perf_counter() - t0:.1f} s")
    print(f"database {result['database']}\ncsv      {result['csv']}")
    for fig in result["figures"]:
        print(f"figure   {fig}")
    return 0
