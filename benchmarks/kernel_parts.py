"""Each fused conv kernel of a Monte-Carlo run timed on its own, with and without its correction.

Runs one chunk of a Monte-Carlo run (``--images`` Fashion-MNIST test images, ``--samples``
device samples, 8-bit DAC/ADC, sigma 0.5, 128x128 tiles) of LeNet-5, LeNet-5 with conv1=1,
conv2=1 CorrectNet compensation (untrained: the compensators' arithmetic runs in full) or
VGG16/8 with batch-norm, and keeps the arguments of each conv kernel call at the chunk's
size (``mapping.fastpath.conv_kernel`` is wrapped for that run only). Then each kept call
is repeated ``--calls`` times (minimum and median milliseconds) and, where the layer has a
digital correction (``cg[6] > 0``), each call is followed by the same call with the
correction switched off (``cg[6] = 0``): the median of the paired differences is the
correction's cost inside its kernel. The first
layer's call covers all the samples of a group (they share its input); the other layers'
calls one sample each.

Kernel times move by 10-30 % between processes on a shared 2-core machine: compare trees
by running this script with each tree's PYTHONPATH alternately:

    heavy env PYTHONPATH=<tree> .venv/bin/python benchmarks/kernel_parts.py \
        --network lenet5-comp
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from bench_montecarlo import compensated, lenet5, load, vgg16_bn

import mapping
from mapping import fastpath
from xbar import ADCConfig, DACConfig, DeviceConfig, TileConfig, XbarConfig

NETWORKS = {"lenet5": lenet5, "lenet5-comp": lambda: compensated(lenet5()),
            "vgg16bn8": lambda: vgg16_bn(8)}


def capture(model, x, y, samples: int) -> list[tuple[str, list]]:
    """``(kernel name, args)`` of each conv kernel call of one Monte-Carlo chunk.

    Only calls over all of ``x`` (not the probe batches), the first of each layer shape.
    """
    calls, seen = [], set()
    original = fastpath.conv_kernel

    def spy(st, geom):
        kernel, nb = original(st, geom)

        def record(*args):
            if kernel is mapping.kernels.analog_conv_interleaved:
                args = args + (nb,)
            key = (kernel.__name__, args[0].shape[2:], args[1].shape[1:])
            if args[0].shape[1] == len(y) and key not in seen:
                seen.add(key)
                calls.append((kernel.__name__, [np.copy(a) if isinstance(a, np.ndarray) else a
                                                for a in args]))
            return kernel(*args)
        return record, nb

    fastpath.conv_kernel = spy
    try:
        mapping.run_monte_carlo(model, [(x, y)], samples=samples, seed=0, progress=False)
    finally:
        fastpath.conv_kernel = original
    return calls


def timed(kernel, variants: list, calls: int) -> list[list[float]]:
    """Milliseconds of ``calls`` rounds of ``kernel``, one call per argument list a round.

    The variants of a round (after one warm-up call each) see the same machine load.
    Returns one list of times per variant.
    """
    for args in variants:
        kernel(*args)
    times: list[list[float]] = [[] for _ in variants]
    for _ in range(calls):
        for v, args in enumerate(variants):
            t0 = time.perf_counter()
            kernel(*args)
            times[v].append(1e3 * (time.perf_counter() - t0))
    return times


def main() -> None:
    """Parse the arguments, capture, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--network", choices=sorted(NETWORKS), default="lenet5-comp")
    ap.add_argument("--images", type=int, default=1000, help="images of the chunk (1000)")
    ap.add_argument("--samples", type=int, default=8, help="device samples (8)")
    ap.add_argument("--calls", type=int, default=20, help="timed calls per kernel (20)")
    args = ap.parse_args()
    if args.images < 1 or args.samples < 1 or args.calls < 1:
        ap.error("--images, --samples and --calls must be at least 1")
    x, y = load("t10k")
    torch.manual_seed(0)
    net = NETWORKS[args.network]()
    if net is None:
        ap.error("lenet5-comp needs correctnet importable")
    cfg = XbarConfig(tile=TileConfig(128, 128), device=DeviceConfig(sigma=0.5),
                     dac=DACConfig(bits=8), adc=ADCConfig(bits=8))
    analog = mapping.convert_to_crossbar(net.eval(), cfg).eval()
    calls = capture(analog, x[:args.images], y[:args.images], args.samples)
    print(f"kernel_parts {args.network}: {args.images} images, milliseconds per call "
          f"(min / median of {args.calls})")
    print(f"  {'input (C, H, W) -> O':<24} {'kernel':<24} {'samples':>7} {'with':>15} "
          f"{'no correction':>15} {'correction':>10}")
    for name, kargs in calls:
        kernel = getattr(mapping.kernels, name)
        variants = [kargs]
        if kargs[11][6] > 0:
            plain = list(kargs)
            plain[11] = kargs[11].copy()
            plain[11][6] = 0
            variants.append(plain)
        times = timed(kernel, variants, args.calls)
        shape = f"{tuple(kargs[0].shape[2:])} -> {kargs[1].shape[2]}"
        cells = [f"{min(t):.2f} / {np.median(t):.2f}" for t in times]
        if len(times) == 2:
            cells.append(f"{np.median(np.subtract(times[0], times[1])):.2f}")
        else:
            cells += ["-", "-"]
        print(f"  {shape:<24} {name:<24} {kargs[1].shape[0]:>7} {cells[0]:>15} "
              f"{cells[1]:>15} {cells[2]:>10}")

if __name__ == "__main__":
    main()
