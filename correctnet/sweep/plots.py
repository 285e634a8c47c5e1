"""Sweep figures (matplotlib, Agg backend, saved to files).

- :func:`plot_accuracy_vs_sigma`: mean accuracy vs sigma, one line + a +-1 std band per
  checkpoint, one panel per tile size (like Fig. 2 / Fig. 7 of Eldebiky et al., DATE 2023),
  clean accuracies as dotted lines.
- :func:`plot_sigma_tile_heatmap`: mean accuracy on a sigma x tile-size grid, one panel per
  checkpoint.

Inputs are the row dicts of :meth:`correctnet.sweep.store.SweepStore.rows` (accuracies as
fractions; the axes show percent).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402


def _labels(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["label"] for r in rows))


def plot_accuracy_vs_sigma(rows: list[dict[str, Any]], path: str | Path, *,
                           title: str | None = None) -> Path:
    """Accuracy (%) vs sigma: mean line and mean +- std band per checkpoint, panel per tile.

    Args:
        rows: Sweep points (keys ``label``, ``sigma``, ``tile``, ``mean``, ``std``,
            ``clean_accuracy``).
        path: Output image file (PNG, PDF, SVG by suffix).
        title: Figure title.

    Returns:
        The path written.
    """
    path = Path(path)
    tiles = sorted({int(r["tile"]) for r in rows})
    n = max(len(tiles), 1)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.6), squeeze=False, sharey=True)
    for ax, tile in zip(axes[0], tiles):
        for index, label in enumerate(_labels(rows)):
            pts = sorted((r for r in rows if r["label"] == label and int(r["tile"]) == tile),
                         key=lambda r: r["sigma"])
            if not pts:
                continue
            color = f"C{index % 10}"
            s = np.array([p["sigma"] for p in pts])
            m = 100 * np.array([p["mean"] for p in pts])
            d = 100 * np.array([p["std"] for p in pts])
            ax.plot(s, m, "o-", color=color, label=label, markersize=3)
            ax.fill_between(s, m - d, m + d, color=color, alpha=0.2, linewidth=0)
            clean = pts[0].get("clean_accuracy")
            if clean is not None:
                ax.axhline(100 * clean, color=color, linestyle=":", linewidth=1)
        ax.set_title(f"tile {tile}x{tile}")
        ax.set_xlabel("sigma (lognormal variation)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)  mean +- std")
    axes[0][0].legend(fontsize=8, loc="lower left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_sigma_tile_heatmap(rows: list[dict[str, Any]], path: str | Path, *,
                            title: str | None = None) -> Path:
    """Heatmap of mean accuracy (%) over sigma (rows) x tile size (columns), per checkpoint.

    Args:
        rows: Sweep points (keys ``label``, ``sigma``, ``tile``, ``mean``).
        path: Output image file.
        title: Figure title.

    Returns:
        The path written.
    """
    path = Path(path)
    labels = _labels(rows)
    sigmas = sorted({float(r["sigma"]) for r in rows})
    tiles = sorted({int(r["tile"]) for r in rows})
    n = max(len(labels), 1)
    width = n * max(3.4, 0.8 * len(tiles) + 1.8) + 1.0
    fig, axes = plt.subplots(1, n, figsize=(width, 1.6 + 0.32 * len(sigmas)), squeeze=False,
                             layout="constrained")
    image = None
    for ax, label in zip(axes[0], labels):
        grid = np.full((len(sigmas), len(tiles)), np.nan)
        for r in rows:
            if r["label"] == label:
                grid[sigmas.index(float(r["sigma"])), tiles.index(int(r["tile"]))] = 100 * r["mean"]
        image = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=100, origin="lower")
        for i in range(len(sigmas)):
            for j in range(len(tiles)):
                if np.isfinite(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=7,
                            color="white" if grid[i, j] < 60 else "black")
        ax.set_xticks(range(len(tiles)), [str(t) for t in tiles])
        ax.set_yticks(range(len(sigmas)), [f"{s:g}" for s in sigmas])
        ax.set_xlabel("tile size")
        ax.set_ylabel("sigma")
        ax.set_title(label, fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=axes[0].tolist(), label="mean accuracy (%)")
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
