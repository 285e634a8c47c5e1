"""Time the building blocks of a deep study (``reproduce --preset deep``) on this machine.

    python benchmarks/deep_budget.py [--model vgg16_bn] [--width 0.125] [--threads 1]
        [--batches 30] [--mc-images 10000] [--checkpoint C]

Prints a table: seconds per training batch (plain, Lipschitz soft penalty, variation-aware,
compensation training of a plan on the first six convolutions at ratio 1) and the same scaled
to one epoch of 60k images, and seconds per Monte-Carlo sample over ``--mc-images`` test
images on the fused numba engine (plain network, compensated network). ``--checkpoint`` uses a
trained network (a fresh one otherwise: the timings do not depend on the weights). The
``deep`` preset's docstring multiplies these by its counts.
"""

from __future__ import annotations

import argparse
import time

import torch


def _time_steps(step, batches: int) -> float:
    step()                                   # warm-up (allocations, first-call costs)
    t0 = time.perf_counter()
    for _ in range(batches):
        step()
    return (time.perf_counter() - t0) / batches


# Long: a benchmark script that prints its table top to bottom, read in one go.
def main() -> None:
    """Measure and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vgg16_bn")
    ap.add_argument("--width", type=float, default=0.125)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--mc-images", type=int, default=10000)
    ap.add_argument("--mc-samples", type=int, default=3)
    ap.add_argument("--checkpoint", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import mapping
    from correctnet.workloads.checkpoint import load_checkpoint
    from correctnet.compensation.overhead import plan_overhead
    from correctnet.compensation.train import CompensationConfig, train_compensation
    from correctnet.workloads.data import load_dataset, make_loader
    from xbar import XbarConfig
    from correctnet.training.lipschitz import lipschitz_lambda, normalized_penalty
    from correctnet.workloads.models import build_model
    from correctnet.training.perturb import perturbed_weights

    HW = XbarConfig.rram_lognormal(0.5, n_rows=128, n_cols=128)   # the study's hardware

    if args.checkpoint:
        model, _ = load_checkpoint(args.checkpoint)
    else:
        torch.manual_seed(0)
        model = build_model(args.model, width=args.width)
    train = load_dataset("fashion-mnist", "train", limit=args.batch_size * (args.batches + 1))
    x, y = train.tensors[0][:args.batch_size], train.tensors[1][:args.batch_size]
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    lam = lipschitz_lambda(0.5)
    gen = torch.Generator().manual_seed(0)

    def step(kind: str):
        def run():
            model.train()
            if kind == "variation-aware":
                logits = torch.func.functional_call(model, perturbed_weights(model, 0.5, gen),
                                                    (x,), strict=False)
            else:
                logits = model(x)
            loss = torch.nn.functional.cross_entropy(logits, y)
            if kind == "lipschitz":
                loss = loss + 0.1 * normalized_penalty(model, lam)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return run

    steps_per_epoch = -(-60000 // args.batch_size)
    rows = []
    for kind in ("plain", "lipschitz", "variation-aware"):
        s = _time_steps(step(kind), args.batches)
        rows.append((f"train batch {kind}", s, s * steps_per_epoch))
    model.eval()
    convs = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)][:6]
    plan = {n: 1.0 for n in convs}
    loader = make_loader(train, args.batch_size, shuffle=True, seed=0)
    t0 = time.perf_counter()
    train_compensation(model, plan, loader, HW,
                       CompensationConfig(epochs=1, lr=2e-3, seed=0))
    s = (time.perf_counter() - t0) / len(loader)
    rows.append((f"compensation batch, 6 convs ratio 1 ({plan_overhead(model, plan):.2%})", s,
                 s * steps_per_epoch))
    print(f"numba warm-up {mapping.warmup():.2f} s")
    test = make_loader(load_dataset("fashion-mnist", "test", limit=args.mc_images), 1000)
    comp, _ = train_compensation(model, plan, [(x, y)], HW,
                                 CompensationConfig(epochs=1, lr=2e-3, seed=0))
    eight_bit = XbarConfig.rram_lognormal(0.5, n_rows=64, n_cols=64, dac_bits=8, adc_bits=8)
    for label, net, converted in (("plain", model, False), ("compensated", comp, True),
                                  ("plain, 8-bit DAC/ADC, 64x64 tiles",
                                   mapping.convert_to_crossbar(model, eight_bit), True)):
        analog = net if converted else mapping.convert_to_crossbar(net, HW)
        mapping.run_monte_carlo(analog, test, samples=1, seed=0, progress=False)  # set-up
        t0 = time.perf_counter()
        mapping.run_monte_carlo(analog, test, samples=args.mc_samples, seed=1, progress=False)
        rows.append((f"Monte-Carlo sample, {args.mc_images} images, {label}",
                     (time.perf_counter() - t0) / args.mc_samples, None))
    print(f"{args.model} width {args.width:g}, {args.threads} thread(s), batch "
          f"{args.batch_size}, {steps_per_epoch} batches per 60k-image epoch")
    print("| what | seconds | per 60k epoch (s) |")
    print("|---|---|---|")
    for what, s, epoch in rows:
        print(f"| {what} | {s:.4f} | {'' if epoch is None else f'{epoch:.0f}'} |")


if __name__ == "__main__":
    main()
