"""Lipschitz error suppression (CorrectNet, Eldebiky et al., DATE 2023, Sec. III-A).

Under the paper's lognormal variation ``w = w0 * exp(theta)``, ``theta ~ N(0, sigma^2)``, a
layer's error is bounded through its spectral norm. CorrectNet trains with

    Loss = CE + beta * sum_i || W_i^T W_i - lambda^2 I ||_F^2                         (eq. 9)

    lambda = k / (exp(sigma^2/2) + 3 * sqrt((exp(sigma^2) - 1) * exp(sigma^2)))       (eq. 10)

(the denominator is the mean plus three standard deviations of ``exp(theta)``), pushing every
weight matrix towards ``lambda`` times an orthogonal matrix. Conv weights are used as matrices
``(out_channels, in_channels * kh * kw)``.

Eq. 9 summed over layers is dominated by the large layers (fc1/fc2 of LeNet-5) and its value
scales with ``lambda^4``, so a small ``beta`` never binds. :func:`normalized_penalty` (eq. 11
as used by ``--constraint soft``) divides each layer's ``||W W^T / lambda^2 - I||_F^2`` by the
layer's smaller dimension, so every layer counts equally and ``beta`` is independent of
``lambda``. :func:`parseval_retract` (``--constraint hard``) instead holds the constraint
exactly: after every optimizer step each analog weight is replaced by ``lambda`` times its
nearest (Frobenius) matrix with orthonormal rows or columns, ``lambda * U V^T`` from the SVD
``W = U S V^T`` (the polar factor), so every singular value equals ``lambda``.
"""

from __future__ import annotations

import math

import torch
from mapping import analog_layers
from torch import nn

from correctnet.errors import UsageError


def lipschitz_lambda(sigma: float, k: float = 1.0) -> float:
    """Target spectral norm ``lambda`` of every layer (eq. 10).

    ``lambda = k / (exp(sigma^2/2) + 3 * sqrt((exp(sigma^2) - 1) * exp(sigma^2)))``

    Args:
        sigma: Standard deviation of the lognormal variation ``theta`` (>= 0).
        k: Target Lipschitz constant of the varied layer (> 0); the paper uses 1.

    Returns:
        ``lambda`` (``lipschitz_lambda(0.5) ~= 0.3396``; ``lipschitz_lambda(0) == k``). Never
        overflows: for ``sigma >= sqrt(300)`` it is evaluated in log space and may underflow to 0.

    Raises:
        UsageError: ``sigma < 0`` or ``k <= 0`` (or not finite).
    """
    if not (math.isfinite(sigma) and sigma >= 0):
        raise UsageError(f"sigma must be a finite number >= 0, got {sigma!r}")
    if not (math.isfinite(k) and k > 0):
        raise UsageError(f"k must be a finite number > 0, got {k!r}")
    s2 = sigma * sigma
    if s2 < 300.0:                      # (e - 1) * e is finite: the formula as written
        e = math.exp(s2)
        return k / (math.exp(s2 / 2.0) + 3.0 * math.sqrt((e - 1.0) * e))
    # (e - 1) * e would overflow: log of the denominator, log(exp(s2/2) + 3 exp(s2) sqrt(1 - e^-s2))
    # = s2 + log(3 sqrt(1 - e^-s2) + exp(-s2/2)); lambda then underflows towards 0.0.
    log_den = s2 + math.log(3.0 * math.sqrt(-math.expm1(-s2)) + math.exp(-s2 / 2.0))
    return k * math.exp(-log_den)


def _matrix(module: nn.Module) -> torch.Tensor:
    return module.weight.flatten(1)


def orthogonality_penalty(model: nn.Module, lam: float) -> torch.Tensor:
    """Sum over analog Linear/Conv2d layers of ``|| W^T W - lam^2 I ||_F^2`` (eq. 9).

    ``W`` is ``(out, in)`` (conv: ``(out, in*kh*kw)``). For speed the smaller Gram matrix is
    formed: with ``c = lam^2``, ``||W^T W - c I_in||_F^2 = tr((W^T W)^2) - 2c tr(W^T W) + c^2 in``
    and ``tr((W^T W)^2) = tr((W W^T)^2)``, ``tr(W^T W) = tr(W W^T)``, hence
    ``||W^T W - c I_in||_F^2 = ||W W^T - c I_out||_F^2 + c^2 (in - out)``. The constant is
    added, so the value (and gradient) equals eq. 9 exactly whichever Gram is used.

    Args:
        model: Network; modules marked digital are skipped.
        lam: Target spectral norm ``lambda`` (see :func:`lipschitz_lambda`).

    Returns:
        Scalar tensor (differentiable w.r.t. the weights); 0 if there is no layer.
    """
    c = float(lam) ** 2
    total = None
    for _, module in analog_layers(model):
        w = _matrix(module)
        out_dim, in_dim = w.shape
        if out_dim < in_dim:
            gram = w @ w.t()
            const = c * c * (in_dim - out_dim)
        else:
            gram = w.t() @ w
            const = 0.0
        eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
        term = (gram - c * eye).pow(2).sum() + const
        total = term if total is None else total + term
    if total is None:
        return torch.zeros(())
    return total


@torch.no_grad()
def spectral_norms(model: nn.Module) -> dict[str, float]:
    """Largest singular value of every analog layer's weight matrix.

    Args:
        model: Network; modules marked digital are skipped.

    Returns:
        ``{layer name: ||W||_2}`` in definition order (conv weights as ``(out, in*kh*kw)``).
    """
    return {name: float(torch.linalg.matrix_norm(_matrix(m).float(), ord=2))
            for name, m in analog_layers(model)}


def _small_gram(w: torch.Tensor) -> torch.Tensor:
    return w @ w.t() if w.shape[0] <= w.shape[1] else w.t() @ w


def normalized_penalty(model: nn.Module, lam: float) -> torch.Tensor:
    """Per-layer-normalised orthogonality penalty (eq. 11, ``--constraint soft``).

    ``sum_i ||G_i / lambda^2 - I||_F^2 / min(out_i, in_i)`` where ``G_i`` is the smaller Gram
    matrix of ``W_i`` (``W W^T`` for wide, ``W^T W`` for tall matrices; the larger Gram would
    add ``|in - out|`` for the directions a non-square matrix cannot fill). As ``G`` is
    symmetric with eigenvalues ``s^2`` (``s`` the singular values of ``W``), each term is the
    mean of ``(s^2/lambda^2 - 1)^2`` over the ``min(out, in)`` singular values: 0 exactly for
    ``lambda`` times an orthogonal (Parseval) matrix, independent of the layer's size, and
    unchanged when ``W`` and ``lambda`` scale together.

    Args:
        model: Network; modules marked digital are skipped (conv weights as
            ``(out, in*kh*kw)``).
        lam: Target spectral norm ``lambda`` (> 0).

    Returns:
        Scalar tensor (differentiable w.r.t. the weights); 0 if there is no analog layer.

    Raises:
        UsageError: ``lam <= 0``.
    """
    if not (math.isfinite(lam) and lam > 0):
        raise UsageError(f"lambda must be a finite number > 0, got {lam!r}")
    total = None
    for _, module in analog_layers(model):
        gram = _small_gram(_matrix(module)) / (lam * lam)
        eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
        term = (gram - eye).pow(2).sum() / gram.shape[0]
        total = term if total is None else total + term
    if total is None:
        return torch.zeros(())
    return total


@torch.no_grad()
def parseval_retract(model: nn.Module, lam: float) -> None:
    """Set every analog weight to ``lambda`` times its polar factor (``--constraint hard``).

    ``W = U S V^T`` (thin SVD of the ``(out, in)`` matrix, conv ``(out, in*kh*kw)``) becomes
    ``lambda U V^T``: the nearest matrix (in Frobenius norm) whose ``min(out, in)`` singular
    values all equal ``lambda``, so ``W W^T = lambda^2 I`` (wide) or ``W^T W = lambda^2 I``
    (tall) holds to float precision. Biases are untouched. Called after every optimizer step,
    this is a projected-gradient method on the scaled Stiefel manifold.

    Args:
        model: Network, modified in place; modules marked digital are skipped.
        lam: Target spectral norm ``lambda`` (> 0).

    Raises:
        UsageError: ``lam <= 0``.
    """
    if not (math.isfinite(lam) and lam > 0):
        raise UsageError(f"lambda must be a finite number > 0, got {lam!r}")
    for _, module in analog_layers(model):
        w = module.weight
        u, _, vh = torch.linalg.svd(w.flatten(1).double(), full_matrices=False)
        w.copy_((lam * (u @ vh)).to(w.dtype).reshape(w.shape))
