"""The stage functions of :class:`correctnet.pipeline.Pipeline` (one per stage name).

Each takes the pipeline, does its work, writes its own files into the run folder and returns a
JSON-safe dict that the pipeline stores as the stage's result.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from correctnet.candidates import select_candidates
from correctnet.compensation import format_plan, plan_overhead
from correctnet.compensation_training import CompensationConfig, save_compensation
from correctnet.compensation_training import train_compensation as _train_comp
from correctnet.hardware import xbar_config
from correctnet.plan_evaluator import PlanEvaluator
from correctnet.seeding import derive_seed
from correctnet.search import (
    PlanCache,
    SearchConfig,
    action_space_size,
    exhaustive_search,
    rl_search,
)
from correctnet.variants import TRAIN_METHOD, VARIANTS

if TYPE_CHECKING:                       # annotations only: the pipeline calls these stages
    from correctnet.pipeline import Pipeline

__all__ = ["train_plain", "train_lipschitz", "train_variation_aware", "evaluate_baselines",
           "candidates", "search", "train_compensation", "evaluate_correctnet", "sweeps",
           "report", "search_space"]


def _train(pipe: Pipeline, variant: str) -> dict:
    from correctnet.models import build_model
    from correctnet.training import TrainConfig, train_model

    p = pipe.preset
    epochs = {"plain": p.epochs, "lipschitz": p.lipschitz_epochs,
              "variation_aware": p.va_epochs}[variant]
    cfg = TrainConfig(method=TRAIN_METHOD[variant], epochs=epochs, lr=p.lr, batch_size=p.batch_size,
                      sigma=pipe.sigma, beta=p.lipschitz_beta, seed=p.seed,
                      learn_output_scale=(variant == "lipschitz" and p.lipschitz_output_scale),
                      keep_epoch_checkpoints=False)
    info = pipe.info
    torch.manual_seed(p.seed)
    model = build_model(pipe.model_name, num_classes=info["num_classes"],
                        in_channels=info["in_channels"], input_size=info["input_size"],
                        width=p.width)
    meta = {"model": pipe.model_name, "dataset": pipe.dataset,
            "num_classes": info["num_classes"], "in_channels": info["in_channels"],
            "input_size": info["input_size"]}
    if p.width != 1.0:
        meta["width"] = p.width
    history = train_model(model, pipe.loader("train", p.train_limit, train=True, seed=p.seed),
                          None, cfg, checkpoint_path=pipe.checkpoint(variant), resume=True,
                          progress=pipe.progress, meta=meta, device=pipe.device)
    model = pipe.network(variant)
    return {"clean": pipe.clean_accuracy(model, p.test_limit),
            "checkpoint": pipe.checkpoint(variant).name,
            "train_loss": history.get("train_loss"), "train_config": cfg.to_dict()}


def train_plain(pipe: Pipeline) -> dict:
    """Train the unregularized network."""
    return _train(pipe, "plain")


def train_lipschitz(pipe: Pipeline) -> dict:
    """Train the Lipschitz-regularized network (eq. 9)."""
    return _train(pipe, "lipschitz")


def train_variation_aware(pipe: Pipeline) -> dict:
    """Train with fresh variation in every batch."""
    return _train(pipe, "variation_aware")


def evaluate_baselines(pipe: Pipeline) -> dict:
    """Monte-Carlo accuracy of the three networks under ``sigma``."""
    p = pipe.preset
    out = {}
    for variant in VARIANTS:
        model = pipe.network(variant)
        res = pipe.monte_carlo(model, sigma=pipe.sigma, samples=p.samples, limit=p.test_limit)
        res["clean"] = pipe.store.result(f"train_{variant}")["clean"]
        out[variant] = res
    return {"variants": out}


def candidates(pipe: Pipeline) -> dict:
    """Fig. 9: variation in layers i..L; candidates of the base network."""
    from mapping import convert_to_crossbar, crossbar_layers

    p = pipe.preset
    curves = {}
    for variant in dict.fromkeys((p.base, "plain", "lipschitz")):
        model = pipe.network(variant)
        analog = convert_to_crossbar(model, xbar_config(pipe.sigma, p.tile))
        names = [n for n, _ in crossbar_layers(analog)]
        clean = pipe.clean_accuracy(model, p.candidate_test_limit)

        def tail(i: int, analog=analog, n=len(names)) -> tuple[float, float]:
            r = pipe.monte_carlo(analog, sigma=pipe.sigma, samples=p.candidate_samples,
                                 limit=p.candidate_test_limit, layers=range(i, n),
                                 converted=True)
            return r["mean"], r["std"]

        curves[variant] = select_candidates(names, tail, clean, threshold=p.threshold).to_dict()
    base = curves[p.base]
    chosen, fallback = base["candidates"], False
    if not chosen:  # no tail drops below threshold * clean: let the search consider every layer
        chosen, fallback = list(base["layers"]), True
    return {"base": p.base, "candidates": chosen, "fallback": fallback, "curves": curves}


def search_space(pipe: Pipeline, model, layers: list[str]) -> tuple[list[str], dict]:
    """Per-layer action sets: ratios whose cost alone fits the largest limit.

    Layers left with only "none" are dropped from the search.
    """
    limit = max(pipe.preset.limits)
    actions = {}
    for name in layers:
        acts = [r for r in pipe.preset.ratios
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


def search(pipe: Pipeline) -> dict:
    """Exhaustive (if affordable) and RL placement search, all plans cached.

    ``evaluations`` (per limit and in total) count distinct plans evaluated, whether trained
    now or found in ``plans.json`` by a resumed run, so a resumed run reports the same numbers.
    """
    p = pipe.preset
    base = pipe.network(p.base)
    cands = pipe.store.result("candidates")["candidates"]
    layers, actions = search_space(pipe, base, cands)
    cache = PlanCache(pipe.store.path("plans.json"))
    # picklable: the same object evaluates plans here or on Dask workers, each plan with its
    # own seed, so its result is the same whichever process trains it and whatever came before
    plan_evaluator = PlanEvaluator(str(pipe.checkpoint(p.base)), pipe.model_name, pipe.dataset,
                                   pipe.sigma, p.to_dict(), data_dir=pipe.data_dir,
                                   device=pipe.device)
    seen: set[str] = set()   # plans evaluated so far by this stage (cached or trained)

    def evaluate(plan: dict) -> tuple[float, float]:
        t0 = time.perf_counter()
        mean, std = plan_evaluator(plan)
        pipe.log(f"  plan {format_plan(plan)}: {mean:.2%} +- {std:.2%} "
                 f"({time.perf_counter() - t0:.1f} s)")
        return mean, std

    mapped = None
    if pipe.client is not None:   # --workers / --scheduler
        from correctnet.distributed import map_evaluator

        remote = map_evaluator(pipe.client, dataclasses.replace(
            plan_evaluator, threads=pipe.worker_threads))

        def mapped(plans: list) -> Iterator[tuple[int, tuple[float, float]]]:
            for i, (mean, std) in remote(plans):   # only this process writes plans.json
                pipe.log(f"  plan {format_plan(plans[i])}: {mean:.2%} +- {std:.2%} (worker)")
                yield i, (mean, std)

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
                                    progress=pipe.progress, map_evaluator=mapped)
            res.evaluations = _new_plans(res, seen)
            result["exhaustive"][f"{limit:g}"] = {k: v for k, v in res.to_dict().items()
                                                  if k != "history"}
    best = None
    for limit in sorted(p.limits):
        res = rl_search(layers, actions, evaluate, overhead, limit,
                        SearchConfig(episodes=p.search_episodes,
                                     seed=derive_seed(p.seed, "search", "rl", f"{limit:g}"),
                                     episodes_per_batch=p.search_episodes_per_batch),
                        cache=cache, progress=pipe.progress, map_evaluator=mapped)
        res.evaluations = _new_plans(res, seen)
        result["limits"][f"{limit:g}"] = res.to_dict()
        if best is None or res.best_reward > best["reward"]:
            best = {"plan": res.best_plan, "mean": res.best_mean, "std": res.best_std,
                    "overhead": res.best_overhead, "reward": res.best_reward, "limit": limit}
    for limit_key, res in (result["exhaustive"] or {}).items():
        if res["best_reward"] > best["reward"]:  # the optimum beats what RL found
            best = {"plan": res["best_plan"], "mean": res["best_mean"], "std": res["best_std"],
                    "overhead": res["best_overhead"], "reward": res["best_reward"],
                    "limit": float(limit_key)}
    result["best"] = best
    result["evaluations"] = len(seen)
    result["explored"] = list(cache.entries.values())
    return result


def train_compensation(pipe: Pipeline) -> dict:
    """Train the chosen plan on the whole training set and save it."""
    p = pipe.preset
    base = pipe.network(p.base)
    plan = pipe.store.result("search")["best"]["plan"]
    comp_cfg = CompensationConfig(epochs=p.final_epochs, lr=p.comp_lr,
                                  seed=derive_seed(p.seed, "train_compensation"))
    analog, hist = _train_comp(
        base, plan, pipe.loader("train", p.final_train_limit, train=True, seed=p.seed + 2),
        xbar_config(pipe.sigma, p.tile), comp_cfg, device=pipe.device, progress=pipe.progress)
    overhead = plan_overhead(base, plan)
    save_compensation(pipe.store.path("correctnet.pt"), analog, plan,
                      {"base": p.base, "overhead": overhead, "config": comp_cfg.to_dict()})
    return {"plan": plan, "overhead": overhead, "loss": hist["loss"],
            "compensated_layers": len(plan), "file": "correctnet.pt"}


def evaluate_correctnet(pipe: Pipeline) -> dict:
    """Clean and Monte-Carlo accuracy of the compensated network."""
    p = pipe.preset
    comp = pipe.store.result("train_compensation")
    if comp["plan"]:
        model = pipe.correctnet_network()
        res = pipe.monte_carlo(model, sigma=pipe.sigma, samples=p.samples, limit=p.test_limit)
        res["clean"] = pipe.clean_accuracy(model, p.test_limit)
    else:
        # No compensator: the network is the base network, already evaluated on the same
        # images with the same samples and seed in ``evaluate_baselines``.
        res = dict(pipe.store.result("evaluate_baselines")["variants"][p.base])
    res.update(plan=comp["plan"], overhead=comp["overhead"],
               compensated_layers=comp["compensated_layers"])
    return res


def sweeps(pipe: Pipeline) -> dict:
    """Accuracy vs sigma for every network; sigma x tile size (8-bit DAC/ADC) for CorrectNet.

    The sigma x tile-size map runs with ``preset.line_resistance`` ohm per wire segment.
    """
    p = pipe.preset
    nets = {v: pipe.network(v) for v in VARIANTS}
    nets["correctnet"] = pipe.correctnet_network()
    compensated = bool(pipe.store.result("train_compensation")["plan"])
    sigma_curves: dict = {}
    for variant, model in nets.items():
        if variant == "correctnet" and not compensated:
            sigma_curves[variant] = sigma_curves[p.base]   # same network, same samples
            continue
        sigma_curves[variant] = []
        for s in p.sweep_sigmas:
            r = pipe.monte_carlo(model, sigma=s, samples=p.sweep_samples,
                                 limit=p.sweep_test_limit)
            sigma_curves[variant].append({"sigma": s, "mean": r["mean"], "std": r["std"]})
    tile_map = []
    for tile in p.tile_sizes:
        row = []
        for s in p.sweep_sigmas:
            r = pipe.monte_carlo(nets["correctnet"], sigma=s, samples=p.sweep_samples,
                                 limit=p.sweep_test_limit, tile=tile, bits=8,
                                 line_resistance=p.line_resistance)
            row.append(r["mean"])
        tile_map.append(row)
    return {"sigma": sigma_curves,
            "tile_map": {"tiles": list(p.tile_sizes), "sigmas": list(p.sweep_sigmas),
                         "mean": tile_map, "dac_bits": 8, "adc_bits": 8,
                         "line_resistance": p.line_resistance}}


def report(pipe: Pipeline) -> dict:
    """Write report.md, report.json and the figures."""
    from correctnet.report import write_report

    return write_report(pipe)

