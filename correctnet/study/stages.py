"""The stages of the reproduce study, one function each, over one :class:`StudyContext`.

Each takes the context, does its work, writes its own files into the run folder and returns a
JSON-safe dict that the pipeline stores as the stage's result. The order they run in, and the
line each logs, are the pipeline's (:data:`correctnet.study.pipeline.STAGE_LIST`); this module
does not import the pipeline.
"""

from __future__ import annotations

import dataclasses

import torch

from correctnet.study.compensation_stages import stage_names
from correctnet.study.context import StudyContext, compensated_base, compensated_names
from correctnet.study.deep_study import variation_aware_overrides
from correctnet.study.seed_stats import paired_difference, pool_seeds
from correctnet.training.variants import VARIANTS, Variant

__all__ = ["train_plain", "train_lipschitz", "train_variation_aware", "evaluate_baselines",
           "calibration", "sweeps", "report"]


def _train(ctx: StudyContext, variant: str) -> dict:
    """Train ``variant`` once per training seed (seed index ``k`` trains with seed + k).

    Returns:
        ``{"clean", "seed_clean", "checkpoint", "checkpoints", "train_loss", "train_config"}``;
        ``clean`` is the mean over seeds, ``train_loss`` / ``train_config`` the first seed's.
    """
    out = [_train_one(ctx, variant, k) for k in ctx.seeds]
    clean = [o["clean"] for o in out]
    return {"clean": sum(clean) / len(clean), "seed_clean": clean,
            "checkpoint": out[0]["checkpoint"], "checkpoints": [o["checkpoint"] for o in out],
            "train_loss": out[0]["train_loss"], "train_config": out[0]["train_config"]}


def _train_one(ctx: StudyContext, variant: str, k: int) -> dict:
    from correctnet.training.train import TrainConfig, train_model
    from correctnet.workloads.models import build_model

    p = ctx.preset
    seed = p.seed + k
    epochs = {"plain": p.epochs, "lipschitz": p.lipschitz_epochs,
              "variation_aware": p.va_epochs}[variant]
    cfg = TrainConfig(method=Variant(variant).method, epochs=epochs, lr=p.lr,
                      batch_size=p.batch_size, sigma=ctx.sigma, beta=p.lipschitz_beta, seed=seed,
                      learn_output_scale=(variant == "lipschitz" and p.lipschitz_output_scale),
                      constraint=p.lipschitz_constraint if variant == "lipschitz" else "soft",
                      keep_epoch_checkpoints=False)
    if variant == "variation_aware":     # warm start, sigma ramp, batch-norm statistics
        cfg = dataclasses.replace(cfg, **variation_aware_overrides(p, ctx.checkpoint("plain", k)))
    info = ctx.info
    torch.manual_seed(seed)
    model = build_model(ctx.model_name, num_classes=info["num_classes"],
                        in_channels=info["in_channels"], input_size=info["input_size"],
                        width=p.width,
                        digital_gain=p.lipschitz_digital_gain if variant == "lipschitz" else "none")
    meta = {"model": ctx.model_name, "dataset": ctx.dataset,
            "num_classes": info["num_classes"], "in_channels": info["in_channels"],
            "input_size": info["input_size"]}
    if p.width != 1.0:
        meta["width"] = p.width
    path = ctx.checkpoint(variant, k)
    history = train_model(model, ctx.loader("train", p.train_limit, train=True, seed=seed),
                          None, cfg, checkpoint_path=path, resume=True,
                          progress=ctx.progress, meta=meta, device=ctx.device)
    model = ctx.network(variant, k)
    return {"clean": ctx.clean_accuracy(model, p.test_limit), "checkpoint": path.name,
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
    """Monte-Carlo accuracy of the three networks under ``sigma``, every training seed.

    Every seed's network is evaluated on the same device samples (the preset's Monte-Carlo
    seed) and test images, so comparisons pair by seed.

    Returns:
        ``{"variants": {variant: {"mean", "std", "seed_means", "seed_std",
        "seed_accuracies", "clean", "seed_clean"}}}`` (fractions; see
        :func:`correctnet.study.seed_stats.pool_seeds`).
    """
    p = ctx.preset
    out = {}
    for variant in VARIANTS:
        per_seed = [ctx.monte_carlo(ctx.network(variant, k), sigma=ctx.sigma, samples=p.samples,
                                    limit=p.test_limit)["accuracies"] for k in ctx.seeds]
        trained = ctx.store.result(f"train_{variant}")
        out[variant] = {**pool_seeds(per_seed), "seed_accuracies": per_seed,
                        "clean": trained["clean"],
                        "seed_clean": trained.get("seed_clean", [trained["clean"]])}
    return {"variants": out}


def calibration(ctx: StudyContext) -> dict:
    """Mean-gain calibration's effect on the three networks (first seed).

    Programmed ``w / E[exp(theta)]`` (:attr:`xbar.DeviceConfig.mean_gain_calibration`), on the
    same device samples and images as ``evaluate_baselines``, paired with its uncalibrated
    accuracies. A side study like the digital baseline, it runs the preset's
    ``digital_samples`` (None: ``samples``): the first ``n`` of ``evaluate_baselines``'s device
    samples (sample ``i``'s cells do not depend on the sample count), paired with those.

    Returns:
        ``{variant: {"mean", "std", "uncalibrated_mean", "difference"}}``; ``difference`` is
        :func:`correctnet.study.seed_stats.paired_difference` (calibrated - uncalibrated, over
        device samples).
    """
    p = ctx.preset
    base = ctx.store.result("evaluate_baselines")["variants"]
    out = {}
    samples = p.samples if p.digital_samples is None else min(p.digital_samples, p.samples)
    for variant in VARIANTS:
        acc = ctx.monte_carlo(ctx.network(variant), sigma=ctx.sigma, samples=samples,
                              limit=p.test_limit, calibrate=True)["accuracies"]
        plain = base[variant]["seed_accuracies"][0][:samples]
        out[variant] = {**{k: v for k, v in pool_seeds([acc]).items() if k in ("mean", "std")},
                        "uncalibrated_mean": sum(plain) / len(plain),
                        "difference": paired_difference([acc], [plain])}
    return out


def sweeps(ctx: StudyContext) -> dict:
    """Accuracy vs sigma for every network; sigma x tile size (8-bit DAC/ADC) for CorrectNet.

    First training seed's networks. The sigma x tile-size map runs with
    ``preset.line_resistance`` ohm per wire segment.
    """
    p = ctx.preset
    nets = {v: ctx.network(v) for v in VARIANTS}
    sigma_curves: dict = {}
    for name in compensated_names(p):
        if ctx.store.result(stage_names(name)["train"])["plan"]:
            nets[name] = ctx.compensated_network(name)
    for variant, model in nets.items():
        sigma_curves[variant] = []
        for s in p.sweep_sigmas:
            r = ctx.monte_carlo(model, sigma=s, samples=p.sweep_samples,
                                 limit=p.sweep_test_limit)
            sigma_curves[variant].append({"sigma": s, "mean": r["mean"], "std": r["std"]})
    for name in compensated_names(p):
        if name not in nets:      # no compensator: the base network, same samples
            nets[name] = nets[compensated_base(p, name)]
            sigma_curves[name] = sigma_curves[compensated_base(p, name)]
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
