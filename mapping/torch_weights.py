"""The effective weight of the torch execution strategies (``torch`` and ``ideal``).

In order of precedence: a :meth:`CrossbarLayer.resample` draw applied to the live weight
(gradients reach it), else xbar's programmed effective weight with a straight-through
gradient, else the live (level-quantised) weight after ``program_ideal``. With IR drop,
xbar's solved tiles (``circuit_weight``), straight through.
"""

from __future__ import annotations

import torch

from . import torch_ops
from .errors import BackendError, NotProgrammedError


def _target(layer, w: torch.Tensor) -> torch.Tensor:
    """Level-quantised target weights (straight-through), as xbar programs them."""
    levels = layer.config.device.levels
    if levels is None:
        return w
    w_max = w.detach().abs().amax().clamp_min(1e-30)
    a = torch_ops.round_ste(w.abs() / w_max * (levels - 1)) / (levels - 1) * w_max
    return torch.sign(w) * a


def _varied(layer, w_t: torch.Tensor) -> torch.Tensor:
    """The resample() draw applied to the targets (weight or device level).

    With ``device.mean_gain_calibration`` the targets are scaled by ``exp(-sigma^2 / 2)``
    first (:attr:`xbar.DeviceConfig.programming_gain`), as xbar's programming does.
    """
    z_pos, z_neg = layer._noise
    if layer.config.device.mean_gain_calibration:
        w_t = w_t * layer.config.device.programming_gain
    if z_neg is None:
        return w_t * torch.exp(z_pos)
    d = layer.config.device
    w_max = layer.weight.detach().abs().amax()                    # xbar's weight_scale
    w_max = torch.where(w_max > 0, w_max, torch.ones_like(w_max))
    k = (d.g_max - d.g_min) / w_max
    gp = d.g_min + torch.relu(w_t) * k
    gn = d.g_min + torch.relu(-w_t) * k
    return (gp * torch.exp(z_pos) - gn * torch.exp(z_neg)) / k


def torch_weight(layer) -> tuple[torch.Tensor, torch.Tensor]:
    """Effective weight and ADC full scale used by the torch backend.

    Returns:
        ``(w_eff, F)``: ``(out, in)`` on the weight's device (carrying gradients to
        ``weight``), and ``(n_row_tiles, out)`` full scales (weight units, no gradient).
    """
    w = layer.weight_matrix()
    dev = w.device
    if layer.config.tile.has_ir_drop:
        return _ir_torch_weight(layer, w)
    if layer._noise is not None or layer._mode == "ideal":
        w_t = _target(layer, w)          # live weights: training updates are seen at once
        bounds = layer.row_bounds()
        fs = layer.config.adc.full_scale * torch.stack(
            [w_t.detach()[:, a:b].abs().sum(1) for a, b in zip(bounds[:-1], bounds[1:])])
        return (w_t if layer._noise is None else _varied(layer, w_t)), fs
    if layer._mode == "unprogrammed":
        raise NotProgrammedError("crossbar layer is not programmed; call program() first")
    cache = layer._torch_cache
    if cache.get("device") is None or cache["w_eff"].device != dev:
        cache["w_eff"] = torch.from_numpy(layer.crossbar.effective_weight()).to(dev)
        cache["fs"] = torch.from_numpy(layer.crossbar.adc_full_scale()).to(dev, torch.float32)
        cache["device"] = dev
    w_eff = cache["w_eff"].to(w.dtype)
    return w + (w_eff - w).detach(), cache["fs"]


def _ir_torch_weight(layer, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch-backend weight with IR drop: xbar's solved tiles, gradient straight through.

    Raises:
        BackendError: the layer holds a :meth:`resample` draw (torch cannot solve the
            resistive network).
        NotProgrammedError: unprogrammed, or the weight changed since programming.
    """
    if layer._noise is not None:
        raise BackendError("tile.line_resistance > 0: the torch backend cannot apply IR "
                           "drop to a resample() draw; call program() (xbar solves the "
                           "tiles) or clear_variation()")
    if layer._mode == "unprogrammed":
        raise NotProgrammedError("crossbar layer is not programmed; call program() first")
    layer._refresh_or_fail()
    cache = layer._torch_cache
    if cache.get("device") is None or cache["w_eff"].device != w.device:
        cache["w_eff"] = torch.from_numpy(layer.crossbar.circuit_weight()).to(w.device)
        cache["fs"] = torch.from_numpy(layer.crossbar.adc_full_scale()).to(w.device,
                                                                            torch.float32)
        cache["device"] = w.device
    return w + (cache["w_eff"].to(w.dtype) - w).detach(), cache["fs"]
