"""What the study runs on.

The models (LeNet-5, VGG16) and their per-layer digital gains, the datasets, and checkpoints.

Modules: ``checkpoint``, ``data``, ``gains``, ``models``, ``probe``.
Their public names are importable from here too; they load on first use (PEP 562), so
importing the package stays cheap.
"""

from __future__ import annotations

from correctnet.lazy import lazy_getattr

_LAZY = {
    "FORMAT": "correctnet.workloads.checkpoint",
    "VERSION": "correctnet.workloads.checkpoint",
    "save_checkpoint": "correctnet.workloads.checkpoint",
    "read_checkpoint": "correctnet.workloads.checkpoint",
    "load_checkpoint": "correctnet.workloads.checkpoint",
    "DATASET_NAMES": "correctnet.workloads.data",
    "SYSTEM_FASHION_MNIST": "correctnet.workloads.data",
    "dataset_info": "correctnet.workloads.data",
    "load_dataset": "correctnet.workloads.data",
    "make_loader": "correctnet.workloads.data",
    "MODEL_NAMES": "correctnet.workloads.models",
    "OutputScale": "correctnet.workloads.models",
    "LeNet5": "correctnet.workloads.models",
    "VGG16": "correctnet.workloads.models",
    "build_model": "correctnet.workloads.models",
    "set_output_scale": "correctnet.workloads.models",
    "output_scale_of": "correctnet.workloads.models",
    "DIGITAL_GAINS": "correctnet.workloads.gains",
    "DigitalGain": "correctnet.workloads.gains",
    "add_digital_gains": "correctnet.workloads.gains",
    "digital_gain_of": "correctnet.workloads.gains",
    "digital_gains": "correctnet.workloads.gains",
    "gain_cost": "correctnet.workloads.gains",
}

__all__ = list(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
