"""Figures of the reproduce report (matplotlib, Agg backend, PNG files).

Each function takes plain JSON-like data (as stored in the run folder) and a path, draws one
figure and returns the path. Accuracies arrive as fractions and are drawn in percent.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from correctnet.training.variants import Variant  # noqa: E402

__all__ = ["plot_sigma", "plot_layers", "plot_search", "plot_tile_map", "plot_spectra"]

_LABELS = {**{v.value: v.label for v in Variant}, "correctnet": "CorrectNet"}


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_sigma(curves: dict[str, list[dict]], path: str | Path, *, sigma: float) -> Path:
    """Accuracy vs sigma per network (paper Fig. 2 / 7).

    Args:
        curves: ``{variant: [{"sigma", "mean", "std"}, ...]}``.
        path: PNG file.
        sigma: The study's sigma (marked by a dotted line).
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    for variant, points in curves.items():
        xs = [p["sigma"] for p in points]
        ax.errorbar(xs, [100 * p["mean"] for p in points], yerr=[100 * p["std"] for p in points],
                    marker="o", capsize=3, label=_LABELS.get(variant, variant))
    ax.axvline(sigma, color="gray", linestyle=":", linewidth=1)
    ax.set_xlabel("variation sigma")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy under device variation")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_layers(curves: dict[str, dict], path: str | Path) -> Path:
    """Accuracy with variation in layers i..L vs i (paper Fig. 9).

    Args:
        curves: ``{variant: CandidateResult.to_dict()}``.
        path: PNG file.
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    for variant, c in curves.items():
        idx = sorted(int(i) for i in c["curve"])
        means = [100 * c["curve"][str(i)][0] for i in idx]
        stds = [100 * c["curve"][str(i)][1] for i in idx]
        line = ax.errorbar(idx, means, yerr=stds, marker="o", capsize=3,
                           label=_LABELS.get(variant, variant))
        ax.axhline(100 * c["threshold"] * c["clean"], color=line[0].get_color(),
                   linestyle="--", linewidth=1)
    layers = next(iter(curves.values()))["layers"]
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels([n.split(".")[-1] for n in layers], rotation=45)
    ax.set_xlabel("variation injected from this layer to the last")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Variation in layers i..L (dashed: 95% of clean)")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_search(explored: list[dict], path: str | Path, *, limits: list[float],
                best: dict | None = None, digital: list[dict] | None = None) -> Path:
    """Explored placements: overhead vs accuracy with std bars (paper Fig. 10).

    Args:
        explored: Plan-cache entries ``{"plan", "mean", "std", "overhead"}``.
        path: PNG file.
        limits: Overhead limits (fractions), drawn as vertical lines.
        best: The chosen plan's entry (highlighted).
        digital: Equal-cost digital-layer baselines ``{"overhead", "mean", "std", "layers"}``
            (one per budget), drawn as squares: what the same weight budget buys when spent
            on keeping layers digital instead.
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [100 * e.get("overhead", 0.0) for e in explored]
    ax.errorbar(xs, [100 * e["mean"] for e in explored], yerr=[100 * e["std"] for e in explored],
                fmt="o", capsize=3, alpha=0.7, label="explored plans")
    if best is not None and best.get("mean") is not None:
        ax.plot([100 * best["overhead"]], [100 * best["mean"]], marker="*", markersize=16,
                color="red", linestyle="none", label="chosen")
    if digital:
        pts = sorted(digital, key=lambda d: d["overhead"])
        ax.errorbar([100 * d["overhead"] for d in pts], [100 * d["mean"] for d in pts],
                    yerr=[100 * d["std"] for d in pts], fmt="s", color="black", capsize=3,
                    label="layers kept digital (equal cost)")
    for limit in limits:
        ax.axvline(100 * limit, color="gray", linestyle=":", linewidth=1)
    ax.set_xlabel("overhead (% of network weights)")
    ax.set_ylabel("accuracy under variation (%)")
    ax.set_title("Explored compensation placements")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_tile_map(tile_map: dict, path: str | Path) -> Path:
    """Mean accuracy over sigma x tile size (heat map with values).

    Args:
        tile_map: ``{"tiles": [...], "sigmas": [...], "mean": [[per sigma] per tile]}``.
        path: PNG file.
    """
    tiles, sigmas, mean = tile_map["tiles"], tile_map["sigmas"], tile_map["mean"]
    fig, ax = plt.subplots(figsize=(1.2 * len(sigmas) + 2, 0.6 * len(tiles) + 2))
    data = [[100 * v for v in row] for row in mean]
    im = ax.imshow(data, aspect="auto", cmap="viridis", origin="lower")
    for i, row in enumerate(data):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:.1f}", ha="center", va="center", color="white", fontsize=8)
    ax.set_xticks(range(len(sigmas)))
    ax.set_xticklabels([f"{s:g}" for s in sigmas])
    ax.set_yticks(range(len(tiles)))
    ax.set_yticklabels([str(t) for t in tiles])
    ax.set_xlabel("variation sigma")
    ax.set_ylabel("tile size (rows = cols)")
    wires = tile_map.get("line_resistance") or 0
    ax.set_title("CorrectNet accuracy (%), 8-bit DAC/ADC"
                 + (f", wires {wires:g} ohm/segment" if wires else ""))
    fig.colorbar(im, ax=ax, label="accuracy (%)")
    return _save(fig, path)


def plot_spectra(layers: dict[str, dict], path: str | Path, *, lam: float) -> Path:
    """Per analog layer: largest / smallest singular value and conv operator norm per network.

    Args:
        layers: ``{variant: {layer: {"sigma_max", "sigma_min", "operator_norm"}}}`` (the
            report's ``variants.<v>.layers``).
        path: PNG file.
        lam: The Lipschitz target ``lambda`` (eq. 10), drawn as a dashed line with its
            +10 % band (the "binds" criterion).
    """
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
    keys = (("sigma_max", "largest singular value (flattened W)"),
            ("sigma_min", "smallest singular value"),
            ("operator_norm", "conv operator norm (power iteration)"))
    names = list(next(iter(layers.values())))
    width = 0.8 / max(1, len(layers))
    for ax, (key, title) in zip(axes, keys):
        for k, (variant, diag) in enumerate(layers.items()):
            xs = [i + (k - (len(layers) - 1) / 2) * width for i in range(len(names))]
            ax.bar(xs, [diag[n][key] for n in names], width=width,
                   label=_LABELS.get(variant, variant))
        ax.axhline(lam, color="black", linestyle="--", linewidth=1, label="lambda")
        ax.axhspan(lam, 1.1 * lam, color="gray", alpha=0.25)
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([n.split(".")[-1] for n in names], rotation=45)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    axes[0].legend(fontsize=8)
    fig.suptitle("Spectra of the analog layers (band: within 10 % of lambda = binds)")
    return _save(fig, path)
