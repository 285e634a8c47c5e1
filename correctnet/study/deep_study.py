"""What the reproduce stages need from the deep-study preset fields, in two functions.

* :func:`variation_aware_overrides`: the :class:`~correctnet.training.TrainConfig` changes of
  the variation-aware network (``Preset.va_warm_start``, ``va_lr``, ``va_sigma_ramp_epochs``,
  ``va_bn_stats``); all defaults give ``{}``, i.e. the training of before.
* :func:`random_searches`: the random-search baseline for every limit, with the RL search's
  trained-plan count per limit when ``Preset.random_search_plans`` is None.

The pipeline stages call them (``train_variation_aware``: ``dataclasses.replace(cfg,
**variation_aware_overrides(preset, plain_checkpoint))``; ``search``: after the RL searches,
``random_searches(...)``), so the stage code stays a few lines.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from correctnet.study.presets import Preset
from correctnet.search.random_search import evaluated_plans, random_search
from correctnet.search.cache import Evaluator, PlanCache
from correctnet.search.placement import MapEvaluator, Plan, SearchResult
from correctnet.seeding import derive_seed

__all__ = ["variation_aware_overrides", "random_searches"]


def variation_aware_overrides(preset: Preset, plain_checkpoint: str | Path) -> dict[str, Any]:
    """``TrainConfig`` field changes for the preset's variation-aware network.

    Args:
        preset: The study's preset.
        plain_checkpoint: The trained plain network's checkpoint (used if
            ``preset.va_warm_start``).

    Returns:
        ``{field: value}`` for ``dataclasses.replace`` (empty for the default preset fields).
    """
    out: dict[str, Any] = {}
    if preset.va_warm_start:
        out["init_checkpoint"] = str(plain_checkpoint)
    if preset.va_lr is not None:
        out["lr"] = float(preset.va_lr)
    if preset.va_sigma_ramp_epochs > 0:
        out["sigma_ramp_epochs"] = float(preset.va_sigma_ramp_epochs)
    if preset.va_bn_stats != "batch":
        out["bn_stats"] = preset.va_bn_stats
    return out


def random_searches(preset: Preset, layers: Sequence[str],
                    actions: Mapping[str, Sequence[float]], evaluator: Evaluator,
                    overhead_fn: Callable[[Plan], float],
                    rl_results: Mapping[float, SearchResult], *, cache: PlanCache,
                    progress: bool = False,
                    map_evaluator: MapEvaluator | None = None) -> dict[str, dict]:
    """Random search per limit with the preset's budget (``{}`` if it has none).

    Args:
        preset: ``random_search_plans`` (0: none; None: per limit, the number of plans the RL
            search for that limit evaluated, :func:`correctnet.random_search.evaluated_plans`),
            ``limits`` and ``seed`` (each limit's draws use ``derive_seed(seed, "search",
            "random", limit)``).
        layers: Candidate layer names (as for the RL search).
        actions: ``{layer: [ratio, ...]}`` (0 = none).
        evaluator: ``plan -> (mean, std)``.
        overhead_fn: ``plan -> overhead`` fraction.
        rl_results: ``{limit: SearchResult}`` of the RL searches (needed when the budget is
            None).
        cache: The run's plan cache (plans the RL search trained are not trained again).
        progress: Show progress bars.
        map_evaluator: See :func:`correctnet.search.exhaustive_search`.

    Returns:
        ``{f"{limit:g}": RandomSearchResult.to_dict()}`` plus ``"plans"`` (the budget used) in
        each entry.
    """
    if preset.random_search_plans == 0:
        return {}
    out = {}
    for limit in sorted(preset.limits):
        budget = (preset.random_search_plans if preset.random_search_plans is not None
                  else evaluated_plans(rl_results[limit]))
        if budget < 1:
            continue
        res = random_search(layers, actions, evaluator, overhead_fn, limit, plans=budget,
                            seed=derive_seed(preset.seed, "search", "random", f"{limit:g}"),
                            cache=cache, progress=progress, map_evaluator=map_evaluator)
        out[f"{limit:g}"] = {**res.to_dict(), "plans": budget}
    return out
