"""``correctnet train``: train a network (plain, Lipschitz or variation-aware) to a checkpoint."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from correctnet.commands.argtypes import (method_name, nonneg_float, nonneg_int, positive_float,
                                       positive_int, torch_device)

EPILOG = """\
examples:
  correctnet train --model lenet5 --dataset fashion-mnist --epochs 10 --out runs/plain
  correctnet train --method lipschitz --sigma 0.5 --beta 0.1 --epochs 10 --out runs/lip
  correctnet train --method lipschitz --constraint hard --learn-output-scale --out runs/hard
  correctnet train --method lipschitz --constraint hard --digital-gain channel \
      --learn-output-scale --out runs/hard-gain   # per-channel digital gains after the ADCs
  correctnet train --method variation-aware --sigma 0.5 --epochs 10 --out runs/va
  correctnet train --model vgg16_bn --width 0.125 --epochs 3 --out runs/vgg8-plain
  correctnet train --model vgg16_bn --width 0.125 --method variation-aware --epochs 2 \
      --lr 3e-4 --init-from runs/vgg8-plain/checkpoint.pt --sigma-ramp 1 --bn-stats clean \
      --out runs/vgg8-va          # warm start, sigma ramp, chip-like batch-norm statistics
  correctnet train --method lipschitz --learn-output-scale --epochs 10 --out runs/lip-s
  correctnet train --epochs 10 --out runs/plain --resume       # continue after Ctrl-C
  correctnet train --epochs 1 --limit 2048 --out /tmp/quick     # a quick subset run

Writes OUT/checkpoint.pt after every epoch (atomically) and OUT/checkpoint-epochNNN.pt;
--resume continues from OUT/checkpoint.pt with the same result as an uninterrupted run.
"""


# Long (~60 lines): the argparse option list of ``train``, one option after another.
def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand."""
    from correctnet.workloads.data import DATASET_NAMES
    from correctnet.workloads.gains import DIGITAL_GAINS
    from correctnet.workloads.models import MODEL_NAMES
    from correctnet.training.train import BN_STATS, CONSTRAINTS, METHODS, OPTIMIZERS

    p = subparsers.add_parser(
        "train", help="train a network to a checkpoint (plain, lipschitz, variation-aware)",
        description="Train a network and write OUT/checkpoint.pt after every epoch.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=MODEL_NAMES, default="lenet5", help="network (lenet5)")
    p.add_argument("--width", type=positive_float, default=1.0,
                   help="VGG16 channel multiplier: 0.0625, 0.125, 0.25, 0.5 or 1 (1)")
    p.add_argument("--dataset", choices=DATASET_NAMES, default="fashion-mnist",
                   help="dataset (fashion-mnist)")
    p.add_argument("--data-dir", default=None,
                   help="dataset directory (default: /usr/share/datasets/fashion-mnist)")
    p.add_argument("--download", action="store_true",
                   help="let torchvision download missing data into --data-dir")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--method", type=method_name, choices=METHODS, default="plain",
                   help="training method (plain)")
    p.add_argument("--epochs", type=positive_int, default=10, help="epochs (10)")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="learning rate (1e-3)")
    p.add_argument("--batch-size", type=positive_int, default=128, help="batch size (128)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="optimizer (adam)")
    p.add_argument("--weight-decay", type=nonneg_float, default=0.0, help="L2 decay (0)")
    p.add_argument("--sigma", type=nonneg_float, default=0.5,
                   help="variation std: sets lambda (lipschitz) or the sampled "
                        "variation (variation-aware) (0.5)")
    p.add_argument("--beta", type=nonneg_float, default=None,
                   help="weight of the per-layer-normalised orthogonality penalty, lipschitz "
                        "--constraint soft only (0.1)")
    p.add_argument("--constraint", choices=CONSTRAINTS, default=None,
                   help="lipschitz only: soft = penalty (eq. 11), hard = every analog weight "
                        "held at lambda x orthogonal by an SVD retraction each step (soft)")
    p.add_argument("--k", type=positive_float, default=1.0,
                   help="target Lipschitz constant in lambda (1)")
    p.add_argument("--output-scale", type=positive_float, default=1.0,
                   help="digital scalar on the logits (1)")
    p.add_argument("--learn-output-scale", action="store_true",
                   help="learn the digital logit scale")
    p.add_argument("--output-scale-lr", type=positive_float, default=1e-2,
                   help="learning rate of the learned log-scales: logit scale and digital "
                        "gains (1e-2)")
    p.add_argument("--digital-gain", choices=DIGITAL_GAINS, default="none",
                   help="learned digital gain after every analog layer not followed by a "
                        "batch-norm: one scalar per layer or one per output channel (none)")
    p.add_argument("--init-from", type=Path, default=None, metavar="CHECKPOINT",
                   help="warm start: load this checkpoint's weights (same model and width) "
                        "before the first epoch")
    p.add_argument("--sigma-ramp", type=nonneg_float, default=0.0, metavar="EPOCHS",
                   help="variation-aware: sigma rises linearly from 0 over this many epochs (0)")
    p.add_argument("--bn-stats", choices=BN_STATS, default="batch",
                   help="variation-aware: batch = torch's train-mode batch-norm; clean / noisy "
                        "= running statistics during training, recalibrated every epoch "
                        "without / with variation (batch)")
    p.add_argument("--bn-calibration-batches", type=positive_int, default=50,
                   help="batches per batch-norm recalibration (50)")
    p.add_argument("--seed", type=nonneg_int, default=0,
                   help="seed of init, shuffling, variation (0)")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="use only the first N training and N test examples")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--device", type=torch_device, default="cpu", help="cpu | cuda | cuda:N (cpu)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run, interrupt_hint="rerun the same command with --resume to continue "
                                            "from the last finished epoch")


def run(args: argparse.Namespace) -> int:
    """Execute ``correctnet train``."""
    import torch

    from correctnet.fileio import ensure_output_dir
    from correctnet.training.train import train_model
    from correctnet.workloads.data import dataset_info, load_dataset, make_loader
    from correctnet.workloads.models import build_model

    width = _check_arguments(args)
    ensure_output_dir(args.out)   # before loading data and training
    cfg = _train_config(args)
    info = dataset_info(args.dataset)
    train, test = (load_dataset(args.dataset, split, data_dir=args.data_dir,
                                download=args.download, limit=args.limit)
                   for split in ("train", "test"))
    torch.manual_seed(args.seed)
    model = build_model(args.model, num_classes=info["num_classes"],
                        in_channels=info["in_channels"], input_size=info["input_size"],
                        width=width, digital_gain=args.digital_gain)
    meta = {"model": args.model, "dataset": args.dataset, "num_classes": info["num_classes"],
            "in_channels": info["in_channels"], "input_size": info["input_size"],
            "data_dir": args.data_dir, "limit": args.limit}
    if width != 1.0:
        meta["width"] = width
    path = args.out / "checkpoint.pt"
    _check_resume(path, args, width)
    history = train_model(model, make_loader(train, cfg.batch_size, shuffle=True, seed=args.seed),
                          make_loader(test, 1000), cfg, checkpoint_path=path,
                          resume=args.resume, progress=True, meta=meta, device=args.device)
    acc = history["test_accuracy"][-1] if history["test_accuracy"] else None
    if args.json:
        print(json.dumps({"checkpoint": str(path), "test_accuracy": acc,
                          "epochs": history["epoch"], "history": history}))
        return 0
    _print_history(history, cfg.method, acc, path)
    return 0


def _check_arguments(args: argparse.Namespace) -> float:
    """Refuse option combinations that do not apply; returns the checked ``--width``."""
    from correctnet.errors import UsageError
    from correctnet.workloads.models import check_width

    if args.device.split(":")[0] not in ("cpu", "cuda"):
        raise UsageError(f"--device must be cpu, cuda or cuda:N, got {args.device!r}")
    if args.method != "lipschitz" and (args.constraint is not None or args.beta is not None):
        raise UsageError("--constraint and --beta apply to --method lipschitz only")
    if args.constraint == "hard" and args.beta is not None:
        raise UsageError("--beta sets the soft penalty; --constraint hard has none")
    width = check_width(args.model, args.width)
    if args.method != "variation-aware" and (args.sigma_ramp or args.bn_stats != "batch"):
        raise UsageError("--sigma-ramp and --bn-stats apply to --method variation-aware only")
    if args.init_from is not None and not args.init_from.is_file():
        raise UsageError(f"--init-from {args.init_from}: no such checkpoint file")
    return width


def _train_config(args: argparse.Namespace):
    """The :class:`~correctnet.training.config.TrainConfig` of the command's options."""
    from correctnet.training.config import TrainConfig

    return TrainConfig(method=args.method, epochs=args.epochs, lr=args.lr,
                       batch_size=args.batch_size, optimizer=args.optimizer, sigma=args.sigma,
                       beta=0.1 if args.beta is None else args.beta,
                       constraint=args.constraint or "soft",
                       k=args.k, weight_decay=args.weight_decay, seed=args.seed,
                       output_scale=args.output_scale,
                       learn_output_scale=args.learn_output_scale,
                       output_scale_lr=args.output_scale_lr,
                       init_checkpoint=None if args.init_from is None else str(args.init_from),
                       sigma_ramp_epochs=args.sigma_ramp, bn_stats=args.bn_stats,
                       bn_calibration_batches=args.bn_calibration_batches)


def _check_resume(path: Path, args: argparse.Namespace, width: float) -> None:
    """An existing checkpoint needs ``--resume`` and the same model, dataset and width."""
    from correctnet.errors import CheckpointError, UsageError

    if path.exists() and not args.resume:
        raise UsageError(f"{path} exists; add --resume to continue it or choose another --out")
    if not path.exists():
        return
    from correctnet.workloads.checkpoint import read_checkpoint

    old = {"width": 1.0, "digital_gain": "none", **read_checkpoint(path)["meta"]}
    for key, given in (("model", args.model), ("dataset", args.dataset), ("width", width),
                       ("digital_gain", args.digital_gain)):
        if old.get(key) != given:
            raise CheckpointError(f"cannot resume {path}: it holds {key} {old.get(key)!r}, "
                                  f"not --{key.replace('_', '-')} {given!r}")


def _print_history(history: dict, method: str, acc: float, path: Path) -> None:
    """One line per epoch (with the Lipschitz diagnostics), final norms and accuracy."""
    from correctnet.training.diagnostics import format_diagnostics

    diags = history.get("diagnostics") or [None] * len(history["epoch"])
    for epoch, loss, test_acc, diag in zip(history["epoch"], history["train_loss"],
                                           history["test_accuracy"], diags):
        print(f"epoch {epoch:3d}  train loss {loss:.4f}  test accuracy {100 * test_acc:.2f}%")
        if diag:
            print(f"  sigma_max/sigma_min: {format_diagnostics(diag, history['lambda'])}")
    if method == "lipschitz" and history["spectral_norms"]:
        norms = history["spectral_norms"][-1]
        print(f"spectral norms (lambda {history['lambda']:.4f}): "
              + ", ".join(f"{name} {value:.3f}" for name, value in norms.items()))
    print(f"test accuracy {100 * acc:.2f}%  checkpoint {path}")
