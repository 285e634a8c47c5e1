"""The reproduce report: ``report.json``, ``report.md`` (like the paper's Table I), figures.

Built from the stage results stored in a run folder.

``report.json`` keys: ``model``, ``dataset``, ``sigma``, ``samples``, ``clean_accuracy`` (the
plain network's), ``variants`` (``plain``, ``lipschitz``, ``variation_aware``,
``correctnet``; each ``mean``, ``std``, ``clean``; CorrectNet also ``overhead``,
``compensated_layers``, ``plan``; the three trained networks also ``layers``:
``{layer: {"sigma_max", "sigma_min", "operator_norm", "binds"}}``, :func:`layers_section`),
``lambda`` (eq. 10 at ``sigma``), ``stages`` (``{name: seconds}``), ``candidates``,
``search``, ``figures``, ``preset``, ``cost`` (:func:`cost_section`: energy, latency and area
per image of the analog network, of CorrectNet's digital compensators and their overhead).
Accuracies and overhead are fractions.
"""

from __future__ import annotations

from correctnet.compensation.plan import format_plan
from correctnet.fileio import write_json, write_text
from correctnet.study import figures
from correctnet.study.context import StudyContext
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


def layers_markdown(report: dict) -> list[str]:
    """The per-layer table: largest singular value (and conv operator norm) per variant."""
    variants = {v: r["layers"] for v, r in report["variants"].items() if r.get("layers")}
    if not variants:
        return []
    names = list(next(iter(variants.values())))
    lines = [f"## Spectral norms per layer (lambda = {report['lambda']:.4f}, eq. 10)", "",
             "largest singular value of the weight matrix / the convolution's operator norm;"
             " * = within 10 % of lambda", "",
             "| layer | " + " | ".join(variants) + " |", "|---" * (len(variants) + 1) + "|"]
    for name in names:
        cells = []
        for layers in variants.values():
            d = layers[name]
            op = "" if d["operator_norm"] is None else f" / {d['operator_norm']:.3f}"
            cells.append(f"{d['sigma_max']:.3f}{op}{' *' if d['binds'] else ''}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def cost_markdown(cost: dict, base: str) -> list[str]:
    """The report's hardware-cost table (per image) as markdown lines."""
    def row(name: str, part: dict, macs: int) -> str:
        return (f"| {name} | {part['energy_j']:.3e} | {part['latency_s']:.3e} "
                f"| {part['area_mm2']:.4f} | {macs:,} |")

    o = cost["overhead"]
    wires = (f", wires {cost['line_resistance']:g} ohm/segment"
             if cost.get("line_resistance") else "")
    return [
        f"## Hardware cost per image (constants `{cost['preset']}`, tiles "
        f"{cost['tile']}x{cost['tile']}{wires})",
        "",
        "| part | energy (J/image) | latency (s/image) | area (mm^2) | digital MACs |",
        "|---|---|---|---|---|",
        row(f"analog network ({base} on crossbars)", cost["network"],
            cost["network"]["digital_macs"]),
        row("CorrectNet compensators (digital path)", cost["compensators"],
            cost["compensators"]["macs"]),
        row("CorrectNet (network + compensators)", cost["correctnet"],
            cost["correctnet"]["digital_macs"]),
        f"| compensation overhead % | {_pct(o['energy_j'])} | {_pct(o['latency_s'])} "
        f"| {_pct(o['area_mm2'])} | weights {_pct(cost['weights_overhead'])} |",
        "",
        f"Constants: {cost['source']}",
    ]


def build_report(ctx: StudyContext, stage_seconds: dict[str, float]) -> dict:
    """Assemble report.json's content (all but ``figures``) from the finished stages."""
    store, p = ctx.store, ctx.preset
    base = store.result("evaluate_baselines")["variants"]
    cn = store.result("evaluate_correctnet")
    search = store.result("search")
    variants = {v: {"mean": r["mean"], "std": r["std"], "clean": r["clean"]}
                for v, r in base.items()}
    for v in variants:
        variants[v]["layers"] = layers_section(ctx, v)
    variants["correctnet"] = {"mean": cn["mean"], "std": cn["std"], "clean": cn["clean"],
                              "overhead": cn["overhead"],
                              "compensated_layers": cn["compensated_layers"],
                              "plan": cn["plan"], "base": p.base}
    return {
        "model": ctx.model_name, "dataset": ctx.dataset, "sigma": ctx.sigma,
        "samples": p.samples,
        "test_images": len(ctx.dataset_split("test", p.test_limit)),
        "clean_accuracy": base["plain"]["clean"],
        "variants": variants,
        "stages": dict(stage_seconds),
        "candidates": store.result("candidates")["candidates"],
        "candidates_fallback": store.result("candidates").get("fallback", False),
        "search": {"best": search["best"], "evaluations": search["evaluations"],
                   "layers": search["layers"], "actions": search["actions"],
                   "per_limit": {k: {"plan": r["best_plan"], "mean": r["best_mean"],
                                     "std": r["best_std"], "overhead": r["best_overhead"],
                                     "reward": r["best_reward"],
                                     "optimum_reward": ((search["exhaustive"] or {}).get(k)
                                                        or {}).get("best_reward")}
                                 for k, r in search["limits"].items()},
                   "exhaustive": search["exhaustive"]},
        "preset": p.to_dict(),
        "cost": cost_section(ctx),
        "lambda": lipschitz_lambda(ctx.sigma),
    }


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def markdown_table(report: dict) -> str:
    """Table I of the paper for one network/dataset, accuracies in percent."""
    v = report["variants"]
    cn = v["correctnet"]
    head = ("| network | dataset | clean acc. | unregularized mean | std | Lipschitz only mean "
            "| std | variation-aware mean | std | CorrectNet mean | std | overhead % "
            "| compensated layers |")
    sep = "|" + "---|" * 13
    row = (f"| {report['model']} | {report['dataset']} | {_pct(report['clean_accuracy'])} "
           f"| {_pct(v['plain']['mean'])} | {_pct(v['plain']['std'])} "
           f"| {_pct(v['lipschitz']['mean'])} | {_pct(v['lipschitz']['std'])} "
           f"| {_pct(v['variation_aware']['mean'])} | {_pct(v['variation_aware']['std'])} "
           f"| {_pct(cn['mean'])} | {_pct(cn['std'])} | {_pct(cn['overhead'])} "
           f"| {cn['compensated_layers']} |")
    return "\n".join([head, sep, row])


def _fallback_note(report: dict) -> str:
    if report.get("candidates_fallback"):
        return " (fallback: no tail fell below 95 % of clean, so every layer)"
    return ""


def _markdown(report: dict) -> str:
    v = report["variants"]
    lines = [
        f"# CorrectNet reproduction: {report['model']} on {report['dataset']}, "
        f"sigma = {report['sigma']:g}",
        "",
        f"Monte-Carlo: {report['samples']} device samples (weight-level lognormal variation "
        f"w = w0 exp(theta), theta ~ N(0, sigma^2)) on {report['test_images']} test images. "
        "Accuracies in percent (mean and standard deviation over samples).",
        "",
        markdown_table(report),
        "",
        "Clean (variation-free) accuracy of each network:",
        "",
        "| network | clean % | under variation % (mean +- std) |",
        "|---|---|---|",
    ]
    for name in ("plain", "lipschitz", "variation_aware", "correctnet"):
        r = v[name]
        lines.append(f"| {name} | {_pct(r['clean'])} | {_pct(r['mean'])} +- {_pct(r['std'])} |")
    cn = v["correctnet"]
    lines += [
        "",
        f"CorrectNet = the {cn['base']} network + digital compensators, plan "
        f"`{format_plan(cn['plan'])}` (overhead {_pct(cn['overhead'])} % of the network's "
        "weights).",
        f"Candidate layers{_fallback_note(report)}: "
        f"{', '.join(report['candidates']) or 'none'}; "
        f"{report['search']['evaluations']} plans trained during the search.",
        "",
        "Best plan found by RL per overhead limit (search-time estimates on a test subset; "
        "reward = mean - std - overhead; optimum = exhaustive search, where it ran):",
        "",
        "| limit % | RL plan | mean % | std % | overhead % | reward | optimum reward |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, r in report["search"]["per_limit"].items():
        opt = r.get("optimum_reward")
        lines.append(f"| {100 * float(k):g} | `{format_plan(r['plan'])}` | {_pct(r['mean'])} "
                     f"| {_pct(r['std'])} | {_pct(r['overhead'])} | {r['reward']:.4f} "
                     f"| {'-' if opt is None else f'{opt:.4f}'} |")
    if report.get("cost"):              # report.json of runs before the cost section lack it
        lines += [""] + cost_markdown(report["cost"], cn["base"])
    if "lambda" in report:              # nor the per-layer spectral norms
        lines += [""] + layers_markdown(report)
    lines += ["", "## Figures", ""]
    for title, fname in report.get("figures", {}).items():
        lines.append(f"![{title}]({fname})")
    lines += ["", "## Stage times", "", "| stage | seconds |", "|---|---|"]
    for name, sec in report["stages"].items():
        lines.append(f"| {name} | {sec:.1f} |")
    lines.append(f"| total | {sum(report['stages'].values()):.1f} |")
    return "\n".join(lines) + "\n"


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
        "explored placements (Fig. 10)": figures.plot_search(
            search["explored"], store.path("fig_search.png"), limits=ctx.preset.limits,
            best=search["best"]).name,
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
    write_text(ctx.store.path("report.md"), _markdown(report))
    return report
