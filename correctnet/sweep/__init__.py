"""Sweeps over device variation and tile size.

One simulated point, the grid, its SQLite store and its figures.

Modules: ``plots``, ``point``, ``run``, ``simulate``, ``store``.
Their public names are importable from here too; they load on first use (PEP 562), so
importing the package stays cheap.
"""

from __future__ import annotations

from correctnet.lazy import lazy_getattr

_LAZY = {
    "plot_accuracy_vs_sigma": "correctnet.sweep.plots",
    "plot_sigma_tile_heatmap": "correctnet.sweep.plots",
    "evaluate_point": "correctnet.sweep.point",
    "run_sweep": "correctnet.sweep.run",
    "checkpoint_labels": "correctnet.sweep.run",
    "plot_rows": "correctnet.sweep.run",
    "point_config": "correctnet.sweep.simulate",
    "with_line_resistance": "correctnet.sweep.simulate",
    "prepare_checkpoint": "correctnet.sweep.simulate",
    "simulate_model": "correctnet.sweep.simulate",
    "DEFAULT_COST": "correctnet.sweep.store",
    "CSV_COLUMNS": "correctnet.sweep.store",
    "point_settings": "correctnet.sweep.store",
    "point_key": "correctnet.sweep.store",
    "file_digest": "correctnet.sweep.store",
    "SweepStore": "correctnet.sweep.store",
    "export_csv": "correctnet.sweep.store",
}

__all__ = list(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
