"""Per-layer diagnostics of the Lipschitz constraint: singular values and operator norms.

For every analog layer (``mapping.analog_layers``: Linear and Conv2d not marked digital):

- ``sigma_max``, ``sigma_min``: largest and smallest singular value of the flattened weight
  matrix ``W`` (``(out, in)``; conv ``(out, in*kh*kw)``), from a full SVD; ``sigma_min`` is the
  ``min(out, in)``-th one (the smallest a wide or tall matrix has).
- ``condition``: ``sigma_max / sigma_min`` (``inf`` if ``sigma_min == 0``).
- ``operator_norm``: the true norm ``||A||_2`` of the linear map the layer computes (bias
  left out). For Linear it is ``sigma_max``. For Conv2d it is found by power iteration on
  ``A^T A``, with ``A x = conv2d(x, W)`` and ``A^T y = conv_transpose2d(y, W)`` (same stride,
  padding, dilation, groups), on a single input of the size the layer sees in the network's
  forward pass: the spatial size is recorded with a forward hook from ``example_input``
  (``correctnet train`` uses one training image, so LeNet-5 on 28x28 Fashion-MNIST gives
  conv1 at 1x28x28 and conv2 at 6x14x14). It differs from ``sigma_max``: a convolution reuses
  every weight at every position, so (stride 1) ``||A||_2 <= sqrt(kh*kw) * sigma_max`` and it
  is usually well above ``sigma_max``; a flattened matrix at ``lambda`` does not bound the
  convolution's gain by ``lambda``.
- ``binds``: ``sigma_max`` within 10 % of ``lambda`` (``|sigma_max - lambda| <= 0.1 lambda``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from mapping import analog_layers
from torch import nn

from correctnet.errors import UsageError

#: Relative tolerance of ``binds``.
BIND_TOLERANCE: float = 0.10


def _conv_input_shapes(model: nn.Module, convs: dict[str, nn.Conv2d],
                       example_input: torch.Tensor) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for name, module in convs.items():
        def hook(_mod, inputs, _out, name=name):
            shapes.setdefault(name, tuple(inputs[0].shape[1:]))
        handles.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example_input[:1])
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return shapes


@torch.no_grad()
def conv_operator_norm(conv: nn.Conv2d, input_shape: tuple[int, int, int], *,
                       iters: int = 1000, tol: float = 1e-10, seed: int = 0) -> float:
    """``||A||_2`` of the convolution ``A x = conv2d(x, W)`` on inputs ``(C, H, W)`` (no bias).

    Power iteration ``x <- A^T A x / ||A^T A x||`` from a seeded Gaussian start, with the
    adjoint ``conv_transpose2d`` (``output_padding`` chosen so it returns the input's size);
    stops when the estimate ``||A x||`` changes by less than ``tol`` (relative) or after
    ``iters`` steps. Runs in float64.

    Args:
        conv: The convolution (its weight, stride, padding, dilation, groups are used;
            ``padding_mode`` must be ``"zeros"``).
        input_shape: ``(channels, height, width)`` of one input.
        iters: Maximum power-iteration steps (>= 1).
        tol: Relative convergence tolerance.
        seed: Seed of the start vector.

    Returns:
        The operator norm (largest singular value of the convolution as a matrix of size
        ``(out*Ho*Wo, C*H*W)``).

    Raises:
        UsageError: Bad ``iters``, input shape, or an unsupported padding mode.
    """
    if not isinstance(iters, int) or iters < 1:
        raise UsageError(f"iters must be an integer >= 1, got {iters!r}")
    if len(input_shape) != 3 or input_shape[0] != conv.in_channels:
        raise UsageError(f"input_shape must be ({conv.in_channels}, H, W), got {input_shape!r}")
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise UsageError("conv_operator_norm supports numeric zero padding only, got "
                         f"padding={conv.padding!r}, padding_mode={conv.padding_mode!r}")
    w = conv.weight.detach().double()
    kw = dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation,
              groups=conv.groups)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn((1, *input_shape), generator=gen, dtype=torch.float64).to(w.device)
    x /= x.norm()
    y = F.conv2d(x, w, **kw)
    out_pad = tuple(
        input_shape[1 + i] - ((y.shape[2 + i] - 1) * conv.stride[i] - 2 * conv.padding[i]
                              + conv.dilation[i] * (w.shape[2 + i] - 1) + 1)
        for i in range(2))
    estimate = 0.0
    for _ in range(iters):
        y = F.conv2d(x, w, **kw)
        new = float(y.norm())
        z = F.conv_transpose2d(y, w, output_padding=out_pad, **kw)
        norm = float(z.norm())
        if norm == 0.0:
            return 0.0
        x = z / norm
        if abs(new - estimate) <= tol * max(new, 1e-300):
            return new
        estimate = new
    return estimate


def layer_diagnostics(model: nn.Module, lam: float,
                      example_input: torch.Tensor | None = None) -> dict[str, dict[str, float]]:
    """Singular values, condition number, operator norm and binding of every analog layer.

    Args:
        model: Network (float; modules marked digital are skipped).
        lam: Target spectral norm ``lambda`` (> 0; see
            :func:`correctnet.training.lipschitz.lipschitz_lambda`).
        example_input: A batch ``(N, C, H, W)`` the model accepts (its first image is run to
            record each convolution's input size). ``None``: ``operator_norm`` of a
            convolution is ``None``.

    Returns:
        ``{layer name: {"sigma_max", "sigma_min", "condition", "operator_norm", "binds"}}`` in
        definition order (floats, ``binds`` a bool); see the module docstring.

    Raises:
        UsageError: ``lam <= 0``.
    """
    if not (math.isfinite(lam) and lam > 0):
        raise UsageError(f"lambda must be a finite number > 0, got {lam!r}")
    layers = analog_layers(model)
    convs = {n: m for n, m in layers if isinstance(m, nn.Conv2d)}
    shapes = (_conv_input_shapes(model, convs, example_input)
              if convs and example_input is not None else {})
    result: dict[str, dict[str, float]] = {}
    for name, module in layers:
        with torch.no_grad():
            s = torch.linalg.svdvals(module.weight.detach().flatten(1).double())
        s_max, s_min = float(s[0]), float(s[-1])
        if isinstance(module, nn.Conv2d):
            op = (conv_operator_norm(module, shapes[name]) if name in shapes else None)
        else:
            op = s_max
        result[name] = {"sigma_max": s_max, "sigma_min": s_min,
                        "condition": s_max / s_min if s_min > 0 else math.inf,
                        "operator_norm": op,
                        "binds": bool(abs(s_max - lam) <= BIND_TOLERANCE * lam)}
    return result


def format_diagnostics(diag: dict[str, dict[str, float]], lam: float) -> str:
    """One compact line: ``lambda 0.340 | conv1 0.35/0.33 op 0.61 B | ...``.

    Per layer (last name component): ``sigma_max/sigma_min``, ``op`` the operator norm (omitted
    if unknown) and ``B`` if the constraint binds.
    """
    parts = [f"lambda {lam:.3f}"]
    for name, d in diag.items():
        text = f"{name.rsplit('.', 1)[-1]} {d['sigma_max']:.3f}/{d['sigma_min']:.3f}"
        if d.get("operator_norm") is not None:
            text += f" op {d['operator_norm']:.3f}"
        if d.get("binds"):
            text += " B"
        parts.append(text)
    return " | ".join(parts)
