"""Module swap: ``nn.Linear`` / ``nn.Conv2d`` -> crossbar layers, and what stays digital.

Follows PyTorch's quantization module swap: a default mapping returned as a copy, layer types
looked up with ``torch.nn.utils.parametrize.type_before_parametrizations`` (a parametrized
Linear still converts), children reassigned after the loop, forward hooks and device kept.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

from torch import nn
from torch.nn.utils.parametrize import type_before_parametrizations

from xbar import XbarConfig

from .errors import ArgumentTypeError, UnsupportedLayerError
from .layers import CrossbarConv2d, CrossbarLayer, CrossbarLinear

#: Attribute set by :func:`mark_digital`.
_DIGITAL_ATTR = "_mapping_digital"

#: Compute layers that :func:`unconverted_layers` reports when they stay digital.
COMPUTE_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Linear, nn.Bilinear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d,
    nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Embedding, nn.EmbeddingBag,
    nn.MultiheadAttention, nn.RNNBase,
)

LayerConfigFn = Callable[[str, nn.Module], "XbarConfig | None"]


def default_mapping() -> dict[type[nn.Module], type[CrossbarLayer]]:
    """The default swap table ``{nn.Linear: CrossbarLinear, nn.Conv2d: CrossbarConv2d}``.

    Returns:
        A new dict each call: extend it freely (keys are matched by exact type).
    """
    return {nn.Linear: CrossbarLinear, nn.Conv2d: CrossbarConv2d}


def mark_digital(module: nn.Module) -> nn.Module:
    """Keep ``module`` and all its children digital: never converted, never varied.

    Used for CorrectNet's compensators (Eldebiky et al., DATE 2023, Sec. IV).

    Returns:
        ``module`` itself (the mark is an attribute, so it survives ``copy.deepcopy``).
    """
    if not isinstance(module, nn.Module):
        raise ArgumentTypeError(f"mark_digital needs an nn.Module, got {type(module).__name__}")
    setattr(module, _DIGITAL_ATTR, True)
    return module


def is_digital(module: nn.Module) -> bool:
    """True if :func:`mark_digital` was applied to ``module`` itself."""
    return bool(getattr(module, _DIGITAL_ATTR, False))


def convert_to_crossbar(
    model: nn.Module,
    config: XbarConfig,
    *,
    mapping: dict[type[nn.Module], type[CrossbarLayer]] | None = None,
    layer_config_fn: LayerConfigFn | None = None,
    exclude: Iterable[str | type[nn.Module]] = (),
    inplace: bool = False,
) -> nn.Module:
    """Swap every mappable layer of ``model`` for its crossbar layer (programmed ideally).

    Args:
        model: The network (its weights become the crossbar targets).
        config: Hardware model of every converted layer.
        mapping: ``{float type: crossbar type}``; default :func:`default_mapping`.
        layer_config_fn: ``fn(name, module) -> XbarConfig | None`` per layer (None keeps the
            layer digital); overrides ``config``.
        exclude: Qualified module names (``"features.0"``, the whole subtree) or module types
            to keep digital.
        inplace: Modify ``model`` itself instead of a deep copy.

    Returns:
        The converted model (a deep copy unless ``inplace``), in the same train/eval mode.

    Raises:
        ArgumentTypeError: ``config`` is not an ``XbarConfig`` or ``model`` not an ``nn.Module``.
        UnsupportedLayerError: a selected ``Conv2d`` has ``groups != 1`` (exclude it).
    """
    if not isinstance(model, nn.Module):
        raise ArgumentTypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(config, XbarConfig):
        raise ArgumentTypeError(f"config must be an xbar.XbarConfig, got {type(config).__name__}")
    table = default_mapping() if mapping is None else dict(mapping)
    names = {e for e in exclude if isinstance(e, str)}
    types = tuple(e for e in exclude if isinstance(e, type))
    if not inplace:
        model = copy.deepcopy(model)

    def swap(name: str, module: nn.Module) -> nn.Module | None:
        if _kept_digital(name, module, names, types):
            return None
        cls = table.get(type_before_parametrizations(module))
        if cls is None:
            return None
        cfg = config if layer_config_fn is None else layer_config_fn(name, module)
        if cfg is None:
            return None
        try:
            new = cls.from_float(module, cfg)
        except UnsupportedLayerError as err:
            raise UnsupportedLayerError(f"layer {name!r}: {err}") from None
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_forward_hooks_with_kwargs",
                     "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called"):
            if hasattr(module, attr):
                getattr(new, attr).update(getattr(module, attr))
        new.train(module.training)
        return new

    def recurse(module: nn.Module, prefix: str) -> None:
        swaps = {}
        for child_name, child in module.named_children():
            full = f"{prefix}.{child_name}" if prefix else child_name
            new = swap(full, child)
            if new is not None:
                swaps[child_name] = new
            elif not _kept_digital(full, child, names, types):
                recurse(child, full)
        for child_name, new in swaps.items():
            setattr(module, child_name, new)

    root = swap("", model)
    if root is not None:
        return root
    recurse(model, "")
    return model


def _kept_digital(name: str, module: nn.Module, names: set[str],
                  types: tuple[type[nn.Module], ...]) -> bool:
    """True if ``module`` (and its subtree) stays digital: marked, or excluded by name/type."""
    return is_digital(module) or name in names or bool(types and isinstance(module, types))


def analog_layers(model: nn.Module, *,
                  mapping: dict[type[nn.Module], type[CrossbarLayer]] | None = None,
                  exclude: Iterable[str | type[nn.Module]] = ()) -> list[tuple[str, nn.Module]]:
    """The layers of ``model`` that run on crossbars: the one answer to "which layers are analog".

    On a float model these are the layers :func:`convert_to_crossbar` (with the same
    ``mapping`` and ``exclude``) converts: modules whose type before parametrizations is a key
    of the mapping, outside every :func:`mark_digital` subtree and every excluded name/type;
    on a converted model, its crossbar layers. Grouped convolutions are listed (converting
    them raises :class:`UnsupportedLayerError`). The Lipschitz penalty, compensation
    placement and variation-aware training all use this list.

    Args:
        model: A float or converted network.
        mapping: ``{float type: crossbar type}``; default :func:`default_mapping`.
        exclude: Qualified names or module types kept digital.

    Returns:
        ``(qualified name, module)`` pairs in definition order.
    """
    table = default_mapping() if mapping is None else mapping
    names = {e for e in exclude if isinstance(e, str)}
    types = tuple(e for e in exclude if isinstance(e, type))
    found: list[tuple[str, nn.Module]] = []

    def walk(module: nn.Module, prefix: str) -> None:
        if _kept_digital(prefix, module, names, types):
            return
        if (isinstance(module, CrossbarLayer)
                or type_before_parametrizations(module) in table):
            found.append((prefix, module))
            return
        for child_name, child in module.named_children():
            walk(child, f"{prefix}.{child_name}" if prefix else child_name)

    walk(model, "")
    return found


def crossbar_layers(model: nn.Module) -> list[tuple[str, CrossbarLayer]]:
    """All crossbar layers of ``model``, ``(qualified name, layer)`` in definition order.

    The 0-based position in this list is the layer index used by ``layers=`` selections.
    """
    return [(n, m) for n, m in model.named_modules() if isinstance(m, CrossbarLayer)]


def unconverted_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Compute layers (Linear, Conv*, Embedding, RNN, ...) of ``model`` that stay digital.

    Includes layers inside :func:`mark_digital` modules, excluded ones, grouped convolutions
    left out, and types without a crossbar mapping, so nothing stays digital silently.

    Returns:
        ``(qualified name, module)`` pairs in definition order.
    """
    return [(n, m) for n, m in model.named_modules()
            if not isinstance(m, CrossbarLayer)
            and issubclass(type_before_parametrizations(m), COMPUTE_LAYERS)]
