"""``report.md``: the reproduce report as markdown, from ``report.json``'s content.

Every function takes the report dict (:func:`correctnet.study.report.build_report`) and returns
markdown; nothing here reads the run folder, so a stored ``report.json`` can be re-rendered.
Accuracies arrive as fractions and are printed in percent.
"""

from __future__ import annotations

import math

from correctnet.compensation.plan import format_plan

__all__ = ["markdown", "markdown_table", "layers_markdown", "cost_markdown",
           "comparisons_markdown", "ROW_LABELS"]

#: Rows of the main table, in order, with the label printed.
ROW_LABELS: dict[str, str] = {
    "plain": "unregularized",
    "lipschitz": "Lipschitz only",
    "variation_aware": "variation-aware",
    "correctnet": "CorrectNet (paper: Lipschitz + compensation)",
    "variation_aware_compensated": "variation-aware + compensation",
    "digital_baseline": "layers kept digital, equal cost (CorrectNet's base)",
    "digital_baseline_plain": "layers kept digital, equal cost (unregularized)",
}


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def _spread(r: dict) -> str:
    means = r.get("seed_means") or []
    return ", ".join(_pct(m) for m in means) if len(means) > 1 else "-"


def _what(name: str, r: dict) -> str:
    if name in ("correctnet", "variation_aware_compensated"):
        return f"{r['base']} + `{format_plan(r['plan'])}`"
    if name.startswith("digital_baseline"):
        return f"{r['base']}, digital: {', '.join(r['layers']) or 'none'}"
    return ""


def markdown_table(report: dict) -> str:
    """The main table (the paper's Table I, one row per network), accuracies in percent.

    Columns: clean accuracy, mean and std under variation (over every seed's device samples),
    each seed's mean, the overhead (fraction of the network's weights, in percent) and what
    the row is.
    """
    lines = [f"{report['model']} on {report['dataset']}, sigma {report['sigma']:g}: "
             f"{report.get('seeds', 1)} training seed(s) x {report['samples']} device samples",
             "",
             "| network | clean % | mean % | std % | seed means % | overhead % | what |",
             "|---|---|---|---|---|---|---|"]
    for name, label in ROW_LABELS.items():
        r = report["variants"].get(name)
        if r is None:
            continue
        lines.append(f"| {label} | {_pct(r.get('clean'))} | {_pct(r['mean'])} "
                     f"| {_pct(r['std'])} | {_spread(r)} | {_pct(r.get('overhead'))} "
                     f"| {_what(name, r)} |")
    return "\n".join(lines)


def comparisons_markdown(report: dict) -> list[str]:
    """The paired differences (A - B) with their 95 % intervals."""
    comps = report.get("comparisons") or {}
    if not comps:
        return []
    lines = ["## Paired comparisons (A - B, percentage points)", "",
             "Paired by training seed (and by device sample with one seed); 95 % Student-t "
             "interval. A variant evaluated with fewer device samples pairs with the first "
             "ones of the other (sample i is the same device draw in every evaluation).", "",
             "| comparison | A - B | sem | 95 % interval | over |", "|---|---|---|---|---|"]
    for c in comps.values():
        lo, hi = c["ci95"]
        lines.append(f"| {c['a']} - {c['b']} | {100 * c['mean']:+.2f} | {100 * c['sem']:.2f} "
                     f"| [{100 * lo:+.2f}, {100 * hi:+.2f}] | {c['n']} {c['over']} |")
    return lines


def targets_markdown(report: dict) -> list[str]:
    """What this run reached against the targets, in one short list."""
    t = report.get("targets")
    if not t:
        return []
    diff = t.get("correctnet_minus_digital_baseline")
    diff_plain = t.get("correctnet_minus_digital_baseline_plain")
    va = t.get("correctnet_minus_variation_aware")
    return ["## Targets", "",
            f"- Lipschitz constraint binds in every analog layer: "
            f"{'yes' if t['lipschitz_binds_every_layer'] else 'no'}; clean accuracy "
            f"{100 * t['lipschitz_clean_gap']:.2f} points below the unregularized network.",
            f"- CorrectNet under variation = {100 * t['correctnet_fraction']:.1f} % of the "
            f"unregularized network's clean accuracy (the paper's claim: >= 95 %), at "
            f"{_pct(t['correctnet_overhead'])} % overhead; its own clean accuracy "
            f"{100 * t['correctnet_clean_fraction']:.1f} % of it.",
            f"- CorrectNet minus variation-aware training: {_signed(va)} points.",
            f"- CorrectNet minus the equal-cost digital baseline: "
            f"{_signed(diff)} points (same base), {_signed(diff_plain)} points (digital "
            "layers in the unregularized network)."]


def _signed(x) -> str:
    """A fraction as signed percentage points, ``-`` when missing."""
    return "-" if x is None else f"{100 * x:+.2f}"


def layers_markdown(report: dict) -> list[str]:
    """The per-layer table: largest singular value (and conv operator norm) per variant."""
    variants = {v: r["layers"] for v, r in report["variants"].items()
                if isinstance(r.get("layers"), dict)}
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
    lip = report["variants"].get("lipschitz", {})
    if "constraint" in lip:
        lines += ["", f"Lipschitz network: constraint {lip['constraint']}"
                  + _gains_text(lip.get("digital_gains")) + "."]
    return lines


def _gains_text(g: dict | None) -> str:
    """``, <kind> digital gains: ...`` for a network with gains, else ``, no digital gains``."""
    if not g:
        return ", no digital gains"
    return (f", {g['kind']} digital gains after its analog layers: {g['parameters']:,} values "
            f"({100 * g['fraction']:.2f} % of the analog weights), {g['multiplies']:,} digital "
            f"multiplies per image, g in [{g['min']:.3g}, {g['max']:.3g}]")


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


def _fallback_note(report: dict) -> str:
    if report.get("candidates_fallback"):
        return " (fallback: no tail fell below 95 % of clean, so every layer)"
    return ""


def markdown(report: dict) -> str:
    """The whole ``report.md``."""
    v = report["variants"]
    lines = [
        f"# CorrectNet reproduction: {report['model']} on {report['dataset']}, "
        f"sigma = {report['sigma']:g}",
        "",
        f"Monte-Carlo: {report['samples']} device samples per network and training seed "
        "(weight-level lognormal variation w = w0 exp(theta), theta ~ N(0, sigma^2)), the same "
        f"samples for every network, on {report['test_images']} test images. Accuracies in "
        "percent; mean and std over every seed's device samples.",
        "",
        markdown_table(report),
        "",
    ]
    lines += (comparisons_markdown(report) + [""] + targets_markdown(report) + [""]
              + calibration_markdown(report))
    cn = v["correctnet"]
    lines += [
        "",
        f"CorrectNet = the {cn['base']} network + digital compensators, plan "
        f"`{format_plan(cn['plan'])}` (overhead {_pct(cn['overhead'])} % of the network's "
        "weights)." + _training_curve(cn),
        f"Candidate layers{_fallback_note(report)}: "
        f"{', '.join(report['candidates']) or 'none'}; "
        f"{report['search']['evaluations']} plans trained during the search"
        + _plan_training(report) + ".",
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
    lines += random_markdown(report) + search_notes(report)
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




def _plan_training(report: dict) -> str:
    t = report["search"].get("plan_training")
    if not t:
        return ""
    return (f", each for {t['epochs']} epoch(s) on {t['images']} images "
            f"({t['steps']} optimizer steps)")


def search_notes(report: dict) -> list[str]:
    """How the final plan was chosen, and the equal-cost digital sets per limit."""
    s = report["search"]
    lines = ["", f"Final plan chosen by {s.get('plan_choice', 'reward')} among the limits' "
             f"solutions: `{format_plan(s['best']['plan'])}`"]
    if s.get("best_by_reward") and s["best_by_reward"]["plan"] != s["best"]["plan"]:
        lines[-1] += f" (by reward it would be `{format_plan(s['best_by_reward']['plan'])}`)"
    lines[-1] += "."
    per = (report.get("digital_per_limit") or {}).get(report["variants"]["correctnet"]["base"])
    if per:
        lines += ["", "Layers kept digital at each limit instead (same base, search-time "
                  "Monte-Carlo):", "", "| limit % | digital layers | overhead % | mean % | "
                  "std % |", "|---|---|---|---|---|"]
        for k, d in per.items():
            lines.append(f"| {100 * float(k):g} | {', '.join(d['layers']) or 'none'} "
                         f"| {_pct(d['overhead'])} | {_pct(d['mean'])} | {_pct(d['std'])} |")
    return lines


def random_markdown(report: dict) -> list[str]:
    """RL against the random-search baseline with the same number of trained plans."""
    rnd = report["search"].get("random") or {}
    if not rnd:
        return []
    lines = ["", "Random search with as many trained plans (does RL beat random placement?):",
             "", "| limit % | plans | random plan | mean % | reward | RL reward |",
             "|---|---|---|---|---|---|"]
    for k, r in rnd.items():
        rl = report["search"]["per_limit"].get(k, {})
        lines.append(f"| {100 * float(k):g} | {r.get('plans', '-')} | `{format_plan(r['plan'])}` "
                     f"| {_pct(r['mean'])} | {r['reward']:.4f} "
                     f"| {rl.get('reward', float('nan')):.4f} |")
    return lines


def calibration_markdown(report: dict) -> list[str]:
    """The networks with mean-gain calibration against without (first seed, same samples)."""
    cal = report.get("calibration")
    if not cal:
        return []
    lines = ["## Mean-gain calibration", "",
             f"Programming w / E[exp(theta)] = w / {math.exp(report['sigma'] ** 2 / 2):.4f} "
             "(`DeviceConfig.mean_gain_calibration`), first training seed, the same device "
             "samples:", "",
             "| network | uncalibrated % | calibrated % (mean +- std) "
             "| difference (95 % interval) |",
             "|---|---|---|---|"]
    for v, r in cal.items():
        d = r["difference"]
        lo, hi = d["ci95"]
        lines.append(f"| {v} | {_pct(r['uncalibrated_mean'])} | {_pct(r['mean'])} +- "
                     f"{_pct(r['std'])} | {100 * d['mean']:+.2f} [{100 * lo:+.2f}, "
                     f"{100 * hi:+.2f}] |")
    return lines


def _training_curve(row: dict) -> str:
    """`` Compensation training: N steps per seed, loss per epoch ...`` (empty without one)."""
    t = row.get("training") or {}
    if not row.get("plan") or not t.get("loss"):
        return ""
    curves = "; ".join(" -> ".join(f"{v:.4f}" for v in seed) for seed in t["loss"])
    return (f" Compensation training: {t.get('steps')} optimizer steps per seed, loss per "
            f"epoch (per seed): {curves}.")
