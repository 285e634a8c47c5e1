"""How a crossbar layer executes: one strategy object per path, chosen by :func:`set_execution`.

Every crossbar layer holds one :class:`Execution` (``layer.execution``); its ``forward`` calls
``layer.execution.forward(layer, x)``. The interface is small:

* ``program(layer, rng)``: draw one device sample into the layer's cells;
* ``matmul(layer, rows)``: ``(N, in) -> (N, out)`` through DAC, tiles and ADC (no bias);
* ``forward(layer, x)``: the whole layer on a batch (lowering, product, bias); the default
  lowers with ``layer.lowered(x, matmul)`` (im2col for a convolution).

The strategies (names accepted by :func:`set_execution`):

=============  ===========================================================================
``reference``  ``xbar.TiledCrossbar.matmul`` on the im2col rows (numpy + Numba, CPU, not
               differentiable; the cross-check of every other path). Alias ``"numba"``.
``fused``      the Monte-Carlo kernel of :mod:`mapping.fastpath` (im2col + DAC + MAC + ADC
               in one Numba kernel, no im2col matrix; CPU, not differentiable; optional
               fused ReLU / max-pool after a conv). ``run_monte_carlo`` installs it.
``torch``      :mod:`mapping.torch_ops` on the layer's device (CPU or CUDA), differentiable
               (straight-through rounding); runs ``resample()`` draws.
``ideal``      training's fast path: like ``torch``, but a convolution whose DAC and ADC are
               both ideal runs as one ``F.conv2d`` with the effective weight (the same maths
               without im2col; float32 sums in another order). Other layers run ``torch``.
=============  ===========================================================================

``set_execution(model, None)`` restores the automatic choice: ``reference`` for CPU weights,
``torch`` otherwise. The older ``set_backend(model, "numba" | "torch")`` is an alias
(``"numba"`` = ``reference``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from . import fastpath, torch_ops
from .errors import BackendError, NotProgrammedError

#: Names accepted by :func:`set_execution` (plus the alias ``"numba"`` for ``"reference"``).
EXECUTIONS = ("reference", "fused", "torch", "ideal")
_ALIASES = {"numba": "reference"}


class Execution:
    """Interface of an execution strategy (one instance per layer or shared; stateless here).

    Attributes:
        name: The strategy's name in :data:`EXECUTIONS`.
        uses_numba: True when the strategy runs Numba kernels on the CPU (torch is then kept
            single-threaded around it, see :mod:`mapping.threads`).
    """

    name = "base"
    uses_numba = False

    def program(self, layer, rng: np.random.Generator | int) -> None:
        """Draw one device sample into ``layer``'s cells (xbar's programming)."""
        layer.program(rng)

    def matmul(self, layer, rows: torch.Tensor) -> torch.Tensor:
        """``rows @ W_eff.T`` through DAC, tiles and ADC (no bias); ``(N, in) -> (N, out)``."""
        raise NotImplementedError

    def forward(self, layer, x: torch.Tensor) -> torch.Tensor:
        """The layer's output for a batch ``x`` (lowering, product, digital bias)."""
        return layer.lowered(x, lambda rows: self.matmul(layer, rows))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ReferenceExecution(Execution):
    """``xbar.TiledCrossbar.matmul`` on the im2col rows (the reference of every other path)."""

    name = "reference"
    uses_numba = True

    def matmul(self, layer, rows: torch.Tensor) -> torch.Tensor:
        """Xbar's product on the cells of the last ``program`` / ``program_ideal``.

        Raises:
            NotProgrammedError: the layer holds a torch ``resample()`` draw, or its weight
                changed since programming.
        """
        if layer._noise is not None:
            raise NotProgrammedError("the reference (numba) execution runs the xbar-programmed "
                                     "cells; this layer holds a torch resample() draw: call "
                                     "program() or clear_variation(), or "
                                     "set_execution(model, 'torch')")
        layer._refresh_or_fail()
        y = layer.crossbar.matmul(rows.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(y).to(rows.device, rows.dtype)


class TorchExecution(Execution):
    """The periphery maths in torch ops (:func:`mapping.torch_ops.analog_matmul`)."""

    name = "torch"

    def matmul(self, layer, rows: torch.Tensor) -> torch.Tensor:
        """Differentiable product on the layer's device (see ``CrossbarLayer.torch_weight``)."""
        w_eff, fs = layer.torch_weight()
        c = layer.config
        return torch_ops.analog_matmul(rows, w_eff, layer.row_bounds(), fs,
                                       dac_bits=c.dac.bits, dac_input_range=c.dac.input_range,
                                       adc_bits=c.adc.bits)


def ideal_periphery(layer) -> bool:
    """True when the layer's DAC and ADC are both ideal (no scale, no rounding)."""
    c = layer.config
    return c.dac.bits is None and c.dac.input_range is None and c.adc.bits is None


class IdealConverterExecution(TorchExecution):
    """``torch``, with ideal-periphery convolutions as one ``F.conv2d`` (training's fast path).

    With ideal DAC and ADC the analog convolution is ``conv2d(pad(x), W_eff) + b`` exactly
    (the im2col product summed in another order: float32 rounding only), and gradients flow
    as in ``torch``. Linear layers and quantised convolutions run :class:`TorchExecution`.
    """

    name = "ideal"

    def forward(self, layer, x: torch.Tensor) -> torch.Tensor:
        """One ``F.conv2d`` for an ideal-periphery conv, else the ``torch`` strategy."""
        if not (layer.is_conv and ideal_periphery(layer)):
            return super().forward(layer, x)
        w_eff, _ = layer.torch_weight()
        return F.conv2d(layer.padded_input(x), w_eff.reshape(layer.weight.shape), layer.bias,
                        stride=layer.stride, dilation=layer.dilation)


class FusedExecution(Execution):
    """The fused Numba kernel of :mod:`mapping.fastpath` for one layer (CPU, inference).

    Used standalone (``set_execution(model, "fused")``) it runs the cells of the layer's last
    ``program()`` / ``program_ideal()``. The Monte-Carlo engine instead pins the weights of
    the sample it evaluates (:meth:`pin`), may hand it a precomputed output for the next call
    (``override``: the first layer, computed for a group of samples at once) and fuses the
    digital correction, batch-norm, ReLU / max-pool that follow a conv (``post``).

    Attributes:
        statics: The kernel's per-layer constants (:class:`mapping.fastpath.LayerStatics`).
        wt: Pinned effective weights ``(1, K, O)``, or None (follow the layer's cells).
        override: Output to return from the next call instead of computing it.
        post: Fused digital ops after a conv (:class:`mapping.fastpath.PostOps`).
        calls: Outputs served since the last reset (kernel or override).
    """

    name = "fused"
    uses_numba = True

    def __init__(self) -> None:
        self.statics = None
        self.wt: np.ndarray | None = None
        self.override: torch.Tensor | None = None
        self.post = None
        self.calls = 0
        self._seen: tuple | None = None
        self._cells: np.ndarray | None = None

    def pin(self, layer, wt: np.ndarray | None) -> None:
        """Fix the weights of the next forwards (``(1, K, O)``), or None to follow the cells."""
        self._sync(layer)
        self.wt = wt

    def _sync(self, layer) -> None:
        """(Re)build the constants and the cells' weights after the layer was (re)programmed."""
        if layer.weight.device.type != "cpu":
            raise BackendError("the fused execution runs on the CPU; move the model with "
                               "model.cpu() or use set_execution(model, 'torch')")
        if layer._noise is not None:
            raise NotProgrammedError("the fused execution runs the xbar-programmed cells; this "
                                     "layer holds a torch resample() draw: call program() or "
                                     "clear_variation()")
        layer._refresh_or_fail()
        key = (id(layer.crossbar), layer.program_count, layer.bias is None
               or layer.bias._version)
        if key != self._seen:
            if layer.config.device.read_noise > 0:
                raise BackendError("the fused execution models no read noise; use "
                                   "set_execution(model, 'reference')")
            self.statics = fastpath.LayerStatics(layer)
            self._cells = fastpath.sample_weights(layer)[None]
            self._seen = key

    def matmul(self, layer, rows: torch.Tensor) -> torch.Tensor:
        """The fused kernel as a plain product (a linear layer's maths, bias removed)."""
        self._sync(layer)
        wt = self.wt if self.wt is not None else self._cells
        return fastpath.fused_matmul(self.statics, rows, wt)[0]

    def forward(self, layer, x: torch.Tensor) -> torch.Tensor:
        """The override if set, else the current sample through the fused kernel."""
        self.calls += 1
        if self.override is not None:
            out, self.override = self.override, None
            return out
        if self.wt is None:
            self._sync(layer)
        unbatched = layer.is_conv and x.dim() == 3
        if unbatched:
            x = x.unsqueeze(0)
        wt = self.wt if self.wt is not None else self._cells
        y = fastpath.fused_forward(self.statics, layer, x, wt, post=self.post)[0]
        return y[0] if unbatched else y


_CLASSES = {"reference": ReferenceExecution, "fused": FusedExecution, "torch": TorchExecution,
            "ideal": IdealConverterExecution}


def make_execution(name: str) -> Execution:
    """A new strategy object by name (:data:`EXECUTIONS` or the alias ``"numba"``).

    Raises:
        BackendError: unknown name.
    """
    key = _ALIASES.get(name, name) if isinstance(name, str) else name
    if key not in _CLASSES:
        raise BackendError(f"execution must be one of {EXECUTIONS} (or 'numba' = 'reference', "
                           f"None = automatic), got {name!r}")
    return _CLASSES[key]()


def automatic(layer) -> Execution:
    """The default strategy of a layer: ``reference`` for CPU weights, ``torch`` otherwise."""
    return _REFERENCE if layer.weight.device.type == "cpu" else _TORCH


_REFERENCE = ReferenceExecution()
_TORCH = TorchExecution()
