"""Random-search baseline: same action space, budget in trained plans, limits, seeds."""

import itertools

import pytest

from correctnet.search.random_search import draw_plans, evaluated_plans, random_search
from correctnet.errors import SearchError
from correctnet.search import PlanCache, SearchConfig, rl_search
from test_search import ACTIONS, BEST, LAYERS, make_evaluator, overhead


def _within(limit):
    plans = [dict(zip(LAYERS, c)) for c in itertools.product(*(ACTIONS[n] for n in LAYERS))]
    return {PlanCache.key(p) for p in plans if overhead(p) <= limit}


def test_random_search_spends_the_budget_on_distinct_plans_within_the_limit():
    calls = []
    res = random_search(LAYERS, ACTIONS, make_evaluator(calls), overhead, 0.03, plans=5, seed=1)
    keys = [PlanCache.key(p) for p in calls]
    assert len(calls) == 5 == len(set(keys)) == res.evaluations == evaluated_plans(res)
    assert set(keys) <= _within(0.03)
    assert all(h["mean"] is not None and h["overhead"] <= 0.03 for h in res.history)
    assert res.draws >= 5 and not res.exhausted
    best = max(res.history, key=lambda h: h["reward"])
    assert res.best_plan == best["plan"] and res.best_reward == best["reward"]


def test_random_search_evaluates_the_whole_feasible_space_when_budget_exceeds_it():
    calls = []
    res = random_search(LAYERS, ACTIONS, make_evaluator(calls), overhead, 0.03, plans=50,
                        seed=0)
    assert {PlanCache.key(p) for p in calls} == _within(0.03)   # 9 plans
    assert res.exhausted and res.best_plan == BEST
    assert res.rejected_over_limit == 18 - 9


def test_random_search_is_seeded():
    a = draw_plans(LAYERS, ACTIONS, overhead, 0.03, 4, seed=7)
    b = draw_plans(LAYERS, ACTIONS, overhead, 0.03, 4, seed=7)
    c = draw_plans(LAYERS, ACTIONS, overhead, 0.03, 4, seed=8)
    assert a == b and a[0] != c[0]


def test_random_search_equal_budget_with_rl_and_shared_cache():
    calls = []
    cache = PlanCache()
    ev = make_evaluator(calls)
    rl = rl_search(LAYERS, ACTIONS, ev, overhead, 0.03, SearchConfig(episodes=12, seed=0),
                   cache=cache)
    budget = evaluated_plans(rl)
    assert budget == len(calls) >= 1
    rnd = random_search(LAYERS, ACTIONS, ev, overhead, 0.03, plans=budget, seed=0, cache=cache)
    assert evaluated_plans(rnd) == budget
    assert set(rnd.to_dict()) >= set(rl.to_dict())      # same result form (+ sampling counts)
    # plans the RL search trained came from the cache
    assert len(calls) == len({PlanCache.key(p) for p in calls})


def test_random_search_map_evaluator_equals_sequential():
    seq = random_search(LAYERS, ACTIONS, make_evaluator([]), overhead, 0.02, plans=4, seed=3)
    ev = make_evaluator([])

    def mapped(plans):
        return [(i, ev(p)) for i, p in reversed(list(enumerate(plans)))]

    par = random_search(LAYERS, ACTIONS, ev, overhead, 0.02, plans=4, seed=3,
                        map_evaluator=mapped)
    assert par.history == seq.history and par.best_plan == seq.best_plan


@pytest.mark.parametrize("kw", [{"plans": 0}, {"plans": 1.5}, {"plans": 2, "max_draws": 0}])
def test_random_search_bad_budget(kw):
    with pytest.raises(SearchError, match="random search"):
        random_search(LAYERS, ACTIONS, make_evaluator([]), overhead, 0.03, seed=0, **kw)


def test_random_search_needs_layers():
    with pytest.raises(SearchError, match="at least one candidate"):
        random_search([], {}, make_evaluator([]), overhead, 0.03, plans=1)


def test_deep_study_helpers():
    import dataclasses

    from correctnet.study.deep_study import random_searches, variation_aware_overrides
    from correctnet.study.presets import get_preset
    from correctnet.training import TrainConfig

    quick, deep = get_preset("quick"), get_preset("deep")
    assert variation_aware_overrides(quick, "p.pt") == {}
    over = variation_aware_overrides(deep, "p.pt")
    cfg = dataclasses.replace(TrainConfig(method="variation-aware"), **over)
    assert (cfg.init_checkpoint, cfg.lr, cfg.sigma_ramp_epochs, cfg.bn_stats) == (
        "p.pt", deep.va_lr, deep.va_sigma_ramp_epochs, deep.va_bn_stats)
    cache, ev = PlanCache(), make_evaluator([])
    preset = dataclasses.replace(deep, limits=(0.02, 0.03))
    rl = {lim: rl_search(LAYERS, ACTIONS, ev, overhead, lim, SearchConfig(episodes=6, seed=1),
                         cache=cache) for lim in preset.limits}
    out = random_searches(preset, LAYERS, ACTIONS, ev, overhead, rl, cache=cache)
    assert set(out) == {"0.02", "0.03"}
    for lim in preset.limits:
        assert out[f"{lim:g}"]["plans"] == evaluated_plans(rl[lim])
        assert len(out[f"{lim:g}"]["history"]) == evaluated_plans(rl[lim])
    fixed = random_searches(dataclasses.replace(preset, random_search_plans=2), LAYERS, ACTIONS,
                            ev, overhead, {}, cache=cache)
    assert all(len(r["history"]) == 2 for r in fixed.values())
    assert random_searches(quick, LAYERS, ACTIONS, ev, overhead, rl, cache=cache) == {}
