"""Hardware cost of a converted model: tiles, cells, utilisation, conversions and MACs."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .control import _layers_or_fail
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
    """

    rows: list[dict] = field(default_factory=list)
    total: dict = field(default_factory=dict)
    tile: tuple[int, int] = (0, 0)
    positions_known: bool = True

    def to_dict(self) -> dict:
        """JSON-safe dict."""
        return {"rows": [dict(r, matrix=list(r["matrix"]), tile_grid=list(r["tile_grid"]))
                         for r in self.rows],
                "total": dict(self.total), "tile": list(self.tile),
                "positions_known": self.positions_known}

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
        return "\n".join([title, fmt.format(*head), sep]
                         + [fmt.format(*line) for line in lines[:-1]]
                         + [sep, fmt.format(*lines[-1])])


def hardware_report(model: nn.Module, *, input_shape: tuple[int, ...] | None = None
                    ) -> HardwareReport:
    """Tiles, cells, utilisation, DAC/ADC conversions and MACs of every crossbar layer.

    Args:
        model: A converted model.
        input_shape: Shape of one input without the batch axis (e.g. ``(1, 28, 28)``), used to
            find each conv layer's output positions by one forward pass; default: the sizes
            seen in the last forward pass (else 1, flagged in the report).

    Returns:
        The :class:`HardwareReport`.

    Raises:
        LayerSelectionError: the model has no crossbar layers.
    """
    entries = _layers_or_fail(model)
    if input_shape is not None:
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                model(torch.zeros((1, *input_shape), device=entries[0][1].weight.device))
        finally:
            model.train(was)
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
    return HardwareReport(rows=rows, total=total, tile=(t.n_rows, t.n_cols),
                          positions_known=known)
