"""``correctnet simulate``: Monte-Carlo accuracy of a checkpoint mapped onto crossbars.

Argument parsing and printing only; the work is :mod:`correctnet.sweep.simulate`'s. Also holds
the options ``correctnet sweep`` shares (:func:`parse_bits`, :func:`add_hardware_arguments`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from correctnet.commands.argtypes import nonneg_float, nonneg_int, positive_float, positive_int

EPILOG = """\
examples:
  correctnet simulate --checkpoint runs/plain/checkpoint.pt
  correctnet simulate --checkpoint runs/lip/checkpoint.pt --sigma 0.5 --tile 128 \\
      --adc-bits 8 --dac-bits 8 --samples 250
  correctnet simulate --checkpoint C --level device --samples 20 --limit 1000 --json
  correctnet simulate --checkpoint C --adc-bits none --dac-bits none   # ideal converters

Prints the clean (digital) test accuracy, the mean and std of the accuracy over --samples
device samples, and the hardware report (tiles, cells, utilisation per layer). Accuracies are
percent on screen and fractions in --json output.
"""


def parse_bits(text: str) -> int | None:
    """Argparse type: converter bits, an integer in [2, 24] or ``none`` (ideal).

    The range is the one :class:`xbar.ADCConfig` / :class:`xbar.DACConfig` accept
    (``xbar.config.MIN_BITS``..``MAX_BITS``), checked here so the error names the flag
    before any work (or any output file) starts.
    """
    from xbar.config import MAX_BITS, MIN_BITS

    expected = f"expected bits in {MIN_BITS}..{MAX_BITS} or 'none' (ideal)"
    if text.strip().lower() in ("none", "ideal", "inf"):
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{expected}, got {text!r}") from None
    if not MIN_BITS <= value <= MAX_BITS:
        raise argparse.ArgumentTypeError(f"{expected}, got {text!r}")
    return value


def parse_cost_preset(text: str) -> str:
    """Argparse type: a :data:`mapping.COST_PRESETS` name (the error lists the known ones)."""
    from mapping.cost import COST_PRESETS

    if text not in COST_PRESETS:
        raise argparse.ArgumentTypeError(f"unknown cost preset {text!r}; known: "
                                         f"{', '.join(sorted(COST_PRESETS))}")
    return text


def add_hardware_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by ``simulate`` and ``sweep`` (everything but sigma and tile)."""
    p.add_argument("--adc-bits", type=parse_bits, default=8, help="ADC bits, 2..24, or 'none' (8)")
    p.add_argument("--dac-bits", type=parse_bits, default=8, help="DAC bits, 2..24, or 'none' (8)")
    p.add_argument("--level", choices=("weight", "device"), default="weight",
                   help="variation per weight (the paper's) or per cell (weight)")
    p.add_argument("--samples", type=positive_int, default=250,
                   help="Monte-Carlo device samples (250)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="seed of the device samples (0)")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="evaluate on the first N test examples only")
    p.add_argument("--data-dir", default=None, help="dataset directory")
    p.add_argument("--batch-size", type=positive_int, default=1000,
                   help="evaluation batch size (1000)")
    p.add_argument("--backend", choices=("numba", "torch"), default=None,
                   help="crossbar execution backend (mapping's default: numba)")
    p.add_argument("--cost-preset", type=parse_cost_preset, default="isaac-32nm",
                   metavar="NAME", help="energy / latency / area constants: isaac-32nm or "
                                        "neurram-130nm (isaac-32nm; see mapping/README.md)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``simulate`` subcommand."""
    p = subparsers.add_parser(
        "simulate", help="Monte-Carlo accuracy of a checkpoint on RRAM crossbars",
        description="Map a checkpoint onto tiled crossbars and report its accuracy under "
                    "lognormal device variation (mean and std over device samples).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint file")
    p.add_argument("--model", default=None,
                   help="fail unless the checkpoint holds this model (e.g. lenet5)")
    p.add_argument("--width", type=positive_float, default=None,
                   help="fail unless the checkpoint holds this VGG16 width (e.g. 0.125); the "
                        "network is always rebuilt with the checkpoint's own width")
    p.add_argument("--sigma", type=nonneg_float, default=0.5, help="variation std (0.5)")
    p.add_argument("--tile", type=positive_int, default=128,
                   help="tile side: word lines = bit lines (128)")
    add_hardware_arguments(p)
    p.add_argument("--line-resistance", type=nonneg_float, default=0.0, metavar="OHMS",
                   help="wire resistance per word/bit-line segment; > 0 solves every tile "
                        "with IR drop (0)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``correctnet simulate``."""
    import mapping

    from correctnet.sweep.simulate import point_config, prepare_checkpoint, simulate_model

    model, meta, loader = prepare_checkpoint(args.checkpoint, limit=args.limit,
                                             data_dir=args.data_dir, batch_size=args.batch_size,
                                             expect_model=args.model)
    held = float(meta.get("width", 1.0))
    if args.width is not None and abs(held - args.width) > 1e-9:
        from correctnet.errors import CheckpointError

        raise CheckpointError(f"checkpoint {args.checkpoint} holds {meta['model']} at width "
                              f"{held:g}, not --width {args.width:g}")
    config = point_config(args.sigma, args.tile, adc_bits=args.adc_bits,
                          dac_bits=args.dac_bits, level=args.level,
                          line_resistance=args.line_resistance)

    compile_seconds = mapping.warmup()
    out = simulate_model(model, loader, config, samples=args.samples, seed=args.seed,
                         backend=args.backend, progress=not args.json,
                         cost=args.cost_preset)
    out.update({"checkpoint": str(args.checkpoint), "model": meta["model"],
                "dataset": meta.get("dataset"), "method": meta.get("method"),
                "width": held, "sigma": args.sigma, "tile": args.tile, "limit": args.limit,
                "line_resistance": args.line_resistance,
                "compile_seconds": compile_seconds})
    if args.json:
        print(json.dumps(out))
        return 0
    shown = meta["model"] + (f" width {held:g}" if held != 1.0 else "")
    print(f"checkpoint {args.checkpoint}  ({shown}, {meta.get('dataset')}, "
          f"method {meta.get('method')})")
    print(f"sigma {args.sigma:g}  tile {args.tile}x{args.tile}  ADC {args.adc_bits} bits  "
          f"DAC {args.dac_bits} bits  level {args.level}  samples {args.samples}  "
          f"wires {args.line_resistance:g} ohm/segment")
    print(f"numba kernels       {compile_seconds:.2f} s (compiled on first use, then cached)")
    print(f"clean accuracy      {100 * out['clean_accuracy']:.2f}%")
    print(f"accuracy on xbar    {100 * out['mean']:.2f}% +- {100 * out['std']:.2f}% "
          f"(min {100 * min(out['accuracies']):.2f}%, max {100 * max(out['accuracies']):.2f}%)")
    c = out["cost"]
    print(f"cost per inference  {c['energy_j']:.3e} J  {c['latency_s']:.3e} s  "
          f"{c['area_mm2']:.4f} mm^2 (constants {args.cost_preset})")
    print(out["report"])
    return 0
