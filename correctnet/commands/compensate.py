"""``correctnet compensate``: train digital compensation for one plan and evaluate it."""

from __future__ import annotations

import argparse
import math
import os
import time
from typing import Any

from correctnet.commands.argtypes import (nonneg_float, nonneg_int, positive_float,
                                       positive_int, torch_device)

EPILOG = """\
examples:
  correctnet compensate --checkpoint runs/quick/lipschitz.pt \\
      --plan features.conv2=0.5,classifier.fc3=1 --out runs/comp
  correctnet compensate --checkpoint C --plan conv2=1 --epochs 3 --samples 250

Layer names are as in model.named_modules(); a short name (conv2, fc3) is accepted when it
is unique. Writes OUT/compensation.pt and OUT/result.json.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``compensate`` subcommand."""
    p = subparsers.add_parser(
        "compensate", help="train compensators for one plan and evaluate under variation",
        description="Insert generator/compensator pairs per --plan into a trained network, "
                    "train them under fresh variation every batch (base frozen), and report "
                    "Monte-Carlo accuracy and overhead.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="trained network (checkpoint.pt)")
    p.add_argument("--plan", required=True,
                   help="LAYER=RATIO,... e.g. features.conv2=0.5,classifier.fc3=1")
    p.add_argument("--sigma", type=nonneg_float, default=0.5, help="variation sigma (0.5)")
    p.add_argument("--epochs", type=positive_int, default=3, help="training epochs (3)")
    p.add_argument("--lr", type=positive_float, default=2e-3, help="Adam learning rate (2e-3)")
    p.add_argument("--samples", type=positive_int, default=250, help="Monte-Carlo samples")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="test images (default all)")
    p.add_argument("--train-limit", type=positive_int, default=None,
                   help="training images (default all)")
    p.add_argument("--tile", type=positive_int, default=128, help="tile rows = cols (128)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="seed (0)")
    p.add_argument("--device", type=torch_device, default=None, help="training device (cpu, cuda)")
    p.add_argument("--data-dir", default=None, help="dataset directory")
    p.add_argument("--threads", type=nonneg_int, default=1,
                   help="torch CPU threads (1 default: fastest for small models on 2 cores)")
    p.add_argument("--out", default=None, help="folder for compensation.pt and result.json")
    p.set_defaults(func=run)


def _full_name(name: str, layers: list[str]) -> str:
    """Expand a short layer name (``conv2``) to the unique full name, or fail naming both."""
    from correctnet.compensation import PlanError

    if name in layers:
        return name
    matches = [n for n in layers if n.split(".")[-1] == name]
    if len(matches) != 1:
        raise PlanError(f"--plan layer {name!r} is {'ambiguous' if matches else 'unknown'}"
                        f"; valid: {', '.join(layers)}")
    return matches[0]


def resolve_plan(text: str, layers: list[str]) -> dict[str, float]:
    """Parse ``--plan``: layer names are checked first, then the ratios.

    Short names (``conv2``) expand to the unique full name. A ratio of 0 leaves that layer
    uncompensated; at least one ratio must be > 0.

    Raises:
        PlanError: bad syntax, an unknown or ambiguous layer name, a ratio that is not a
            finite number >= 0, or a plan that compensates nothing (empty or all zero).
    """
    from correctnet.compensation import PlanError

    entries = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        if "=" not in item:
            raise PlanError(f"--plan entry {item!r} must look like LAYER=RATIO (e.g. conv2=0.5)")
        name, value = (s.strip() for s in item.split("=", 1))
        entries.append((name, value))
    if not entries:
        raise PlanError(f"--plan {text!r} is empty; give LAYER=RATIO,... with layers from: "
                        f"{', '.join(layers)}")
    named = [(_full_name(name, layers), value) for name, value in entries]
    plan = {}
    for name, value in named:
        try:
            ratio = float(value)
        except ValueError:
            ratio = math.nan
        if not (math.isfinite(ratio) and ratio >= 0):
            raise PlanError(f"--plan ratio for {name!r} must be a finite number >= 0, "
                            f"got {value!r}")
        if name in plan:
            raise PlanError(f"--plan names layer {name!r} twice; give each layer once")
        plan[name] = ratio
    plan = {k: v for k, v in sorted(plan.items()) if v > 0}
    if not plan:
        raise PlanError(f"--plan {text!r} compensates no layer (every ratio is 0); give at "
                        "least one ratio > 0")
    return plan


#: Bytes per compensator parameter while training: float32 weight, gradient, 2 Adam moments.
TRAIN_BYTES_PER_PARAMETER = 16


def check_plan_fits(model: Any, plan: dict[str, float], memory: int | None = None) -> None:
    """Refuse, before anything is allocated, a plan whose compensators cannot fit in memory.

    Needs ``sum_i compensation_cost(layer_i, ratio_i) * TRAIN_BYTES_PER_PARAMETER`` bytes
    (parameters only; activations come on top).

    Args:
        model: The uncompensated network.
        plan: Resolved plan (full layer names).
        memory: Bytes available (default: this machine's physical memory).

    Raises:
        PlanError: The compensators alone need more than ``memory``.
    """
    from correctnet.compensation import PlanError, compensation_cost

    if memory is None:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    modules = dict(model.named_modules())
    need = {k: compensation_cost(modules[k], r) * TRAIN_BYTES_PER_PARAMETER
            for k, r in plan.items()}
    if sum(need.values()) > memory:
        worst = max(need, key=need.get)
        raise PlanError(f"--plan needs {sum(need.values()) / 1e9:.3g} GB for the compensator "
                        f"parameters alone ({worst}={plan[worst]:g}: {need[worst] / 1e9:.3g} "
                        f"GB), more than this machine's {memory / 1e9:.3g} GB; use smaller "
                        "ratios (the paper's are <= 1)")


def run(args: argparse.Namespace) -> int:
    """Train and evaluate one plan; print accuracy and overhead."""
    from mapping import run_monte_carlo

    from correctnet.checkpoint import load_checkpoint
    from correctnet.compensation import compensable_layers, plan_overhead
    from correctnet.compensation_training import (
        CompensationConfig,
        save_compensation,
        train_compensation,
    )
    from correctnet.data import load_dataset, make_loader
    from correctnet.hardware import xbar_config
    from correctnet.runstore import ensure_output_dir, write_json

    import torch

    if args.out:
        ensure_output_dir(args.out)   # before the training, not after it
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    model, meta = load_checkpoint(args.checkpoint)
    model.eval()
    plan = resolve_plan(args.plan, compensable_layers(model))
    check_plan_fits(model, plan)
    overhead = plan_overhead(model, plan)
    dataset = meta.get("dataset", "fashion-mnist")
    train = make_loader(load_dataset(dataset, "train", data_dir=args.data_dir,
                                     limit=args.train_limit), 128, shuffle=True, seed=args.seed)
    test = make_loader(load_dataset(dataset, "test", data_dir=args.data_dir, limit=args.limit),
                       1000)
    cfg = xbar_config(args.sigma, args.tile)
    print(f"plan {plan} on {args.checkpoint}: overhead {overhead:.2%}", flush=True)
    t0 = time.perf_counter()
    analog, hist = train_compensation(model, plan, train, cfg,
                                      CompensationConfig(epochs=args.epochs, lr=args.lr,
                                                         seed=args.seed),
                                      device=args.device, progress=True)
    print(f"trained in {time.perf_counter() - t0:.1f} s (loss per epoch "
          f"{', '.join(f'{x:.3f}' for x in hist['loss'])})", flush=True)
    res = run_monte_carlo(analog, test, samples=args.samples, seed=args.seed)
    print(f"CorrectNet under sigma {args.sigma:g}: {100 * res.mean:.2f}% +- {100 * res.std:.2f}% "
          f"over {res.samples} samples, overhead {100 * overhead:.2f}%")
    if args.out:
        save_compensation(f"{args.out}/compensation.pt", analog, plan,
                          {"checkpoint": str(args.checkpoint), "overhead": overhead})
        write_json(f"{args.out}/result.json",
                   {"plan": plan, "overhead": overhead, "sigma": args.sigma,
                    "mean": res.mean, "std": res.std, "samples": res.samples,
                    "loss": hist["loss"], "checkpoint": str(args.checkpoint)})
        print(f"wrote {args.out}/compensation.pt and result.json")
    return 0
