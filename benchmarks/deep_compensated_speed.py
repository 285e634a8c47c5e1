"""Fused Monte-Carlo of a finished deep run's CorrectNet network: seconds a sample, accuracies.

Loads RUN/config.json, the Lipschitz base and RUN/correctnet.pt, runs ``--samples`` device
samples on the 10k test images with the study's seed (the same draws as the first ones of
RUN/stages/evaluate_correctnet.json) and prints the seconds per sample and both accuracy
lists. Run it with PYTHONPATH set to the tree being measured:

    heavy env PYTHONPATH=$PWD .venv/bin/python benchmarks/deep_compensated_speed.py \
        --run results/deep-vgg16bn-w0.125 --samples 5
"""
import argparse
import json
import time
from pathlib import Path

import mapping
from correctnet.study.context import StudyContext
from correctnet.study.presets import Preset


def main() -> None:
    """Parse the arguments, run the Monte-Carlo, print one line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="results/deep-vgg16bn-w0.125",
                    help="finished deep run folder")
    ap.add_argument("--samples", type=int, default=5, help="device samples (5)")
    args = ap.parse_args()
    cfg = json.loads(Path(args.run, "config.json").read_text())
    ctx = StudyContext(cfg["model"], cfg["dataset"], cfg["sigma"], args.run,
                       Preset.from_dict(cfg["preset"]), progress=False)
    mapping.warmup()
    model = ctx.compensated_network("correctnet")
    t0 = time.perf_counter()
    res = ctx.monte_carlo(model, sigma=cfg["sigma"], samples=args.samples, limit=None)
    dt = time.perf_counter() - t0
    stage = json.loads(Path(args.run, "stages", "evaluate_correctnet.json").read_text())
    ref = stage["result"]["seed_accuracies"][0][:args.samples]
    print(f"s/sample {dt / args.samples:.2f}; accuracies {res['accuracies']}; "
          f"committed run {ref}")


if __name__ == "__main__":
    main()
