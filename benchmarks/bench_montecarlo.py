"""Seconds per Monte-Carlo device sample vs one plain torch pass (LeNet-5, Fashion-MNIST).

LeNet-5 on the 10,000 Fashion-MNIST test images, sigma 0.5 (weight-level lognormal), 128x128
tiles, 8-bit DAC and ADC. Plain torch inference of the same network on the same images is timed
in the same run with ``torch.set_num_threads`` equal to Numba's thread count.

A second table compares networks: LeNet-5, LeNet-5 with CorrectNet compensation on conv1 and
conv2 (ratio 1), VGG16 with batch-norm at 1/8 width (and full width with ``--device cuda``),
ideal and 8-bit DAC/ADC, sigma 0.5. It runs ``--rounds R`` rounds; a round runs every network
in turn, ``--network-samples N`` device samples (0 = skip the table) then one plain torch pass
of the same network, so each ratio compares times taken under the same machine load. Per row:
the median seconds per device sample, the median of the per-round ratios to the torch pass
and to LeNet-5's sample of the same round (the compensated network's cost), with their ranges.

Run: ``.venv/bin/python benchmarks/bench_montecarlo.py [--samples 250] [--train-epochs 1]``
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import time
from pathlib import Path

import numba
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import mapping
import xbar
from xbar import ADCConfig, DACConfig, DeviceConfig, TileConfig, XbarConfig

DATA = Path("/usr/share/datasets/fashion-mnist")
MEAN, STD = 0.2860, 0.3530


def load_idx(stem: str) -> np.ndarray:
    with gzip.open(DATA / f"{stem}.gz", "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    x = load_idx(f"{split}-images-idx3-ubyte").astype(np.float32) / 255.0
    y = load_idx(f"{split}-labels-idx1-ubyte").astype(np.int64)
    return (torch.from_numpy((x - MEAN) / STD).unsqueeze(1), torch.from_numpy(y))


def lenet5() -> nn.Module:
    try:
        from correctnet.workloads.models import build_model
        return build_model("lenet5")
    except ImportError:
        return nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def compensated(model: nn.Module) -> nn.Module | None:
    """``model`` with conv1=1, conv2=1 compensation (None without correctnet)."""
    try:
        from correctnet.compensation.modules import insert_compensation
    except ImportError:
        return None
    return insert_compensation(model, {"features.conv1": 1.0, "features.conv2": 1.0}).eval()


_VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
          512, 512, 512, "M"]


def vgg16_bn(width: int = 8, in_channels: int = 1) -> nn.Module:
    """VGG16 with batch-norm at ``1/width`` of the channels, 28x28 inputs zero-padded to 32.

    Built here (the layout of ``correctnet.workloads.models.VGG16``: conv-BN-ReLU, five max-pools,
    classifier 512-512-10, all divided by ``width``) so the benchmark needs no width option.
    """
    layers: list[nn.Module] = [nn.ZeroPad2d(2)]
    c = in_channels
    for item in _VGG16:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        out = max(1, item // width)
        layers += [nn.Conv2d(c, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU()]
        c = out
    hidden = max(1, 512 // width)
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c, hidden), nn.ReLU(),
                         nn.Linear(hidden, 10)).eval()


def torch_seconds(model: nn.Module, data, passes: int = 3) -> float:
    """Best of ``passes`` plain torch passes over ``data`` (seconds), after one warm-up batch."""
    with torch.no_grad():
        model(data[0][0])
        times = []
        for _ in range(passes):
            t = time.perf_counter()
            for xb, _ in data:
                model(xb)
            times.append(time.perf_counter() - t)
    return min(times)


def timed_round(analog: nn.Module, net: nn.Module, data, dev_data, samples: int,
                seed: int) -> tuple[float, float, float]:
    """One round of a network: ``samples`` device samples, then one plain torch pass.

    Returns (Monte-Carlo seconds per sample, torch pass seconds, mean accuracy). The torch
    pass right after the Monte-Carlo run sees the same machine load, so their ratio is
    steadier than either time on a shared machine.
    """
    res = mapping.run_monte_carlo(analog, data, samples=samples, seed=seed, progress=False)
    return res.seconds / samples, torch_seconds(net, dev_data, passes=1), res.mean


def _median_range(values: list[float]) -> tuple[float, float, float]:
    return float(np.median(values)), min(values), max(values)


def network_table(model: nn.Module, data, samples: int, device: str = "cpu",
                  only: str | None = None, rounds: int = 5) -> None:
    """Print seconds per device sample per network and periphery (see the module doc).

    Per periphery, ``rounds`` rounds run every network in turn (``samples`` device samples
    with seed = round, then one torch pass of the same network); a row reports the
    medians over the rounds and the range of the per-round ratios (to the torch pass, and
    to LeNet-5's sample in the same round).
    """
    nets = {"LeNet-5": model}
    comp = compensated(model)
    if comp is None:
        print("network table: correctnet not importable, compensated row skipped")
    else:
        nets["LeNet-5 conv1=1,conv2=1 comp."] = comp
    torch.manual_seed(0)
    nets["VGG16/8 BN"] = vgg16_bn(8)
    if device == "cuda":
        nets["VGG16 BN (full width)"] = vgg16_bn(1)
    if only:
        nets = {k: v for k, v in nets.items() if any(w in k for w in only.split(","))}
    periphery = {"ideal": {"dac": DACConfig(bits=None), "adc": ADCConfig(bits=None)},
                 "8-bit": {"dac": DACConfig(bits=8), "adc": ADCConfig(bits=8)}}
    dev_data = [(xb.to(device), yb.to(device)) for xb, yb in data]
    rows = []
    for pname, kw in periphery.items():
        cfg = XbarConfig(tile=TileConfig(128, 128),
                         device=DeviceConfig(sigma=0.5, level="weight"), **kw)
        analogs, engines = {}, {}
        for name, net in nets.items():
            net.to(device)
            analogs[name] = mapping.convert_to_crossbar(net, cfg).to(device)
            engines[name] = mapping.run_monte_carlo(analogs[name], [data[0]], samples=1,
                                                    progress=False).engine   # warm
        runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in nets}
        for r in range(rounds):
            for name, net in nets.items():
                runs[name].append(timed_round(analogs[name], net, data, dev_data, samples, r))
        lenet = runs.get("LeNet-5")         # absent when --only leaves it out
        for name in nets:
            per = [p for p, _, _ in runs[name]]
            rows.append((name, pname, engines[name], _median_range(per),
                         float(np.median([t for _, t, _ in runs[name]])),
                         _median_range([p / t for p, t, _ in runs[name]]),
                         None if lenet is None else
                         _median_range([p / f[0] for p, f in zip(per, lenet)]),
                         100 * float(np.mean([a for _, _, a in runs[name]]))))
    print(f"bench_montecarlo networks: sigma 0.5, tiles 128x128, {rounds} rounds of "
          f"{samples} samples (seed = round) each followed by one torch pass, "
          f"{sum(len(b[1]) for b in data)} images; medians over rounds, [min-max] of the "
          "per-round ratios")
    print(f"  {'network':<30} {'DAC/ADC':<7} {'engine':<6} {'s/sample':>8} {'torch s':>8} "
          f"{'/torch':>6} {'[range]':>11} {'/LeNet-5':>8} {'[range]':>11} {'acc %':>6}")
    for name, pname, eng, per, tt, rt, rb, acc in rows:
        vs_lenet = (f"{'-':>8} {'':>11}" if rb is None else
                    f"{rb[0]:>8.2f} {f'[{rb[1]:.2f}-{rb[2]:.2f}]':>11}")
        print(f"  {name:<30} {pname:<7} {eng:<6} {per[0]:>8.3f} {tt:>8.3f} {rt[0]:>6.2f} "
              f"{f'[{rt[1]:.2f}-{rt[2]:.2f}]':>11} {vs_lenet} {acc:>6.2f}")


def train(model: nn.Module, epochs: int) -> None:
    x, y = load("train")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=g).split(128):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()


# Long: a benchmark script that prints its tables top to bottom, read in one go.
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=250, help="Monte-Carlo samples (250)")
    ap.add_argument("--train-epochs", type=int, default=0,
                    help="quick training epochs before timing (0 = untrained weights)")
    ap.add_argument("--batch", type=int, default=1000, help="batch size of the data (1000)")
    ap.add_argument("--reference-samples", type=int, default=2,
                    help="samples timed on the plain layer path (program + evaluate, numba "
                         "backend through xbar.TiledCrossbar.matmul); 0 = skip")
    ap.add_argument("--network-samples", type=int, default=8,
                    help="samples per round and row of the network table (LeNet-5 with and "
                         "without compensation, VGG16/8 with BN, ideal and 8-bit); 0 = skip")
    ap.add_argument("--rounds", type=int, default=5,
                    help="rounds of the network table (every network in turn, each "
                         "followed by a torch pass; medians reported)")
    ap.add_argument("--device", default="cpu",
                    help="device of the network table ('cuda' adds full-width VGG16)")
    ap.add_argument("--data-dir", default=str(DATA), help="Fashion-MNIST IDX directory")
    ap.add_argument("--networks-only", action="store_true",
                    help="skip the first (LeNet-5 8-bit) table")
    ap.add_argument("--only", default=None,
                    help="comma-separated parts of network names to keep in the table")
    args = ap.parse_args()
    globals()["DATA"] = Path(args.data_dir)
    if args.networks_only:
        x, y = load("t10k")
        data = [(x[i:i + args.batch], y[i:i + args.batch])
                for i in range(0, len(y), args.batch)]
        mapping.set_threads(numba.get_num_threads())
        mapping.warmup()
        torch.manual_seed(0)
        network_table(lenet5().eval(), data, args.network_samples, args.device, args.only,
                      args.rounds)
        return

    threads = numba.get_num_threads()
    mapping.set_threads(threads)            # torch, Numba and BLAS alike (mapping/threads.py)
    torch.manual_seed(0)
    model = lenet5().eval()
    t = time.perf_counter()
    if args.train_epochs:
        train(model, args.train_epochs)
    t_train = time.perf_counter() - t
    x, y = load("t10k")
    data = [(x[i:i + args.batch], y[i:i + args.batch]) for i in range(0, len(y), args.batch)]

    t = time.perf_counter()
    xbar.warmup()
    mapping.warmup()
    t_compile = time.perf_counter() - t

    def torch_pass() -> float:
        return torch_seconds(model, data)

    load_before = os.getloadavg()[0]
    t_torch_before = torch_pass()
    clean = mapping.evaluate_accuracy(model, data)

    cfg = XbarConfig(tile=TileConfig(128, 128), device=DeviceConfig(sigma=0.5, level="weight"),
                     dac=DACConfig(bits=8), adc=ADCConfig(bits=8))
    analog = mapping.convert_to_crossbar(model, cfg)
    mapping.run_monte_carlo(analog, [(x[:64], y[:64])], samples=2, progress=False)  # warm
    t = time.perf_counter()
    res = mapping.run_monte_carlo(analog, data, samples=args.samples, seed=0)
    t_mc = time.perf_counter() - t
    per = t_mc / args.samples
    t_torch_after = torch_pass()
    load_after = os.getloadavg()[0]
    t_torch = 0.5 * (t_torch_before + t_torch_after)   # the machine's load may drift

    t_ref = None
    if args.reference_samples:
        t = time.perf_counter()
        for s in range(args.reference_samples):
            mapping.program(analog, s)
            mapping.evaluate_accuracy(analog, data)
        t_ref = (time.perf_counter() - t) / args.reference_samples

    rows = [
        ("machine", f"{platform.processor() or platform.machine()}, {threads} threads "
                    "(numba = torch)"),
        ("load average (1 min) before/after MC", f"{load_before:.2f} / {load_after:.2f}"),
        ("images", f"{len(y)} Fashion-MNIST test, batch {args.batch}"),
        ("training", f"{args.train_epochs} epoch(s), {t_train:.1f} s"),
        ("numba compile/load (xbar + mapping warmup)", f"{t_compile:.2f} s"),
        ("plain torch pass (best of 3, before/after MC)",
         f"{t_torch_before:.3f} / {t_torch_after:.3f} s, accuracy {100 * clean:.2f}%"),
        (f"Monte-Carlo, {args.samples} samples (total)", f"{t_mc:.1f} s"),
        ("Monte-Carlo, seconds per sample", f"{per:.3f} s"),
        ("ratio MC sample / torch pass (mean of before/after)", f"{per / t_torch:.2f}"),
        ("MC accuracy (sigma 0.5, 8-bit DAC/ADC)",
         f"{100 * res.mean:.2f}% +- {100 * res.std:.2f}%"),
    ]
    if t_ref is not None:
        rows.append(("layer path per sample (program + evaluate, xbar matmul)",
                     f"{t_ref:.3f} s ({t_ref / per:.1f}x the MC fast path)"))
    width = max(len(k) for k, _ in rows)
    print("bench_montecarlo: LeNet-5, sigma 0.5 weight-level, tiles 128x128, 8-bit DAC/ADC")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    if args.network_samples:
        network_table(model, data, args.network_samples, args.device, args.only,
                      args.rounds)


if __name__ == "__main__":
    main()
