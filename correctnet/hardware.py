"""The study's crossbar hardware model, in one place.

Used by the pipeline, its plan evaluator, the report and ``correctnet compensate``.
"""

from __future__ import annotations

__all__ = ["xbar_config"]


def xbar_config(sigma: float, tile: int = 128, *, dac_bits: int | None = None,
                adc_bits: int | None = None, line_resistance: float = 0.0):
    """The paper's hardware model: weight-level lognormal variation, ideal DAC/ADC by default.

    Args:
        sigma: Std of ``theta`` in ``w = w0 exp(theta)``.
        tile: Tile rows = columns.
        dac_bits: DAC resolution (None: ideal).
        adc_bits: ADC resolution (None: ideal).
        line_resistance: Ohm per word/bit-line segment (0: ideal wires; > 0: IR drop).
    """
    from xbar import ADCConfig, DACConfig, DeviceConfig, TileConfig, XbarConfig

    return XbarConfig(tile=TileConfig(n_rows=tile, n_cols=tile,
                                      line_resistance=float(line_resistance)),
                      device=DeviceConfig(sigma=float(sigma), level="weight"),
                      dac=DACConfig(bits=dac_bits), adc=ADCConfig(bits=adc_bits))
