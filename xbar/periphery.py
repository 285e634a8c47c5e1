"""The converter formulas, one each, used by every kernel path (xbar; mapping: fused, torch).

* DAC levels ``L = 2**(bits-1) - 1`` (signed codes ``-L..L``; :func:`code_levels`); the DAC
  rule per input value is the Numba function :func:`xbar.kernels.dac_code`
  (``code = clip(rint(clip(x, -s, s) / s * L), -L, L)``, or ``clip(x, -s, s) / s`` for an
  ideal DAC) and its torch twin ``mapping.torch_ops.dac_quantise`` (same arithmetic).
* ADC gain and step per row tile and bit line (:func:`adc_gain_step`): a bit-line sum ``p``
  in DAC-code units becomes ``clip(rint(p * gain), -L_a, L_a) * step`` in weight units, with
  ``gain = L_a / (F * L_d)`` (0 where ``F == 0``) and ``step = F / L_a`` for the full scale
  ``F`` (weight units, ``TiledCrossbar.adc_full_scale()``).
"""

from __future__ import annotations


def code_levels(bits: int | None) -> float:
    """Largest signed code ``2**(bits-1) - 1`` as a float; 0.0 for an ideal converter (None)."""
    return float(2 ** (bits - 1) - 1) if bits is not None else 0.0


def adc_gain_step(full_scale, adc_bits: int, dac_bits: int | None):
    """ADC gain ``L_a / (F * L_d)`` (0 where ``F == 0``) and step ``F / L_a``.

    Written with arithmetic operators only, so ``full_scale`` may be a numpy array or a torch
    tensor (any device); the result has its type and dtype. ``L_d`` is the DAC's
    :func:`code_levels`, or 1 for an ideal DAC (inputs normalised to ``[-1, 1]``).

    Args:
        full_scale: ADC full scale ``F >= 0`` per row tile and bit line (weight units).
        adc_bits: ADC resolution (signed codes).
        dac_bits: DAC resolution, or None for an ideal DAC.

    Returns:
        ``(gain, step)``, each shaped like ``full_scale``.
    """
    q_adc = code_levels(adc_bits)
    div = code_levels(dac_bits) or 1.0
    positive = full_scale > 0
    safe = full_scale + (full_scale <= 0)          # 1 where F == 0: no division by zero
    return q_adc / (safe * div) * positive, full_scale / q_adc
