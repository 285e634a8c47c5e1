"""Configuration tree of the crossbar simulator.

All configs are frozen dataclasses holding plain data (ints, floats, strings, None). Each field
is validated in ``__post_init__``; a bad value raises :class:`~xbar.errors.ConfigError` whose
message names the field path (``"device.sigma must be >= 0, got -1"``). Variants are made with
``dataclasses.replace``; :meth:`XbarConfig.to_dict` / :meth:`XbarConfig.from_dict` round-trip
through JSON-safe dicts.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

#: Variation levels accepted by :attr:`DeviceConfig.level`.
VARIATION_LEVELS = ("weight", "device")

#: Largest converter resolution; codes up to 2**23 are exact in float32.
MAX_BITS = 24
#: Smallest ADC/DAC resolution (one sign bit and one magnitude bit).
MIN_BITS = 2


def _check_int(path: str, value: Any, lo: int, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{path} must be an int, got {value!r} ({type(value).__name__})")
    if value < lo or (hi is not None and value > hi):
        rng = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ConfigError(f"{path} must be in {rng}, got {value}")


def _check_float(path: str, value: Any, lo: float, *, strict: bool = False,
                 hi: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{path} must be a number, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value):
        raise ConfigError(f"{path} must be finite, got {value}")
    if (value <= lo) if strict else (value < lo):
        raise ConfigError(f"{path} must be {'>' if strict else '>='} {lo}, got {value}")
    if hi is not None and value > hi:
        raise ConfigError(f"{path} must be <= {hi}, got {value}")


@dataclass(frozen=True)
class TileConfig:
    """Size of one physical crossbar array (a tile)."""

    n_rows: int = 128
    """Word lines per tile = inputs per tile (count, >= 1)."""
    n_cols: int = 128
    """Bit lines per tile = outputs per tile (count, >= 1); each position is a G+/G- pair."""
    line_resistance: float = 0.0
    """Resistance of one wire segment between neighbouring cells, on word and bit lines alike,
    ohm (>= 0; 0 = ideal wires, today's exact ``x @ W.T`` path). > 0 solves every tile as a
    resistive network (IR drop, :mod:`xbar.irdrop`)."""
    read_voltage: float = 0.2
    """Word-line voltage of a full-scale input, volt (> 0): the DAC maps ``x / s`` in [-1, 1]
    onto ``[-read_voltage, read_voltage]``. The network is linear, so outputs in weight units
    do not depend on it; it sets the physical currents and read energy."""
    tolerance: float = 1e-9
    """IR-drop solver stop: largest node-voltage update of a sweep ``<= tolerance *
    max |V|`` (relative, in (0, 0.1])."""
    max_sweeps: int = 1000
    """IR-drop solver: most line sweeps before :class:`~xbar.errors.ConvergenceError` (>= 1)."""

    def __post_init__(self) -> None:
        _check_int("tile.n_rows", self.n_rows, 1)
        _check_int("tile.n_cols", self.n_cols, 1)
        _check_float("tile.line_resistance", self.line_resistance, 0.0)
        _check_float("tile.read_voltage", self.read_voltage, 0.0, strict=True)
        _check_float("tile.tolerance", self.tolerance, 0.0, strict=True, hi=0.1)
        _check_int("tile.max_sweeps", self.max_sweeps, 1)

    @property
    def has_ir_drop(self) -> bool:
        """True when ``line_resistance > 0`` (tiles are solved as resistive networks)."""
        return self.line_resistance > 0.0


@dataclass(frozen=True)
class DeviceConfig:
    """RRAM cells: conductance range, programming resolution, variation, noise and faults.

    A weight ``w`` (``|w| <= w_max``, ``w_max = max |W|`` of the layer) maps onto a differential
    pair: ``G+ = g_min + max(w, 0) * k``, ``G- = g_min + max(-w, 0) * k`` with
    ``k = (g_max - g_min) / w_max`` (siemens per weight unit); the pair represents
    ``(G+ - G-) / k``.
    """

    sigma: float = 0.5
    """Lognormal variation, std of theta in ``x * exp(theta)``, theta ~ N(0, sigma^2) (>= 0)."""
    level: str = "weight"
    """Where variation acts: ``"weight"`` (paper eq. 1-2, w = w_nominal * exp(theta) per weight)
    or ``"device"`` (every programmed cell, G+ and G- alike, g = g_target * exp(theta))."""
    g_min: float = 1e-6
    """Lowest programmable conductance, siemens (>= 0; default 1 uS, the high-resistance state)."""
    g_max: float = 100e-6
    """Highest programmable conductance, siemens (> g_min; default 100 uS, low-resistance state)."""
    levels: int | None = None
    """Distinct programmable conductance levels per cell, evenly spaced on [g_min, g_max]
    (>= 2; 2**bits for a b-bit cell); None = continuous (analog) programming."""
    read_noise: float = 0.0
    """Relative read noise, std of eta in ``w * (1 + eta)`` drawn fresh for every weight at each
    ``matmul`` call (shared by the vectors of that call) (>= 0; 0 = none)."""
    stuck_min_rate: float = 0.0
    """Probability that a cell is stuck at g_min, per cell and device sample ([0, 1])."""
    stuck_max_rate: float = 0.0
    """Probability that a cell is stuck at g_max, per cell and device sample ([0, 1])."""
    mean_gain_calibration: bool = False
    """Program ``w / E[exp(theta)]`` instead of ``w`` wherever variation is drawn, a one-time
    calibration a chip can apply: lognormal variation has mean gain
    ``E[exp(theta)] = exp(sigma^2 / 2)`` (1.133 at sigma 0.5), which otherwise inflates every
    varied layer's output against its digital bias. Off by default (the paper's model)."""

    def __post_init__(self) -> None:
        _check_float("device.sigma", self.sigma, 0.0)
        if self.level not in VARIATION_LEVELS:
            raise ConfigError(f"device.level must be one of {VARIATION_LEVELS}, "
                              f"got {self.level!r}")
        _check_float("device.g_min", self.g_min, 0.0)
        _check_float("device.g_max", self.g_max, 0.0, strict=True)
        if self.g_min >= self.g_max:
            raise ConfigError(f"device.g_min must be < device.g_max, got g_min={self.g_min} "
                              f">= g_max={self.g_max}")
        if self.levels is not None:
            _check_int("device.levels", self.levels, 2, 2**MAX_BITS)
        _check_float("device.read_noise", self.read_noise, 0.0)
        _check_float("device.stuck_min_rate", self.stuck_min_rate, 0.0, hi=1.0)
        _check_float("device.stuck_max_rate", self.stuck_max_rate, 0.0, hi=1.0)
        if not isinstance(self.mean_gain_calibration, bool):
            raise ConfigError("device.mean_gain_calibration must be True or False, got "
                              f"{self.mean_gain_calibration!r}")
        if self.stuck_min_rate + self.stuck_max_rate > 1.0:
            raise ConfigError("device.stuck_min_rate + device.stuck_max_rate must be <= 1, got "
                              f"{self.stuck_min_rate} + {self.stuck_max_rate}")

    @property
    def programming_gain(self) -> float:
        """Factor on the target weight of a varied programming.

        ``exp(-sigma^2 / 2)`` with :attr:`mean_gain_calibration` (so ``E[w_eff] = w`` at weight
        and device level, the cells' ``g_min`` offsets cancelling in the pair), else 1.
        """
        return math.exp(-self.sigma ** 2 / 2) if self.mean_gain_calibration else 1.0

    @property
    def has_faults(self) -> bool:
        """True when either stuck-at rate is non-zero."""
        return self.stuck_min_rate > 0.0 or self.stuck_max_rate > 0.0


@dataclass(frozen=True)
class DACConfig:
    """Input digital-to-analog converter (one per word line), signed, per-vector scaled."""

    bits: int | None = 8
    """Resolution in bits incl. sign, codes in +-(2**(bits-1) - 1) ([2, 24]); None = ideal."""
    input_range: float | None = None
    """Fixed full-scale input |x| (input units, > 0; inputs beyond are clipped); None = each
    input vector is scaled by its own max |x|."""

    def __post_init__(self) -> None:
        if self.bits is not None:
            _check_int("dac.bits", self.bits, MIN_BITS, MAX_BITS)
        if self.input_range is not None:
            _check_float("dac.input_range", self.input_range, 0.0, strict=True)


@dataclass(frozen=True)
class ADCConfig:
    """Output analog-to-digital converter (one per bit line of every tile), signed."""

    bits: int | None = 8
    """Resolution in bits incl. sign, codes in +-(2**(bits-1) - 1) ([2, 24]); None = ideal."""
    full_scale: float = 1.0
    """Full scale as a fraction of the bit line's worst case ``sum_r |w_target[r, c]|``
    (dimensionless, > 0; 1.0 never clips, smaller trades clipping for resolution)."""

    def __post_init__(self) -> None:
        if self.bits is not None:
            _check_int("adc.bits", self.bits, MIN_BITS, MAX_BITS)
        _check_float("adc.full_scale", self.full_scale, 0.0, strict=True)


_SECTIONS: dict[str, type] = {"tile": TileConfig, "device": DeviceConfig, "dac": DACConfig,
                              "adc": ADCConfig}


@dataclass(frozen=True)
class XbarConfig:
    """Complete crossbar model: tile size, devices, DAC and ADC.

    The default is an 8-bit DAC/ADC, 128x128 tiles and the paper's weight-level lognormal
    variation with sigma 0.5.
    """

    tile: TileConfig = field(default_factory=TileConfig)
    """Physical array size."""
    device: DeviceConfig = field(default_factory=DeviceConfig)
    """Cell conductances, variation, noise and faults."""
    dac: DACConfig = field(default_factory=DACConfig)
    """Input converters."""
    adc: ADCConfig = field(default_factory=ADCConfig)
    """Output converters."""

    def __post_init__(self) -> None:
        for name, cls in _SECTIONS.items():
            value = getattr(self, name)
            if not isinstance(value, cls):
                raise ConfigError(f"{name} must be a {cls.__name__}, got {type(value).__name__}")

    @property
    def is_ideal(self) -> bool:
        """True when the model computes exactly ``x @ W.T`` (no variation, noise, quantisation)."""
        d = self.device
        return (d.sigma == 0.0 and d.levels is None and d.read_noise == 0.0
                and not d.has_faults and self.dac.bits is None and self.adc.bits is None
                and not self.tile.has_ir_drop)

    @classmethod
    def ideal(cls, n_rows: int = 128, n_cols: int = 128) -> XbarConfig:
        """Ideal crossbar: sigma 0, continuous levels, no noise or faults, ideal DAC and ADC.

        ``TiledCrossbar(W, XbarConfig.ideal()).matmul(x) == x @ W.T`` up to float32 rounding.
        """
        return cls(tile=TileConfig(n_rows, n_cols), device=DeviceConfig(sigma=0.0),
                   dac=DACConfig(bits=None), adc=ADCConfig(bits=None))

    @classmethod
    def rram_lognormal(cls, sigma: float = 0.5, *, level: str = "weight",
                       n_rows: int = 128, n_cols: int = 128, dac_bits: int | None = None,
                       adc_bits: int | None = None,
                       mean_gain_calibration: bool = False) -> XbarConfig:
        """The paper's model: lognormal variation ``w * exp(theta)``, theta ~ N(0, sigma^2).

        Args:
            sigma: std of theta (dimensionless, >= 0).
            level: ``"weight"`` (Eldebiky et al., DATE 2023, eq. 1-2) or ``"device"``.
            n_rows: word lines per tile.
            n_cols: bit lines per tile.
            dac_bits: DAC resolution; None (default, as in the paper) = ideal.
            adc_bits: ADC resolution; None (default, as in the paper) = ideal.
            mean_gain_calibration: See :attr:`DeviceConfig.mean_gain_calibration`.

        Returns:
            The config.
        """
        device = DeviceConfig(sigma=sigma, level=level,
                              mean_gain_calibration=mean_gain_calibration)
        return cls(tile=TileConfig(n_rows, n_cols), device=device,
                   dac=DACConfig(bits=dac_bits), adc=ADCConfig(bits=adc_bits))

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """JSON-safe nested dict (plain ints, floats, strings and None)."""
        return {name: dataclasses.asdict(getattr(self, name)) for name in _SECTIONS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> XbarConfig:
        """Rebuild a config from :meth:`to_dict` output; missing fields take their defaults.

        Raises:
            ConfigError: unknown section or field, or a field value out of range.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"XbarConfig.from_dict needs a dict, got {type(data).__name__}")
        unknown = set(data) - set(_SECTIONS)
        if unknown:
            raise ConfigError(f"unknown config section(s) {sorted(unknown)}; valid: "
                              f"{list(_SECTIONS)}")
        parts = {}
        for name, sub in _SECTIONS.items():
            values = data.get(name, {})
            if not isinstance(values, dict):
                raise ConfigError(f"{name} must be a dict, got {type(values).__name__}")
            valid = {f.name for f in dataclasses.fields(sub)}
            bad = set(values) - valid
            if bad:
                raise ConfigError(f"unknown field(s) {sorted(bad)} in {name}; valid: "
                                  f"{sorted(valid)}")
            parts[name] = sub(**values)
        return cls(**parts)
