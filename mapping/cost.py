"""Energy, latency and area of one inference from per-operation constants (NeuroSim-style).

Counts per crossbar layer and inference (``P`` output positions, ``n_rt x n_ct`` tiles of
``n_rows x n_cols``, matrix ``out x in``):

* DAC conversions ``in * n_ct * P``, ADC conversions ``out * n_rt * P``;
* cell reads ``2 * in * out * P`` (the G+ and G- cell of every used weight conduct);
* digital partial-sum additions ``out * (n_rt - 1) * P`` (row tiles summed after the ADCs);

and for the digital path (compensators, layers left digital) its multiply-accumulates.

Model (every constant is per operation, :class:`CostConstants`)::

    E_layer = N_dac E_dac + N_adc E_adc + N_cell E_cell + N_add E_add
    t_layer = P (t_array + ceil(n_cols / adcs_per_tile) t_adc) + N_add t_add / lanes
    A_layer = tiles (2 n_rows n_cols A_cell + n_rows A_dac + adcs_per_tile A_adc)
    E_dig = N_mac E_mac,  t_dig = N_mac t_mac / lanes,  A_dig = lanes A_mac (if N_mac > 0)

All tiles of a layer work in parallel (weight-stationary, one array per tile), the output
positions of a layer one after another, the layers one after another (no pipelining); the
digital unit has ``lanes`` MAC/adder lanes. Totals are sums over layers (latency included).
This is a first-order, NeuroSim-like estimate: no buffers, interconnect or control.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .errors import ArgumentTypeError, MappingError


class CostPresetError(MappingError, KeyError):
    """An unknown cost preset name (the message lists the known ones)."""

    def __str__(self) -> str:          # KeyError would print the message with quotes
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class CostConstants:
    """Per-operation energy (J), time (s) and area (mm^2) of the hardware blocks."""

    name: str
    """Preset name (or a user label)."""
    source: str
    """Where the numbers come from (papers, tables, derivations)."""
    adc_energy_j: float
    """Energy of one ADC conversion, joule."""
    adc_time_s: float
    """Time of one ADC conversion, second (1 / sample rate)."""
    adc_area_mm2: float
    """Area of one ADC, mm^2."""
    adcs_per_tile: int
    """ADCs per tile, shared by its bit lines in turn (1 .. n_cols)."""
    dac_energy_j: float
    """Energy of one input (word-line) DAC conversion, joule."""
    dac_area_mm2: float
    """Area of one DAC (one per word line), mm^2."""
    cell_energy_j: float
    """Energy of one cell read (one cell conducting for one array read), joule."""
    cell_area_mm2: float
    """Area of one RRAM cell (with its access transistor), mm^2."""
    array_time_s: float
    """Time of one analog array read (drive and settle), second."""
    add_energy_j: float
    """Energy of one digital partial-sum addition, joule."""
    add_time_s: float
    """Time of one digital addition in one lane, second."""
    mac_energy_j: float
    """Energy of one digital multiply-accumulate (digital layers, compensators), joule."""
    mac_time_s: float
    """Time of one digital MAC in one lane, second."""
    mac_area_mm2: float
    """Area of one digital MAC lane, mm^2."""
    lanes: int = 64
    """Parallel digital lanes (adds and MACs), count."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name in ("name", "source"):
                if not isinstance(v, str):
                    raise ArgumentTypeError(f"cost.{f.name} must be a str, got {v!r}")
            elif f.name in ("adcs_per_tile", "lanes"):
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise ArgumentTypeError(f"cost.{f.name} must be an int >= 1, got {v!r}")
            elif (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                  or v < 0):
                raise ArgumentTypeError(f"cost.{f.name} must be a finite number >= 0, got {v!r}")

    @classmethod
    def preset(cls, name: str, **overrides) -> CostConstants:
        """A named preset (:data:`COST_PRESETS`), optionally with fields overridden.

        Raises:
            CostPresetError: unknown name.
            ArgumentTypeError: an override has a bad value.
        """
        if name not in COST_PRESETS:
            raise CostPresetError(f"unknown cost preset {name!r}; known: {sorted(COST_PRESETS)}")
        try:
            return dataclasses.replace(COST_PRESETS[name], **overrides)
        except TypeError as e:
            raise ArgumentTypeError(f"bad cost override: {e}") from None


# Digital figures of Horowitz, "Computing's energy problem", ISSCC 2014 (45 nm): 8-bit integer
# multiply 0.2 pJ + add 0.03 pJ (a MAC, 0.23 pJ; area 282 + 36 um^2), 32-bit integer add
# 0.1 pJ. One operation per 1 GHz clock cycle per lane.
_ISAAC = CostConstants(
    name="isaac-32nm",
    source=("ISAAC (Shafiee et al., ISCA 2016, Table 6; 32 nm, 1.2 GHz digital, 10 MHz "
            "crossbar reads): 8-bit SAR ADC 16 mW at 1.28 GS/s (12.5 pJ, 0.78 ns per "
            "conversion), 0.0096 mm^2, one ADC per 128x128 array; 1-bit DACs 4 mW and "
            "0.00017 mm^2 per 8x128, taken x8 cycles for an 8-bit input over a 100 ns read "
            "(~3.1 fJ); 8 arrays of 128x128 at 2.4 mW and 0.0002 mm^2 (per cell per 100 ns "
            "read ~1.8 fJ, ~1.5e-9 mm^2). Digital: Horowitz ISSCC 2014 (45 nm): 8-bit MAC "
            "0.23 pJ, 32-bit add 0.1 pJ, MAC lane 318 um^2, 1 GHz. Constants transcribed from "
            "those tables; check them against the papers before quoting absolute numbers."),
    adc_energy_j=12.5e-12, adc_time_s=0.78e-9, adc_area_mm2=0.0096, adcs_per_tile=1,
    dac_energy_j=3.1e-15, dac_area_mm2=0.00017 / 1024,
    cell_energy_j=1.8e-15, cell_area_mm2=0.0002 / (8 * 128 * 128), array_time_s=100e-9,
    add_energy_j=0.1e-12, add_time_s=1e-9,
    mac_energy_j=0.23e-12, mac_time_s=1e-9, mac_area_mm2=318e-6, lanes=64)

_NEURRAM = CostConstants(
    name="neurram-130nm",
    source=("Indicative 130 nm figures modelled on NeuRRAM (Wan et al., Nature 2022: 130 nm "
            "1T1R RRAM, 256x256 cores, one voltage-mode neuron per bit line that digitises "
            "in place). Assumed here, not read from a table of the paper: 8-bit neuron "
            "conversion 30 pJ in 1 us and 0.0003 mm^2, one per bit line; 1T1R cell 0.3 um^2 "
            "(~18 F^2); cell read 10 fJ (~0.2 V on ~10 uS for ~1 us, halved by the "
            "differential pair's typical conductance); DAC 50 fJ; array read 1 us; digital: "
            "Horowitz ISSCC 2014 45 nm figures scaled by (130/45)^2 ~ 8 in energy and area, "
            "250 MHz, 16 lanes. Use for relative comparisons only."),
    adc_energy_j=30e-12, adc_time_s=1e-6, adc_area_mm2=0.0003, adcs_per_tile=256,
    dac_energy_j=50e-15, dac_area_mm2=20e-6,
    cell_energy_j=10e-15, cell_area_mm2=0.3e-6, array_time_s=1e-6,
    add_energy_j=0.8e-12, add_time_s=4e-9,
    mac_energy_j=1.9e-12, mac_time_s=4e-9, mac_area_mm2=2.6e-3, lanes=16)

#: Named presets accepted by :meth:`CostConstants.preset` and :func:`mapping.hardware_report`.
COST_PRESETS: dict[str, CostConstants] = {c.name: c for c in (_ISAAC, _NEURRAM)}


def resolve(cost: str | CostConstants) -> CostConstants:
    """A preset name or a :class:`CostConstants` -> constants.

    Raises:
        CostPresetError: unknown preset name.
        ArgumentTypeError: neither a str nor CostConstants.
    """
    if isinstance(cost, CostConstants):
        return cost
    if isinstance(cost, str):
        return CostConstants.preset(cost)
    raise ArgumentTypeError(f"cost must be a preset name or CostConstants, got "
                            f"{type(cost).__name__}")


def layer_cost(c: CostConstants, *, matrix: tuple[int, int], tile: tuple[int, int],
               tile_grid: tuple[int, int], positions: int) -> dict:
    """Counts and cost of one crossbar layer per inference (module docstring equations).

    Args:
        c: the constants.
        matrix: ``(out, in)``.
        tile: ``(n_rows, n_cols)``.
        tile_grid: ``(n_row_tiles, n_col_tiles)``.
        positions: output positions per inference (``Ho*Wo``; 1 for a linear layer).

    Returns:
        dict with ``cell_reads``, ``partial_sum_adds``, ``energy_j``, ``latency_s``,
        ``area_mm2``.
    """
    n_out, n_in = matrix
    n_rows, n_cols = tile
    n_rt, n_ct = tile_grid
    n_dac = n_in * n_ct * positions
    n_adc = n_out * n_rt * positions
    cells = 2 * n_in * n_out * positions
    adds = n_out * (n_rt - 1) * positions
    per_adc = math.ceil(n_cols / min(c.adcs_per_tile, n_cols))
    energy = (n_dac * c.dac_energy_j + n_adc * c.adc_energy_j + cells * c.cell_energy_j
              + adds * c.add_energy_j)
    latency = (positions * (c.array_time_s + per_adc * c.adc_time_s)
               + adds * c.add_time_s / c.lanes)
    area = n_rt * n_ct * (2 * n_rows * n_cols * c.cell_area_mm2 + n_rows * c.dac_area_mm2
                          + min(c.adcs_per_tile, n_cols) * c.adc_area_mm2)
    return {"cell_reads": cells, "partial_sum_adds": adds, "energy_j": energy,
            "latency_s": latency, "area_mm2": area}


def digital_cost(c: CostConstants, macs: int) -> dict:
    """Cost of ``macs`` digital multiply-accumulates on the digital unit.

    Returns:
        dict with ``macs``, ``energy_j``, ``latency_s``, ``area_mm2`` (0 area if no MACs).
    """
    return {"macs": int(macs), "energy_j": macs * c.mac_energy_j,
            "latency_s": macs * c.mac_time_s / c.lanes,
            "area_mm2": c.lanes * c.mac_area_mm2 if macs > 0 else 0.0}
