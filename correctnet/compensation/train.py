"""Training CorrectNet's digital compensators under device variation.

The base network is frozen. The compensated network is converted to
crossbar layers with :func:`mapping.convert_to_crossbar` (generators and
compensators are marked digital, so they stay torch modules), switched to the
differentiable torch backend, and before every batch a fresh lognormal
variation sample is drawn into every analog layer with :func:`mapping.resample`.
Only generator/compensator parameters are updated, with the original
cross-entropy loss. Training therefore sees the same maths as Monte-Carlo
inference (which runs on the numba backend afterwards).

Speed: training runs mapping's ``"ideal"`` execution (``mapping.set_execution``): torch
maths, and with an ideal DAC and ADC (the paper's model) a crossbar convolution runs as one
``F.conv2d`` on its effective weight (the ``resample`` draw) instead of ``unfold(x) @ W_eff.T``,
several times faster on CPU. Layers with DAC/ADC quantisation run the torch execution.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from correctnet.compensation.modules import (
    ConvGenerator,
    PlanError,
    compensated_layers,
    compensation_parameters,
    freeze_except,
    insert_compensation,
)
from correctnet.compensation.plan import normalize_plan
from correctnet.errors import CheckpointError, TrainingError, UsageError
from correctnet.fileio import atomic_write
from correctnet.seeding import derive_seed, isolated_rng

__all__ = [
    "CompensationConfig",
    "train_compensation",
    "compensation_state",
    "save_compensation",
    "load_compensation",
]


@dataclass(frozen=True)
class CompensationConfig:
    """Hyper-parameters of compensation training."""

    epochs: int = 2
    """Passes over the training data (>= 1)."""
    lr: float = 2e-3
    """Adam learning rate (> 0)."""
    weight_decay: float = 0.0
    """L2 weight decay on generator/compensator parameters (>= 0)."""
    seed: int = 0
    """Seed of everything random in training: the compensators' initial weights, the
    variation drawn for every batch, and (for a loader with a ``torch.Generator``) the
    shuffling of every epoch, each from :func:`correctnet.seeding.derive_seed` of it."""
    data_seed: int | None = None
    """Seed of the shuffling alone (None: ``seed``). The search gives every plan the same one,
    so all plans see the training images in the same order."""

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise UsageError(f"compensation.epochs must be an integer >= 1, got {self.epochs!r}")
        if not self.lr > 0:
            raise UsageError(f"compensation.lr must be > 0, got {self.lr!r}")
        if not self.weight_decay >= 0:
            raise UsageError(
                f"compensation.weight_decay must be >= 0, got {self.weight_decay!r}")

    def to_dict(self) -> dict:
        """JSON-safe dict."""
        return asdict(self)


def train_compensation(
    model: nn.Module,
    plan: Mapping[str, float],
    train_data: Iterable,
    xbar_config,
    config: CompensationConfig = CompensationConfig(),
    *,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> tuple[nn.Module, dict]:
    """Insert compensation per ``plan`` into a copy of ``model`` and train it under variation.

    Args:
        model: Trained float network (left unchanged).
        plan: ``{layer_name: ratio}`` (ratio <= 0: none).
        train_data: Iterable of ``(inputs, labels)`` batches; a ``torch.Generator`` in its
            ``.generator`` (a shuffling DataLoader) is reseeded from ``config.seed`` and the
            epoch, so the result depends on the seed only, not on earlier use of the loader.
        xbar_config: :class:`xbar.XbarConfig` of the analog layers (sets sigma, tiles, ...).
        config: Training hyper-parameters.
        device: Torch device for training (``None``: CPU).
        progress: Show a progress bar per epoch.

    Returns:
        ``(analog, history)``: the crossbar network holding the trained compensators, switched
        back to the numba backend (call :func:`mapping.program` / ``run_monte_carlo`` on it),
        and ``{"loss": [per epoch], "seconds": float, "plan", "steps": optimizer steps}``.

    Raises:
        TrainingError: a batch loss is NaN or infinite (training stops at once).
    """
    from mapping import convert_to_crossbar, resample, set_execution

    dev = torch.device(device) if device is not None else torch.device("cpu")
    plan = normalize_plan(plan)
    with isolated_rng(derive_seed(config.seed, "compensator-init")):
        comp = insert_compensation(model, plan)  # nn init draws from the global generator
    comp = comp.to(dev)
    params = compensation_parameters(comp)
    freeze_except(comp, params)
    analog = convert_to_crossbar(comp, xbar_config, inplace=True)
    history: dict = {"loss": [], "seconds": 0.0, "plan": plan, "steps": 0}
    t0 = time.perf_counter()
    params = compensation_parameters(analog)
    if params:
        # torch maths, ideal-periphery convs as one conv2d (mapping's "ideal" execution)
        set_execution(analog, "ideal")
        analog.to(dev)
        analog.eval()  # frozen base: batch-norm statistics and dropout stay fixed
        opt = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
        gen = torch.Generator(device=dev).manual_seed(config.seed)
        shuffle = getattr(train_data, "generator", None)
        for epoch in range(config.epochs):
            if isinstance(shuffle, torch.Generator):
                data_seed = config.seed if config.data_seed is None else config.data_seed
                shuffle.manual_seed(derive_seed(data_seed, "shuffle", epoch))
            total = batches = 0.0
            bar = tqdm(train_data, desc=f"compensation {epoch + 1}/{config.epochs}",
                       leave=False, disable=None if progress else True)
            for x, y in bar:
                x, y = x.to(dev), y.to(dev)
                resample(analog, gen)
                loss = F.cross_entropy(analog(x), y)
                if not bool(torch.isfinite(loss.detach())):
                    raise TrainingError(
                        f"compensation training diverged in epoch {epoch + 1}: the loss is "
                        f"{float(loss.detach())!r} at batch {int(batches) + 1} "
                        f"(lr {config.lr:g}, sigma {xbar_config.device.sigma:g}); nothing was "
                        "saved; lower --lr or --sigma")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach())
                batches += 1
                history["steps"] += 1
            history["loss"].append(total / max(batches, 1))
        resample(analog, None, layers=[])  # forget the last draw: every layer ideal again
        analog.cpu()
        set_execution(analog, "reference")
    history["seconds"] = time.perf_counter() - t0
    return analog, history


def compensation_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Generator/compensator tensors of ``model`` keyed by their full parameter names."""
    state = {}
    for name, wrapper in compensated_layers(model).items():
        for part in ("generator", "compensator"):
            for key, value in getattr(wrapper, part).state_dict().items():
                state[f"{name}.{part}.{key}"] = value.detach().cpu().clone()
    return state


def save_compensation(path: str | os.PathLike, model: nn.Module, plan: Mapping[str, float],
                      meta: dict | None = None) -> Path:
    """Write plan + compensator weights atomically (:func:`correctnet.fileio.atomic_write`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pools = {m.pool for m in model.modules() if isinstance(m, ConvGenerator)}
    payload = {"format": "correctnet-compensation", "plan": normalize_plan(plan),
               "state": compensation_state(model), "meta": dict(meta or {}),
               "generator_pool": pools.pop() if len(pools) == 1 else "receptive"}
    with atomic_write(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_compensation(path: str | os.PathLike, base: nn.Module) -> tuple[nn.Module, dict]:
    """Rebuild a compensated float network from ``base`` and a file of :func:`save_compensation`.

    Returns:
        ``(model, payload)``; ``model`` is a compensated copy of ``base`` (convert it to
        crossbars for analog inference).

    Raises:
        CheckpointError: missing or foreign file, or weights that do not fit ``base``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"compensation file {path} not found")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != "correctnet-compensation":
        raise CheckpointError(f"{path} is not a correctnet compensation file")
    try:
        # files from before the receptive-field pool were trained with the adaptive one
        model = insert_compensation(base, payload["plan"],
                                    pool=payload.get("generator_pool", "adaptive"))
        missing, unexpected = model.load_state_dict(payload["state"], strict=False)
    except (PlanError, RuntimeError) as exc:
        raise CheckpointError(f"compensation {path} does not fit this network: {exc}") from exc
    wanted = set(compensation_state(model))
    if unexpected or wanted & set(missing):
        lost = sorted(wanted & set(missing))[:3]
        raise CheckpointError(f"compensation {path} does not fit this network "
                              f"(unexpected {unexpected[:3]}, missing {lost})")
    return model, payload
