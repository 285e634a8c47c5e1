"""Fusing the digital ReLU / max-pool that follow a crossbar conv into the fused kernel.

An ``nn.ReLU`` and/or ``nn.MaxPool2d`` directly following a crossbar conv inside a plain
``nn.Sequential`` (exact types, no hooks, floor mode) are applied by the conv's fused kernel
(:class:`mapping.fastpath.PostOps`) and replaced by ``nn.Identity`` for the run, then put back.
A probe batch must give bit-identical logits with and without the fusion, else nothing is
fused. Max and ReLU are exact, so this changes no result.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from . import kernels
from .fastpath import PostOps
from .layers import CrossbarConv2d


def _no_hooks(m: nn.Module) -> bool:
    return not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks)


def _post_at(parent: nn.Sequential, items: list, j: int) -> tuple[bool, nn.Module | None, list]:
    """An ``nn.ReLU`` and/or a fusable ``nn.MaxPool2d`` starting at ``items[j]``.

    Returns:
        ``(relu, pool, [(parent, key), ...])`` of the modules found (none: ``(False, None,
        [])``).
    """
    relu, pool, keys = False, None, []
    if j < len(items) and type(items[j][1]) is nn.ReLU and _no_hooks(items[j][1]):
        relu = True
        keys.append((parent, items[j][0]))
        j += 1
    if j < len(items) and type(items[j][1]) is nn.MaxPool2d and _no_hooks(items[j][1]):
        mp = items[j][1]
        ks = mp.kernel_size if isinstance(mp.kernel_size, tuple) else (mp.kernel_size,) * 2
        pd = mp.padding if isinstance(mp.padding, tuple) else (mp.padding,) * 2
        if (not mp.ceil_mode and not mp.return_indices
                and all(2 * p <= k for p, k in zip(pd, ks))):
            pool = mp
            keys.append((parent, items[j][0]))
    return relu, pool, keys


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
            relu, pool, skip = _post_at(parent, items, i + 1)
            if skip:
                found[id(m)] = (PostOps(relu, pool), skip)
    return found


class NumbaPostOps(nn.Module):
    """``nn.ReLU`` and/or ``nn.MaxPool2d`` run by the parallel Numba kernel (bit-exact).

    Stands in, during a fused Monte-Carlo run, for the digital ReLU / max-pool after a
    module that is not a crossbar conv (a compensated layer's compensator, a batch-norm):
    torch runs single-threaded there, the kernel uses Numba's threads. Inputs other than a
    CPU float32 ``(N, C, H, W)`` tensor run the same ops in torch.
    """

    def __init__(self, post: PostOps) -> None:
        super().__init__()
        self.post = post
        self._pool = post.pool if post.pool is not None else np.zeros(8, dtype=np.int64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ReLU / max-pool of ``x``."""
        if x.dim() != 4 or x.dtype != torch.float32 or x.device.type != "cpu":
            return self.post.apply_torch(x)
        xn = np.ascontiguousarray(x.detach().numpy())
        hq, wq = self.post.out_size(x.shape[2], x.shape[3])
        out = np.empty((x.shape[0], x.shape[1], hq, wq), dtype=np.float32)
        kernels.relu_maxpool(xn, int(self.post.relu), self._pool, out)
        return torch.from_numpy(out)


def digital_post_ops(model: nn.Module, taken: dict) -> list:
    """The other ReLU / max-pool groups of plain ``nn.Sequential`` containers.

    Args:
        model: The network.
        taken: :func:`fusable`'s result (those modules are fused into a conv already).

    Returns:
        ``[(sequential, key, replacement)]``: a :class:`NumbaPostOps` for the first module of
        each group, ``nn.Identity`` for a pool that follows a ReLU.
    """
    skip = {(id(p), k) for _, keys in taken.values() for p, k in keys}
    out = []
    for parent in model.modules():
        if type(parent) is not nn.Sequential:
            continue
        items = list(parent._modules.items())
        j = 0
        while j < len(items):
            relu, pool, keys = _post_at(parent, items, j)
            if not keys or any((id(p), k) in skip for p, k in keys):
                j += 1
                continue
            out.append((parent, keys[0][1], NumbaPostOps(PostOps(relu, pool))))
            out += [(parent, k, nn.Identity()) for _, k in keys[1:]]
            j += len(keys)
    return out


def install_fusion(model, states, fusable, probe) -> list:
    """Skip the fusable modules and swap in :class:`NumbaPostOps`, if the probe is unchanged.

    The modules after a crossbar conv are fused into its kernel; the other ReLU / max-pool
    groups run :class:`NumbaPostOps`. The probe's logits must be equal bit for bit.

    Returns:
        ``[(sequential, key, module)]`` to put back (empty when nothing was fused).
    """
    others = digital_post_ops(model, fusable)
    if not fusable and not others:
        return []
    with torch.no_grad():
        ref = model(probe)
    saved = []
    for lid, (post, skip) in fusable.items():
        states[lid].post = post
        for parent, key in skip:
            saved.append((parent, key, parent._modules[key]))
            parent._modules[key] = nn.Identity()
    for parent, key, replacement in others:
        saved.append((parent, key, parent._modules[key]))
        parent._modules[key] = replacement
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
