"""``correctnet sweep``: accuracy over a (checkpoint x sigma x tile x wire) grid, resumable.

Argument parsing and printing only; the sweep is :func:`correctnet.sweep.run.run_sweep`.
Results go to ``OUT/sweep.db`` (SQLite, one committed row per point, see
:mod:`correctnet.sweep.store`), then ``OUT/sweep.csv``, ``OUT/accuracy_vs_sigma.png`` and
``OUT/heatmap_sigma_tile.png``. Rerunning the same command skips stored points, so a sweep
stopped by Ctrl-C or ``kill -9`` continues where it stopped.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

from correctnet.commands.simulate import add_hardware_arguments
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
    from correctnet.commands.argtypes import add_dask_arguments

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
    from correctnet.sweep.run import run_sweep

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
