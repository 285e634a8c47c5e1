"""Placement search for compensators: RL (REINFORCE) and exhaustive (CorrectNet Sec. IV-C).

A plan is ``{layer_name: ratio}`` over the candidate layers; ratio 0 means no
compensation. Every plan is scored with

    R = acc_mean - acc_std - overhead   if overhead <= limit
    R = -overhead                        otherwise (the plan is not trained)

The evaluator is any callable ``plan -> (mean, std)`` (accuracy fractions);
in the pipeline it trains the compensation and runs a Monte-Carlo
evaluation, in tests it is a synthetic function with a known optimum. Every
evaluated plan goes through a :class:`PlanCache` (persisted as JSON in the
run folder), so no plan is trained twice, across limits and across reruns.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from correctnet.compensation.plan import normalize_plan
from correctnet.errors import SearchError
from correctnet.search.cache import Evaluator, PlanCache

__all__ = [
    "SearchError",
    "SearchConfig",
    "SearchResult",
    "PolicyRNN",
    "reward",
    "rl_search",
    "exhaustive_search",
    "action_space_size",
]

Plan = dict[str, float]
#: ``plans -> iterator of (index, (mean, std))`` in any order (e.g. as Dask workers finish).
MapEvaluator = Callable[[list[Plan]], Iterable[tuple[int, tuple[float, float]]]]



def reward(mean: float, std: float, overhead: float, limit: float) -> float:
    """CorrectNet's reward: ``mean - std - overhead`` if ``overhead <= limit`` else ``-overhead``.

    Args:
        mean: Mean accuracy under variation (fraction).
        std: Its standard deviation over Monte-Carlo samples (fraction).
        overhead: Compensation parameters / network parameters (fraction).
        limit: Overhead limit (fraction, e.g. 0.03).
    """
    if overhead > limit:
        return -float(overhead)
    return float(mean) - float(std) - float(overhead)


@dataclass(frozen=True)
class SearchConfig:
    """Settings of the REINFORCE search."""

    episodes: int = 40
    """Plans sampled per limit (cache hits cost no training)."""
    lr: float = 0.05
    """Adam learning rate of the policy."""
    hidden: int = 32
    """Hidden units of the GRU cell."""
    baseline_decay: float = 0.8
    """Moving-average baseline: ``b <- decay * b + (1 - decay) * R``."""
    reward_scale: float = 10.0
    """Advantages are multiplied by this (rewards differ by a few points)."""
    seed: int = 0
    """Seed of the policy's initialisation and sampling."""
    episodes_per_batch: int = 1
    """Episodes whose plans are sampled from the same policy, evaluated together (at once on
    Dask workers with a ``map_evaluator``), then used in one policy update. 1 (the default)
    updates after every episode."""

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise SearchError(f"search.episodes must be >= 1, got {self.episodes}")
        if not self.lr > 0:
            raise SearchError(f"search.lr must be > 0, got {self.lr}")
        if self.hidden < 1:
            raise SearchError(f"search.hidden must be >= 1, got {self.hidden}")
        if not 0.0 <= self.baseline_decay < 1.0:
            raise SearchError(f"search.baseline_decay must be in [0, 1), got {self.baseline_decay}")
        if isinstance(self.episodes_per_batch, bool) or not isinstance(
                self.episodes_per_batch, int) or self.episodes_per_batch < 1:
            raise SearchError("search.episodes_per_batch must be an integer >= 1, got "
                              f"{self.episodes_per_batch!r}")


@dataclass
class SearchResult:
    """Result of one search under one overhead limit.

    Attributes:
        limit: Overhead limit (fraction).
        best_plan: Plan with the highest reward (``{}`` = no compensation).
        best_reward: Its reward.
        best_mean, best_std, best_overhead: Its accuracy (fractions) and overhead.
        history: One dict per episode: plan, overhead, reward, mean/std (None if skipped).
        evaluations: Evaluator calls made by this search (cache misses).
    """

    limit: float
    best_plan: Plan = field(default_factory=dict)
    best_reward: float = -math.inf
    best_mean: float | None = None
    best_std: float | None = None
    best_overhead: float = 0.0
    history: list[dict] = field(default_factory=list)
    evaluations: int = 0

    def to_dict(self) -> dict:
        """JSON-safe dict."""
        return dict(self.__dict__)

    def _offer(self, plan: Plan, r: float, mean, std, overhead: float) -> None:
        if r > self.best_reward:
            self.best_plan, self.best_reward = dict(plan), r
            self.best_mean, self.best_std, self.best_overhead = mean, std, overhead


def _check_actions(layers: Sequence[str], actions: Mapping[str, Sequence[float]]) -> None:
    if not layers:
        raise SearchError("the search needs at least one candidate layer, got none")
    for name in layers:
        acts = actions.get(name)
        if not acts:
            raise SearchError(f"no action set for candidate layer {name!r}; give >= 1 ratio")


def _score(
    plan: Plan,
    overhead_fn: Callable[[Plan], float],
    evaluator: Evaluator,
    limit: float,
    cache: PlanCache,
    result: SearchResult,
) -> dict:
    plan = normalize_plan(plan)
    overhead = float(overhead_fn(plan))
    mean = std = None
    if overhead <= limit:
        misses = len(cache)
        entry = cache.evaluate(plan, evaluator, overhead=overhead)
        result.evaluations += len(cache) - misses
        mean, std = entry["mean"], entry["std"]
        r = reward(mean, std, overhead, limit)
    else:
        r = -overhead
    result._offer(plan, r, mean, std, overhead)
    record = {"plan": plan, "overhead": overhead, "reward": r, "mean": mean, "std": std}
    result.history.append(record)
    return record


def _prefetch(plans: Sequence[Plan], overhead_fn: Callable[[Plan], float], limit: float,
              cache: PlanCache, map_evaluator: MapEvaluator) -> int:
    """Evaluate the distinct uncached plans within ``limit`` through ``map_evaluator``.

    Each result is put in ``cache`` here, in the caller's process, as it arrives (the cache
    stays the only writer of its file). Returns the number of plans evaluated.
    """
    todo: list[tuple[Plan, float]] = []
    keys: set[str] = set()
    for plan in plans:
        plan = normalize_plan(plan)
        overhead = float(overhead_fn(plan))
        key = PlanCache.key(plan)
        if overhead <= limit and plan not in cache and key not in keys:
            todo.append((plan, overhead))
            keys.add(key)
    if todo:
        for i, (mean, std) in map_evaluator([t for t, _ in todo]):
            cache.put(todo[i][0], mean, std, overhead=todo[i][1])
    return len(todo)


def action_space_size(layers: Sequence[str], actions: Mapping[str, Sequence[float]]) -> int:
    """Number of distinct plans: ``prod_i |actions_i|``."""
    return math.prod(len(actions[name]) for name in layers)


def exhaustive_search(
    layers: Sequence[str],
    actions: Mapping[str, Sequence[float]],
    evaluator: Evaluator,
    overhead_fn: Callable[[Plan], float],
    limit: float,
    *,
    cache: PlanCache | None = None,
    progress: bool = False,
    map_evaluator: MapEvaluator | None = None,
) -> SearchResult:
    """Score every plan of the action space (the optimum of Fig. 10).

    Args:
        layers: Candidate layer names.
        actions: ``{layer: [ratio, ...]}`` (0 = none).
        evaluator: ``plan -> (mean, std)``.
        overhead_fn: ``plan -> overhead`` fraction.
        limit: Overhead limit (fraction).
        cache: Shared plan cache (a fresh in-memory one if None).
        progress: Show a progress bar.
        map_evaluator: Evaluates a list of plans at once (e.g. on Dask workers, see
            :func:`correctnet.distributed.map_evaluator`): every uncached plan within the
            limit is handed to it first and each result is put in the cache here as it
            arrives (the cache stays the only writer of its file); the plans are then scored
            in order from the cache, so the result equals the sequential search's.
    """
    from tqdm.auto import tqdm

    _check_actions(layers, actions)
    cache = cache if cache is not None else PlanCache()
    result = SearchResult(limit=float(limit))
    combos = itertools.product(*(actions[name] for name in layers))
    total = action_space_size(layers, actions)
    if map_evaluator is not None:
        combos = list(combos)
        plans = [dict(zip(layers, combo)) for combo in combos]
        result.evaluations += _prefetch(plans, overhead_fn, limit, cache, map_evaluator)
    for combo in tqdm(combos, total=total, desc="exhaustive", disable=not progress, leave=False):
        _score(dict(zip(layers, combo)), overhead_fn, evaluator, limit, cache, result)
    return result


class PolicyRNN(nn.Module):
    """GRU policy that emits one action per candidate layer.

    Step ``t`` reads ``[one_hot(previous action), one_hot(t)]`` and outputs logits
    over layer ``t``'s actions (padded to the largest action set, masked).

    Args:
        n_layers: Candidate layers.
        n_actions: Size of each layer's action set.
        hidden: GRU hidden units.
    """

    def __init__(self, n_layers: int, n_actions: Sequence[int], hidden: int) -> None:
        super().__init__()
        self.n_layers = n_layers
        self.max_actions = max(n_actions)
        self.cell = nn.GRUCell(self.max_actions + 1 + n_layers, hidden)
        self.head = nn.Linear(hidden, self.max_actions)
        mask = torch.full((n_layers, self.max_actions), float("-inf"))
        for t, k in enumerate(n_actions):
            mask[t, :k] = 0.0
        self.register_buffer("mask", mask)

    def sample(self, generator: torch.Generator) -> tuple[list[int], torch.Tensor]:
        """Sample one action index per layer.

        Returns:
            ``(indices, log_prob)``, the summed log-probability (differentiable).
        """
        h = torch.zeros(1, self.cell.hidden_size)
        prev = self.max_actions  # "start" token
        log_prob = torch.zeros(())
        indices = []
        for t in range(self.n_layers):
            x = torch.zeros(1, self.max_actions + 1 + self.n_layers)
            x[0, prev] = 1.0
            x[0, self.max_actions + 1 + t] = 1.0
            h = self.cell(x, h)
            logits = self.head(h)[0] + self.mask[t]
            probs = torch.softmax(logits, dim=-1)
            a = int(torch.multinomial(probs.detach(), 1, generator=generator))
            log_prob = log_prob + torch.log_softmax(logits, dim=-1)[a]
            indices.append(a)
            prev = a
        return indices, log_prob


def rl_search(
    layers: Sequence[str],
    actions: Mapping[str, Sequence[float]],
    evaluator: Evaluator,
    overhead_fn: Callable[[Plan], float],
    limit: float,
    config: SearchConfig = SearchConfig(),
    *,
    cache: PlanCache | None = None,
    progress: bool = False,
    map_evaluator: MapEvaluator | None = None,
) -> SearchResult:
    """REINFORCE search with a moving-average baseline; the best plan seen is kept.

    Episodes run in batches of ``B = config.episodes_per_batch`` (the last one may be
    shorter): the batch's ``B`` plans are sampled from the current policy, evaluated, and used
    in one update

        loss = -scale / B * sum_k (R_k - b) * sum_t log pi(a_t^k)

    with the baseline ``b`` of before the batch (b starts at the batch's first reward); then
    ``b <- decay * b + (1 - decay) * R_k`` for each ``R_k`` in order. With ``B = 1`` (default)
    this is the per-episode update ``loss = -scale * (R - b) * sum_t log pi(a_t)``.

    A batch's plans are independent, so with ``map_evaluator`` its uncached plans are
    evaluated at once (e.g. on Dask workers); the result equals evaluating them one by one.

    Args:
        layers: Candidate layer names.
        actions: ``{layer: [ratio, ...]}`` (0 = none).
        evaluator: ``plan -> (mean, std)`` (accuracy fractions).
        overhead_fn: ``plan -> overhead`` fraction.
        limit: Overhead limit (fraction).
        config: Search settings.
        cache: Shared plan cache (a fresh in-memory one if None).
        progress: Show a progress bar.
        map_evaluator: Evaluates a list of plans at once (see :func:`exhaustive_search`);
            each batch's uncached plans within the limit go through it, results are put in
            the cache here as they arrive.

    Returns:
        A :class:`SearchResult` (its history includes every episode's reward).
    """
    from tqdm.auto import tqdm

    _check_actions(layers, actions)
    cache = cache if cache is not None else PlanCache()
    gen = torch.Generator().manual_seed(config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        policy = PolicyRNN(len(layers), [len(actions[n]) for n in layers], config.hidden)
    opt = torch.optim.Adam(policy.parameters(), lr=config.lr)
    result = SearchResult(limit=float(limit))
    baseline: float | None = None
    bar = tqdm(total=config.episodes, desc=f"RL limit {limit:.0%}", disable=not progress,
               leave=False)
    for start in range(0, config.episodes, config.episodes_per_batch):
        size = min(config.episodes_per_batch, config.episodes - start)
        samples = [policy.sample(gen) for _ in range(size)]
        plans = [{name: float(actions[name][a]) for name, a in zip(layers, idx)}
                 for idx, _ in samples]
        if map_evaluator is not None:
            result.evaluations += _prefetch(plans, overhead_fn, limit, cache, map_evaluator)
        records = [_score(plan, overhead_fn, evaluator, limit, cache, result) for plan in plans]
        baseline = records[0]["reward"] if baseline is None else baseline
        loss = sum(-config.reward_scale * (rec["reward"] - baseline) * log_prob
                   for rec, (_, log_prob) in zip(records, samples)) / size
        opt.zero_grad()
        loss.backward()
        opt.step()
        for rec in records:
            baseline = (config.baseline_decay * baseline
                        + (1 - config.baseline_decay) * rec["reward"])
            rec["baseline"] = baseline
        bar.update(size)
        bar.set_postfix(best=f"{result.best_reward:.4f}")
    bar.close()
    return result
