"""The study's equal-cost digital baseline stage.

For the weight budget each compensation plan spends (CorrectNet's overhead, the
variation-aware compensation's, and each search limit for the search figure), the best set of
layers kept digital instead (:func:`correctnet.search.digital_baseline.best_digital_layers`):
same base network, same device samples, the layer's weights as the overhead.

Sets are screened on the first training seed's base network with the search's Monte-Carlo
settings (``search_samples`` on ``search_test_limit`` images); the set chosen for each
compensated network's overhead is then evaluated like the network it is compared with
(``samples`` on ``test_limit`` images, every training seed). The plain network gets the same
treatment at CorrectNet's overhead (``digital_baseline_plain``): keeping layers of the
unregularized network digital is the cheapest alternative a designer has.
"""

from __future__ import annotations

from correctnet.search.digital_baseline import best_digital_layers, layer_costs
from correctnet.study.compensation_stages import stage_names
from correctnet.study.context import StudyContext, compensated_base, compensated_names
from correctnet.study.seed_stats import pool_seeds

__all__ = ["digital_baseline"]


class _Evaluator:
    """Monte-Carlo accuracy of one base network with a set of layers kept digital."""

    def __init__(self, ctx: StudyContext, variant: str) -> None:
        self.ctx, self.variant = ctx, variant
        self.cache: dict = {}          # frozenset -> (mean, std), shared by every budget
        self.costs, self.total = layer_costs(ctx.network(variant))

    def run(self, digital: frozenset, seed_index: int, *, samples: int, limit) -> list[float]:
        """Accuracies per device sample with ``digital`` exact and the other layers varied."""
        from mapping import convert_to_crossbar, crossbar_layers

        ctx = self.ctx
        model = ctx.network(self.variant, seed_index)
        analog = convert_to_crossbar(model, ctx.crossbar(ctx.sigma, ctx.preset.tile))
        varied = [n for n, _ in crossbar_layers(analog) if n not in digital]
        if not varied:             # everything digital: the clean accuracy
            return [ctx.clean_accuracy(model, limit)] * samples
        return ctx.monte_carlo(analog, sigma=ctx.sigma, samples=samples, limit=limit,
                               layers=varied if digital else None, converted=True)["accuracies"]

    def best(self, budget: float):
        """:func:`best_digital_layers` for ``budget``, screened by :meth:`screen`."""
        return best_digital_layers(self.costs, self.total, budget, self.screen, cache=self.cache)

    def screen(self, digital: frozenset) -> tuple[float, float]:
        """``(mean, std)`` on the first seed with the search's Monte-Carlo settings."""
        p = self.ctx.preset
        acc = self.run(digital, 0, samples=p.search_samples, limit=p.search_test_limit)
        stats = pool_seeds([acc])
        self.ctx.log(f"  digital {sorted(digital) or '-'} ({self.variant}): "
                     f"{stats['mean']:.2%} +- {stats['std']:.2%}")
        return stats["mean"], stats["std"]


def _final(ev: _Evaluator, best, name: str) -> dict:
    """The chosen set evaluated on every seed with the final Monte-Carlo settings."""
    p = ev.ctx.preset
    samples = p.samples if p.digital_samples is None else p.digital_samples
    per_seed = [ev.run(frozenset(best.layers), k, samples=samples, limit=p.test_limit)
                for k in ev.ctx.seeds]
    return {**pool_seeds(per_seed), "seed_accuracies": per_seed, "overhead": best.overhead,
            "budget": best.budget, "layers": list(best.layers), "base": ev.variant,
            "compared_with": name, "screened": best.evaluated}


def digital_baseline(ctx: StudyContext) -> dict:
    """Equal-cost digital-layer baselines (see the module docstring).

    Returns:
        ``{"correctnet": {...}, "variation_aware_compensated": {...}, "plain": {...},
        "per_limit": {base: {limit: {"layers", "overhead", "mean", "std"}}}}``; each of the
        first three is ``{"mean", "std", "seed_means", "seed_std", "seed_accuracies",
        "overhead", "budget", "layers", "base", "compared_with", "screened"}``.
    """
    p = ctx.preset
    evaluators: dict[str, _Evaluator] = {}
    out: dict = {"per_limit": {}}

    def best_for(variant: str, budget: float):
        if variant not in evaluators:
            evaluators[variant] = _Evaluator(ctx, variant)
        return evaluators[variant], evaluators[variant].best(budget)

    names = compensated_names(p)
    overhead = {name: ctx.store.result(stage_names(name)["train"])["overhead"]
                for name in names}
    for name in names:
        ev, best = best_for(compensated_base(p, name), overhead[name])
        out[name] = _final(ev, best, name)
    ev, best = best_for("plain", overhead["correctnet"])
    out["plain"] = _final(ev, best, "correctnet")
    for variant in dict.fromkeys(compensated_base(p, n) for n in names):
        out["per_limit"][variant] = {}
        for limit in sorted(p.limits):
            _, best = best_for(variant, limit)
            out["per_limit"][variant][f"{limit:g}"] = {
                "layers": best.layers, "overhead": best.overhead, "mean": best.mean,
                "std": best.std}
    return out
