"""The equal-cost digital-layer baseline (correctnet.digital_baseline)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import naive
from correctnet.search.digital_baseline import (
    DigitalBaselineError,
    best_digital_layers,
    layer_costs,
    maximal_digital_sets,
)
from correctnet.workloads.models import build_model

LENET_COSTS = {"features.conv1": 156, "features.conv2": 2416, "classifier.fc1": 48120,
               "classifier.fc2": 10164, "classifier.fc3": 850}


def test_lenet_costs_are_the_layers_weights_and_biases():
    costs, total = layer_costs(build_model("lenet5"))
    assert costs == LENET_COSTS
    assert total == sum(LENET_COSTS.values())


def test_lenet_at_three_percent_keeps_conv1_and_fc3():
    total = sum(LENET_COSTS.values())
    assert maximal_digital_sets(LENET_COSTS, total, 0.03) == [("features.conv1", "classifier.fc3")]
    # 5 %: conv2 fits beside conv1 but not beside conv1 and fc3
    assert maximal_digital_sets(LENET_COSTS, total, 0.05) == [
        ("features.conv1", "features.conv2"), ("features.conv1", "classifier.fc3")]
    # 6 %: all three small layers
    assert maximal_digital_sets(LENET_COSTS, total, 0.06) == [
        ("features.conv1", "features.conv2", "classifier.fc3")]


def test_budget_below_every_layer_gives_the_empty_set():
    assert maximal_digital_sets(LENET_COSTS, 61706, 0.001) == [()]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 50), min_size=1, max_size=7), st.floats(0, 0.99))
def test_maximal_sets_match_brute_force(sizes, budget):
    costs = {f"l{i}": c for i, c in enumerate(sizes)}
    total = sum(sizes) + 10
    got = sorted(maximal_digital_sets(costs, total, budget))
    assert got == naive.digital_layer_sets(costs, total, budget)


def test_best_set_is_the_highest_mean_and_cache_reuses_scores():
    costs = {"a": 1, "b": 1, "c": 2}
    calls = []

    def evaluate(digital):
        calls.append(digital)
        return {frozenset("ab"): (0.6, 0.1), frozenset("c"): (0.8, 0.05)}[digital]

    cache: dict = {}
    best = best_digital_layers(costs, 100, 0.02, evaluate, cache=cache)
    assert best.layers == ["c"] and best.mean == 0.8 and best.overhead == pytest.approx(0.02)
    assert [e["layers"] for e in best.evaluated] == [["a", "b"], ["c"]]
    again = best_digital_layers(costs, 100, 0.025, evaluate, cache=cache)
    assert again.to_dict()["layers"] == ["c"] and len(calls) == 2


@pytest.mark.parametrize("costs,total,budget,match", [
    ({}, 10, 0.1, "no layers"),
    ({"a": 0}, 10, 0.1, "positive"),
    ({"a": 20}, 10, 0.1, "less than"),
    ({"a": 1}, 10, 1.0, "budget"),
    ({"a": 1}, 10, -0.1, "budget"),
])
def test_bad_arguments_are_refused(costs, total, budget, match):
    with pytest.raises(DigitalBaselineError, match=match):
        maximal_digital_sets(costs, total, budget)


def test_too_many_sets_are_refused():
    costs = {f"l{i}": 1 for i in range(12)}        # C(12, 6) = 924 maximal sets at 6/100
    with pytest.raises(DigitalBaselineError, match="more than 100"):
        maximal_digital_sets(costs, 100, 0.06, max_sets=100)
