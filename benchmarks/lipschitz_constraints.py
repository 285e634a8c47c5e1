"""Plain vs Lipschitz (soft penalty, hard retraction, digital gains) LeNet-5 at sigma 0.5: a table.

Trains each network with the quick preset's recipe (3 epochs, Adam 1e-3, batch 128, all 60k
Fashion-MNIST images, seed 0; Lipschitz networks with the learned digital logit scale) through
``python -m correctnet train``, then runs ``python -m correctnet simulate --sigma 0.5`` (128x128
tiles, 8-bit DAC/ADC, weight-level variation, the same device-sample seed for every network)
and prints clean accuracy, mean +- std under variation, the per-layer diagnostics and the
paired difference to the plain network over the shared device samples (mean +- standard
error; training-seed spread is not included: between runs of the same recipe the plain
network's robustness varies by several points).

    python benchmarks/lipschitz_constraints.py --out runs/lipbench            # ~20 min, 2 cores
    python benchmarks/lipschitz_constraints.py --out runs/lipbench --only plain hard
    python benchmarks/lipschitz_constraints.py --out R --epochs 1 --limit 2000 --samples 5

Existing ``OUT/NAME/checkpoint.pt`` and ``OUT/NAME.sim.json`` are reused.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LIP = ["--method", "lipschitz", "--learn-output-scale"]
VARIANTS: dict[str, list[str]] = {
    "plain": [],
    "soft, beta 0.1": [*LIP, "--constraint", "soft", "--beta", "0.1"],
    "soft, beta 1": [*LIP, "--constraint", "soft", "--beta", "1"],
    "soft, beta 10": [*LIP, "--constraint", "soft", "--beta", "10"],
    "hard (SVD retraction)": [*LIP, "--constraint", "hard"],
    "soft, beta 0.1, channel gains": [*LIP, "--constraint", "soft", "--beta", "0.1",
                                      "--digital-gain", "channel"],
    "hard, channel gains": [*LIP, "--constraint", "hard", "--digital-gain", "channel"],
    "hard, scalar gains": [*LIP, "--constraint", "hard", "--digital-gain", "scalar"],
}


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def _run(args: list[str]) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT), TQDM_DISABLE="1")
    done = subprocess.run([sys.executable, "-m", "correctnet", *args], capture_output=True,
                          text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"correctnet {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def main() -> None:
    """Train, simulate and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only", nargs="+", default=None,
                        help=f"variant slugs: {', '.join(_slug(n) for n in VARIANTS)}")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None, help="train images (all)")
    parser.add_argument("--samples", type=int, default=50)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch

    from correctnet.workloads.checkpoint import load_checkpoint, read_checkpoint
    from correctnet.training.diagnostics import layer_diagnostics
    from correctnet.training.lipschitz import lipschitz_lambda
    from correctnet.workloads.gains import digital_gains

    rows = []
    for name, extra in VARIANTS.items():
        slug = _slug(name)
        if args.only and slug not in args.only and slug != "plain":
            continue
        ck = args.out / slug / "checkpoint.pt"
        if not ck.is_file():
            limit = ["--limit", str(args.limit)] if args.limit else []
            _run(["train", "--model", "lenet5", "--epochs", str(args.epochs), "--seed", "0",
                  *limit, *extra, "--out", str(ck.parent)])
        sim = args.out / f"{slug}.sim.json"
        if not sim.is_file():
            sim.write_text(_run(["simulate", "--checkpoint", str(ck), "--sigma", "0.5",
                                 "--samples", str(args.samples), "--json"]))
        rows.append((name, read_checkpoint(ck)["meta"], json.loads(sim.read_text())))
    plain = np.array(rows[0][2]["accuracies"])
    print("| network | clean % | sigma 0.5 % (mean +- std) | paired diff. vs plain, pts "
          "(+- s.e.) | sigma_max conv1 / conv2 / fc1 / fc2 / fc3 | operator norm conv1 / "
          "conv2 | binds | logit scale | digital gains (min - max) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, meta, sim in rows:
        model = load_checkpoint(args.out / _slug(name) / "checkpoint.pt")[0]
        gains = [g.gain for _, g in digital_gains(model)]
        gain_range = (f"{min(float(g.min()) for g in gains):.3g} - "
                      f"{max(float(g.max()) for g in gains):.3g}" if gains else "-")
        diag = meta.get("diagnostics")
        if not diag:  # plain: the same diagnostics, computed from the checkpoint
            diag = layer_diagnostics(model, lipschitz_lambda(0.5), torch.zeros(1, 1, 28, 28))
        acc = np.array(sim["accuracies"])
        diff = acc - plain
        paired = ("-" if name == "plain" else
                  f"{100 * diff.mean():+.2f} +- {100 * diff.std(ddof=1) / np.sqrt(diff.size):.2f}")
        smax = " / ".join(f"{d['sigma_max']:.2f}" for d in diag.values())
        ops = " / ".join(f"{d['operator_norm']:.2f}" for n, d in diag.items() if "conv" in n)
        binds = f"{sum(d['binds'] for d in diag.values())}/{len(diag)}"
        print(f"| {name} | {100 * sim['clean_accuracy']:.2f} | {100 * sim['mean']:.2f} +- "
              f"{100 * sim['std']:.2f} | {paired} | {smax} | {ops} | {binds} | "
              f"{meta.get('output_scale', 1.0):.3g} | {gain_range} |")


if __name__ == "__main__":
    main()
