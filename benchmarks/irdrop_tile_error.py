"""Relative output error of IR drop against ideal wires, per tile size.

Run: ``.venv/bin/python benchmarks/irdrop_tile_error.py [--ohms 1.0 ...] [--batch 64]``

The same 256 x 256 weight matrix (uniform in [-1, 1], seed 0) is mapped onto tiles of 32, 64,
128 and 256 rows/columns, conductances 1-100 uS (``DeviceConfig`` defaults), ideal DAC and ADC,
no variation, and multiplied with ``batch`` inputs uniform in [0, 1]. For each line resistance
(ohm per wire segment, word and bit lines alike) it prints the relative error
``||Y_ir - Y||_F / ||Y||_F`` (``Y = X W^T``), the largest per-output error relative to the
largest |Y|, and the seconds of the network solve (``program_ideal``: one IR-drop solve of
every tile, read voltage 0.2 V).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import xbar
from xbar import ADCConfig, DACConfig, DeviceConfig, TileConfig, TiledCrossbar, XbarConfig


def config(tile: int, ohms: float) -> XbarConfig:
    return XbarConfig(tile=TileConfig(tile, tile, line_resistance=ohms),
                      device=DeviceConfig(sigma=0.0, g_min=1e-6, g_max=100e-6),
                      dac=DACConfig(bits=None), adc=ADCConfig(bits=None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ohms", type=float, nargs="+", default=[1.0])
    parser.add_argument("--tiles", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    print(f"compile/load: xbar.warmup() {xbar.warmup():.2f} s")
    rng = np.random.default_rng(0)
    w = rng.uniform(-1.0, 1.0, (256, 256)).astype(np.float32)
    x = rng.uniform(0.0, 1.0, (args.batch, 256)).astype(np.float32)
    y = x.astype(np.float64) @ w.T.astype(np.float64)
    head = f"{'ohm/segment':>11} {'tile':>5} {'grid':>6} {'rel err (F)':>12} {'max err':>9} " \
           f"{'solve s':>8}"
    print(f"weights 256 x 256 uniform [-1, 1], G 1-100 uS, inputs uniform [0, 1], batch "
          f"{args.batch}, ideal converters")
    print(head)
    print("-" * len(head))
    for ohms in args.ohms:
        for tile in args.tiles:
            xb = TiledCrossbar(w, config(tile, ohms))
            t0 = time.perf_counter()
            xb.program_ideal()
            solve = time.perf_counter() - t0
            err = xb.matmul(x).astype(np.float64) - y
            rel = np.linalg.norm(err) / np.linalg.norm(y)
            worst = np.abs(err).max() / np.abs(y).max()
            grid = "x".join(str(v) for v in xb.tile_grid)
            print(f"{ohms:>11.3g} {tile:>5} {grid:>6} {rel:>12.4%} {worst:>9.3%} {solve:>8.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
