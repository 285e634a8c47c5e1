"""Random search over compensation plans: the baseline the RL search has to beat.

Same action space as :func:`correctnet.search.rl_search` (candidate layers x each layer's
ratios, 0 = none), same reward (eq. 12) and overhead limit, same :class:`~correctnet.search.
PlanCache` (a plan the RL search trained is not trained again, and gets the same result: each
plan is trained with its own seed), and a budget of *trained plans* (distinct plans within the
limit), so ``random_search(..., plans=evaluated_plans(rl_result))`` spends what the RL search
spent.

Plans are drawn uniformly from the plans within the limit: each layer's ratio uniformly from
its action set, a draw over the limit or already drawn rejected and drawn again (drawing costs
microseconds; training a plan minutes). The list of plans depends only on the seed, never on
the results, so all of them can be evaluated at once (``map_evaluator``, e.g. Dask workers).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from correctnet.compensation.plan import normalize_plan
from correctnet.search.cache import PlanCache
from correctnet.search.placement import (
    Evaluator,
    MapEvaluator,
    Plan,
    SearchError,
    SearchResult,
    _check_actions,
    _prefetch,
    _score,
)

__all__ = ["RandomSearchResult", "random_search", "draw_plans", "evaluated_plans"]


@dataclass
class RandomSearchResult(SearchResult):
    """A :class:`~correctnet.search.SearchResult` plus the sampling counts.

    Attributes:
        draws: Plans drawn in total (including rejected ones).
        rejected_over_limit: Draws rejected because their overhead exceeded the limit.
        exhausted: True when fewer than the requested plans exist within the limit (every one
            of them was then evaluated) or ``max_draws`` ran out first.
    """

    draws: int = 0
    rejected_over_limit: int = 0
    exhausted: bool = False


def evaluated_plans(result: SearchResult) -> int:
    """Distinct plans within the limit that a search evaluated (trained or found in the cache).

    This is the budget to give :func:`random_search` for an equal-cost comparison with an RL
    search's result.
    """
    return len({PlanCache.key(h["plan"]) for h in result.history if h.get("mean") is not None})


def draw_plans(layers: Sequence[str], actions: Mapping[str, Sequence[float]],
               overhead_fn: Callable[[Plan], float], limit: float, plans: int, *, seed: int,
               max_draws: int = 100_000) -> tuple[list[Plan], int, int]:
    """Draw up to ``plans`` distinct plans uniformly from those within ``limit``.

    Args:
        layers: Candidate layer names.
        actions: ``{layer: [ratio, ...]}`` (0 = none).
        overhead_fn: ``plan -> overhead`` fraction.
        limit: Overhead limit (fraction).
        plans: Distinct plans wanted (>= 1).
        seed: Seed of the draws (``numpy.random.default_rng``).
        max_draws: Stop after this many draws (>= 1) even if fewer plans were found.

    Returns:
        ``(plans, draws, rejected_over_limit)``.

    Raises:
        SearchError: Bad ``plans`` or ``max_draws``, or empty action sets.
    """
    _check_actions(layers, actions)
    for name, value in (("plans", plans), ("max_draws", max_draws)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SearchError(f"random search {name} must be an integer >= 1, got {value!r}")
    rng = np.random.default_rng(seed)
    sizes = [len(actions[name]) for name in layers]
    space = int(np.prod(sizes, dtype=object))
    chosen: list[Plan] = []
    seen: set[str] = set()
    draws = rejected = 0
    while len(chosen) < plans and draws < max_draws and len(seen) < space:
        draws += 1
        idx = [int(rng.integers(k)) for k in sizes]
        plan = normalize_plan({name: float(actions[name][i]) for name, i in zip(layers, idx)})
        key = PlanCache.key(plan)
        if key in seen:
            continue
        seen.add(key)
        if float(overhead_fn(plan)) > limit:
            rejected += 1
            continue
        chosen.append(plan)
    return chosen, draws, rejected


def random_search(
    layers: Sequence[str],
    actions: Mapping[str, Sequence[float]],
    evaluator: Evaluator,
    overhead_fn: Callable[[Plan], float],
    limit: float,
    *,
    plans: int,
    seed: int = 0,
    max_draws: int = 100_000,
    cache: PlanCache | None = None,
    progress: bool = False,
    map_evaluator: MapEvaluator | None = None,
) -> RandomSearchResult:
    """Evaluate ``plans`` random distinct plans within ``limit``; keep the best reward.

    Args:
        layers: Candidate layer names.
        actions: ``{layer: [ratio, ...]}`` (0 = none), as for the RL search.
        evaluator: ``plan -> (mean, std)`` (accuracy fractions).
        overhead_fn: ``plan -> overhead`` fraction.
        limit: Overhead limit (fraction).
        plans: Trained-plan budget (e.g. :func:`evaluated_plans` of the RL search's result).
        seed: Seed of the draws.
        max_draws: Draw limit of the rejection sampling.
        cache: Shared plan cache (a fresh in-memory one if None).
        progress: Show a progress bar.
        map_evaluator: Evaluates a list of plans at once (see
            :func:`correctnet.search.exhaustive_search`).

    Returns:
        A :class:`RandomSearchResult`; its ``history`` has one record per evaluated plan
        (``plan, overhead, reward, mean, std``), in draw order.

    Raises:
        SearchError: See :func:`draw_plans`.
    """
    from tqdm.auto import tqdm

    cache = cache if cache is not None else PlanCache()
    chosen, draws, rejected = draw_plans(layers, actions, overhead_fn, limit, plans,
                                         seed=seed, max_draws=max_draws)
    result = RandomSearchResult(limit=float(limit), draws=draws, rejected_over_limit=rejected,
                                exhausted=len(chosen) < plans)
    if map_evaluator is not None:
        result.evaluations += _prefetch(chosen, overhead_fn, limit, cache, map_evaluator)
    for plan in tqdm(chosen, desc=f"random limit {limit:.0%}", disable=not progress,
                     leave=False):
        _score(plan, overhead_fn, evaluator, limit, cache, result)
    return result
