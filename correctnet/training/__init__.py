"""Training the networks.

Plain, Lipschitz-regularized and variation-aware training, the Lipschitz penalty and
constraint, and per-layer spectral diagnostics.

Modules: ``batchnorm``, ``config``, ``diagnostics``, ``lipschitz``, ``perturb``, ``resume``,
``train``, ``variants``.
Their public names are importable from here too; they load on first use (PEP 562), so
importing the package stays cheap.
"""

from __future__ import annotations

from correctnet.lazy import lazy_getattr

_LAZY = {
    "BIND_TOLERANCE": "correctnet.training.diagnostics",
    "conv_operator_norm": "correctnet.training.diagnostics",
    "layer_diagnostics": "correctnet.training.diagnostics",
    "format_diagnostics": "correctnet.training.diagnostics",
    "lipschitz_lambda": "correctnet.training.lipschitz",
    "orthogonality_penalty": "correctnet.training.lipschitz",
    "spectral_norms": "correctnet.training.lipschitz",
    "normalized_penalty": "correctnet.training.lipschitz",
    "parseval_retract": "correctnet.training.lipschitz",
    "RESUMABLE_CHANGES": "correctnet.training.resume",
    "RESUME_META_KEYS": "correctnet.training.resume",
    "resume_differences": "correctnet.training.resume",
    "epoch_checkpoint_path": "correctnet.training.resume",
    "resume_from": "correctnet.training.resume",
    "save_epoch": "correctnet.training.resume",
    "OPTIMIZERS": "correctnet.training.config",
    "CONSTRAINTS": "correctnet.training.train",
    "TrainConfig": "correctnet.training.config",
    "perturbed_weights": "correctnet.training.perturb",
    "train_model": "correctnet.training.train",
    "Variant": "correctnet.training.variants",
    "VARIANTS": "correctnet.training.variants",
    "METHODS": "correctnet.training.variants",
}

__all__ = list(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
