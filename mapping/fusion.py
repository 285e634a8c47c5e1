"""Fusing the digital batch-norm / ReLU / max-pool that follow a crossbar conv into its kernel.

Directly after a crossbar conv inside a plain ``nn.Sequential`` (exact types, no hooks), an
eval-mode ``nn.BatchNorm2d`` with running statistics, then an ``nn.ReLU``, then a floor-mode
``nn.MaxPool2d`` (each optional, in this order) are applied by the conv's fused kernel
(:class:`mapping.fastpath.PostOps`) and replaced by ``nn.Identity`` for the run, then put back.

The check on a probe batch (:func:`install_fusion`):

* ReLU and max-pool alone are exact: the logits must be equal bit for bit, else nothing is
  fused;
* a folded batch-norm (:func:`mapping.fastpath.batchnorm_affine`) reproduces torch's CPU
  kernel where torch contracts it into fused multiply-adds (its AVX2 / AVX-512 builds;
  measured bit-identical there) but is not guaranteed bit-identical elsewhere, so with a fold
  the logits must agree to :data:`BN_RTOL`: ``|fused - torch| <= BN_RTOL * (|torch| +
  max |torch|)``; if they do not, the fusion is retried without folding (the batch-norm
  runs in torch, exactly as before).

Before those, a module that is a digital correction of a crossbar conv (its
``fused_correction()`` returns a :class:`mapping.correction.ConvCorrection`, e.g. a
CorrectNet compensated layer) is replaced by its base conv, whose kernel then applies the
correction (pool, generator, ReLU, compensator) and, after the module in a plain
``nn.Sequential``, a foldable batch-norm (VGG's conv-BN-ReLU layout), the ``nn.ReLU`` and
the ``nn.MaxPool2d`` before writing its output. Its float32 sums run in another order than
torch's, so each is checked on the probe against the module's own output on the same input,
to the same :data:`BN_RTOL` (:func:`_agrees`), and the fold against the batch-norm's output;
a correction that disagrees stays in torch, a fold that disagrees leaves the batch-norm
(and what follows it) in torch.
The whole-network check above then runs on the model with the corrections in place (their
different last bits can flip a downstream ADC / DAC code, which a logits check could not
tell from an error).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from . import postop_kernels
from .correction import correction_of
from .evaluation import hooked_forward
from .fastpath import PostOps, batchnorm_affine
from .layers import CrossbarConv2d

#: Relative tolerance of the probe where float32 arithmetic differs from torch's: a folded
#: batch-norm, and each digital correction (:mod:`mapping.correction`) against its module.
BN_RTOL = 1e-5


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


def foldable_batchnorm(m: nn.Module, conv: nn.Module) -> bool:
    """True for an ``nn.BatchNorm2d`` that is a fixed per-channel affine after ``conv``.

    Exact type (not a subclass or a parametrized module), eval mode, running statistics
    tracked and present, float32 CPU tensors, ``conv.out_channels`` features, no hooks.
    """
    if type(m) is not nn.BatchNorm2d or m.training or not _no_hooks(m):
        return False
    if not m.track_running_stats or m.running_mean is None or m.running_var is None:
        return False
    tensors = [m.running_mean, m.running_var] + [t for t in (m.weight, m.bias) if t is not None]
    return (m.num_features == conv.out_channels
            and all(t.dtype == torch.float32 and t.device.type == "cpu" for t in tensors))


def fusable(model: nn.Module, entries, *, fold_batchnorm: bool = True) -> dict:
    """Digital batch-norm / ``nn.ReLU`` / ``nn.MaxPool2d`` that directly follow a crossbar conv.

    Only inside a plain ``nn.Sequential`` (its ``forward`` feeds each module's output to the
    next one only), exact module types, no hooks, floor-mode pools without indices; a
    batch-norm only if :func:`foldable_batchnorm` (and ``fold_batchnorm``).

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
            j, affine, skip = i + 1, None, []
            if (fold_batchnorm and j < len(items)
                    and foldable_batchnorm(items[j][1], m)):
                affine = batchnorm_affine(items[j][1])
                skip.append((parent, items[j][0]))
                j += 1
            relu, pool, more = _post_at(parent, items, j)
            skip += more
            if skip:
                found[id(m)] = (PostOps(relu, pool, affine), skip)
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
        postop_kernels.relu_maxpool(xn, int(self.post.relu), self._pool, out)
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


def corrections(model: nn.Module, entries) -> list:
    """Modules that say (``fused_correction()``) they are a digital correction of a crossbar conv.

    Only modules without hooks whose :class:`mapping.correction.ConvCorrection` names one of
    the run's crossbar convs (``entries``); inside a plain ``nn.Sequential`` a foldable
    batch-norm right after the module (:func:`foldable_batchnorm`), then an ``nn.ReLU`` /
    ``nn.MaxPool2d``, are taken as its post-ops.

    Returns:
        ``[(parent, key, module, spec, bn, relu, pool, [(sequential, key), ...])]``, ``bn``
        the batch-norm's ``(key, module)`` or None (its key is not in the list).
    """
    ours = {id(layer) for _, layer in entries}
    found, bases = [], set()
    for parent in model.modules():
        items = list(parent._modules.items())
        for i, (key, m) in enumerate(items):
            if m is None or not _no_hooks(m):
                continue
            spec = correction_of(m)
            if spec is None or id(spec.base) not in ours or id(spec.base) in bases:
                continue
            bn, relu, pool, keys = None, False, None, []
            if type(parent) is nn.Sequential:
                j = i + 1
                if j < len(items) and foldable_batchnorm(items[j][1], spec.base):
                    bn, j = items[j], j + 1
                relu, pool, keys = _post_at(parent, items, j)
            bases.add(id(spec.base))
            found.append((parent, key, m, spec, bn, relu, pool, keys))
    return found


def _install_corrections(model, states, entries, probe, saved: list) -> set:
    """Fuse each correction that agrees with its module into its base conv's kernel.

    The probe batch runs once as the model is, recording each module's input and output
    (and the output of a batch-norm after it); a correction is fused when the base's kernel
    with the correction as its post-op gives, on that input, the module's output within
    :data:`BN_RTOL` (:func:`_agrees`). A batch-norm after the module is folded in too when
    the kernel with the correction and the fold gives the batch-norm's output within the
    same tolerance; only then are a ReLU / max-pool after it fused (they follow the
    batch-norm). The correction is then installed: the module replaced by its base (whose
    post-ops are the correction, the fold, the ReLU / max-pool), the folded modules replaced
    by ``nn.Identity``. Modules the probe does not reach, or whose pool does not fit the
    input, stay as they are.

    Args:
        model: The network.
        states: ``{id(layer): FusedExecution}`` of the run.
        entries: The run's ``(name, crossbar layer)`` pairs.
        probe: The probe batch.
        saved: Gets ``(parent, key, module)`` to put back, as each swap is made.

    Returns:
        The ids of the crossbar convs now running a correction (no other post-ops may be
        fused into them).
    """
    found = corrections(model, entries)
    if not found:
        return set()
    seen, seen_bn = {}, {}

    def record(store, i):
        def hook(_m, args, out):
            store.setdefault(i, (args[0] if args else None, out))
        return hook

    hooks = [f[2].register_forward_hook(record(seen, i)) for i, f in enumerate(found)]
    hooks += [f[4][1].register_forward_hook(record(seen_bn, i))
              for i, f in enumerate(found) if f[4] is not None]
    hooked_forward(model, probe, hooks)
    bases = set()
    for i, (parent, key, m, spec, bn, relu, pool, keys) in enumerate(found):
        x, ref = seen.get(i, (None, None))
        if (not isinstance(x, torch.Tensor) or not isinstance(ref, torch.Tensor)
                or x.dim() != 4 or not spec.fits(x.shape[2], x.shape[3])):
            continue
        st = states[id(spec.base)]
        if not _fused_agrees(st, spec, x, ref, PostOps(correction=spec)):
            continue
        affine = batchnorm_affine(bn[1]) if bn is not None else None
        if affine is not None and not _fused_agrees(
                st, spec, x, seen_bn.get(i, (None, None))[1],
                PostOps(affine=affine, correction=spec)):
            affine = None
        if bn is not None and affine is None:
            relu, pool, keys = False, None, []      # they follow the batch-norm in torch
        elif bn is not None:
            keys = [(parent, bn[0])] + keys
        st.post = PostOps(relu, pool, affine, correction=spec)
        saved.append((parent, key, m))
        parent._modules[key] = spec.base
        for p, k in keys:
            saved.append((p, k, p._modules[k]))
            p._modules[k] = nn.Identity()
        bases.add(id(spec.base))
    return bases


def _fused_agrees(st, spec, x, ref, post: PostOps) -> bool:
    """Whether ``spec.base`` with ``post`` gives ``ref`` on ``x`` within :data:`BN_RTOL`.

    Leaves ``st.post`` None when it does not.
    """
    if not isinstance(ref, torch.Tensor):
        st.post = None
        return False
    st.post = post
    with torch.no_grad():
        got = spec.base(x)
    if _agrees(got, ref, exact=False):
        return True
    st.post = None
    return False


def install_fusion(model, states, entries, probe) -> list:
    """Fuse corrections, then skip the fusable modules and swap in :class:`NumbaPostOps`.

    First the digital corrections (:func:`corrections`, each checked against its module
    within :data:`BN_RTOL`, with the ReLU / max-pool after it); then, on that model, the
    modules after a crossbar conv (:func:`fusable`) are fused into its kernel and the other
    ReLU / max-pool groups run :class:`NumbaPostOps`. Without a folded batch-norm the probe's
    logits must be equal bit for bit; with one, within :data:`BN_RTOL` (module docstring),
    else the fusion is tried again without folding.

    Returns:
        ``[(parent, key, module)]`` to put back (empty when nothing was fused).
    """
    saved: list = []
    try:
        bases = _install_corrections(model, states, entries, probe, saved)
        # a conv running a correction keeps that post-op only
        rest = [(n, layer) for n, layer in entries if id(layer) not in bases]
        return saved + _install_post_ops(model, states, rest, probe)
    except BaseException:
        remove_fusion(states, saved)
        raise


def _install_post_ops(model, states, entries, probe) -> list:
    """:func:`install_fusion`'s post-op part (:func:`fusable`, :func:`digital_post_ops`)."""
    ref = None
    for fold in (True, False):
        found = fusable(model, entries, fold_batchnorm=fold)
        folded = any(post.affine is not None for post, _ in found.values())
        if fold and not folded:
            continue                    # the same as the pass without folding
        others = digital_post_ops(model, found)
        if not found and not others:
            return []
        if ref is None:
            with torch.no_grad():
                ref = model(probe)
        saved = _swap_in(states, found, others)
        with torch.no_grad():
            out = model(probe)
        if _agrees(out, ref, exact=not folded):
            return saved
        # a structure the checks above did not foresee: undo this pass only
        remove_fusion({lid: states[lid] for lid in found}, saved)
    return []


def _swap_in(states, found, others) -> list:
    saved = []
    for lid, (post, skip) in found.items():
        states[lid].post = post
        for parent, key in skip:
            saved.append((parent, key, parent._modules[key]))
            parent._modules[key] = nn.Identity()
    for parent, key, replacement in others:
        saved.append((parent, key, parent._modules[key]))
        parent._modules[key] = replacement
    return saved


def _agrees(out: torch.Tensor, ref: torch.Tensor, *, exact: bool) -> bool:
    """Bit for bit, or within :data:`BN_RTOL` of the largest logit (NaN never agrees)."""
    if exact or out.shape != ref.shape:
        return torch.equal(out, ref)
    if not (torch.isfinite(out).all() and torch.isfinite(ref).all()):
        return False
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    return bool(((out - ref).abs() <= BN_RTOL * (ref.abs() + scale)).all())


def remove_fusion(states, saved) -> None:
    """Put the skipped modules back and clear every strategy's fused ops."""
    for parent, key, module in reversed(saved):
        parent._modules[key] = module
    for st in states.values():
        st.post = None
