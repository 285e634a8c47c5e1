"""The reproduce report: ``report.json``, ``report.md`` (like the paper's Table I), figures.

Built from the stage results stored in a run folder.

``report.json`` keys: ``model``, ``dataset``, ``sigma``, ``samples``, ``clean_accuracy`` (the
plain network's), ``variants`` (``plain``, ``lipschitz``, ``variation_aware``,
``correctnet``; each ``mean``, ``std``, ``clean``; CorrectNet also ``overhead``,
``compensated_layers``, ``plan``), ``stages`` (``{name: seconds}``), ``candidates``,
``search``, ``figures``, ``preset``. Accuracies and overhead are fractions.
"""

from __future__ import annotations

from correctnet import report_plots
from correctnet.compensation import format_plan
from correctnet.runstore import write_json

__all__ = ["build_report", "write_report", "markdown_table"]


def build_report(pipe) -> dict:
    """Assemble report.json's content from the finished stages of ``pipe``'s run folder."""
    store, p = pipe.store, pipe.preset
    base = store.result("evaluate_baselines")["variants"]
    cn = store.result("evaluate_correctnet")
    search = store.result("search")
    variants = {v: {"mean": r["mean"], "std": r["std"], "clean": r["clean"]}
                for v, r in base.items()}
    variants["correctnet"] = {"mean": cn["mean"], "std": cn["std"], "clean": cn["clean"],
                              "overhead": cn["overhead"],
                              "compensated_layers": cn["compensated_layers"],
                              "plan": cn["plan"], "base": p.base}
    return {
        "model": pipe.model_name, "dataset": pipe.dataset, "sigma": pipe.sigma,
        "samples": p.samples,
        "test_images": len(pipe.dataset_split("test", p.test_limit)),
        "clean_accuracy": base["plain"]["clean"],
        "variants": variants,
        "stages": pipe.stage_seconds(),
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
    lines += ["", "## Figures", ""]
    for title, fname in report.get("figures", {}).items():
        lines.append(f"![{title}]({fname})")
    lines += ["", "## Stage times", "", "| stage | seconds |", "|---|---|"]
    for name, sec in report["stages"].items():
        lines.append(f"| {name} | {sec:.1f} |")
    lines.append(f"| total | {sum(report['stages'].values()):.1f} |")
    return "\n".join(lines) + "\n"


def write_report(pipe) -> dict:
    """Draw the figures and write ``report.json`` and ``report.md`` into the run folder.

    Returns:
        ``{"report_md", "report_json", "figures"}`` (file names inside the run folder).
    """
    store = pipe.store
    report = build_report(pipe)
    sw = store.result("sweeps")
    cands = store.result("candidates")
    search = store.result("search")
    figures = {
        "accuracy vs sigma (Fig. 2/7)": report_plots.plot_sigma(
            sw["sigma"], store.path("fig_sigma.png"), sigma=pipe.sigma).name,
        "variation in layers i..L (Fig. 9)": report_plots.plot_layers(
            cands["curves"], store.path("fig_layers.png")).name,
        "explored placements (Fig. 10)": report_plots.plot_search(
            search["explored"], store.path("fig_search.png"), limits=pipe.preset.limits,
            best=search["best"]).name,
        "sigma x tile size, CorrectNet": report_plots.plot_tile_map(
            sw["tile_map"], store.path("fig_tile_map.png")).name,
    }
    report["figures"] = figures
    write_json(store.path("report.json"), report)
    store.path("report.md").write_text(_markdown(report))
    return {"report_md": "report.md", "report_json": "report.json", "figures": figures}


def finalize_stage_times(pipe) -> None:
    """Rewrite report.json/report.md with every stage's time (the report stage's included)."""
    import json

    path = pipe.store.path("report.json")
    if not path.exists():
        return
    report = json.loads(path.read_text())
    report["stages"] = pipe.stage_seconds()
    write_json(path, report)
    pipe.store.path("report.md").write_text(_markdown(report))


__all__ += ["finalize_stage_times"]
