"""The reproduce report: ``report.json``, ``report.md`` (like the paper's Table I), figures.

Built from the stage results stored in a run folder.

``report.json`` keys: ``model``, ``dataset``, ``sigma``, ``samples``, ``clean_accuracy`` (the
plain network's), ``variants`` (``plain``, ``lipschitz``, ``variation_aware``,
``correctnet``; each ``mean``, ``std``, ``clean``; CorrectNet also ``overhead``,
``compensated_layers``, ``plan``; the three trained networks also ``layers``:
``{layer: {"sigma_max", "sigma_min", "operator_norm", "binds"}}``, :func:`layers_section`,
and, for a network with digital gains, ``digital_gains`` (:func:`gains_section`); the
Lipschitz network also ``constraint``, ``"soft"`` or ``"hard"``),
``lambda`` (eq. 10 at ``sigma``), ``stages`` (``{name: seconds}``), ``candidates``,
``search``, ``figures``, ``preset``, ``cost`` (:func:`cost_section`: energy, latency and area
per image of the analog network, of CorrectNet's digital compensators and their overhead).
Accuracies and overhead are fractions.
"""

from __future__ import annotations

from correctnet.fileio import write_json, write_text
from correctnet.study import figures
from correctnet.study.compensation_stages import solution, stage_names
from correctnet.study.context import StudyContext, compensated_base, compensated_names
from correctnet.study.report_markdown import markdown, markdown_table
from correctnet.study.seed_stats import paired_difference
from correctnet.training.diagnostics import layer_diagnostics
from correctnet.training.lipschitz import lipschitz_lambda

__all__ = ["build_report", "draw_figures", "write_report", "markdown_table", "cost_section"]

_COST_KEYS = ("energy_j", "latency_s", "area_mm2")


def cost_section(ctx: StudyContext) -> dict:
    """Hardware cost per image of the base network on crossbars and of CorrectNet.

    Both networks are mapped with the preset's tile and ``line_resistance`` (no variation,
    ideal converters: cost does not depend on them) and costed by
    :func:`mapping.hardware_report` with the constants ``preset.cost_preset`` on one test
    image's shape. CorrectNet's compensators run on the digital path, so its analog part is
    the base network's; ``compensators`` is CorrectNet's cost minus the base network's and
    ``overhead`` that difference as a fraction of the base network's cost::

        overhead_x = (x_correctnet - x_network) / x_network,  x in {energy, latency, area}

    Returns:
        ``{"preset", "source", "tile", "line_resistance", "network", "compensators",
        "correctnet", "overhead", "weights_overhead"}``; ``network`` / ``correctnet`` hold
        ``energy_j`` (J per image), ``latency_s`` (s per image), ``area_mm2``, ``analog``
        (the crossbar part of those) and ``digital_macs``; ``compensators`` the three
        differences, ``macs`` and ``layers`` (the compensators' digital layers).
    """
    from mapping import convert_to_crossbar, hardware_report
    from mapping.cost import CostConstants

    p = ctx.preset
    consts = CostConstants.preset(p.cost_preset)
    cfg = ctx.hardware(0.0)
    shape = tuple(ctx.dataset_split("test", 1)[0][0].shape)
    comp = ctx.store.result("train_compensation")
    base = ctx.network(p.base)
    nets = {"network": base, "correctnet": ctx.correctnet_network() if comp["plan"] else base}
    reports = {k: hardware_report(convert_to_crossbar(m, cfg), input_shape=shape, cost=consts)
               for k, m in nets.items()}
    parts = {k: dict({c: float(r.cost_total[c]) for c in _COST_KEYS},
                     analog={c: float(r.total[c]) for c in _COST_KEYS},
                     digital_macs=int(r.digital["total"]["macs"]))
             for k, r in reports.items()}
    net, cn = parts["network"], parts["correctnet"]
    base_layers = {row["name"] for row in reports["network"].digital["rows"]}
    compensators = {c: cn[c] - net[c] for c in _COST_KEYS}
    compensators["macs"] = cn["digital_macs"] - net["digital_macs"]
    compensators["layers"] = [row["name"] for row in reports["correctnet"].digital["rows"]
                              if row["name"] not in base_layers]
    return {"preset": consts.name, "source": consts.source, "tile": p.tile,
            "line_resistance": p.line_resistance, "network": net,
            "compensators": compensators, "correctnet": cn,
            "overhead": {c: compensators[c] / net[c] if net[c] else 0.0 for c in _COST_KEYS},
            "weights_overhead": comp["overhead"]}


def layers_section(ctx: StudyContext, variant: str) -> dict:
    """Per analog layer of ``variant``: ``{"sigma_max", "sigma_min", "operator_norm", "binds"}``.

    From :func:`correctnet.training.diagnostics.layer_diagnostics` at the study's
    ``lambda = lipschitz_lambda(sigma)`` (eq. 10), conv operator norms at one test image's
    size; ``binds``: ``sigma_max`` within 10 % of ``lambda``. Values are rounded to 8
    significant digits, so that the report does not depend on the thread count (the SVD's
    last bits do).
    """
    image = ctx.dataset_split("test", 1)[0][0]
    diag = layer_diagnostics(ctx.network(variant), lipschitz_lambda(ctx.sigma), image[None])
    def sig(x):                 # 8 significant digits: LAPACK's last bits vary with threads
        return x if x is None or isinstance(x, bool) else float(f"{x:.8g}")

    return {name: {k: sig(d[k]) for k in ("sigma_max", "sigma_min", "operator_norm", "binds")}
            for name, d in diag.items()}


def gains_section(ctx: StudyContext, variant: str) -> dict | None:
    """The digital gains of ``variant``'s network (:mod:`correctnet.workloads.gains`), or None.

    Returns:
        ``{"kind", "parameters", "multiplies", "fraction", "min", "max"}``: gain values,
        multiplies per image, values as a fraction of the analog weights, smallest and
        largest ``g``; None for a network without gains.
    """
    from mapping import analog_layers

    from correctnet.workloads.gains import digital_gain_of, digital_gains, gain_cost

    model = ctx.network(variant)
    values = [g.gain for _, g in digital_gains(model)]
    if not values:
        return None
    info = ctx.info
    cost = gain_cost(model, (info["in_channels"], info["input_size"], info["input_size"]))
    weights = sum(m.weight.numel() for _, m in analog_layers(model))
    return {"kind": digital_gain_of(model), "parameters": cost["parameters"],
            "multiplies": cost["multiplies"],
            "fraction": cost["parameters"] / weights,
            "min": float(f"{min(float(v.min()) for v in values):.8g}"),
            "max": float(f"{max(float(v.max()) for v in values):.8g}")}


def _entry(r: dict) -> dict:
    """A variant's report entry from its stage result (pooled over seeds)."""
    keys = ("mean", "std", "clean", "seed_means", "seed_std", "seed_clean")
    return {k: r[k] for k in keys if k in r}


def _search_summary(search: dict) -> dict:
    return {"best": search["best"], "best_by_reward": search.get("best_by_reward"),
            "plan_choice": search.get("plan_choice", "reward"),
            "evaluations": search["evaluations"], "layers": search["layers"],
            "actions": search["actions"], "plan_training": search.get("plan_training"),
            "per_limit": {k: {**solution(r),
                              "optimum_reward": ((search["exhaustive"] or {}).get(k)
                                                 or {}).get("best_reward")}
                          for k, r in search["limits"].items()},
            "exhaustive": search["exhaustive"],
            "random": {k: {**solution(r), "plans": r.get("plans")}
                       for k, r in (search.get("random") or {}).items()}}


#: Paired comparisons of the report: ``name: (variant A, variant B)``, difference A - B.
COMPARISONS: dict[str, tuple[str, str]] = {
    "lipschitz_vs_plain": ("lipschitz", "plain"),
    "correctnet_vs_base": ("correctnet", "@base"),
    "correctnet_vs_digital_baseline": ("correctnet", "digital_baseline"),
    "correctnet_vs_digital_baseline_plain": ("correctnet", "digital_baseline_plain"),
    "variation_aware_compensated_vs_variation_aware": ("variation_aware_compensated",
                                                       "variation_aware"),
}


def comparisons(per_seed: dict[str, list], base: str) -> dict:
    """:data:`COMPARISONS` as paired differences (:func:`paired_difference`) of the rows.

    Args:
        per_seed: ``{variant: [[accuracy per device sample] per seed]}``.
        base: CorrectNet's base network (``"@base"`` above).
    """
    out = {}
    for name, (a, b) in COMPARISONS.items():
        b = base if b == "@base" else b
        if a in per_seed and b in per_seed:
            out[name] = {"a": a, "b": b, **paired_difference(*common_samples(per_seed[a],
                                                                             per_seed[b]))}
    return out


def common_samples(a: list, b: list) -> tuple[list, list]:
    """Both variants cut to their common leading device samples, seed by seed.

    Device sample ``i`` of every evaluation is drawn from ``SeedSequence(seed).spawn(n)[i]``
    (:func:`mapping.run_monte_carlo`), the same draw whatever ``n``, so a variant evaluated
    with fewer samples (the digital baseline's ``digital_samples``) pairs with the first ones
    of the others. Seed counts are left as they are (:func:`paired_difference` checks them).
    """
    if len(a) != len(b):
        return a, b
    n = min((len(row) for row in list(a) + list(b)), default=0)
    return [list(row)[:n] for row in a], [list(row)[:n] for row in b]


def build_report(ctx: StudyContext, stage_seconds: dict[str, float]) -> dict:
    """Assemble report.json's content (all but ``figures``) from the finished stages."""
    store, p = ctx.store, ctx.preset
    base = store.result("evaluate_baselines")["variants"]
    variants = {v: _entry(r) for v, r in base.items()}
    per_seed = {v: r.get("seed_accuracies", [r.get("accuracies", [])]) for v, r in base.items()}
    for v in base:
        variants[v]["layers"] = layers_section(ctx, v)
        gains = gains_section(ctx, v)
        if gains is not None:
            variants[v]["digital_gains"] = gains
    if "lipschitz" in variants:
        variants["lipschitz"]["constraint"] = p.lipschitz_constraint
    for name in compensated_names(p):
        r = store.result(stage_names(name)["evaluate"])
        trained = store.result(stage_names(name)["train"])
        variants[name] = {**_entry(r), "overhead": r["overhead"],
                          "compensated_layers": r["compensated_layers"], "plan": r["plan"],
                          "base": compensated_base(p, name),
                          "training": {"loss": trained.get("seed_loss") or [trained["loss"]],
                                       "steps": trained.get("steps")}}
        per_seed[name] = r["seed_accuracies"]
    digital = store.result("digital_baseline")
    for key, row in (("digital_baseline", "correctnet"), ("digital_baseline_plain", "plain")):
        d = digital[row]
        variants[key] = {**_entry(d), "overhead": d["overhead"], "layers": d["layers"],
                         "base": d["base"], "clean": variants[d["base"]]["clean"]}
        per_seed[key] = d["seed_accuracies"]
    report = {
        "model": ctx.model_name, "dataset": ctx.dataset, "sigma": ctx.sigma,
        "samples": p.samples, "seeds": p.seeds,
        "test_images": len(ctx.dataset_split("test", p.test_limit)),
        "clean_accuracy": base["plain"]["clean"],
        "variants": variants,
        "comparisons": comparisons(per_seed, p.base),
        "stages": dict(stage_seconds),
        "candidates": store.result("candidates")["candidates"],
        "candidates_fallback": store.result("candidates").get("fallback", False),
        "search": _search_summary(store.result("search")),
        "searches": {name: _search_summary(store.result(stage_names(name)["search"]))
                     for name in compensated_names(p)},
        "digital_per_limit": digital["per_limit"],
        "calibration": store.result("calibration"),
        "preset": p.to_dict(),
        "cost": cost_section(ctx),
        "lambda": lipschitz_lambda(ctx.sigma),
    }
    report["targets"] = targets(report)
    return report


def targets(report: dict) -> dict:
    """The issue's targets, measured: what this run reached, stated plainly.

    Returns:
        ``{"lipschitz_binds_every_layer", "lipschitz_clean_gap", "correctnet_fraction",
        "correctnet_clean_fraction", "correctnet_minus_variation_aware", "correctnet_overhead",
        "correctnet_minus_digital_baseline", "correctnet_minus_digital_baseline_plain"}``
        (gaps and differences as fractions). ``correctnet_fraction`` is the paper's measure:
        CorrectNet's mean accuracy under variation over the unregularized network's clean
        accuracy (its claim: >= 0.95); ``correctnet_clean_fraction`` the same for
        CorrectNet's own clean accuracy.
    """
    v, c = report["variants"], report["comparisons"]
    lip = v["lipschitz"].get("layers") or {}
    va = v.get("variation_aware")
    return {
        "lipschitz_binds_every_layer": bool(lip) and all(d["binds"] for d in lip.values()),
        "lipschitz_clean_gap": v["plain"]["clean"] - v["lipschitz"]["clean"],
        "correctnet_fraction": v["correctnet"]["mean"] / v["plain"]["clean"],
        "correctnet_clean_fraction": v["correctnet"]["clean"] / v["plain"]["clean"],
        "correctnet_minus_variation_aware":
            None if va is None else v["correctnet"]["mean"] - va["mean"],
        "correctnet_overhead": v["correctnet"]["overhead"],
        "correctnet_minus_digital_baseline":
            c.get("correctnet_vs_digital_baseline", {}).get("mean"),
        "correctnet_minus_digital_baseline_plain":
            c.get("correctnet_vs_digital_baseline_plain", {}).get("mean"),
    }


def draw_figures(ctx: StudyContext) -> dict[str, str]:
    """Draw the report's PNG figures into the run folder from the finished stages.

    Returns:
        ``{title: file name inside the run folder}``.
    """
    store = ctx.store
    sw = store.result("sweeps")
    cands = store.result("candidates")
    search = store.result("search")
    return {
        "accuracy vs sigma (Fig. 2/7)": figures.plot_sigma(
            sw["sigma"], store.path("fig_sigma.png"), sigma=ctx.sigma).name,
        "variation in layers i..L (Fig. 9)": figures.plot_layers(
            cands["curves"], store.path("fig_layers.png")).name,
        "explored placements (Fig. 10), squares: layers kept digital at equal cost":
            figures.plot_search(
                search["explored"], store.path("fig_search.png"), limits=ctx.preset.limits,
                best=search["best"],
                digital=list(store.result("digital_baseline")["per_limit"]
                             .get(search.get("base", ctx.preset.base), {}).values())).name,
        "spectra of the analog layers (plain vs Lipschitz)": figures.plot_spectra(
            {v: layers_section(ctx, v) for v in ("plain", "lipschitz")},
            store.path("fig_spectra.png"), lam=lipschitz_lambda(ctx.sigma)).name,
        "sigma x tile size, CorrectNet": figures.plot_tile_map(
            sw["tile_map"], store.path("fig_tile_map.png")).name,
    }


def write_report(ctx: StudyContext, figure_files: dict[str, str],
                 stage_seconds: dict[str, float]) -> dict:
    """Write ``report.json`` and ``report.md`` into the run folder (once, after the stages).

    Args:
        ctx: The study's context (its finished stages are read from the run store).
        figure_files: ``{title: file name}`` from :func:`draw_figures` (the report stage).
        stage_seconds: ``{stage: seconds}`` of every finished stage.

    Returns:
        The report (what ``report.json`` holds).
    """
    report = build_report(ctx, stage_seconds)
    report["figures"] = dict(figure_files)
    write_json(ctx.store.path("report.json"), report)
    write_text(ctx.store.path("report.md"), markdown(report))
    return report
