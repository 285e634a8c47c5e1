"""Monte-Carlo accuracy over device samples (Eldebiky et al., DATE 2023: 250 samples).

``run_monte_carlo`` draws ``samples`` device samples (``program(model, rng_i, layers=...)``
with ``rng_i = default_rng(SeedSequence(seed).spawn(samples)[i])``) and reports the test
accuracy of each. On CPU it runs the fast path (:mod:`mapping.fastpath`):

* the data are materialised once, in chunks, and reused by every sample;
* the input of the first analog layer is computed once per chunk and cached; its DAC
  quantisation is shared by a group of samples whose first-layer products run in one
  fused kernel call (several device samples per pass over the input);
* every other crossbar layer runs the fused im2col + DAC + MAC + ADC kernel (no im2col
  matrix in memory);
* an eval-mode ``nn.BatchNorm2d``, ``nn.ReLU`` and/or ``nn.MaxPool2d`` that directly follow
  a crossbar conv inside a plain ``nn.Sequential`` (exact types, no hooks, floor mode) are
  fused into the conv kernel and skipped (replaced by ``nn.Identity`` for the run, then put
  back); a probe batch checks the fusion (:mod:`mapping.fusion`: bit-identical logits, or
  within ``fusion.BN_RTOL`` where a batch-norm is folded, else it is not folded). Max and
  ReLU are exact, so they change no result;
* a module that is a digital correction of a crossbar conv (``fused_correction()``,
  :mod:`mapping.correction`) runs inside that conv's kernel with the ReLU / max-pool after
  it, each checked against the module on the probe within ``fusion.BN_RTOL``.

Every image is computed by one thread in a fixed order, so the accuracies do not depend on
Numba's thread count; torch runs single-threaded inside the loop.

Elsewhere (CUDA, read noise) it programs each sample and evaluates the model as it is.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .batched import batched_run
from .batched import group_size as batched_group
from .control import LayerSelection, _layers_or_fail, program, select_layers
from .errors import DataError, MappingError, NumericalError
from .evaluation import (_count_correct, _inputs_fit, _model_device, evaluate_accuracy,
                         hooked_forward, materialise)
from .execution import FusedExecution
from .fastpath import fused_forward, sample_weights
from .fusion import install_fusion, remove_fusion
from .threads import torch_single_threaded

#: Bytes allowed for first-layer outputs of one chunk times one sample group.
_GROUP_BYTES = 256 * 2**20
#: Bytes allowed for the effective weights of one sample group.
_STATE_BYTES = 256 * 2**20
#: Names accepted by ``run_monte_carlo(engine=...)``.
_ENGINES = ("auto", "fused", "reference", "batched")


@dataclass(frozen=True)
class MonteCarloResult:
    """Accuracy over device samples.

    Attributes:
        accuracies: Accuracy of every sample, fractions in [0, 1], shape ``(samples,)``.
        mean: Mean of ``accuracies``.
        std: Standard deviation of ``accuracies`` (population, ``ddof=0``).
        samples: Number of device samples.
        seed: Seed the samples were drawn from.
        layers: Names of the varied crossbar layers.
        n_images: Images evaluated per sample.
        seconds: Wall-clock time of the run.
        engine: How the samples ran: ``"fused"`` (the fast path of :mod:`mapping.fastpath`),
            ``"reference"`` (program each sample, then evaluate the model as it is) or
            ``"batched"`` (several samples per torch pass, :mod:`mapping.batched`).
        fused_layers: Names of the crossbar layers whose outputs came from the fused kernel
            (every crossbar layer the forward pass reaches, wherever it sits in the module
            tree, e.g. inside a digital wrapper); empty for the reference engine.
    """

    accuracies: np.ndarray
    mean: float
    std: float
    samples: int
    seed: int
    layers: list[str] = field(default_factory=list)
    n_images: int = 0
    seconds: float = 0.0
    engine: str = "reference"
    fused_layers: list[str] = field(default_factory=list)

    @classmethod
    def from_accuracies(cls, accuracies: Iterable[float], **kw) -> MonteCarloResult:
        """Build from per-sample accuracies (mean and std computed here)."""
        acc = np.asarray(list(accuracies), dtype=np.float64)
        return cls(accuracies=acc, mean=float(acc.mean()), std=float(acc.std()),
                   samples=int(acc.size), **kw)

    def to_dict(self) -> dict:
        """JSON-safe dict (accuracies as a list of fractions)."""
        return {"mean": self.mean, "std": self.std, "samples": self.samples, "seed": self.seed,
                "layers": list(self.layers), "n_images": self.n_images,
                "seconds": self.seconds, "engine": self.engine,
                "accuracies": [float(a) for a in self.accuracies]}

    def __str__(self) -> str:
        return (f"accuracy {100 * self.mean:.2f}% +- {100 * self.std:.2f}% over {self.samples} "
                f"device samples ({self.n_images} images)")


def _rechunk(batches, images_per_chunk: int):
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    return [(x[i:i + images_per_chunk], y[i:i + images_per_chunk])
            for i in range(0, len(y), images_per_chunk)]


class _Stop(Exception):
    pass


def _first_layer_plan(model, entries, x):
    """Which crossbar layer runs first, and is each called exactly once per forward?"""
    calls = []
    hooked_forward(model, x, [layer.register_forward_pre_hook(lambda m, a, i=i: calls.append(i))
                              for i, (_, layer) in enumerate(entries)])
    once = sorted(calls) == list(range(len(entries)))
    return (calls[0] if calls else None), once


def _capture_input(model, layer, x):
    """The input ``layer`` receives when ``model`` runs on ``x`` (the forward stops there)."""
    box = {}

    def grab(_layer, inp):
        box["x"] = inp[0].detach().clone()
        raise _Stop

    handle = layer.register_forward_pre_hook(grab)
    try:
        with torch.no_grad():
            model(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    return box["x"]


def run_monte_carlo(model: nn.Module, data: Iterable, *, samples: int = 250, seed: int = 0,
                    layers: LayerSelection = None, progress: bool = True,
                    group_size: int | None = None, engine: str = "auto",
                    device: torch.device | str | None = None) -> MonteCarloResult:
    # Over 60 lines because of its docstring; the body (checks, one dispatch) is ~40 lines.
    """Accuracy of a converted model over ``samples`` device samples.

    Args:
        model: A converted model (:func:`mapping.convert_to_crossbar`); left programmed with
            the last sample.
        data: Iterable of ``(inputs, labels)`` batches (read once).
        samples: Device samples (>= 1).
        seed: Seed of the samples (int >= 0); the same seed gives the same accuracies.
        layers: Varied layers (see :func:`mapping.program`); the others are exact.
        progress: Show a tqdm bar over samples.
        group_size: Samples sharing one first-layer pass (fast path) or one forward pass
            (batched engine); default chosen by memory.
        engine: ``"auto"`` (the fused fast path where it applies -- CPU, no read noise --
            else the reference loop), ``"fused"`` (the fast path, or an error) or
            ``"reference"`` (program each sample and evaluate the model as it is, e.g. to
            cross-check the fast path). Both give the same accuracies for the same seed up
            to rare one-step ADC flips (summation order). Digital modules anywhere in the
            model (e.g. a compensator wrapped around a crossbar layer) run as plain torch
            in both; :attr:`MonteCarloResult.engine` and ``fused_layers`` say what ran.
            ``"batched"`` (:mod:`mapping.batched`): ``S`` samples per torch pass, the
            default on a CUDA ``device``.
        device: Where to run (the model is moved there); default the model's device.

    Returns:
        The :class:`MonteCarloResult`.

    Raises:
        DataError: empty or malformed data (see :func:`materialise`), inputs that do not fit
            the model, ``samples`` < 1 or ``seed`` not an int >= 0.
        NumericalError: a device sample gives NaN/inf logits (e.g. sigma so large that
            ``exp(theta)`` overflows); no accuracy is reported.
        LayerSelectionError: no crossbar layers or a bad ``layers``.
        MappingError: ``engine`` is not one of the four names, ``"fused"`` is asked for
            a model the fast path cannot run (on CUDA, or with read noise), or
            ``"batched"`` for a model with read noise.
    """
    if engine not in _ENGINES:
        raise MappingError(f"engine must be one of {', '.join(map(repr, _ENGINES))}, "
                           f"got {engine!r}")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise DataError(f"samples must be an int >= 1, got {samples!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed must be an int >= 0, got {seed!r}")
    t0 = time.perf_counter()
    entries = _layers_or_fail(model)
    chosen = select_layers(entries, layers)
    names = [entries[i][0] for i in sorted(chosen)]
    seqs = np.random.SeedSequence(seed).spawn(samples)
    batches = materialise(data)
    n_images = sum(len(y) for _, y in batches)
    was_training = model.training
    model.eval()
    if device is not None:
        model.to(device)
    no_noise = all(layer.config.device.read_noise == 0 for _, layer in entries)
    batched = engine == "batched" or (engine == "auto" and _model_device(model).type != "cpu"
                                      and no_noise)
    if batched and not no_noise:
        raise MappingError("engine='batched' models no read noise (it stacks xbar's programmed "
                           "cells); use engine='reference'")
    fast = (not batched and _model_device(model).type == "cpu"
            and all(layer.config.device.read_noise == 0 for _, layer in entries)
            and all(p.device.type == "cpu" for p in model.parameters()))
    if engine == "fused" and not fast:
        raise MappingError("engine='fused' needs a CPU model without read noise (the fused "
                           "kernels run on the CPU and model no read noise); use "
                           "engine='auto' or 'reference'")
    fast = fast and engine != "reference"
    fused: list[str] = []
    bar = tqdm(total=samples, desc="Monte-Carlo", disable=not progress, leave=False)
    try:
        if batched:
            acc = batched_run(model, entries, batches, seqs, layers, _model_device(model),
                              group_size or batched_group(entries, samples), bar)
        elif fast:
            acc, fused = _fast_run(model, entries, batches, seqs, layers, group_size, bar)
        else:
            acc = []
            for seq in seqs:
                program(model, np.random.default_rng(seq), layers=layers)
                acc.append(evaluate_accuracy(model, batches))
                bar.update(1)
    finally:
        bar.close()
        model.train(was_training)
    return MonteCarloResult.from_accuracies(acc, seed=seed, layers=names, n_images=n_images,
                                            seconds=time.perf_counter() - t0,
                                            engine=("batched" if batched else "fused" if fast
                                                    else "reference"),
                                            fused_layers=fused)


def _fast_run(model, entries, batches, seqs, layers, group_size, bar
              ) -> tuple[list[float], list[str]]:
    """The fast path: ``(accuracies, names of the layers the fused kernel ran)``.

    Every crossbar layer gets its own :class:`FusedExecution` for the run; the strategies
    the layers held before are put back afterwards.
    """
    states, before = {}, {}
    for _, layer in entries:
        layer.program_ideal()           # crossbars rebuilt from the current weights
        before[id(layer)] = layer._execution
        states[id(layer)] = FusedExecution()
    with _inputs_fit(batches[0][0]):
        first, once = _first_layer_plan(model, entries, batches[0][0][:1])
    saved = []
    # Numba kernels and torch ops alternate: torch single-threaded (mapping.threads).
    with torch_single_threaded():
        try:
            for _, layer in entries:
                st = states[id(layer)]
                layer.execution = st
                st.pin(layer, sample_weights(layer)[None])
            if once:                        # a conv called twice would apply its ops twice
                saved = install_fusion(model, states, entries, batches[0][0][:4])
            for st in states.values():
                st.calls = 0                # count the sample loop only, not the probes above
            acc = _fast_loop(model, entries, batches, seqs, layers, group_size, bar, states,
                             first, once)
            return acc, [name for name, layer in entries if states[id(layer)].calls > 0]
        finally:
            remove_fusion(states, saved)
            for _, layer in entries:
                layer.execution = before[id(layer)]
                states[id(layer)].override = None


def _finite_weights(name: str, w: np.ndarray) -> np.ndarray:
    """``w`` unchanged if finite; the fast path's ADC would otherwise hide NaN/inf."""
    if not np.isfinite(w).all():
        bad = int(w.size - np.count_nonzero(np.isfinite(w)))
        raise NumericalError(f"a device sample gives {bad} NaN/inf effective weight(s) in "
                             f"layer {name!r}, so no accuracy can be reported (is the "
                             "variation sigma so large that exp(theta) overflows float32?)")
    return w


def _fast_loop(model, entries, batches, seqs, layers, group_size, bar, states, first, once
               ) -> list[float]:
    """Samples in groups; the first layer's output of a group comes from one kernel call.

    Longer than ~60 lines: the group set-up, the chunk loop and the per-sample pinning share
    many locals; splitting it would pass them all around.
    """
    n_images = sum(len(y) for _, y in batches)
    weights = sum(layer.crossbar.shape[0] * layer.crossbar.shape[1] for _, layer in entries)
    if group_size is None:
        group_size = int(max(1, min(8, _STATE_BYTES // max(1, 4 * weights))))
    share = first is not None and once and group_size > 1
    chunk_images = 1024
    if share:
        first_layer = entries[first][1]
        with torch.no_grad():
            probe = _capture_input(model, first_layer, batches[0][0][:1])
            st0 = states[id(first_layer)].statics
            out_elems = fused_forward(st0, first_layer, probe, sample_weights(first_layer)[None],
                                      post=states[id(first_layer)].post).numel()
        chunk_images = int(max(1, min(4096, _GROUP_BYTES // (4 * out_elems * group_size))))
    chunks = _rechunk(batches, chunk_images)
    cached = ([_capture_input(model, first_layer, x) for x, _ in chunks] if share else None)
    # the first layer's outputs of a group, one chunk at a time, in memory reused across
    # chunks and groups (fresh memory of this size costs page faults on every call)
    buffer = (np.empty(out_elems * group_size * max(len(x) for x, _ in chunks), np.float32)
              if share else None)
    accs: list[float] = []
    for g0 in range(0, len(seqs), group_size):
        group = seqs[g0:g0 + group_size]
        wts = []                                  # per sample: {layer id: (1, K, O)}
        for seq in group:
            program(model, np.random.default_rng(seq), layers=layers)
            wts.append({id(layer): _finite_weights(name, sample_weights(layer)[None])
                        for name, layer in entries})
        correct = np.zeros(len(group), dtype=np.int64)
        if share:
            stack = np.ascontiguousarray(np.concatenate([w[id(first_layer)] for w in wts]))
        with torch.no_grad():
            for c, (x, y) in enumerate(chunks):
                pre = None
                if share:
                    pre = fused_forward(states[id(first_layer)].statics, first_layer,
                                        cached[c], stack, post=states[id(first_layer)].post,
                                        buffer=buffer)
                for s, w in enumerate(wts):
                    for _, layer in entries:
                        states[id(layer)].wt = w[id(layer)]     # pinned (pin() synced it)
                    if pre is not None:
                        states[id(first_layer)].override = pre[s]
                    correct[s] += _count_correct(model(x), y)
        accs.extend(float(k) / n_images for k in correct)
        bar.update(len(group))
    return accs
