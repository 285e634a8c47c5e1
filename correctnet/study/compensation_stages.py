"""The study's compensation stages: candidates, placement search, training, evaluation.

Two compensated networks are built, each its own row of the report
(:data:`correctnet.study.context.COMPENSATED`):

- ``correctnet``: the paper's pipeline, compensation on ``preset.base`` (``"lipschitz"``);
- ``variation_aware_compensated``: the same search and training on the variation-aware
  network, so the report shows whether compensation adds to variation-aware training.

The search runs on the first training seed's base network; the chosen plan is then trained
on every seed's base network and evaluated on the same device samples as the baselines.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator

from correctnet.compensation.overhead import plan_overhead
from correctnet.compensation.plan import format_plan
from correctnet.compensation.train import CompensationConfig, save_compensation
from correctnet.compensation.train import train_compensation as _train_comp
from correctnet.search.cache import PlanCache
from correctnet.search.candidates import select_candidates
from correctnet.search.evaluator import PlanEvaluator
from correctnet.search.placement import (
    SearchConfig,
    action_space_size,
    exhaustive_search,
    rl_search,
)
from correctnet.seeding import derive_seed
from correctnet.study.context import (
    StudyContext,
    compensated_base,
    compensated_names,
)
from correctnet.study.deep_study import random_searches
from correctnet.study.seed_stats import pool_seeds

__all__ = ["candidates", "search_space", "search_for", "train_compensation_for",
           "evaluate_compensated", "stage_names"]


def stage_names(name: str) -> dict[str, str]:
    """Stage names of one compensated network: ``{"search", "train", "evaluate"}``.

    ``correctnet`` keeps the original names (``search``, ``train_compensation``,
    ``evaluate_correctnet``) so older run folders resume; the others add their name.
    """
    if name == "correctnet":
        return {"search": "search", "train": "train_compensation",
                "evaluate": "evaluate_correctnet"}
    return {"search": f"search_{name}", "train": f"train_compensation_{name}",
            "evaluate": f"evaluate_{name}"}


def _plans_file(name: str) -> str:
    return "plans.json" if name == "correctnet" else f"plans_{name}.json"


def candidates(ctx: StudyContext) -> dict:
    """Fig. 9: variation in layers i..L; candidates of each compensated network's base.

    Returns:
        ``{"base", "candidates", "fallback", "curves", "per_network"}``: ``candidates`` /
        ``fallback`` of CorrectNet's base (``preset.base``); ``per_network`` the same for
        every compensated network; ``curves`` the Fig. 9 curve of every network involved.
    """
    from mapping import convert_to_crossbar, crossbar_layers

    p = ctx.preset
    bases = {name: compensated_base(p, name) for name in compensated_names(p)}
    curves = {}
    for variant in dict.fromkeys((*bases.values(), "plain", "lipschitz")):
        model = ctx.network(variant)
        analog = convert_to_crossbar(model, ctx.crossbar(ctx.sigma, p.tile))
        names = [n for n, _ in crossbar_layers(analog)]
        clean = ctx.clean_accuracy(model, p.candidate_test_limit)

        def tail(i: int, analog=analog, n=len(names)) -> tuple[float, float]:
            r = ctx.monte_carlo(analog, sigma=ctx.sigma, samples=p.candidate_samples,
                                limit=p.candidate_test_limit, layers=range(i, n),
                                converted=True)
            return r["mean"], r["std"]

        curves[variant] = select_candidates(names, tail, clean, threshold=p.threshold).to_dict()
    per_network = {}
    for name, base in bases.items():
        chosen, fallback = curves[base]["candidates"], False
        if not chosen:  # no tail drops below threshold * clean: the search sees every layer
            chosen, fallback = list(curves[base]["layers"]), True
        per_network[name] = {"base": base, "candidates": chosen, "fallback": fallback}
    head = per_network["correctnet"]
    return {"base": p.base, "candidates": head["candidates"], "fallback": head["fallback"],
            "curves": curves, "per_network": per_network}


def search_space(ctx: StudyContext, model, layers: list[str]) -> tuple[list[str], dict]:
    """Per-layer action sets: ratios whose cost alone fits the largest limit.

    Layers left with only "none" are dropped from the search.
    """
    limit = max(ctx.preset.limits)
    actions = {}
    for name in layers:
        acts = [r for r in ctx.preset.ratios
                if r <= 0 or plan_overhead(model, {name: r}) <= limit]
        if any(r > 0 for r in acts):
            actions[name] = sorted(set(acts) | {0.0})
    return [n for n in layers if n in actions], actions


def _new_plans(res, seen: set[str]) -> int:
    """Plans of ``res.history`` that no earlier search of the stage evaluated (added to seen).

    This is the number of plans the search trained in an uninterrupted run; unlike the cache
    misses it does not depend on how many plans a resumed run found in ``plans.json``.
    """
    keys = {PlanCache.key(h["plan"]) for h in res.history if h.get("mean") is not None}
    new = keys - seen
    seen |= new
    return len(new)


def _evaluators(ctx: StudyContext, base_path: str):
    """The search's plan evaluation: in-process (logged) and, with a Dask client, on workers.

    Returns:
        ``(evaluate, mapped)``: ``evaluate(plan) -> (mean, std)``; ``mapped`` the
        ``map_evaluator`` of :func:`correctnet.search.placement.exhaustive_search` /
        ``rl_search`` (None without a client).
    """
    p = ctx.preset
    # picklable: the same object evaluates plans here or on Dask workers, each plan with its
    # own seed, so its result is the same whichever process trains it and whatever came before
    plan_evaluator = PlanEvaluator(base_path, ctx.model_name, ctx.dataset, ctx.sigma,
                                   p.to_dict(), data_dir=ctx.data_dir, device=ctx.device)

    def evaluate(plan: dict) -> tuple[float, float]:
        t0 = time.perf_counter()
        mean, std = plan_evaluator(plan)
        ctx.log(f"  plan {format_plan(plan)}: {mean:.2%} +- {std:.2%} "
                f"({time.perf_counter() - t0:.1f} s)")
        return mean, std

    if ctx.client is None:
        return evaluate, None
    from correctnet.distributed import map_evaluator     # --workers / --scheduler

    remote = map_evaluator(ctx.client, dataclasses.replace(
        plan_evaluator, threads=ctx.worker_threads))

    def mapped(plans: list) -> Iterator[tuple[int, tuple[float, float]]]:
        for i, (mean, std) in remote(plans):   # only this process writes plans.json
            ctx.log(f"  plan {format_plan(plans[i])}: {mean:.2%} +- {std:.2%} (worker)")
            yield i, (mean, std)

    return evaluate, mapped


def solution(res: dict) -> dict:
    """``{"plan", "mean", "std", "overhead", "reward"}`` of a search result dict's best plan."""
    return {"plan": res["best_plan"], "mean": res["best_mean"], "std": res["best_std"],
            "overhead": res["best_overhead"], "reward": res["best_reward"]}


def _best(res: dict, limit: float) -> dict:
    """A ``best`` entry (:func:`solution` and its ``limit``) from a search result dict."""
    return {**solution(res), "limit": limit}


def choose_plan(solutions: list[dict], how: str) -> dict:
    """The final plan among the searches' solutions (one per limit and search).

    Args:
        solutions: ``best`` entries (``plan``, ``mean``, ``std``, ``overhead``, ``reward``,
            ``limit``), in the order the searches ran.
        how: ``"accuracy"`` (the paper: the best mean accuracy; ties to the smaller overhead)
            or ``"reward"`` (the best search reward, ``mean - std``-like).

    Returns:
        The chosen entry. A search that found no plan within its limit has ``mean`` None and
        is passed over by ``"accuracy"``; if none found one, the reward decides.
    """
    trained = [s for s in solutions if s["mean"] is not None]
    if how == "accuracy" and trained:
        return max(trained, key=lambda s: (s["mean"], -s["overhead"]))
    return max(solutions, key=lambda s: s["reward"])


def _plan_training(ctx: StudyContext) -> dict:
    """How long each plan of the search is trained (epochs, images, optimizer steps)."""
    p = ctx.preset
    images = len(ctx.dataset_split("train", p.search_train_limit))
    return {"epochs": p.search_epochs, "images": images,
            "steps": p.search_epochs * math.ceil(images / p.batch_size)}


def search_for(ctx: StudyContext, name: str) -> dict:
    """Exhaustive (if affordable) and RL placement search for compensated network ``name``.

    All plans are cached in the run folder (``plans.json`` for CorrectNet). ``evaluations``
    (per limit and in total) count distinct plans evaluated, whether trained now or found in
    the cache by a resumed run, so a resumed run reports the same numbers. ``best`` is chosen
    by :func:`choose_plan` with ``preset.plan_choice``; ``best_by_reward`` is kept.
    """
    p = ctx.preset
    base_name = compensated_base(p, name)
    base = ctx.network(base_name)
    layers, actions = search_space(
        ctx, base, ctx.store.result("candidates")["per_network"][name]["candidates"])
    cache = PlanCache(ctx.store.path(_plans_file(name)))
    evaluate, mapped = _evaluators(ctx, str(ctx.checkpoint(base_name)))
    seen: set[str] = set()   # plans evaluated so far by this stage (cached or trained)

    def overhead(plan: dict) -> float:
        return plan_overhead(base, plan)

    result: dict = {"base": base_name, "layers": layers, "actions": actions, "limits": {},
                    "exhaustive": None, "plan_training": _plan_training(ctx),
                    "plan_choice": p.plan_choice}
    if not layers:
        entry = cache.evaluate({}, evaluate, overhead=0.0)
        best = {"plan": {}, "mean": entry["mean"], "std": entry["std"], "overhead": 0.0,
                "reward": entry["mean"] - entry["std"], "limit": max(p.limits)}
        result.update(best=best, best_by_reward=best, evaluations=1,
                      explored=list(cache.entries.values()))
        return result
    result["space_size"] = action_space_size(layers, actions)
    solutions = []
    if result["space_size"] <= p.exhaustive_max_plans:
        result["exhaustive"] = {}
        for limit in sorted(p.limits, reverse=True):
            res = exhaustive_search(layers, actions, evaluate, overhead, limit, cache=cache,
                                    progress=ctx.progress, map_evaluator=mapped)
            res.evaluations = _new_plans(res, seen)
            result["exhaustive"][f"{limit:g}"] = {k: v for k, v in res.to_dict().items()
                                                  if k != "history"}
    rl_results = {}
    for limit in sorted(p.limits):
        res = rl_search(layers, actions, evaluate, overhead, limit,
                        SearchConfig(episodes=p.search_episodes,
                                     seed=derive_seed(p.seed, stage_names(name)["search"], "rl",
                                                      f"{limit:g}"),
                                     episodes_per_batch=p.search_episodes_per_batch),
                        cache=cache, progress=ctx.progress, map_evaluator=mapped)
        res.evaluations = _new_plans(res, seen)
        rl_results[limit] = res
        result["limits"][f"{limit:g}"] = res.to_dict()
        solutions.append(_best(result["limits"][f"{limit:g}"], limit))
    # the random-search baseline: as many trained plans per limit; not a candidate for the
    # final plan, only the report's answer to "does RL beat random placement?"
    result["random"] = random_searches(p, layers, actions, evaluate, overhead, rl_results,
                                       cache=cache, progress=ctx.progress, map_evaluator=mapped)
    for limit_key, res in (result["exhaustive"] or {}).items():
        solutions.append(_best(res, float(limit_key)))   # the optimum, where affordable
    result.update(best=choose_plan(solutions, p.plan_choice),
                  best_by_reward=choose_plan(solutions, "reward"),
                  evaluations=len(seen), explored=list(cache.entries.values()))
    return result


def train_compensation_for(ctx: StudyContext, name: str) -> dict:
    """Train the chosen plan of ``name`` on every seed's base network (whole training set).

    Each seed's compensators are trained with the same data order (loader seed
    ``preset.seed + 2``) and their own initialisation / variation seed; files
    ``<name>.pt``, ``<name>_seed1.pt``, ...

    Returns:
        ``{"plan", "overhead", "loss", "seed_loss", "steps", "compensated_layers", "files"}``:
        ``loss`` is the first seed's loss per epoch (the training curve), ``steps`` the
        optimizer steps per seed.
    """
    p = ctx.preset
    names = stage_names(name)
    base_name = compensated_base(p, name)
    plan = ctx.store.result(names["search"])["best"]["plan"]
    overhead = plan_overhead(ctx.network(base_name), plan)
    seed_loss, files, steps = [], [], 0
    for k in ctx.seeds:
        seed_names = (names["train"],) if k == 0 else (names["train"], k)
        cfg = CompensationConfig(epochs=p.final_epochs, lr=p.comp_lr,
                                 seed=derive_seed(p.seed, *seed_names))
        data = ctx.loader("train", p.final_train_limit, train=True, seed=p.seed + 2)
        analog, hist = _train_comp(ctx.network(base_name, k), plan, data,
                                   ctx.crossbar(ctx.sigma, p.tile), cfg, device=ctx.device,
                                   progress=ctx.progress)
        path = ctx.compensated_file(name, k)
        save_compensation(path, analog, plan, {"base": base_name, "overhead": overhead,
                                               "config": cfg.to_dict(), "seed_index": k})
        seed_loss.append(hist["loss"])
        files.append(path.name)
        steps = hist["steps"]
    return {"plan": plan, "overhead": overhead, "loss": seed_loss[0], "seed_loss": seed_loss,
            "steps": steps, "compensated_layers": len(plan), "file": files[0], "files": files}


def evaluate_compensated(ctx: StudyContext, name: str) -> dict:
    """Clean and Monte-Carlo accuracy of compensated network ``name``, every seed.

    Same device samples (Monte-Carlo seed) and test images as ``evaluate_baselines``; with an
    empty plan the network is its base network and those results are reused.

    Returns:
        ``{"mean", "std", "clean", "seed_means", "seed_std", "seed_accuracies",
        "seed_clean", "plan", "overhead", "compensated_layers", "base"}``.
    """
    p = ctx.preset
    comp = ctx.store.result(stage_names(name)["train"])
    base_name = compensated_base(p, name)
    if comp["plan"]:
        per_seed, clean = [], []
        for k in ctx.seeds:
            model = ctx.compensated_network(name, k)
            r = ctx.monte_carlo(model, sigma=ctx.sigma, samples=p.samples, limit=p.test_limit)
            per_seed.append(r["accuracies"])
            clean.append(ctx.clean_accuracy(model, p.test_limit))
        res = {**pool_seeds(per_seed), "seed_accuracies": per_seed,
               "clean": sum(clean) / len(clean), "seed_clean": clean}
    else:
        res = dict(ctx.store.result("evaluate_baselines")["variants"][base_name])
    res.update(plan=comp["plan"], overhead=comp["overhead"],
               compensated_layers=comp["compensated_layers"], base=base_name)
    return res


def stage_functions(name: str) -> dict[str, Callable[[StudyContext], dict]]:
    """``{"search", "train", "evaluate"}`` stage functions of compensated network ``name``."""
    def named(fn, stage):
        def run(ctx: StudyContext) -> dict:
            if name not in compensated_names(ctx.preset):
                return {"skipped": True, "plan": {}, "overhead": 0.0}   # see the preset
            return fn(ctx, name)

        run.__name__ = run.__qualname__ = stage        # a readable name in logs and errors
        run.__doc__ = fn.__doc__
        return run

    names = stage_names(name)
    return {"search": named(search_for, names["search"]),
            "train": named(train_compensation_for, names["train"]),
            "evaluate": named(evaluate_compensated, names["evaluate"])}


__all__ += ["stage_functions", "choose_plan", "solution"]
