"""``correctnet reproduce``: the whole CorrectNet study, resumable, with a report."""

from __future__ import annotations

import argparse
import time

from correctnet.commands.argtypes import nonneg_float, nonneg_int

EPILOG = """\
examples:
  correctnet reproduce --preset quick --out runs/quick          # LeNet-5 / Fashion-MNIST, CPU
  correctnet reproduce --model vgg16 --dataset cifar10 --data-dir D --preset paper \\
      --device cuda --out runs/vgg16-c10
  correctnet reproduce --preset quick --out runs/quick          # again: resumes / reports
  correctnet reproduce --preset quick --base lipschitz --out runs/quick-lip   # paper's base

Stages: train_plain, train_lipschitz, train_variation_aware, evaluate_baselines, candidates,
search, train_compensation, evaluate_correctnet, sweeps, report. Each stage's result is saved
in OUT/stages/ when it finishes; an interrupted run resumes at the first unfinished stage.
OUT/config.json records the arguments: rerunning with other ones is refused (--workers,
--scheduler, --threads and --no-progress do not change results and are not recorded).
--workers N / --scheduler ADDRESS: the search stage evaluates independent plans (the
exhaustive search's, and each RL episode batch's) on Dask workers; only this process writes
OUT/plans.json, and the plans, chosen plan and report are the same as in-process.
Writes OUT/report.md, OUT/report.json and OUT/fig_*.png.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``reproduce`` subcommand."""
    from correctnet.data import DATASET_NAMES
    from correctnet.models import MODEL_NAMES
    from correctnet.presets import PRESET_NAMES

    p = subparsers.add_parser(
        "reproduce", help="train, search, compensate and report (the CorrectNet study)",
        description="Reproduce CorrectNet: plain / Lipschitz / variation-aware networks, "
                    "candidate layers, RL placement search, compensation, Monte-Carlo report.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=MODEL_NAMES, default="lenet5", help="network (lenet5)")
    p.add_argument("--dataset", choices=DATASET_NAMES, default="fashion-mnist",
                   help="dataset (fashion-mnist)")
    p.add_argument("--sigma", type=nonneg_float, default=0.5,
                   help="lognormal device variation sigma (0.5)")
    p.add_argument("--out", required=True, help="run folder (created; reruns resume)")
    p.add_argument("--preset", choices=PRESET_NAMES, default="quick",
                   help="settings: quick (CPU, <= 15 min), paper (GPU), tiny (tests)")
    p.add_argument("--device", default=None, help="training device: cpu (default) or cuda")
    p.add_argument("--data-dir", default=None, help="dataset directory (CIFAR)")
    p.add_argument("--threads", type=nonneg_int, default=1,
                   help="torch CPU threads (1: small models on a shared 2-core CPU are several "
                        "times faster single-threaded; 0 keeps torch's default)")
    p.add_argument("--base", choices=("lipschitz", "plain", "variation_aware"), default=None,
                   help="network CorrectNet compensates (default: the preset's; quick uses "
                        "variation_aware, paper uses lipschitz as in the paper)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    from correctnet.distributed import add_dask_arguments

    add_dask_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run (or resume) the pipeline and print the report table."""
    import dataclasses
    import json

    from correctnet.pipeline import Pipeline
    from correctnet.presets import get_preset
    from correctnet.report import markdown_table

    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    preset = get_preset(args.preset)
    if args.base is not None:
        preset = dataclasses.replace(preset, base=args.base)
    from correctnet.distributed import compute_threads, dask_client

    workers = getattr(args, "workers", None)
    scheduler = getattr(args, "scheduler", None)
    # workers use --threads (the same float summation order as in-process), else a fair share
    threads = args.threads or (compute_threads(workers) if workers else None)
    pipe = Pipeline(args.model, args.dataset, args.sigma, args.out, preset,
                    device=args.device, data_dir=args.data_dir,
                    progress=not args.no_progress, log=lambda line: print(line, flush=True),
                    worker_threads=threads)
    print(f"correctnet reproduce: {args.model} on {args.dataset}, sigma {args.sigma:g}, "
          f"preset {args.preset}, run folder {args.out}", flush=True)
    import mapping

    print(f"numba kernels ready in {mapping.warmup():.2f} s (compiled on first use, then cached)",
          flush=True)
    if pipe.store.done("search"):   # no stage left that uses workers: start no cluster
        workers = scheduler = None
    with dask_client(workers, scheduler, log=lambda line: print(line, flush=True)) as client:
        pipe.client = client
        pipe.run()
    report = json.loads(pipe.store.path("report.json").read_text())
    print()
    print(markdown_table(report))
    print(f"\nreport: {pipe.store.path('report.md')} ({time.perf_counter() - t0:.1f} s this call)")
    return 0
