"""The crossbar periphery maths in torch ops (the ``torch`` backend).

Reproduces :meth:`xbar.TiledCrossbar.matmul` from an effective weight, so that it is
differentiable (straight-through estimators for rounding) and runs on any torch device:

1. DAC, per input row ``n`` (one vector of the batch), ``L_d = 2**(b_d-1) - 1``:
   ``s_n = max_r |x[n, r]|`` (or the fixed ``input_range``, with clipping),
   ``code[n, r] = clip(round(x[n, r] / s_n * L_d), -L_d, L_d)``.
2. Per row tile ``t`` (word-line block ``R_t``): bit-line sums
   ``p_t[n, c] = sum_{r in R_t} code[n, r] * W_eff[c, r]`` (Ohm + Kirchhoff).
3. ADC per tile column, ``L_a = 2**(b_a-1) - 1`` and full scale ``F_t[c]`` (weight units):
   ``q_t = clip(round(p_t * L_a / (F_t * L_d)), -L_a, L_a) * F_t / L_a`` (``F_t[c] == 0``
   gives 0).
4. Digital accumulation and rescale: ``y[n, c] = s_n * sum_t q_t[n, c]``.

``bits=None`` skips steps 1 or 3 (ideal converters).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from xbar import adc_gain_step, code_levels


def lognormal_theta(shape: Sequence[int], sigma: float, *,
                    generator: torch.Generator | None = None,
                    device: torch.device | str | None = None,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The paper's variation draw in torch: ``theta ~ N(0, sigma^2)`` per element.

    ``theta = sigma * z`` with ``z = torch.randn(shape, generator=generator)``; a weight
    programmed under this draw holds ``w * exp(theta)`` (Eldebiky et al., DATE 2023, eq. 1-2).
    Every torch-side draw of the project (the torch backend's ``resample``, variation-aware
    training) goes through this function, so one seeded generator gives one sample everywhere.

    Args:
        shape: Shape of the draw.
        sigma: Std of theta (dimensionless, >= 0).
        generator: ``torch.Generator`` on ``device`` (None: torch's global generator).
        device: Device of the draw.
        dtype: dtype of the draw.

    Returns:
        ``theta``, a tensor of ``shape``.
    """
    return torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype) * sigma


def lognormal_weight(w: torch.Tensor, sigma: float, *,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """``w * exp(theta)``, ``theta = lognormal_theta(w.shape, sigma)`` (differentiable in ``w``).

    Args:
        w: Nominal weights (any shape).
        sigma: Std of theta (>= 0).
        generator: ``torch.Generator`` on ``w``'s device (None: global generator).

    Returns:
        The varied weights, same shape, device and dtype as ``w``.
    """
    theta = lognormal_theta(w.shape, sigma, generator=generator, device=w.device, dtype=w.dtype)
    return w * torch.exp(theta)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round to the nearest integer with a straight-through gradient (d round(x)/dx := 1)."""
    return x + (torch.round(x) - x).detach()


def dac_quantise(
    x: torch.Tensor, bits: int | None, input_range: float | None, adc: bool
) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """Quantise each input row as the DAC does (xbar ``dac_quantize``).

    ``s_n = input_range`` or ``max_r |x[n, r]|``; ``code = clip(round(clip(x, -s, s) / s * L),
    -L, L)`` with ``L = 2**(bits-1) - 1``; an ideal DAC gives ``clip(x, -s, s) / s`` unrounded
    (used when an ADC or a fixed input range needs the scale). Rows of zeros give zeros.

    Args:
        x: Inputs, shape ``(N, in)``.
        bits: DAC resolution (signed), or None for an ideal DAC.
        input_range: Fixed full scale (input units), or None for the per-row ``max |x|``.
        adc: Whether an ADC follows (an ideal DAC then still normalises by ``s``).

    Returns:
        ``(codes, s, div)``: codes ``(N, in)``, the per-row scale ``s`` ``(N, 1)`` and the code
        divisor ``div`` (``L`` or 1), so that ``x ~= codes / div * s``; ``(x, None, 1.0)`` for a
        plain ideal input.
    """
    if bits is None and input_range is None and not adc:
        return x, None, 1.0
    if input_range is None:
        s = x.detach().abs().amax(dim=1, keepdim=True)
    else:
        s = torch.full((x.shape[0], 1), float(input_range), dtype=x.dtype, device=x.device)
    pos = s > 0
    safe = torch.where(pos, s, torch.ones_like(s))
    xv = torch.minimum(torch.maximum(x, -safe), safe) / safe
    if bits is None:
        return torch.where(pos, xv, torch.zeros_like(xv)), s, 1.0
    levels = code_levels(bits)
    code = torch.clamp(round_ste(xv * levels), -levels, levels)
    return torch.where(pos, code, torch.zeros_like(code)), s, levels




def analog_matmul(
    x: torch.Tensor,
    weight: torch.Tensor,
    row_bounds: Sequence[int],
    adc_full_scale: torch.Tensor | None,
    *,
    dac_bits: int | None,
    dac_input_range: float | None,
    adc_bits: int | None,
) -> torch.Tensor:
    """Tiled analog ``x @ W.T`` with DAC, per-tile ADC, digital accumulation and rescale.

    ``y[n, c] = s_n * sum_t step_t[c] * clip(round(p_t[n, c] * gain_t[c]), -L_a, L_a)`` with
    ``p_t = codes[:, R_t] @ W_eff[:, R_t].T`` (see the module docstring).

    Args:
        x: Inputs, shape ``(N, in)``.
        weight: Effective weight ``W_eff`` (what the cells hold), shape ``(out, in)``.
        row_bounds: Row-tile boundaries along ``in``: ``n_row_tiles + 1`` increasing ints,
            ``0 ... in``.
        adc_full_scale: ADC full scale per row tile and column, shape ``(n_row_tiles, out)``
            (weight units); unused when ``adc_bits`` is None.
        dac_bits: DAC bits or None (ideal).
        dac_input_range: Fixed DAC full scale or None (per-row max).
        adc_bits: ADC bits or None (ideal).

    Returns:
        ``y``, shape ``(N, out)``, in the dtype of ``x``.
    """
    codes, s, div = dac_quantise(x, dac_bits, dac_input_range, adc_bits is not None)
    if adc_bits is None:
        y = codes @ weight.t()
        return y if s is None else y * (s / div)
    levels = code_levels(adc_bits)
    gain, step = adc_gain_step(adc_full_scale.to(x.dtype), adc_bits, dac_bits)
    y = None
    for t in range(len(row_bounds) - 1):
        r0, r1 = int(row_bounds[t]), int(row_bounds[t + 1])
        p = codes[:, r0:r1] @ weight[:, r0:r1].t()
        q = torch.clamp(round_ste(p * gain[t]), -levels, levels) * step[t]
        y = q if y is None else y + q
    return y * s
