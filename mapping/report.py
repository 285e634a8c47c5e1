"""Hardware cost of a converted model: tiles, cells, utilisation, conversions and MACs.

With a cost preset (:mod:`mapping.cost`) each row also carries energy, latency and area per
inference, and the digital path (layers left digital, e.g. CorrectNet's compensators) is
costed in ``digital``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from . import cost as _cost
from .control import _layers_or_fail
from .convert import unconverted_layers
from .layers import CrossbarConv2d

_COLUMNS = ("name", "kind", "matrix", "tile_grid", "tiles", "cells", "utilisation",
            "positions", "dac_conversions", "adc_conversions", "macs")


@dataclass(frozen=True)
class HardwareReport:
    """Per-layer and total hardware cost of one inference (one input image).

    Attributes:
        rows: One dict per crossbar layer with ``name``, ``kind``, ``matrix`` ``(out, in)``,
            ``tile_grid``, ``tiles``, ``cells`` (RRAM cells, G+/G- pairs counted twice),
            ``utilisation`` (fraction of array positions holding a weight), ``positions``
            (output positions per image: ``Ho*Wo`` for a conv, 1 for a linear layer),
            ``dac_conversions`` (``in * n_col_tiles * positions``), ``adc_conversions``
            (``out * n_row_tiles * positions``, one per tile bit line read) and ``macs``
            (``in * out * positions``).
        total: Sums over layers (``utilisation`` = used / available positions).
        tile: ``(n_rows, n_cols)`` of the first layer's tiles (for the title).
        positions_known: False if a conv layer's output size was unknown (then counted per
            output position); give ``input_shape`` to :func:`hardware_report`.
        cost: name of the :class:`~mapping.cost.CostConstants` used (None = no cost columns).
            Then every row and ``total`` also hold ``cell_reads``, ``partial_sum_adds``,
            ``energy_j``, ``latency_s``, ``area_mm2`` (analog path, per inference).
        digital: ``{"rows": [...], "total": {...}, "uncounted": [...]}``: per digital compute
            layer ``name``, ``kind``, ``macs``, ``energy_j``, ``latency_s`` (area 0: the
            digital unit is shared), the total with the unit's ``area_mm2``, and the names
            of digital layers whose MACs are not modelled (embeddings, RNNs, ...).
        cost_total: analog + digital ``energy_j``, ``latency_s``, ``area_mm2``.
    """

    rows: list[dict] = field(default_factory=list)
    total: dict = field(default_factory=dict)
    tile: tuple[int, int] = (0, 0)
    positions_known: bool = True
    cost: str | None = None
    digital: dict = field(default_factory=dict)
    cost_total: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-safe dict."""
        return {"rows": [dict(r, matrix=list(r["matrix"]), tile_grid=list(r["tile_grid"]))
                         for r in self.rows],
                "total": dict(self.total), "tile": list(self.tile),
                "positions_known": self.positions_known, "cost": self.cost,
                "digital": {k: (list(v) if isinstance(v, list) else dict(v))
                            for k, v in self.digital.items()},
                "cost_total": dict(self.cost_total)}

    def cost_table(self) -> str:
        """Energy / latency / area per layer, analog total, digital path and grand total."""
        if self.cost is None:
            return ""
        head = ("layer", "path", "energy J", "latency s", "area mm^2")
        lines = [(r["name"], "analog", f"{r['energy_j']:.3e}", f"{r['latency_s']:.3e}",
                  f"{r['area_mm2']:.4f}") for r in self.rows]
        t = self.total
        lines.append(("analog total", "", f"{t['energy_j']:.3e}", f"{t['latency_s']:.3e}",
                      f"{t['area_mm2']:.4f}"))
        for r in self.digital["rows"]:
            lines.append((r["name"], f"digital {r['macs']:,} MACs", f"{r['energy_j']:.3e}",
                          f"{r['latency_s']:.3e}", ""))
        d = self.digital["total"]
        lines.append(("digital total", f"{d['macs']:,} MACs", f"{d['energy_j']:.3e}",
                      f"{d['latency_s']:.3e}", f"{d['area_mm2']:.4f}"))
        c = self.cost_total
        lines.append(("total", "", f"{c['energy_j']:.3e}", f"{c['latency_s']:.3e}",
                      f"{c['area_mm2']:.4f}"))
        widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
        fmt = "  ".join("{:<%d}" % w if i < 2 else "{:>%d}" % w for i, w in enumerate(widths))
        out = [f"Cost per inference, constants {self.cost!r}", fmt.format(*head),
               "-" * len(fmt.format(*head))] + [fmt.format(*line) for line in lines]
        if self.digital.get("uncounted"):
            out.append(f"digital layers not costed: {', '.join(self.digital['uncounted'])}")
        return "\n".join(out)

    def __str__(self) -> str:
        head = ("layer", "kind", "matrix", "grid", "tiles", "cells", "util", "pos",
                "DAC conv", "ADC conv", "MACs")
        lines = []
        for r in self.rows + [dict(self.total, name="total", kind="", matrix="",
                                   tile_grid="", positions="")]:
            lines.append((
                r["name"], r["kind"],
                "x".join(map(str, r["matrix"])) if r["matrix"] else "",
                "x".join(map(str, r["tile_grid"])) if r["tile_grid"] else "",
                f"{r['tiles']:,}", f"{r['cells']:,}", f"{100 * r['utilisation']:.1f}%",
                f"{r['positions']:,}" if r["positions"] != "" else "",
                f"{r['dac_conversions']:,}", f"{r['adc_conversions']:,}", f"{r['macs']:,}"))
        widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
        fmt = "  ".join("{:<%d}" % w if i < 4 else "{:>%d}" % w for i, w in enumerate(widths))
        title = (f"Crossbar mapping, tiles of {self.tile[0]}x{self.tile[1]}, per inference "
                 "(one input)")
        if not self.positions_known:
            title += " [conv output size unknown: counted per output position]"
        sep = "-" * len(fmt.format(*head))
        text = "\n".join([title, fmt.format(*head), sep]
                         + [fmt.format(*line) for line in lines[:-1]]
                         + [sep, fmt.format(*lines[-1])])
        return text + ("\n\n" + self.cost_table() if self.cost is not None else "")


def _digital_macs(module: nn.Module, out: torch.Tensor) -> int | None:
    """MACs of one forward of a digital Linear / Conv layer (None: type not modelled)."""
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        k = 1
        for v in module.kernel_size:
            k *= v
        return out.numel() * (module.in_channels // module.groups) * k
    return None


# Long (~70 lines): one pass over the layers that fills the analog rows, the digital rows and
# their totals side by side; split, the three would each repeat the same walk.
def hardware_report(model: nn.Module, *, input_shape: tuple[int, ...] | None = None,
                    cost: str | _cost.CostConstants | None = "isaac-32nm") -> HardwareReport:
    """Tiles, cells, utilisation, DAC/ADC conversions and MACs of every crossbar layer.

    Args:
        model: A converted model.
        input_shape: Shape of one input without the batch axis (e.g. ``(1, 28, 28)``), used to
            find each conv layer's output positions by one forward pass; default: the sizes
            seen in the last forward pass (else 1, flagged in the report).
        cost: a :data:`~mapping.cost.COST_PRESETS` name or :class:`~mapping.cost.CostConstants`
            for energy / latency / area; None = counts only. Digital MACs are measured in the
            ``input_shape`` pass (without one: linear layers as ``in * out``, convs per
            output position).

    Returns:
        The :class:`HardwareReport`.

    Raises:
        LayerSelectionError: the model has no crossbar layers.
        CostPresetError: unknown preset name.
        ArgumentTypeError: ``cost`` is neither a name nor CostConstants.
    """
    entries = _layers_or_fail(model)
    consts = _cost.resolve(cost) if cost is not None else None
    digital_layers = unconverted_layers(model)
    digital_macs: dict[str, int | None] = {}
    if input_shape is not None:
        def counter(name: str):
            def hook(mod: nn.Module, _inp, out: torch.Tensor) -> None:
                n = _digital_macs(mod, out)
                digital_macs[name] = None if n is None else (digital_macs.get(name) or 0) + n
            return hook

        hooks = [m.register_forward_hook(counter(n)) for n, m in digital_layers]
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                model(torch.zeros((1, *input_shape), device=entries[0][1].weight.device))
        finally:
            model.train(was)
            for h in hooks:
                h.remove()
    rows, known = [], True
    for name, layer in entries:
        xb = layer.crossbar
        n_out, n_in = xb.shape
        n_rt, n_ct = xb.tile_grid
        pos = 1
        if isinstance(layer, CrossbarConv2d):
            seen = getattr(layer, "last_output_size", None)
            if seen is None:
                known = False
            else:
                pos = int(seen[0] * seen[1])
        rows.append({"name": name, "kind": type(layer).__name__, "matrix": (n_out, n_in),
                     "tile_grid": (n_rt, n_ct), "tiles": xb.n_tiles, "cells": xb.n_cells,
                     "utilisation": float(xb.utilisation), "positions": pos,
                     "dac_conversions": n_in * n_ct * pos, "adc_conversions": n_out * n_rt * pos,
                     "macs": n_in * n_out * pos})
    used = sum(r["matrix"][0] * r["matrix"][1] for r in rows)
    cells = sum(r["cells"] for r in rows)
    total = {k: sum(r[k] for r in rows) for k in ("tiles", "cells", "dac_conversions",
                                                  "adc_conversions", "macs")}
    total["utilisation"] = 2 * used / cells if cells else 0.0
    t = entries[0][1].config.tile
    if consts is None:
        return HardwareReport(rows=rows, total=total, tile=(t.n_rows, t.n_cols),
                              positions_known=known)
    for (_, layer), r in zip(entries, rows):
        tl = layer.config.tile
        r.update(_cost.layer_cost(consts, matrix=r["matrix"], tile=(tl.n_rows, tl.n_cols),
                                  tile_grid=r["tile_grid"], positions=r["positions"]))
    for k in ("cell_reads", "partial_sum_adds", "energy_j", "latency_s", "area_mm2"):
        total[k] = sum(r[k] for r in rows)
    d_rows, uncounted = [], []
    for name, m in digital_layers:
        if input_shape is not None and name not in digital_macs:
            continue                                  # not on the forward path
        macs = digital_macs.get(name) if input_shape is not None else (
            _digital_macs(m, torch.empty(m.out_features)) if isinstance(m, nn.Linear)
            else _digital_macs(m, torch.empty(m.out_channels))
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) else None)
        if macs is None:
            uncounted.append(name)
            continue
        c = _cost.digital_cost(consts, macs)
        d_rows.append({"name": name, "kind": type(m).__name__, "macs": macs,
                       "energy_j": c["energy_j"], "latency_s": c["latency_s"]})
    d_total = _cost.digital_cost(consts, sum(r["macs"] for r in d_rows))
    grand = {k: total[k] + d_total[k] for k in ("energy_j", "latency_s", "area_mm2")}
    return HardwareReport(rows=rows, total=total, tile=(t.n_rows, t.n_cols),
                          positions_known=known, cost=consts.name,
                          digital={"rows": d_rows, "total": d_total, "uncounted": uncounted},
                          cost_total=grand)
