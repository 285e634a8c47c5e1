"""The settings of one training run: :class:`TrainConfig` and the names it accepts.

``method``: ``"plain"``, ``"lipschitz"`` (CorrectNet eq. 9-11: the per-layer-normalised
orthogonality penalty, ``constraint="soft"``, or the Parseval retraction, ``"hard"``) or
``"variation-aware"`` (fresh lognormal variation every batch, optionally warm-started, with a
sigma ramp and chip-like batch-norm statistics). :func:`correctnet.training.train.train_model`
runs it; :mod:`correctnet.training.resume` compares it with a checkpoint's.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from correctnet.errors import UsageError
from correctnet.training.lipschitz import lipschitz_lambda
from correctnet.training.variants import METHODS

__all__ = ["TrainConfig", "OPTIMIZERS", "CONSTRAINTS", "BN_STATS", "METHODS"]

OPTIMIZERS: tuple[str, ...] = ("adam", "sgd")
#: Lipschitz constraints accepted by :class:`TrainConfig`.
CONSTRAINTS: tuple[str, ...] = ("soft", "hard")
#: Batch-norm statistics of variation-aware training (:attr:`TrainConfig.bn_stats`).
BN_STATS: tuple[str, ...] = ("batch", "clean", "noisy")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run."""

    method: str = "plain"
    """``"plain"``, ``"lipschitz"`` or ``"variation-aware"``."""
    epochs: int = 10
    """Number of passes over the training set (>= 1)."""
    lr: float = 1e-3
    """Learning rate (> 0)."""
    batch_size: int = 128
    """Examples per batch, used by the CLI to build loaders (>= 1)."""
    optimizer: str = "adam"
    """``"adam"`` or ``"sgd"`` (momentum 0.9)."""
    sigma: float = 0.5
    """Lognormal variation std of ``theta`` (unitless, >= 0): sets lambda (lipschitz) or the
    sampled variation (variation-aware)."""
    beta: float = 0.1
    """Weight of the per-layer-normalised orthogonality penalty (>= 0; lipschitz, soft)."""
    constraint: str = "soft"
    """Lipschitz constraint: ``"soft"`` (penalty) or ``"hard"`` (retraction; lipschitz only)."""
    k: float = 1.0
    """Target Lipschitz constant in lambda (> 0; lipschitz only)."""
    weight_decay: float = 0.0
    """L2 weight decay (>= 0)."""
    seed: int = 0
    """Seed of initial shuffling and variation draws."""
    output_scale: float = 1.0
    """Initial digital logit scale (> 0); 1.0 with ``learn_output_scale=False`` is a no-op."""
    learn_output_scale: bool = False
    """Learn the digital logit scale."""
    output_scale_lr: float = 1e-2
    """Learning rate of the learned log-scales (> 0): the logit scale and the per-layer digital
    gains (:mod:`correctnet.workloads.gains`); their own parameter group, no weight decay, so
    they can grow by orders of magnitude within an epoch or two."""
    keep_epoch_checkpoints: bool = True
    """Besides ``checkpoint_path``, keep ``<stem>-epochNNN<suffix>`` for every epoch."""
    init_checkpoint: str | None = None
    """Warm start: before the first epoch, load the weights (and batch-norm statistics) of
    this checkpoint, which must hold the same model (e.g. the plain network before
    variation-aware fine-tuning); None: start from the model as given."""
    sigma_ramp_epochs: float = 0.0
    """Variation-aware only: the sampled sigma rises linearly from 0 to ``sigma`` over this
    many epochs (per batch; fractions allowed), then stays at ``sigma``; 0: ``sigma`` from the
    first batch."""
    bn_stats: str = "batch"
    """Variation-aware only. ``"batch"``: torch's train mode (each batch normalised by its own
    statistics, running statistics accumulated from perturbed passes). ``"clean"`` /
    ``"noisy"``: batch-norm layers normalise by their running statistics during training, as
    on the chip, and these are recalibrated (:func:`~correctnet.batchnorm.recalibrate_batchnorm`)
    before the first epoch and after every epoch, with the nominal weights (``"clean"``) or a
    fresh variation sample per batch at the current sigma (``"noisy"``)."""
    bn_calibration_batches: int = 50
    """Training batches per batch-norm recalibration (``bn_stats`` clean / noisy)."""

    def __post_init__(self) -> None:
        def bad(field: str, value: Any, valid: str) -> UsageError:
            return UsageError(f"train.{field} must be {valid}, got {value!r}")

        if self.method not in METHODS:
            raise bad("method", self.method, " | ".join(METHODS))
        if self.constraint not in CONSTRAINTS:
            raise bad("constraint", self.constraint, " | ".join(CONSTRAINTS))
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", self.optimizer, " | ".join(OPTIMIZERS))
        if self.bn_stats not in BN_STATS:
            raise bad("bn_stats", self.bn_stats, " | ".join(BN_STATS))
        if self.method != "variation-aware" and (self.bn_stats != "batch"
                                                 or self.sigma_ramp_epochs != 0):
            raise UsageError(f"train.bn_stats and train.sigma_ramp_epochs apply to method "
                             f"variation-aware only, got method {self.method!r} with bn_stats "
                             f"{self.bn_stats!r}, sigma_ramp_epochs {self.sigma_ramp_epochs!r}")
        if (isinstance(self.bn_calibration_batches, bool)
                or not isinstance(self.bn_calibration_batches, int)
                or self.bn_calibration_batches < 1):
            raise bad("bn_calibration_batches", self.bn_calibration_batches, "an integer >= 1")
        if self.init_checkpoint is not None and (not isinstance(self.init_checkpoint, str)
                                                 or not self.init_checkpoint):
            raise bad("init_checkpoint", self.init_checkpoint, "None or a file path")
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise bad("epochs", self.epochs, "an integer >= 1")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise bad("batch_size", self.batch_size, "an integer >= 1")
        for field, low, strict in (("lr", 0.0, True), ("sigma", 0.0, False),
                                   ("sigma_ramp_epochs", 0.0, False),
                                   ("beta", 0.0, False), ("k", 0.0, True),
                                   ("weight_decay", 0.0, False), ("output_scale", 0.0, True),
                                   ("output_scale_lr", 0.0, True)):
            value = getattr(self, field)
            ok = isinstance(value, (int, float)) and math.isfinite(value) and (
                value > low if strict else value >= low)
            if not ok:
                raise bad(field, value, f"a finite number {'>' if strict else '>='} {low:g}")
        if self.method == "lipschitz" and self.lam ** 2 < 1.2e-38:     # float32's smallest
            raise bad("sigma", self.sigma, f"small enough that lambda^2 (eq. 10) is a normal "
                      f"float32 for lipschitz training (lambda = {self.lam:.3g})")

    @property
    def lam(self) -> float:
        """``lambda = lipschitz_lambda(sigma, k)`` (eq. 10)."""
        return lipschitz_lambda(self.sigma, self.k)

    def sigma_at(self, progress: float) -> float:
        """Sampled sigma after ``progress`` epochs of training (the linear ramp, then ``sigma``)."""
        if self.sigma_ramp_epochs <= 0:
            return float(self.sigma)
        return float(self.sigma) * min(1.0, max(0.0, progress) / self.sigma_ramp_epochs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of the fields.

        Fields added later (:data:`_LATER_FIELDS`) are left out while at their defaults, so a
        checkpoint written before they existed still resumes with the same settings.
        """
        return {k: v for k, v in dataclasses.asdict(self).items()
                if not (k in _LATER_FIELDS and v == _LATER_FIELDS[k])}


#: ``TrainConfig`` fields added after checkpoints were written, with their defaults.
_LATER_FIELDS: dict[str, Any] = {"init_checkpoint": None, "sigma_ramp_epochs": 0.0,
                                 "bn_stats": "batch", "bn_calibration_batches": 50}
