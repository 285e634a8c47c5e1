"""Programming, layer selection, the legacy backend alias and torch-side variation.

Layer selection (the paper's "variation in layers i..L"): ``layers=None`` selects every
crossbar layer; a ``range``/``slice`` selects 0-based indices into :func:`crossbar_layers`
(``range(i, n)`` = layers i..L); an iterable of names and/or ints selects those. Unselected
layers are programmed ideally (exact weights).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from . import execution as _execution
from .convert import crossbar_layers
from .errors import ArgumentTypeError, BackendError, LayerSelectionError
from .layers import BACKENDS, CrossbarLayer

LayerSelection = None | range | slice | str | int | Iterable


def _layers_or_fail(model: nn.Module) -> list[tuple[str, CrossbarLayer]]:
    entries = crossbar_layers(model)
    if not entries:
        raise LayerSelectionError(f"{type(model).__name__} has no crossbar layers; convert it "
                                  "with mapping.convert_to_crossbar(model, config) first")
    return entries


def select_layers(entries: list[tuple[str, CrossbarLayer]], layers: LayerSelection) -> set[int]:
    """Resolve a ``layers=`` selection into indices of ``entries``.

    Args:
        entries: :func:`crossbar_layers` of the model.
        layers: None (all), a ``range``/``slice`` of indices, a name, an index, or an iterable
            of names and indices.

    Returns:
        The selected 0-based indices.

    Raises:
        LayerSelectionError: unknown name or index out of ``[0, len(entries))``.
    """
    n = len(entries)
    if layers is None:
        return set(range(n))
    if isinstance(layers, slice):
        return set(range(n)[layers])
    if isinstance(layers, (str, int)):
        layers = [layers]
    if not isinstance(layers, Iterable):
        raise LayerSelectionError(f"layers must be None, a range/slice, or names/indices, got "
                                  f"{type(layers).__name__}")
    index = {name: i for i, (name, _) in enumerate(entries)}
    out = set()
    for item in layers:
        if isinstance(item, str):
            if item not in index:
                raise LayerSelectionError(f"no crossbar layer named {item!r}; crossbar layers: "
                                          f"{list(index)}")
            out.add(index[item])
        elif isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            if not 0 <= item < n:
                raise LayerSelectionError(f"layer index {item} out of range; valid 0..{n - 1} "
                                          f"(indices into crossbar_layers(model))")
            out.add(int(item))
        else:
            raise LayerSelectionError(f"layer selection items must be names or ints, got "
                                      f"{item!r}")
    return out


def as_generator(rng: np.random.Generator | int) -> np.random.Generator:
    """``rng`` itself, or ``np.random.default_rng(rng)`` for an int seed (>= 0).

    Raises:
        ArgumentTypeError: neither a Generator nor an int.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool) and rng >= 0:
        return np.random.default_rng(int(rng))
    raise ArgumentTypeError(f"rng must be a numpy Generator or an int seed >= 0, got {rng!r}")


def program(model: nn.Module, rng: np.random.Generator | int, *,
            layers: LayerSelection = None) -> None:
    """Draw one device sample for the selected crossbar layers; program the others ideally.

    Every crossbar layer (selected or not) gets its own child generator,
    ``rng.spawn(n_layers)[i]``, so layer ``i``'s sample does not depend on which other layers
    are selected, and the same seed gives the same sample.

    Args:
        model: A converted model.
        rng: ``np.random.Generator`` (advanced by one spawn) or int seed.
        layers: Selection (see the module docstring).

    Raises:
        LayerSelectionError: no crossbar layers, or a bad selection.
        ArgumentTypeError: bad ``rng``.
    """
    entries = _layers_or_fail(model)
    chosen = select_layers(entries, layers)
    children = as_generator(rng).spawn(len(entries))
    for i, (_, layer) in enumerate(entries):
        if i in chosen:
            layer.program(children[i])
        else:
            layer.program_ideal()


def program_ideal(model: nn.Module) -> None:
    """Program every crossbar layer exactly (no variation)."""
    for _, layer in _layers_or_fail(model):
        layer.program_ideal()


def set_backend(model: nn.Module, name: str | None) -> nn.Module:
    """Legacy alias of :func:`mapping.set_execution`: ``"numba"`` = ``"reference"``.

    Args:
        model: A converted model.
        name: ``"numba"`` (CPU inference through ``xbar.TiledCrossbar.matmul``), ``"torch"``
            (differentiable, any device) or None (numba on CPU, torch elsewhere).

    Returns:
        ``model``.

    Raises:
        BackendError: unknown name.
    """
    if name is not None and name not in BACKENDS:
        raise BackendError(f"backend must be one of {BACKENDS} or None, got {name!r}")
    for _, layer in _layers_or_fail(model):
        layer.backend = name
    return model


def resample(model: nn.Module, generator: torch.Generator | None = None, *,
             layers: LayerSelection = None) -> None:
    """Draw fresh lognormal variation with torch for the selected layers (torch backend).

    Each selected layer gets ``theta ~ N(0, sigma^2)`` drawn by ``torch.randn`` on its weight's
    device (``w_eff = w * exp(theta)`` at weight level, per cell at device level), applied to
    the live weight in every forward, so gradients flow through (to compensators downstream,
    and to the weights if they require grad). Unselected layers lose any previous draw and are
    programmed ideally (exact). Call once per training batch.

    Args:
        model: A converted model (use ``set_execution(model, "torch")``).
        generator: ``torch.Generator`` on the layers' device, or None (global torch RNG).
        layers: Selection (see the module docstring).

    Raises:
        LayerSelectionError: no crossbar layers, or a bad selection.
        ArgumentTypeError: ``generator`` is not a ``torch.Generator``.
    """
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ArgumentTypeError(f"generator must be a torch.Generator or None, got "
                                f"{type(generator).__name__}")
    entries = _layers_or_fail(model)
    chosen = select_layers(entries, layers)
    for i, (_, layer) in enumerate(entries):
        if i in chosen:
            layer.resample(generator)
        else:
            layer.clear_variation()
            if layer._mode != "ideal":
                layer.program_ideal()


def set_execution(model: nn.Module, name: str | _execution.Execution | None) -> nn.Module:
    """Choose how every crossbar layer of ``model`` executes (one call for the whole model).

    Args:
        model: A converted model (or one crossbar layer).
        name: ``"reference"`` (alias ``"numba"``), ``"fused"``, ``"torch"``, ``"ideal"`` (see
            :mod:`mapping.execution`), an :class:`~mapping.execution.Execution` instance
            (shared by every layer), or None (automatic: reference on CPU, torch elsewhere).
            Each layer gets its own instance for ``"fused"`` (it holds per-layer constants).

    Returns:
        ``model``.

    Raises:
        BackendError: unknown name.
        LayerSelectionError: no crossbar layers.
    """
    if name is not None and not isinstance(name, _execution.Execution):
        _execution.make_execution(name)            # validate once, before any layer changes
    for _, layer in _layers_or_fail(model):
        if name is None or isinstance(name, _execution.Execution):
            layer.execution = name
        else:
            layer.execution = _execution.make_execution(name)
    return model


def executions(model: nn.Module) -> dict[str, str]:
    """``{layer name: strategy name}`` of every crossbar layer (what runs now)."""
    return {n: layer.execution.name for n, layer in _layers_or_fail(model)}
