"""Throughput of the tiled crossbar simulator against plain numpy ``x @ W.T``.

Run: ``.venv/bin/python benchmarks/bench_xbar.py [--quick] [--repeats N]``

Prints one table row per (weight shape, tile size): seconds per ``matmul`` (8-bit DAC/ADC,
sigma 0.5, batch 1000, float32), effective GFLOP/s (2 * batch * in * out / seconds), the
numpy time measured in the same run (interleaved) and the throughput ratio numpy_s / xbar_s.
Then seconds per ``program`` (one device sample) of 15M weights, and the kernel compile time
(``xbar.warmup()`` in a fresh process with an empty numba cache) reported separately.
Times are the minimum over the repeats (the least disturbed by other load on the machine).
For a load-independent comparison of the work done, run it single-threaded:
``OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 .venv/bin/python benchmarks/bench_xbar.py``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

import xbar
from xbar import ADCConfig, DACConfig, DeviceConfig, TileConfig, TiledCrossbar, XbarConfig


def cold_compile_seconds() -> float:
    """Seconds ``xbar.warmup()`` takes in a new process with an empty numba cache."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        out = subprocess.run([sys.executable, "-c", "import xbar; print(xbar.warmup())"],
                             env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def config(tile: int, sigma: float = 0.5, level: str = "weight") -> XbarConfig:
    return XbarConfig(tile=TileConfig(tile, tile), device=DeviceConfig(sigma=sigma, level=level),
                      dac=DACConfig(bits=8), adc=ADCConfig(bits=8))


def bench_matmul(shapes, tiles, batch: int, repeats: int) -> None:
    rng = np.random.default_rng(0)
    print(f"matmul: batch {batch}, float32, 8-bit DAC/ADC, sigma 0.5 (weight level)")
    head = (f"{'weight (out x in)':>18} {'tile':>5} {'grid':>8} {'numpy s':>9} {'xbar s':>9} "
            f"{'xbar GFLOP/s':>12} {'ratio':>6}")
    print(head)
    print("-" * len(head))
    for n_out, n_in in shapes:
        w = rng.standard_normal((n_out, n_in)).astype(np.float32)
        x = rng.standard_normal((batch, n_in)).astype(np.float32)
        flop = 2.0 * batch * n_in * n_out
        for tile in tiles:
            xb = TiledCrossbar(w, config(tile))
            xb.program(1)
            xb.matmul(x)
            _ = x @ w.T
            t_np, t_xb = [], []
            for _ in range(repeats):  # interleaved, so both see the same machine load
                t_np.append(best_of(lambda: x @ w.T, 1))
                t_xb.append(best_of(lambda: xb.matmul(x), 1))
            a, b = min(t_np), min(t_xb)
            grid = "x".join(str(v) for v in xb.tile_grid)
            print(f"{f'{n_out} x {n_in}':>18} {tile:>5} {grid:>8} {a:>9.4f} {b:>9.4f} "
                  f"{flop / b / 1e9:>12.1f} {a / b:>6.2f}", flush=True)


def bench_program(n_weights: int, repeats: int) -> None:
    n_in = 4000
    n_out = n_weights // n_in
    w = np.random.default_rng(1).standard_normal((n_out, n_in)).astype(np.float32)
    print(f"\nprogram: one device sample of {n_out * n_in / 1e6:.1f}M weights, sigma 0.5")
    for level in ("weight", "device"):
        xb = TiledCrossbar(w, config(128, level=level))
        xb.program(0)
        t = best_of(lambda: xb.program(2), repeats)
        print(f"  level={level:<7} {t:.3f} s")


def bench_irdrop(tiles, batch: int, repeats: int) -> None:
    """IR drop (1 ohm/segment): solve seconds per device sample and matmul vs ideal wires."""
    n = max(tiles)
    rng = np.random.default_rng(2)
    w = rng.standard_normal((n, n)).astype(np.float32)
    x = rng.standard_normal((batch, n)).astype(np.float32)
    print(f"\nIR drop, 1 ohm/segment: weight {n} x {n}, batch {batch}, 8-bit DAC/ADC, sigma 0.5; "
          "solve = program() (every tile's network); with read noise a matmul solves too")
    head = (f"{'tile':>5} {'grid':>6} {'solve s':>8} {'matmul s':>9} {'ideal matmul s':>15} "
            f"{'(solve+matmul)/ideal':>21}")
    print(head)
    print("-" * len(head))
    for tile in tiles:
        base = config(tile)
        ir = XbarConfig(tile=TileConfig(tile, tile, line_resistance=1.0), device=base.device,
                        dac=base.dac, adc=base.adc)
        xb, ideal = TiledCrossbar(w, ir), TiledCrossbar(w, base)
        ideal.program(1)
        t_solve = best_of(lambda: xb.program(1), repeats)
        t_mm = best_of(lambda: xb.matmul(x), repeats)
        t_id = best_of(lambda: ideal.matmul(x), repeats)
        grid = "x".join(str(v) for v in xb.tile_grid)
        print(f"{tile:>5} {grid:>6} {t_solve:>8.3f} {t_mm:>9.4f} {t_id:>15.4f} "
              f"{(t_solve + t_mm) / t_id:>21.1f}", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats per row")
    args = ap.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 5)
    print(f"numpy {np.__version__}, numba threads {xbar_threads()}, cpus {os.cpu_count()}, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, "
          f"load average {os.getloadavg()[0]:.1f}")
    cold = cold_compile_seconds()
    warm = xbar.warmup()
    print(f"compile: warmup() {cold:.2f} s with an empty cache, {warm:.3f} s from the cache\n")
    if args.quick:
        bench_matmul([(120, 400), (1024, 1024)], [128], batch=1000, repeats=repeats)
        bench_program(1_000_000, repeats)
        bench_irdrop([64], batch=1000, repeats=repeats)
    else:
        bench_matmul([(120, 400), (1024, 1024), (4096, 4096)], [64, 128, 256], batch=1000,
                     repeats=repeats)
        bench_program(15_000_000, repeats)
        bench_irdrop([64, 128, 256], batch=1000, repeats=min(repeats, 2))
    print(f"\nload average at the end {os.getloadavg()[0]:.1f} (other work on the machine slows "
          "multi-threaded BLAS; compare ratios, not seconds)")


def xbar_threads() -> int:
    import numba

    return numba.get_num_threads()


if __name__ == "__main__":
    main()
