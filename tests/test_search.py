import json

import pytest

from correctnet.search.candidates import CandidateError, CandidateResult, select_candidates
from correctnet.search.cache import PlanCache
from correctnet.search.placement import (
    SearchConfig,
    SearchError,
    action_space_size,
    exhaustive_search,
    reward,
    rl_search,
)

LAYERS = ["a", "b", "c"]
ACTIONS = {"a": [0.0, 0.5, 1.0], "b": [0.0, 0.5, 1.0], "c": [0.0, 1.0]}
COST = {"a": 0.004, "b": 0.01, "c": 0.05}  # overhead per unit ratio
GAIN = {"a": 0.10, "b": 0.15, "c": 0.30}   # accuracy gain at ratio 1


def overhead(plan):
    return sum(COST[k] * r for k, r in plan.items())


def make_evaluator(calls):
    def evaluate(plan):
        calls.append(dict(plan))
        # diminishing gain: ratio 0.5 gives 70 % of the full gain
        mean = 0.5 + sum(GAIN[k] * (0.7 if r == 0.5 else 1.0) for k, r in plan.items())
        std = 0.02 if plan else 0.1
        return mean, std

    return evaluate


# Known optimum under limit 0.03: c is too expensive, best is a=1,b=1 (overhead 0.014).
BEST = {"a": 1.0, "b": 1.0}


def test_reward_branches():
    assert reward(0.9, 0.01, 0.02, 0.03) == pytest.approx(0.87)
    assert reward(0.9, 0.01, 0.05, 0.03) == pytest.approx(-0.05)
    assert reward(0.9, 0.01, 0.03, 0.03) == pytest.approx(0.86)  # limit inclusive


def test_exhaustive_finds_optimum_and_skips_infeasible():
    calls = []
    res = exhaustive_search(LAYERS, ACTIONS, make_evaluator(calls), overhead, 0.03)
    assert res.best_plan == BEST
    assert len(res.history) == action_space_size(LAYERS, ACTIONS) == 18
    # plans using c (overhead >= 0.05) are never evaluated
    assert calls and all("c" not in p for p in calls)
    assert res.evaluations == len(calls) == 9


def test_rl_improves_reward_and_finds_best():
    calls = []
    cfg = SearchConfig(episodes=60, lr=0.1, seed=0)
    res = rl_search(LAYERS, ACTIONS, make_evaluator(calls), overhead, 0.03, cfg)
    rewards = [h["reward"] for h in res.history]
    first, last = sum(rewards[:10]) / 10, sum(rewards[-10:]) / 10
    assert last > first + 0.05
    assert res.best_plan == BEST
    # each distinct plan evaluated at most once
    keys = [json.dumps(p, sort_keys=True) for p in calls]
    assert len(keys) == len(set(keys))


def test_plan_cache_prevents_retraining(tmp_path):
    calls = []
    path = tmp_path / "plans.json"
    cache = PlanCache(path)
    ev = make_evaluator(calls)
    exhaustive_search(LAYERS, ACTIONS, ev, overhead, 0.03, cache=cache)
    n = len(calls)
    # a second search with another limit and a reloaded cache trains nothing new
    cache2 = PlanCache(path)
    assert len(cache2) == n
    res = exhaustive_search(LAYERS, ACTIONS, ev, overhead, 0.02, cache=cache2)
    assert len(calls) == n and res.evaluations == 0
    assert {"b": 0.5, "a": 1.0} in cache2 and {"a": 1.0, "b": 0.5, "c": 0.0} in cache2


def test_search_errors():
    with pytest.raises(SearchError, match="candidate"):
        exhaustive_search([], ACTIONS, make_evaluator([]), overhead, 0.03)
    with pytest.raises(SearchError, match="action set"):
        rl_search(["zz"], ACTIONS, make_evaluator([]), overhead, 0.03)
    with pytest.raises(SearchError, match="episodes"):
        SearchConfig(episodes=0)
    with pytest.raises(SearchError, match="lr"):
        SearchConfig(lr=0)
    with pytest.raises(SearchError, match="hidden"):
        SearchConfig(hidden=0)
    with pytest.raises(SearchError, match="baseline_decay"):
        SearchConfig(baseline_decay=1.0)


def test_candidate_selection_constructed_case():
    layers = ["l0", "l1", "l2", "l3", "l4"]
    # variation in layers i..4: tolerable for i >= 3, drops at i = 2
    acc = {4: 0.90, 3: 0.88, 2: 0.80, 1: 0.60, 0: 0.40}
    seen = []

    def tail(i):
        seen.append(i)
        return acc[i], 0.01

    res = select_candidates(layers, tail, clean=0.9)
    assert res.drop_index == 2 and res.candidates == ["l0", "l1", "l2"]
    assert seen == [4, 3, 2, 1, 0]
    assert CandidateResult.from_dict(json.loads(json.dumps(res.to_dict()))) == res
    seen.clear()
    res = select_candidates(layers, tail, clean=0.9, full_curve=False)
    assert seen == [4, 3, 2] and res.candidates == ["l0", "l1", "l2"]
    # never below threshold -> no candidates
    res = select_candidates(layers, lambda i: (0.9, 0.0), clean=0.9)
    assert res.drop_index is None and res.candidates == []


def test_candidate_errors():
    with pytest.raises(CandidateError, match="at least one"):
        select_candidates([], lambda i: (1, 0), 0.9)
    with pytest.raises(CandidateError, match="clean"):
        select_candidates(["a"], lambda i: (1, 0), 90.0)
    with pytest.raises(CandidateError, match="threshold"):
        select_candidates(["a"], lambda i: (1, 0), 0.9, threshold=0)
