"""Several device samples in one torch pass (the ``batched`` Monte-Carlo engine, CPU or CUDA).

The input batch is repeated ``S`` times along the batch axis, so every digital module
(activations, pooling, batch-norm in eval mode, compensators) runs on ``S * B`` images at
once, and each crossbar layer holds a :class:`BatchedTorchExecution`: the effective weights
of the ``S`` samples stacked, ``(S, in, out)``, applied to sample ``s``'s part of the batch
with one batched matmul per row tile (``torch.bmm``) through the torch periphery maths
(:mod:`mapping.torch_ops`: per-row DAC, ADC per tile column with xbar's full scale).

The cells of sample ``i`` are xbar's, drawn on the CPU from
``default_rng(SeedSequence(seed).spawn(samples)[i])`` as in every engine, so a sample's
cells do not depend on ``S`` or on the device; its accuracy equals the other engines' up to
rare one-step ADC flips (float32 sums in another order), and within one device and ``S`` it
repeats exactly.
"""

from __future__ import annotations

import numpy as np
import torch

from . import torch_ops
from .control import program
from .evaluation import _count_correct
from .execution import Execution

#: Bytes allowed for the stacked effective weights of one group of samples.
_WEIGHT_BYTES = 512 * 2**20
#: Images (samples x batch) per forward pass.
_PASS_IMAGES = 4096


class BatchedTorchExecution(Execution):
    """``S`` device samples of one layer at once; the batch holds ``S`` blocks of images.

    Args:
        weights: Effective weights ``(S, out, in)`` on the layer's device.
        full_scale: ADC full scale ``(n_row_tiles, out)`` (weight units), same device.
    """

    name = "torch-batched"

    def __init__(self, weights: torch.Tensor, full_scale: torch.Tensor) -> None:
        self.wt = weights.transpose(1, 2)             # (S, in, out)
        self.full_scale = full_scale

    def matmul(self, layer, rows: torch.Tensor) -> torch.Tensor:
        """``rows`` ``(S*N, in)`` (sample-major) -> ``(S*N, out)``, sample ``s`` by its cells."""
        n_s, n_in, n_out = self.wt.shape
        c = layer.config
        codes, s, div = torch_ops.dac_quantise(rows, c.dac.bits, c.dac.input_range,
                                               c.adc.bits is not None)
        codes = codes.reshape(n_s, -1, n_in)
        if c.adc.bits is None:
            y = torch.bmm(codes, self.wt).reshape(-1, n_out)
            return y if s is None else y * (s / div)
        levels = torch_ops.code_levels(c.adc.bits)
        gain, step = torch_ops.adc_gain_step(self.full_scale.to(rows.dtype), c.adc.bits,
                                             c.dac.bits)
        bounds = layer.row_bounds()
        y = None
        for t in range(len(bounds) - 1):
            r0, r1 = int(bounds[t]), int(bounds[t + 1])
            p = torch.bmm(codes[:, :, r0:r1], self.wt[:, r0:r1])
            q = torch.clamp(torch.round(p * gain[t]), -levels, levels) * step[t]
            y = q if y is None else y + q
        return y.reshape(-1, n_out) * s


def group_size(entries, samples: int) -> int:
    """Samples per pass: the stacked weights stay under ``_WEIGHT_BYTES`` (at most 32)."""
    weights = sum(layer.crossbar.shape[0] * layer.crossbar.shape[1] for _, layer in entries)
    return int(max(1, min(32, samples, _WEIGHT_BYTES // max(1, 4 * weights))))


def batched_run(model, entries, batches, seqs, layers, device, n_samples_per_pass, bar
                ) -> list[float]:
    """Accuracy of every sample, ``n_samples_per_pass`` samples per forward pass."""
    dev = torch.device(device)
    model.to(dev)
    before = {id(layer): layer._execution for _, layer in entries}
    n_images = sum(len(y) for _, y in batches)
    x_all = torch.cat([b[0] for b in batches])
    y_all = torch.cat([b[1] for b in batches])
    accs: list[float] = []
    try:
        for g0 in range(0, len(seqs), n_samples_per_pass):
            group = seqs[g0:g0 + n_samples_per_pass]
            stacks = {id(layer): [] for _, layer in entries}
            for seq in group:
                program(model, np.random.default_rng(seq), layers=layers)
                for _, layer in entries:
                    stacks[id(layer)].append(torch.from_numpy(layer.crossbar.circuit_weight()))
            for _, layer in entries:
                fs = torch.from_numpy(layer.crossbar.adc_full_scale()).to(dev, torch.float32)
                layer.execution = BatchedTorchExecution(torch.stack(stacks[id(layer)]).to(dev),
                                                        fs)
            correct = np.zeros(len(group), dtype=np.int64)
            chunk = max(1, _PASS_IMAGES // len(group))
            with torch.no_grad():
                for i in range(0, len(y_all), chunk):
                    x = x_all[i:i + chunk].to(dev)
                    y = y_all[i:i + chunk]
                    logits = model(x.repeat(len(group), *([1] * (x.dim() - 1))))
                    logits = logits.reshape(len(group), len(y), -1)
                    for s in range(len(group)):
                        correct[s] += _count_correct(logits[s], y)
            accs.extend(float(k) / n_images for k in correct)
            bar.update(len(group))
    finally:
        for _, layer in entries:
            layer.execution = before[id(layer)]
    return accs
