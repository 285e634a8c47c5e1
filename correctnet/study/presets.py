"""Settings of ``correctnet reproduce``: named presets as a frozen dataclass.

* ``quick``: LeNet-5 / Fashion-MNIST on a 2-core CPU in <= 15 minutes.
* ``deep``: VGG16_bn at width 1/8 on Fashion-MNIST on a 2-core CPU in about 2 h 30 min
  (``correctnet reproduce --model vgg16_bn --width 0.125 --preset deep``; budget below).
* ``paper``: the paper's settings for a GPU (full-width VGG16 on CIFAR-10/100, ``--model
  vgg16_bn --device cuda``).
* ``tiny``: seconds, for tests and the notebook (subsets everywhere).

Time budget of ``deep``, from ``python benchmarks/deep_budget.py --checkpoint PLAIN.pt`` on
this 2-core CPU (one torch thread as ``reproduce --threads 1``; Numba's Monte-Carlo on both
cores; nothing else running): a training batch of 128 images 0.066 s plain, 0.070 s
Lipschitz (penalty) and 0.071 s variation-aware, i.e. 31-33 s per 60k-image epoch;
compensation training 0.12 s per batch for six convs at ratio 1 (4.3 % overhead; smaller
plans are cheaper); one Monte-Carlo sample over the 10k test images 4.6 s (plain network,
ideal converters, 128x128 tiles), 7.2 s (six convs compensated), 4.9 s (8-bit DAC/ADC,
64x64 tiles).

=====================  ==================================================  ============
stage                  work                                                budget
=====================  ==================================================  ============
train_plain            12 epochs x 31 s                                    6 min
train_lipschitz        12 epochs x 33 s (+ per-epoch diagnostics)          7 min
train_variation_aware  warm start from plain, 3 epochs x 33 s, 4 clean     2 min
                       batch-norm recalibrations of 50 batches
evaluate_baselines     3 networks x 250 samples x 4.6 s (10k images)       58 min
candidates             2 networks (Lipschitz base, plain) x 16 tails x     2.5 min
                       10 samples x 0.46 s (1k images)
search                 RL 3 limits x 16 episodes: <= 48 plans x 5-8 s      <= 6.5 min
                       (1 epoch on 5k images + 10 samples on 1k images,
                       measured with PlanEvaluator for 0-3 layer plans);
                       random search with the same trained-plan count      <= 6.5 min
train_compensation     3 epochs on 60k images, <= 56 s each                <= 3 min
evaluate_correctnet    250 samples x <= 7.2 s                              <= 30 min
digital_baseline       2 chosen sets x 50 samples x 4.6 s, after screening 8 min +
                       layer sets at 10 samples x 0.46 s (1k images)       screening
calibration            3 networks x 50 samples (``digital_samples``) x     11.5 min
                       4.6 s
sweeps                 4 networks x 5 sigmas x 5 samples x 1k images;      2 min
                       2 tile sizes x 5 sigmas x 5 samples, 8-bit
report                 figures, cost table                                 < 1 min
total                                                                      ~2 h 25 min
                                                                           + screening
=====================  ==================================================  ============

The Monte-Carlo of the 250-sample evaluations is two thirds of it; a machine shared with
other jobs takes longer (Monte-Carlo uses every core). The fields ``va_warm_start``,
``va_lr``, ``va_sigma_ramp_epochs``, ``va_bn_stats`` and ``random_search_plans`` reach the
``train_variation_aware`` and ``search`` stages through :mod:`correctnet.study.deep_study`
(``variation_aware_overrides``, ``random_searches``).

Vary one with ``dataclasses.replace(get_preset("quick"), samples=50)``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from correctnet.errors import UsageError
from correctnet.training.variants import VARIANTS

__all__ = ["Preset", "PRESETS", "get_preset", "PRESET_NAMES"]


@dataclass(frozen=True)
class Preset:
    """All knobs of one reproduce run (epochs, subsets, samples, search space, sweeps)."""

    name: str
    """Preset name (stored in the run folder)."""
    epochs: int = 5
    """Training epochs of the plain network."""
    lipschitz_epochs: int = 5
    """Training epochs of the Lipschitz-regularized network."""
    va_epochs: int = 5
    """Training epochs of the variation-aware network."""
    batch_size: int = 128
    """Training batch size."""
    lr: float = 1e-3
    """Adam learning rate of network training."""
    train_limit: int | None = None
    """Training images used (None: the whole training split)."""
    lipschitz_beta: float = 0.1
    """beta of the per-layer-normalised orthogonality penalty (eq. 11, ``--constraint soft``)."""
    lipschitz_output_scale: bool = True
    """Learn a digital logit scale for the Lipschitz network (never varied)."""
    lipschitz_constraint: str = "soft"
    """Lipschitz constraint: ``"soft"`` (the penalty, ``lipschitz_beta``) or ``"hard"`` (every
    analog matrix held at lambda x orthogonal,
    :func:`~correctnet.training.lipschitz.parseval_retract`)."""
    lipschitz_digital_gain: str = "none"
    """Digital gains of the Lipschitz network after its analog layers
    (:mod:`correctnet.workloads.gains`): ``"none"``, ``"scalar"`` or ``"channel"``."""
    base: str = "lipschitz"
    """Network CorrectNet compensates: "lipschitz" (the paper), "plain" or "variation_aware"."""
    samples: int = 250
    """Monte-Carlo samples of the final evaluations (Table I)."""
    test_limit: int | None = None
    """Test images of the final evaluations (None: the whole test split)."""
    eval_batch: int = 1000
    """Batch size of evaluations."""
    tile: int = 128
    """Crossbar tile rows = columns."""
    threshold: float = 0.95
    """Candidate selection: accuracy drop below threshold * clean."""
    candidate_samples: int = 20
    """Monte-Carlo samples per point of the candidate curve (Fig. 9)."""
    candidate_test_limit: int | None = 2000
    """Test images of the candidate curve."""
    ratios: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0)
    """Action set: compensation ratios m/n (0 = none); per layer, ratios whose cost alone
    exceeds the largest limit are dropped."""
    limits: tuple[float, ...] = (0.01, 0.02, 0.03)
    """Overhead limits (fractions) of the RL search."""
    search_episodes: int = 30
    """RL episodes per limit."""
    search_episodes_per_batch: int = 1
    """RL episodes per policy update; a batch's plans are evaluated at once (in parallel with
    ``reproduce --workers``). 1: update after every episode."""
    exhaustive_max_plans: int = 64
    """Run the exhaustive search when the action space has at most this many plans."""
    search_epochs: int = 1
    """Compensation-training epochs per evaluated plan."""
    search_train_limit: int | None = 10000
    """Training images per evaluated plan."""
    search_samples: int = 20
    """Monte-Carlo samples per evaluated plan."""
    search_test_limit: int | None = 2000
    """Test images per evaluated plan."""
    final_epochs: int = 3
    """Compensation-training epochs of the chosen plan."""
    final_train_limit: int | None = None
    """Training images of the final compensation training (None: the whole split)."""
    comp_lr: float = 2e-3
    """Adam learning rate of compensation training."""
    sweep_sigmas: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
    """sigma values of the accuracy-vs-sigma figure."""
    sweep_samples: int = 10
    """Monte-Carlo samples per sweep point."""
    sweep_test_limit: int | None = 2000
    """Test images per sweep point."""
    tile_sizes: tuple[int, ...] = (32, 64, 128, 256)
    """Tile sizes of the sigma x tile-size map."""
    seed: int = 0
    """Seed of training, search and Monte-Carlo."""
    seeds: int = 1
    """Training seeds per network (``seed``, ``seed + 1``, ...); every network is evaluated on
    the same device samples, and the report pools them and pairs its comparisons by seed.
    The placement search runs on the first seed's networks; its plan is trained on each."""
    compensate_variation_aware: bool = True
    """Also compensate the variation-aware network (its own search, training and report row,
    ``variation_aware_compensated``); False skips those stages (they record ``skipped``)."""
    digital_samples: int | None = None
    """Device samples of the side studies, the digital-layer baselines' final evaluation and
    the mean-gain calibration check (None: ``samples``)."""
    plan_choice: str = "accuracy"
    """Final plan among the searches' solutions for the overhead limits: ``"accuracy"`` (the
    best mean accuracy, as the paper) or ``"reward"`` (the best search reward)."""
    line_resistance: float = 0.0
    """Ohm per word/bit-line segment of the sigma x tile-size map (0: ideal wires; > 0: every
    tile solved with IR drop, so larger tiles lose accuracy)."""
    cost_preset: str = "isaac-32nm"
    """:data:`mapping.COST_PRESETS` name of the report's energy / latency / area table."""
    width: float = 1.0
    """Channel multiplier of VGG16 (:data:`correctnet.workloads.models.VGG_WIDTHS`; ``reproduce
    --width`` overrides it); LeNet-5 needs 1."""
    va_warm_start: bool = False
    """Start the variation-aware network from the trained plain network's weights (``train_plain``
    first) instead of a fresh initialisation."""
    va_lr: float | None = None
    """Adam learning rate of variation-aware training (None: ``lr``)."""
    va_sigma_ramp_epochs: float = 0.0
    """Variation-aware training: sigma rises linearly from 0 to the study's sigma over this many
    epochs (:attr:`correctnet.training.TrainConfig.sigma_ramp_epochs`; 0: no ramp)."""
    va_bn_stats: str = "batch"
    """Batch-norm statistics of variation-aware training: "batch" (torch's train mode),
    "clean" or "noisy" (:attr:`correctnet.training.TrainConfig.bn_stats`)."""
    random_search_plans: int | None = 0
    """Trained plans per limit of the random-search baseline
    (:mod:`correctnet.search.random_search`):
    0 = none; None = as many as the RL search evaluated for that limit (equal cost)."""

    # Long (~70 lines): one check per preset field, in field order, each naming its field.
    def __post_init__(self) -> None:
        def bad(field: str, value, valid: str) -> UsageError:
            return UsageError(f"preset.{field} must be {valid}, got {value!r}")

        for field in ("epochs", "lipschitz_epochs", "va_epochs", "batch_size", "samples",
                      "eval_batch", "tile", "candidate_samples", "search_episodes",
                      "search_episodes_per_batch", "seeds",
                      "search_epochs", "search_samples", "final_epochs", "sweep_samples"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise bad(field, value, "an integer >= 1")
        for field in ("train_limit", "test_limit", "candidate_test_limit",
                      "search_train_limit", "search_test_limit", "sweep_test_limit",
                      "final_train_limit"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise bad(field, value, "None or an integer >= 1")
        for field in ("lr", "comp_lr", "va_lr"):
            value = getattr(self, field)
            if field == "va_lr" and value is None:
                continue
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not (math.isfinite(value) and value > 0)):
                raise bad(field, value, "a finite number > 0" + (" or None" * (field == "va_lr")))
        from correctnet.workloads.models import VGG_WIDTHS

        if (isinstance(self.width, bool) or not isinstance(self.width, (int, float))
                or not any(math.isclose(self.width, w) for w in VGG_WIDTHS)):
            raise bad("width", self.width, "one of 0.0625, 0.125, 0.25, 0.5, 1")
        if not isinstance(self.va_warm_start, bool):
            raise bad("va_warm_start", self.va_warm_start, "True or False")
        if (isinstance(self.va_sigma_ramp_epochs, bool)
                or not isinstance(self.va_sigma_ramp_epochs, (int, float))
                or not (math.isfinite(self.va_sigma_ramp_epochs)
                        and self.va_sigma_ramp_epochs >= 0)):
            raise bad("va_sigma_ramp_epochs", self.va_sigma_ramp_epochs, "a finite number >= 0")
        if self.va_bn_stats not in ("batch", "clean", "noisy"):
            raise bad("va_bn_stats", self.va_bn_stats, '"batch", "clean" or "noisy"')
        rs = self.random_search_plans
        if rs is not None and (isinstance(rs, bool) or not isinstance(rs, int) or rs < 0):
            raise bad("random_search_plans", rs, "None or an integer >= 0")
        if self.lipschitz_constraint not in ("soft", "hard"):
            raise bad("lipschitz_constraint", self.lipschitz_constraint, '"soft" or "hard"')
        from correctnet.workloads.gains import DIGITAL_GAINS

        if self.lipschitz_digital_gain not in DIGITAL_GAINS:
            raise bad("lipschitz_digital_gain", self.lipschitz_digital_gain,
                      " | ".join(f'"{g}"' for g in DIGITAL_GAINS))
        if not self.lipschitz_beta >= 0:
            raise bad("lipschitz_beta", self.lipschitz_beta, ">= 0")
        if self.base not in VARIANTS:
            raise bad("base", self.base, '"lipschitz", "plain" or "variation_aware"')
        if not 0 < self.threshold <= 1:
            raise bad("threshold", self.threshold, "in (0, 1]")
        if not self.ratios or any(not (math.isfinite(r) and r >= 0) for r in self.ratios):
            raise bad("ratios", self.ratios, "a non-empty tuple of finite ratios >= 0")
        if not self.limits or any(not 0 < x < 1 for x in self.limits):
            raise bad("limits", self.limits, "a non-empty tuple of fractions in (0, 1)")
        if not self.sweep_sigmas or any(s < 0 for s in self.sweep_sigmas):
            raise bad("sweep_sigmas", self.sweep_sigmas, "a non-empty tuple of sigmas >= 0")
        if not self.tile_sizes or any(t < 1 for t in self.tile_sizes):
            raise bad("tile_sizes", self.tile_sizes, "a non-empty tuple of sizes >= 1")
        if (isinstance(self.line_resistance, bool)
                or not isinstance(self.line_resistance, (int, float))
                or not (math.isfinite(self.line_resistance) and self.line_resistance >= 0)):
            raise bad("line_resistance", self.line_resistance, "a finite number of ohms >= 0")
        from mapping.cost import COST_PRESETS

        if self.cost_preset not in COST_PRESETS:
            raise bad("cost_preset", self.cost_preset,
                      f"one of {', '.join(sorted(COST_PRESETS))}")
        if self.digital_samples is not None and (
                not isinstance(self.digital_samples, int) or self.digital_samples < 1):
            raise bad("digital_samples", self.digital_samples, "None or an integer >= 1")
        if self.plan_choice not in ("accuracy", "reward"):
            raise bad("plan_choice", self.plan_choice, '"accuracy" or "reward"')
        if self.exhaustive_max_plans < 0:
            raise bad("exhaustive_max_plans", self.exhaustive_max_plans, ">= 0")

    def to_dict(self) -> dict:
        """JSON-safe dict (tuples become lists).

        Fields added after the first release (:data:`_LATER_FIELDS`) are left out while at
        their defaults, so the stored config of an older run folder still matches and it
        resumes; :meth:`from_dict` fills them in.
        """
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()
                if not (k in _LATER_FIELDS and v == _LATER_FIELDS[k])}

    @classmethod
    def from_dict(cls, d: dict) -> Preset:
        """Inverse of :meth:`to_dict`."""
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**{**_LATER_FIELDS, **kw})   # a field an older run lacks: its old value


#: Fields added after run folders were stored, with their defaults (the values older
#: runs used); omitted from :meth:`Preset.to_dict` while at them.
_LATER_FIELDS: dict[str, object] = {"line_resistance": 0.0, "cost_preset": "isaac-32nm",
                                    "search_episodes_per_batch": 1, "seeds": 1,
                                    "plan_choice": "reward", "compensate_variation_aware": False,
                                    "digital_samples": None, "width": 1.0,
                                    "va_warm_start": False, "va_lr": None,
                                    "va_sigma_ramp_epochs": 0.0, "va_bn_stats": "batch",
                                    "random_search_plans": 0, "lipschitz_constraint": "soft",
                                    "lipschitz_digital_gain": "none"}

#: Training epochs of the deep preset's plain and Lipschitz networks.
DEEP_EPOCHS = 12
#: Batch-norm statistics of variation-aware training in the deep and paper presets.
DEEP_BN_STATS = "clean"

PRESETS: dict[str, Preset] = {
    "quick": Preset(
        name="quick", epochs=3, lipschitz_epochs=3, va_epochs=5, seeds=3, samples=84,
        candidate_samples=10, candidate_test_limit=1000, ratios=(0.0, 1.0, 2.0),
        search_episodes=8, exhaustive_max_plans=18, search_epochs=1, search_train_limit=4000,
        search_samples=10, search_test_limit=1000, final_epochs=2, final_train_limit=30000,
        sweep_sigmas=(0.0, 0.2, 0.4, 0.5, 0.6), sweep_samples=8, sweep_test_limit=500,
        tile_sizes=(32, 64, 128),
    ),
    "deep": Preset(
        name="deep", width=0.125, epochs=DEEP_EPOCHS, lipschitz_epochs=DEEP_EPOCHS,
        va_epochs=3, va_warm_start=True, va_lr=3e-4, va_sigma_ramp_epochs=1.0,
        va_bn_stats=DEEP_BN_STATS, lipschitz_beta=0.1, base="lipschitz",
        samples=250, test_limit=None, candidate_samples=10, candidate_test_limit=1000,
        search_episodes=16, exhaustive_max_plans=0, search_epochs=1,
        search_train_limit=5000, search_samples=10, search_test_limit=1000,
        random_search_plans=None, final_epochs=3, final_train_limit=None,
        sweep_sigmas=(0.0, 0.2, 0.4, 0.5, 0.6), sweep_samples=5, sweep_test_limit=1000,
        tile_sizes=(64, 128), compensate_variation_aware=False, digital_samples=50,
    ),
    "paper": Preset(
        name="paper", epochs=60, lipschitz_epochs=60, va_epochs=20, lr=1e-3,
        va_warm_start=True, va_lr=3e-4, va_sigma_ramp_epochs=5.0, va_bn_stats=DEEP_BN_STATS,
        candidate_samples=50, candidate_test_limit=None, search_episodes=60,
        exhaustive_max_plans=0, search_epochs=3, search_train_limit=None,
        search_samples=30, search_test_limit=5000, random_search_plans=None,
        final_epochs=20, sweep_samples=30, sweep_test_limit=None, eval_batch=500,
    ),
    "tiny": Preset(
        name="tiny", epochs=1, lipschitz_epochs=1, va_epochs=1, train_limit=512, samples=3,
        seeds=2, random_search_plans=2,
        test_limit=200, eval_batch=200, candidate_samples=2, candidate_test_limit=100,
        ratios=(0.0, 1.0), search_episodes=3, exhaustive_max_plans=4, search_train_limit=128,
        search_samples=2, search_test_limit=100, final_epochs=1, final_train_limit=512,
        sweep_sigmas=(0.0, 0.5),
        sweep_samples=2, sweep_test_limit=100, tile_sizes=(128,),
    ),
}

#: Names accepted by ``--preset`` (``tiny`` is for tests and notebooks).
PRESET_NAMES: tuple[str, ...] = tuple(PRESETS)


def get_preset(name: str) -> Preset:
    """The preset called ``name``.

    Raises:
        UsageError: unknown name.
    """
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}; valid: {', '.join(PRESET_NAMES)}")
    return PRESETS[name]
