"""What every stage of the study works with: one :class:`StudyContext`.

It holds the run's arguments and preset, the run store, cached datasets and loaders, the trained
networks (loaded from the run folder) and the Monte-Carlo evaluation on the study's hardware.
The stages (:mod:`correctnet.study.stages`) take it as their only argument; the pipeline
(:mod:`correctnet.study.pipeline`) builds it and runs the stages in order.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from correctnet.errors import UsageError
from correctnet.study.presets import Preset
from correctnet.study.runstore import RunStore

__all__ = ["StudyContext", "COMPENSATED", "compensated_base", "compensated_names"]

#: The compensated networks of the study, by report name.
COMPENSATED: tuple[str, ...] = ("correctnet", "variation_aware_compensated")


def compensated_base(preset: Preset, name: str) -> str:
    """The network a compensated variant is built on.

    ``"correctnet"``: ``preset.base`` (the paper's pipeline: ``"lipschitz"``);
    ``"variation_aware_compensated"``: ``"variation_aware"``.
    """
    if name == "correctnet":
        return preset.base
    if name == "variation_aware_compensated":
        return "variation_aware"
    raise UsageError(f"unknown compensated network {name!r}; valid: {', '.join(COMPENSATED)}")


def compensated_names(preset: Preset) -> tuple[str, ...]:
    """The compensated networks this preset builds.

    ``variation_aware_compensated`` only with ``preset.compensate_variation_aware``.
    """
    return tuple(n for n in COMPENSATED
                 if n == "correctnet" or preset.compensate_variation_aware)


def _seed_suffix(seed_index: int) -> str:
    return "" if seed_index == 0 else f"_seed{seed_index}"


class StudyContext:
    """One reproduce run in the folder ``out``: data, networks, Monte-Carlo, the run store.

    Args:
        model: Model name (:data:`correctnet.workloads.models.MODEL_NAMES`).
        dataset: Dataset name (:data:`correctnet.workloads.data.DATASET_NAMES`).
        sigma: Device variation of the study.
        out: Run folder.
        preset: Settings.
        device: Torch device ("cpu", "cuda"): training, and with "cuda" also Monte-Carlo (torch
            backend on the GPU); otherwise Monte-Carlo runs on the numba CPU backend.
        data_dir: Dataset directory (CIFAR).
        progress: Show progress bars.
        log: Called with one line per finished stage (the CLI prints it).
        client: ``dask.distributed.Client`` (``--workers`` / ``--scheduler``): the search
            stage evaluates independent plans on its workers; None: in-process. Results are
            the same either way, so it is not part of the stored run configuration.
        worker_threads: Compute threads each worker task sets (None: leave the workers').

    Raises:
        UsageError: ``sigma`` is not a finite number >= 0.
        RunConfigError: ``out`` holds a run started with other arguments.
    """

    def __init__(self, model: str, dataset: str, sigma: float, out: str | Path, preset: Preset,
                 *, device: str | None = None, data_dir: str | None = None,
                 progress: bool = True, log: Callable[[str], None] | None = None,
                 client=None, worker_threads: int | None = None) -> None:
        from correctnet.workloads.data import dataset_info

        if not (math.isfinite(sigma) and sigma >= 0):
            raise UsageError(f"--sigma must be a finite number >= 0, got {sigma!r}")
        self.model_name, self.dataset, self.sigma = model, dataset, float(sigma)
        self.preset = preset
        self.info = dataset_info(dataset)
        self.device = device
        self.data_dir = data_dir
        self.progress = progress
        self.log = log or (lambda line: None)
        self.client, self.worker_threads = client, worker_threads
        self.store = RunStore(out, {"model": model, "dataset": dataset, "sigma": self.sigma,
                                    "preset": preset.to_dict()})
        self._data: dict = {}

    # ------------------------------------------------------------------ data
    def dataset_split(self, split: str, limit: int | None):
        """Cached ``TensorDataset`` of a split, first ``limit`` images."""
        from correctnet.workloads.data import load_dataset

        key = (split, limit)
        if key not in self._data:
            self._data[key] = load_dataset(self.dataset, split, data_dir=self.data_dir,
                                           limit=limit)
        return self._data[key]

    def loader(self, split: str, limit: int | None, *, train: bool = False, seed: int = 0):
        """A DataLoader over a split (shuffled training batches or evaluation batches)."""
        from correctnet.workloads.data import make_loader

        ds = self.dataset_split(split, limit)
        if train:
            return make_loader(ds, self.preset.batch_size, shuffle=True, seed=seed)
        return make_loader(ds, self.preset.eval_batch)

    # ------------------------------------------------------------------ networks
    @property
    def seeds(self) -> range:
        """Training-seed indices ``0 .. preset.seeds - 1`` (index 0 is the preset's seed)."""
        return range(self.preset.seeds)

    def checkpoint(self, variant: str, seed_index: int = 0) -> Path:
        """Checkpoint file of a trained network (``<variant>.pt``, ``<variant>_seed<k>.pt``)."""
        return self.store.path(f"{variant}{_seed_suffix(seed_index)}.pt")

    def network(self, variant: str, seed_index: int = 0) -> nn.Module:
        """Load a trained network (float, eval mode) of one training seed."""
        from correctnet.workloads.checkpoint import load_checkpoint

        model, _ = load_checkpoint(self.checkpoint(variant, seed_index),
                                   expect_model=self.model_name)
        return model.eval()

    def compensated_file(self, name: str, seed_index: int = 0) -> Path:
        """File of a compensated network (``correctnet.pt``, ``correctnet_seed1.pt``, ...)."""
        return self.store.path(f"{name}{_seed_suffix(seed_index)}.pt")

    def compensated_network(self, name: str = "correctnet", seed_index: int = 0) -> nn.Module:
        """A compensated float network (its base network of that seed + trained compensators).

        Args:
            name: ``"correctnet"`` (base: ``preset.base``) or ``"variation_aware_compensated"``.
            seed_index: Training seed index.
        """
        from correctnet.compensation.train import load_compensation

        model, _ = load_compensation(self.compensated_file(name, seed_index),
                                     self.network(compensated_base(self.preset, name),
                                                  seed_index))
        return model.eval()

    def correctnet_network(self) -> nn.Module:
        """CorrectNet of the first training seed (base + trained compensators)."""
        return self.compensated_network("correctnet", 0)

    # ------------------------------------------------------------------ evaluation
    def crossbar(self, sigma: float, tile: int | None = None, *, bits: int | None = None,
                 line_resistance: float = 0.0, calibrate: bool = False):
        """The study's crossbar config at ``sigma``.

        :func:`correctnet.sweep.simulate.point_config`, i.e.
        :meth:`xbar.XbarConfig.rram_lognormal` with weight-level variation (the paper's
        model) and square tiles of ``tile`` (default: the preset's), plus
        ``line_resistance``.

        Args:
            sigma: Std of ``theta`` in ``w = w0 exp(theta)`` (>= 0).
            tile: Tile rows = columns (None: ``preset.tile``).
            bits: DAC and ADC resolution (None: ideal, the paper's).
            line_resistance: Ohm per word/bit-line segment (0: ideal wires; > 0: IR drop).
            calibrate: Mean-gain calibration (:attr:`xbar.DeviceConfig.mean_gain_calibration`).

        Returns:
            The ``xbar.XbarConfig``.
        """
        from correctnet.sweep.simulate import point_config

        cfg = point_config(float(sigma), tile or self.preset.tile, adc_bits=bits,
                           dac_bits=bits, level="weight", line_resistance=line_resistance)
        if calibrate:
            cfg = dataclasses.replace(
                cfg, device=dataclasses.replace(cfg.device, mean_gain_calibration=True))
        return cfg

    def hardware(self, sigma: float, tile: int | None = None):
        """:meth:`crossbar` with the preset's line resistance and ideal DAC/ADC."""
        return self.crossbar(sigma, tile, line_resistance=self.preset.line_resistance)

    def monte_carlo(self, model: nn.Module, *, sigma: float, samples: int,
                    limit: int | None, tile: int | None = None, seed: int | None = None,
                    layers=None, bits: int | None = None, converted: bool = False,
                    line_resistance: float = 0.0, calibrate: bool = False) -> dict:
        """Monte-Carlo accuracy of ``model`` on the first ``limit`` test images.

        ``line_resistance`` (ohm per wire segment) > 0 solves every tile with IR drop;
        ``calibrate`` programs with mean-gain calibration (:meth:`crossbar`).

        Returns:
            ``{"mean", "std", "accuracies"}`` (fractions).
        """
        from mapping import convert_to_crossbar, run_monte_carlo

        analog = model
        if not converted:
            cfg = self.crossbar(sigma, tile, bits=bits, line_resistance=line_resistance,
                                calibrate=calibrate)
            analog = convert_to_crossbar(model, cfg)
        if self.device is not None and torch.device(self.device).type == "cuda":
            from mapping import set_backend

            set_backend(analog, "torch")  # Monte-Carlo on the GPU: programmed cells, torch maths
            analog.to(self.device)
        data = self.loader("test", limit)
        if sigma == 0 and layers is None:
            samples = 1
        res = run_monte_carlo(analog, data, samples=samples,
                              seed=self.preset.seed if seed is None else seed,
                              layers=layers, progress=self.progress)
        return {"mean": float(res.mean), "std": float(res.std),
                "accuracies": [float(a) for a in res.accuracies]}

    def clean_accuracy(self, model: nn.Module, limit: int | None) -> float:
        """Float (digital, variation-free) accuracy (:func:`mapping.evaluate_accuracy`)."""
        from mapping import evaluate_accuracy

        return float(evaluate_accuracy(model, self.loader("test", limit), device="cpu"))

    def replace_preset(self, **changes) -> Preset:
        """A copy of the preset with ``changes`` (for notebooks)."""
        return dataclasses.replace(self.preset, **changes)
