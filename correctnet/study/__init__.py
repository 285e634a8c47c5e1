"""The ``reproduce`` study.

Presets, the run folder, the ordered stages over one context, and the report with its
figures.

Modules: ``context``, ``figures``, ``pipeline``, ``presets``, ``report``, ``runstore``,
``seed_stats``, ``stages``.
Their public names are importable from here too; they load on first use (PEP 562), so
importing the package stays cheap.
"""

from __future__ import annotations

from correctnet.lazy import lazy_getattr

_LAZY = {
    "StudyContext": "correctnet.study.context",
    "plot_sigma": "correctnet.study.figures",
    "plot_layers": "correctnet.study.figures",
    "plot_search": "correctnet.study.figures",
    "plot_tile_map": "correctnet.study.figures",
    "plot_spectra": "correctnet.study.figures",
    "pool_seeds": "correctnet.study.seed_stats",
    "paired_difference": "correctnet.study.seed_stats",
    "STAGES": "correctnet.study.pipeline",
    "STAGE_LIST": "correctnet.study.pipeline",
    "Stage": "correctnet.study.pipeline",
    "Pipeline": "correctnet.study.pipeline",
    "Preset": "correctnet.study.presets",
    "PRESETS": "correctnet.study.presets",
    "get_preset": "correctnet.study.presets",
    "PRESET_NAMES": "correctnet.study.presets",
    "build_report": "correctnet.study.report",
    "draw_figures": "correctnet.study.report",
    "write_report": "correctnet.study.report",
    "markdown_table": "correctnet.study.report",
    "cost_section": "correctnet.study.report",
    "RunStore": "correctnet.study.runstore",
    "config_differences": "correctnet.study.runstore",
}

__all__ = list(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
