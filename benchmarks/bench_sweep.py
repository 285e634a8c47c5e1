"""Wall time of a 24-point LeNet-5 sweep: in-process vs ``--workers N`` (local Dask cluster).

The grid is one LeNet-5 checkpoint x 6 sigmas x 4 tile sizes = 24 points, each a Monte-Carlo of
``--samples`` device samples on the first ``--limit`` Fashion-MNIST test images. Each mode runs
``correctnet sweep`` as a fresh subprocess into a fresh folder, so the times include process
start, the numba cache load and (for workers) starting the cluster. The CSV rows of every mode
are checked to equal the in-process ones (timing columns excepted).

The checkpoint is a seeded, untrained LeNet-5 (training does not change the cost of a point).

Run: ``.venv/bin/python benchmarks/bench_sweep.py [--workers 2] [--samples 10] [--limit 1000]``
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from correctnet.workloads.checkpoint import save_checkpoint  # noqa: E402
from correctnet.workloads.models import build_model  # noqa: E402

SIGMA, TILES = "0:1:0.2", "32,64,128,256"


def rows(path: Path) -> list[dict]:
    with open(path) as handle:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(handle)]


def sweep(checkpoint: Path, out: Path, samples: int, limit: int, extra: list[str]) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT), TQDM_DISABLE="1")
    cmd = [sys.executable, "-m", "correctnet", "sweep", "--checkpoint", str(checkpoint),
           "--sigma", SIGMA, "--tile", TILES, "--samples", str(samples), "--limit", str(limit),
           "--out", str(out), *extra]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if done.returncode != 0 or "24 computed" not in done.stdout:
        raise SystemExit(f"sweep failed ({' '.join(extra) or 'in-process'}):\n{done.stderr}")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[2])
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--limit", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        meta = {"model": "lenet5", "num_classes": 10, "in_channels": 1, "input_size": 28,
                "dataset": "fashion-mnist"}
        ckpt = save_checkpoint(tmp / "lenet5" / "checkpoint.pt", build_model("lenet5"), meta)
        results = [("in-process", sweep(ckpt, tmp / "inproc", args.samples, args.limit, []))]
        reference = rows(tmp / "inproc" / "sweep.csv")
        for n in args.workers:
            out = tmp / f"workers{n}"
            results.append((f"--workers {n}", sweep(ckpt, out, args.samples, args.limit,
                                                    ["--workers", str(n)])))
            if rows(out / "sweep.csv") != reference:
                raise SystemExit(f"--workers {n} gave other CSV rows than in-process")
    print(f"24-point LeNet-5 sweep (sigma {SIGMA}, tiles {TILES}), {args.samples} samples x "
          f"{args.limit} images per point; {os.cpu_count()} CPUs, {platform.processor() or '?'}, "
          f"python {platform.python_version()}, torch {torch.__version__}")
    print(f"{'mode':<14} {'wall s':>8} {'s/point':>8} {'speed-up':>9}  rows = in-process")
    base = results[0][1]
    for mode, seconds in results:
        print(f"{mode:<14} {seconds:8.1f} {seconds / 24:8.2f} {base / seconds:8.2f}x  yes")


if __name__ == "__main__":
    main()
