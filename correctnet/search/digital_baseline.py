"""The equal-cost digital baseline: keep whole layers digital instead of adding compensators.

A compensation plan adds digital weights (its overhead, a fraction of the network's weights).
The cheapest alternative a designer has is to spend the same weight budget on running some of
the network's own layers digitally (exact, no device variation). This module finds the best
such set of layers for a budget, exhaustively:

- the cost of keeping layer ``i`` digital is its weights and biases, ``c_i``; a set ``D`` of
  digital layers fits budget ``b`` when ``sum_{i in D} c_i / N <= b`` (``N`` = the network's
  parameters, the denominator of :func:`correctnet.compensation.plan_overhead`);
- only *maximal* sets are evaluated (no further layer fits): keeping one more layer digital
  removes a source of error, so a non-maximal set can only tie or lose in expectation;
- each maximal set is scored by ``evaluate(D)`` (Monte-Carlo accuracy with variation in the
  other layers) and the best mean wins; ties go to the set listed first.

The search is exhaustive over the maximal sets, which stay few for the networks studied here
because a few-percent budget admits only the small layers (LeNet-5 at 3 %: one set; VGG16/8
at 3 %: a handful). ``max_sets`` bounds the enumeration so a large budget on a wide network
fails with an error instead of running for hours.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch.nn as nn

from correctnet.compensation.modules import compensable_layers
from correctnet.compensation.overhead import count_parameters
from correctnet.errors import DigitalBaselineError

__all__ = ["DigitalBaselineError", "DigitalBaseline", "layer_costs", "maximal_digital_sets",
           "best_digital_layers"]

Evaluate = Callable[[frozenset], tuple[float, float]]


@dataclass
class DigitalBaseline:
    """The best set of digital layers for one weight budget.

    Attributes:
        budget: Weight budget, a fraction of the network's parameters.
        layers: Layers kept digital, in network order (empty if none fits).
        overhead: Their weights as a fraction of the network's parameters (<= budget).
        mean: Mean Monte-Carlo accuracy with the other layers varied (fraction).
        std: Its standard deviation over device samples.
        evaluated: ``[{"layers", "overhead", "mean", "std"}]`` for every maximal set scored.
    """

    budget: float
    layers: list[str]
    overhead: float
    mean: float
    std: float
    evaluated: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-safe dict (the report's ``digital_baseline`` entry plus what was scored)."""
        return {"budget": self.budget, "layers": list(self.layers), "overhead": self.overhead,
                "mean": self.mean, "std": self.std, "evaluated": list(self.evaluated)}


def layer_costs(model: nn.Module) -> tuple[dict[str, int], int]:
    """Weights + biases of every compensable (analog) layer and of the whole network.

    Args:
        model: A float network (compensators, if any, are not counted).

    Returns:
        ``({layer_name: parameters}, total_parameters)``.
    """
    modules = dict(model.named_modules())
    costs = {name: sum(p.numel() for p in modules[name].parameters(recurse=False))
             for name in compensable_layers(model)}
    return costs, count_parameters(model)


def _check(costs: Mapping[str, int], total: int, budget: float) -> None:
    if not costs:
        raise DigitalBaselineError("no layers to keep digital")
    if any(int(c) <= 0 for c in costs.values()):
        raise DigitalBaselineError(f"layer costs must be positive, got {dict(costs)}")
    if total < sum(costs.values()):
        raise DigitalBaselineError(f"total parameters {total} is less than the layers' "
                                   f"{sum(costs.values())}")
    if not 0 <= budget < 1:
        raise DigitalBaselineError(f"budget must be a fraction in [0, 1), got {budget!r}")


def maximal_digital_sets(costs: Mapping[str, int], total: int, budget: float, *,
                         max_sets: int = 4096) -> list[tuple[str, ...]]:
    """Every maximal set of layers whose cost fits ``budget * total``.

    Args:
        costs: ``{layer_name: parameters}`` in network order.
        total: The network's parameters (the overhead's denominator).
        budget: Fraction of ``total`` that may be kept digital, in [0, 1).
        max_sets: Refuse to enumerate more sets than this.

    Returns:
        The maximal sets (tuples in network order), in lexicographic order of the network
        order; ``[()]`` when no single layer fits.

    Raises:
        DigitalBaselineError: bad arguments, or more than ``max_sets`` maximal sets.
    """
    _check(costs, total, budget)
    names = list(costs)
    limit = budget * total
    found: list[tuple[str, ...]] = []
    for chosen in _subsets_within(names, costs, limit):
        spent = sum(costs[n] for n in chosen)
        if all(n in chosen or spent + costs[n] > limit for n in names):
            found.append(tuple(chosen))
            if len(found) > max_sets:
                raise DigitalBaselineError(
                    f"more than {max_sets} maximal digital-layer sets fit a budget of "
                    f"{budget:.2%}; lower the budget or raise max_sets")
    return found


def _subsets_within(names: Sequence[str], costs: Mapping[str, int],
                    limit: float) -> Iterator[list[str]]:
    """Depth-first over subsets (in network order) whose cost stays within ``limit``."""
    def walk(start: int, chosen: list[str], spent: int) -> Iterator[list[str]]:
        yield chosen
        for i in range(start, len(names)):
            c = costs[names[i]]
            if spent + c <= limit:
                yield from walk(i + 1, chosen + [names[i]], spent + c)
    yield from walk(0, [], 0)


def best_digital_layers(costs: Mapping[str, int], total: int, budget: float,
                        evaluate: Evaluate, *, cache: dict | None = None,
                        max_sets: int = 4096) -> DigitalBaseline:
    """The best maximal set of digital layers for ``budget`` (exhaustive).

    Args:
        costs: ``{layer_name: parameters}`` in network order (:func:`layer_costs`).
        total: The network's parameters.
        budget: Fraction of ``total`` that may be kept digital, in [0, 1).
        evaluate: ``evaluate(frozenset_of_digital_layers) -> (mean, std)``, the Monte-Carlo
            accuracy with variation in every other layer.
        cache: Optional dict reused across budgets (``frozenset -> (mean, std)``), so a set
            that is maximal for several budgets is evaluated once.
        max_sets: See :func:`maximal_digital_sets`.

    Returns:
        The :class:`DigitalBaseline`.

    Raises:
        DigitalBaselineError: see :func:`maximal_digital_sets`.
    """
    cache = {} if cache is None else cache
    scored = []
    for chosen in maximal_digital_sets(costs, total, budget, max_sets=max_sets):
        key = frozenset(chosen)
        if key not in cache:
            cache[key] = tuple(float(v) for v in evaluate(key))
        mean, std = cache[key]
        scored.append({"layers": list(chosen), "overhead": sum(costs[n] for n in chosen) / total,
                       "mean": mean, "std": std})
    best = max(scored, key=lambda s: s["mean"])   # max keeps the first of equal means
    return DigitalBaseline(budget=float(budget), layers=best["layers"], overhead=best["overhead"],
                           mean=best["mean"], std=best["std"], evaluated=scored)
