"""Fusing the digital ReLU / max-pool that follow a crossbar conv into the fused kernel.

An ``nn.ReLU`` and/or ``nn.MaxPool2d`` directly following a crossbar conv inside a plain
``nn.Sequential`` (exact types, no hooks, floor mode) are applied by the conv's fused kernel
(:class:`mapping.fastpath.PostOps`) and replaced by ``nn.Identity`` for the run, then put back.
A probe batch must give bit-identical logits with and without the fusion, else nothing is
fused. Max and ReLU are exact, so this changes no result.
"""

from __future__ import annotations

import torch
from torch import nn

from .fastpath import PostOps
from .layers import CrossbarConv2d


def _no_hooks(m: nn.Module) -> bool:
    return not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks)


def fusable(model: nn.Module, entries) -> dict:
    """Digital ``nn.ReLU`` / ``nn.MaxPool2d`` that directly follow a crossbar conv.

    Only inside a plain ``nn.Sequential`` (its ``forward`` feeds each module's output to the
    next one only), exact module types, no hooks, floor-mode pools without indices.

    Returns:
        ``{id(conv): (PostOps, [(sequential, key), ...])}`` for the modules to skip.
    """
    found = {}
    ours = {id(layer) for _, layer in entries}
    for parent in model.modules():
        if type(parent) is not nn.Sequential:
            continue
        items = list(parent._modules.items())
        for i, (_, m) in enumerate(items):
            if (not isinstance(m, CrossbarConv2d) or id(m) not in ours or not _no_hooks(m)
                    or id(m) in found):
                continue
            relu, pool, skip = False, None, []
            j = i + 1
            if j < len(items) and type(items[j][1]) is nn.ReLU and _no_hooks(items[j][1]):
                relu = True
                skip.append((parent, items[j][0]))
                j += 1
            if j < len(items) and type(items[j][1]) is nn.MaxPool2d and _no_hooks(items[j][1]):
                mp = items[j][1]
                ks = mp.kernel_size if isinstance(mp.kernel_size, tuple) else (mp.kernel_size,) * 2
                pd = mp.padding if isinstance(mp.padding, tuple) else (mp.padding,) * 2
                if (not mp.ceil_mode and not mp.return_indices
                        and all(2 * p <= k for p, k in zip(pd, ks))):
                    pool = mp
                    skip.append((parent, items[j][0]))
            if skip:
                found[id(m)] = (PostOps(relu, pool), skip)
    return found


def install_fusion(model, states, fusable, probe) -> list:
    """Skip the fusable modules (fused into the conv kernels) if the probe output is unchanged.

    Returns:
        ``[(sequential, key, module)]`` to put back (empty when nothing was fused).
    """
    if not fusable:
        return []
    with torch.no_grad():
        ref = model(probe)
    saved = []
    for lid, (post, skip) in fusable.items():
        states[lid].post = post
        for parent, key in skip:
            saved.append((parent, key, parent._modules[key]))
            parent._modules[key] = nn.Identity()
    with torch.no_grad():
        same = torch.equal(model(probe), ref)
    if not same:                        # a structure the check above did not foresee
        remove_fusion(states, saved)
        return []
    return saved


def remove_fusion(states, saved) -> None:
    """Put the skipped modules back and clear every strategy's fused ops."""
    for parent, key, module in reversed(saved):
        parent._modules[key] = module
    for st in states.values():
        st.post = None


