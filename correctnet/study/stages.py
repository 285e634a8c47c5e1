"""The stages of the reproduce study, one function each, over one :class:`StudyContext`.

Each takes the context, does its work, writes its own files into the run folder and returns a
JSON-safe dict that the pipeline stores as the stage's result. The order they run in, and the
line each logs, are the pipeline's (:data:`correctnet.study.pipeline.STAGE_LIST`); this module
does not import the pipeline.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import torch

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
from correctnet.study.context import StudyContext
from correctnet.training.variants import VARIANTS, Variant

__all__ = ["train_plain", "train_lipschitz", "train_variation_aware", "evaluate_baselines",
           "candidates", "search", "train_compensation", "evaluate_correctnet", "sweeps",
           "report", "search_space"]


def _train(ctx: StudyContext, variant: str) -> dict:
    from correctnet.workloads.models import build_model
    from correctnet.training.train import TrainConfig, train_model

    p = ctx.preset
    epochs = {"plain": p.epochs, "lipschitz": p.lipschitz_epochs,
              "variation_aware": p.va_epochs}[variant]
    cfg = TrainConfig(method=Variant(variant).method, epochs=epochs, lr=p.lr,
                      batch_size=p.batch_size, sigma=ctx.sigma, beta=p.lipschitz_beta, seed=p.seed,
                      learn_output_scale=(variant == "lipschitz" and p.lipschitz_output_scale),
                      keep_epoch_checkpoints=False)
    info = ctx.info
    torch.manual_seed(p.seed)
    model = build_model(ctx.model_name, num_classes=info["num_classes"],
                        in_channels=info["in_channels"], input_size=info["input_size"],
                        width=p.width)
    meta = {"model": ctx.model_name, "dataset": ctx.dataset,
            "num_classes": info["num_classes"], "in_channels": info["in_channels"],
            "input_size": info["input_size"]}
    if p.width != 1.0:
        meta["width"] = p.width
    history = train_model(model, ctx.loader("train", p.train_limit, train=True, seed=p.seed),
                          None, cfg, checkpoint_path=ctx.checkpoint(variant), resume=True,
                          progress=ctx.progress, meta=meta, device=ctx.device)
    model = ctx.network(variant)
    return {"clean": ctx.clean_accuracy(model, p.test_limit),
            "checkpoint": ctx.checkpoint(variant).name,
            "train_loss": history.get("train_loss"), "train_config": cfg.to_dict()}


def train_plain(ctx: StudyContext) -> dict:
    """Train the unregularized network."""
    return _train(ctx, "plain")


def train_lipschitz(ctx: StudyContext) -> dict:
    """Train the Lipschitz-regularized network (eq. 9)."""
    return _train(ctx, "lipschitz")


def train_variation_aware(ctx: StudyContext) -> dict:
    """Train with fresh variation in every batch."""
    return _train(ctx, "variation_aware")


def evaluate_baselines(ctx: StudyContext) -> dict:
    """Monte-Carlo accuracy of the three networks under ``sigma``."""
    p = ctx.preset
    out = {}
    for variant in VARIANTS:
        model = ctx.network(variant)
        res = ctx.monte_carlo(model, sigma=ctx.sigma, samples=p.samples, limit=p.test_limit)
        res["clean"] = ctx.store.result(f"train_{variant}")["clean"]
        out[variant] = res
    return {"variants": out}


def candidates(ctx: StudyContext) -> dict:
    """Fig. 9: variation in layers i..L; candidates of the base network."""
    from mapping import convert_to_crossbar, crossbar_layers

    p = ctx.preset
    curves = {}
    for variant in dict.fromkeys((p.base, "plain", "lipschitz")):
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
    base = curves[p.base]
    chosen, fallback = base["candidates"], False
    if not chosen:  # no tail drops below threshold * clean: let the search consider every layer
        chosen, fallback = list(base["layers"]), True
    return {"base": p.base, "candidates": chosen, "fallback": fallback, "curves": curves}


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


def _best(res: dict, limit: float) -> dict:
    """The stage's ``best`` entry from a search result dict (``best_plan``, ...)."""
    return {"plan": res["best_plan"], "mean": res["best_mean"], "std": res["best_std"],
            "overhead": res["best_overhead"], "reward": res["best_reward"], "limit": limit}


def search(ctx: StudyContext) -> dict:
    """Exhaustive (if affordable) and RL placement search, all plans cached.

    ``evaluations`` (per limit and in total) count distinct plans evaluated, whether trained
    now or found in ``plans.json`` by a resumed run, so a resumed run reports the same numbers.
    """
    p = ctx.preset
    base = ctx.network(p.base)
    layers, actions = search_space(ctx, base, ctx.store.result("candidates")["candidates"])
    cache = PlanCache(ctx.store.path("plans.json"))
    evaluate, mapped = _evaluators(ctx, str(ctx.checkpoint(p.base)))
    seen: set[str] = set()   # plans evaluated so far by this stage (cached or trained)

    def overhead(plan: dict) -> float:
        return plan_overhead(base, plan)

    result: dict = {"layers": layers, "actions": actions, "limits": {}, "exhaustive": None}
    if not layers:
        entry = cache.evaluate({}, evaluate, overhead=0.0)
        best = {"plan": {}, "mean": entry["mean"], "std": entry["std"], "overhead": 0.0,
                "reward": entry["mean"] - entry["std"], "limit": max(p.limits)}
        result.update(best=best, evaluations=1, explored=list(cache.entries.values()))
        return result
    size = action_space_size(layers, actions)
    result["space_size"] = size
    if size <= p.exhaustive_max_plans:
        result["exhaustive"] = {}
        for limit in sorted(p.limits, reverse=True):
            res = exhaustive_search(layers, actions, evaluate, overhead, limit, cache=cache,
                                    progress=ctx.progress, map_evaluator=mapped)
            res.evaluations = _new_plans(res, seen)
            result["exhaustive"][f"{limit:g}"] = {k: v for k, v in res.to_dict().items()
                                                  if k != "history"}
    best = None
    for limit in sorted(p.limits):
        res = rl_search(layers, actions, evaluate, overhead, limit,
                        SearchConfig(episodes=p.search_episodes,
                                     seed=derive_seed(p.seed, "search", "rl", f"{limit:g}"),
                                     episodes_per_batch=p.search_episodes_per_batch),
                        cache=cache, progress=ctx.progress, map_evaluator=mapped)
        res.evaluations = _new_plans(res, seen)
        result["limits"][f"{limit:g}"] = res.to_dict()
        if best is None or res.best_reward > best["reward"]:
            best = _best(result["limits"][f"{limit:g}"], limit)
    for limit_key, res in (result["exhaustive"] or {}).items():
        if res["best_reward"] > best["reward"]:  # the optimum beats what RL found
            best = _best(res, float(limit_key))
    result.update(best=best, evaluations=len(seen), explored=list(cache.entries.values()))
    return result


def train_compensation(ctx: StudyContext) -> dict:
    """Train the chosen plan on the whole training set and save it."""
    p = ctx.preset
    base = ctx.network(p.base)
    plan = ctx.store.result("search")["best"]["plan"]
    comp_cfg = CompensationConfig(epochs=p.final_epochs, lr=p.comp_lr,
                                  seed=derive_seed(p.seed, "train_compensation"))
    analog, hist = _train_comp(
        base, plan, ctx.loader("train", p.final_train_limit, train=True, seed=p.seed + 2),
        ctx.crossbar(ctx.sigma, p.tile), comp_cfg, device=ctx.device, progress=ctx.progress)
    overhead = plan_overhead(base, plan)
    save_compensation(ctx.store.path("correctnet.pt"), analog, plan,
                      {"base": p.base, "overhead": overhead, "config": comp_cfg.to_dict()})
    return {"plan": plan, "overhead": overhead, "loss": hist["loss"],
            "compensated_layers": len(plan), "file": "correctnet.pt"}


def evaluate_correctnet(ctx: StudyContext) -> dict:
    """Clean and Monte-Carlo accuracy of the compensated network."""
    p = ctx.preset
    comp = ctx.store.result("train_compensation")
    if comp["plan"]:
        model = ctx.correctnet_network()
        res = ctx.monte_carlo(model, sigma=ctx.sigma, samples=p.samples, limit=p.test_limit)
        res["clean"] = ctx.clean_accuracy(model, p.test_limit)
    else:
        # No compensator: the network is the base network, already evaluated on the same
        # images with the same samples and seed in ``evaluate_baselines``.
        res = dict(ctx.store.result("evaluate_baselines")["variants"][p.base])
    res.update(plan=comp["plan"], overhead=comp["overhead"],
               compensated_layers=comp["compensated_layers"])
    return res


def sweeps(ctx: StudyContext) -> dict:
    """Accuracy vs sigma for every network; sigma x tile size (8-bit DAC/ADC) for CorrectNet.

    The sigma x tile-size map runs with ``preset.line_resistance`` ohm per wire segment.
    """
    p = ctx.preset
    nets = {v: ctx.network(v) for v in VARIANTS}
    nets["correctnet"] = ctx.correctnet_network()
    compensated = bool(ctx.store.result("train_compensation")["plan"])
    sigma_curves: dict = {}
    for variant, model in nets.items():
        if variant == "correctnet" and not compensated:
            sigma_curves[variant] = sigma_curves[p.base]   # same network, same samples
            continue
        sigma_curves[variant] = []
        for s in p.sweep_sigmas:
            r = ctx.monte_carlo(model, sigma=s, samples=p.sweep_samples,
                                 limit=p.sweep_test_limit)
            sigma_curves[variant].append({"sigma": s, "mean": r["mean"], "std": r["std"]})
    tile_map = []
    for tile in p.tile_sizes:
        row = []
        for s in p.sweep_sigmas:
            r = ctx.monte_carlo(nets["correctnet"], sigma=s, samples=p.sweep_samples,
                                 limit=p.sweep_test_limit, tile=tile, bits=8,
                                 line_resistance=p.line_resistance)
            row.append(r["mean"])
        tile_map.append(row)
    return {"sigma": sigma_curves,
            "tile_map": {"tiles": list(p.tile_sizes), "sigmas": list(p.sweep_sigmas),
                         "mean": tile_map, "dac_bits": 8, "adc_bits": 8,
                         "line_resistance": p.line_resistance}}


def report(ctx: StudyContext) -> dict:
    """Draw the report's figures (the pipeline writes report.json / report.md after it)."""
    from correctnet.study.report import draw_figures

    return {"report_md": "report.md", "report_json": "report.json",
            "figures": draw_figures(ctx)}
