"""CorrectNet: error suppression and compensation for networks on RRAM crossbars.

The application layer of the project: models, datasets, training (plain,
Lipschitz-regularized, variation-aware), digital error compensators, the RL
placement search, the results store, plots and the ``correctnet`` command.

The Lipschitz helpers and every exception are importable from the top level
(``from correctnet import lipschitz_lambda, orthogonality_penalty, PlanError``); they are
loaded lazily so that ``correctnet --version`` does not import torch. The subpackages
(``workloads``, ``training``, ``compensation``, ``search``, ``sweep``, ``study``,
``commands``) are described in ``correctnet/README.md``.
"""

from __future__ import annotations

from correctnet.lazy import lazy_getattr

__version__ = "0.1.0"

_LAZY = {
    "lipschitz_lambda": "correctnet.training.lipschitz",
    "orthogonality_penalty": "correctnet.training.lipschitz",
    "spectral_norms": "correctnet.training.lipschitz",
    "normalized_penalty": "correctnet.training.lipschitz",
    "parseval_retract": "correctnet.training.lipschitz",
    "layer_diagnostics": "correctnet.training.diagnostics",
    **{name: "correctnet.errors" for name in (
        "CorrectNetError", "UsageError", "DatasetError", "CheckpointError", "TrainingError",
        "PlanError", "CandidateError", "SearchError", "SweepStoreError", "DistributedError",
        "RunConfigError", "UnreadableFileError", "DigitalBaselineError", "SeedStatsError")},
}

__all__ = ["__version__", *_LAZY]

__getattr__ = lazy_getattr(__name__, _LAZY)
