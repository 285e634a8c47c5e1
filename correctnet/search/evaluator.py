"""The search stage's plan evaluation as a picklable, self-contained callable.

:class:`PlanEvaluator` carries what evaluating a plan needs (the base checkpoint's path, the
dataset, the hardware model and the preset's search fields) and nothing tied to a process, so
the same object evaluates plans in the driver or on a Dask worker
(:func:`correctnet.distributed.map_evaluator`). Each plan is trained with its own seed,
``derive_seed(preset.seed, "search", PlanCache.key(plan))``, and evaluated with the preset's
Monte-Carlo seed, so a plan's ``(mean, std)`` does not depend on which process evaluates it
or what it evaluated before. Workers must see the run folder's checkpoint at ``checkpoint``
(the same machine, or a shared filesystem); they never write to the run folder.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass
from typing import Any

__all__ = ["PlanEvaluator"]


@functools.lru_cache(maxsize=2)
def _base_network(path: str, model: str, stamp: tuple[int, int]) -> Any:
    """The base network of a checkpoint (cached per process; ``train_compensation`` copies).

    ``stamp`` is the file's ``(mtime_ns, size)``: a checkpoint rewritten at the same path (a
    run folder reused in a notebook) is loaded again.
    """
    from correctnet.workloads.checkpoint import load_checkpoint

    net, _ = load_checkpoint(path, expect_model=model)
    return net.eval()


@functools.lru_cache(maxsize=4)
def _split(dataset: str, split: str, data_dir: str | None, limit: int | None) -> Any:
    from correctnet.workloads.data import load_dataset

    return load_dataset(dataset, split, data_dir=data_dir, limit=limit)


@dataclass(frozen=True)
class PlanEvaluator:
    """``plan -> (mean, std)``: train a plan's compensation briefly, then its Monte-Carlo.

    Training: ``preset.search_epochs`` epochs on the first ``preset.search_train_limit``
    training images (shuffled in the same order for every plan) under ``sigma``. Evaluation:
    ``preset.search_samples`` device samples (1 if ``sigma == 0``) on the first
    ``preset.search_test_limit`` test images, seed ``preset.seed``; accuracies are fractions.
    """

    checkpoint: str
    """Path of the base network's checkpoint (read, never written)."""
    model: str
    """Model name the checkpoint must hold."""
    dataset: str
    """Dataset name (:data:`correctnet.workloads.data.DATASET_NAMES`)."""
    sigma: float
    """Lognormal device variation of training and evaluation."""
    preset: dict
    """The run's preset as :meth:`correctnet.study.presets.Preset.to_dict` (only the search fields,
    ``tile``, ``batch_size``, ``eval_batch``, ``comp_lr`` and ``seed`` are read)."""
    data_dir: str | None = None
    """Dataset directory (CIFAR)."""
    device: str | None = None
    """Torch device ("cuda": training and Monte-Carlo on the GPU; None: CPU)."""
    threads: int | None = None
    """Compute threads this process sets before evaluating (None: leave as is)."""

    def __call__(self, plan: dict[str, float]) -> tuple[float, float]:
        """Evaluate ``plan`` (``{layer: ratio}``).

        Returns:
            ``(mean, std)`` of the Monte-Carlo accuracies (fractions).

        Raises:
            CheckpointError: ``checkpoint`` cannot be read here (e.g. a worker that does not
                share the run folder's filesystem).
        """
        import torch

        from correctnet.compensation.train import CompensationConfig
        from correctnet.compensation.train import train_compensation
        from correctnet.workloads.data import make_loader
        from correctnet.search.cache import PlanCache
        from correctnet.seeding import derive_seed
        from mapping import run_monte_carlo, set_backend
        from xbar import XbarConfig

        if self.threads:
            from correctnet.distributed import set_compute_threads

            set_compute_threads(self.threads)
        p = self.preset
        try:
            stat = os.stat(self.checkpoint)
        except OSError:
            import socket

            from correctnet.errors import CheckpointError

            raise CheckpointError(
                f"base checkpoint {self.checkpoint} cannot be read on {socket.gethostname()}: "
                "Dask workers read it from the run folder, which must be on a filesystem "
                "they share with the driver") from None
        base = _base_network(str(self.checkpoint), self.model, (stat.st_mtime_ns, stat.st_size))
        train = make_loader(_split(self.dataset, "train", self.data_dir,
                                   p["search_train_limit"]),
                            p["batch_size"], shuffle=True, seed=p["seed"] + 1)
        config = dataclasses.replace(   # own initialisation, the same data order for all plans
            CompensationConfig(epochs=p["search_epochs"], lr=p["comp_lr"]),
            seed=derive_seed(p["seed"], "search", PlanCache.key(plan)),
            data_seed=derive_seed(p["seed"], "search", "data"))
        hardware = XbarConfig.rram_lognormal(float(self.sigma), n_rows=p["tile"],
                                             n_cols=p["tile"])   # ideal DAC/ADC
        analog, _ = train_compensation(base, plan, train, hardware, config, device=self.device,
                                       progress=False)
        if self.device is not None and torch.device(self.device).type == "cuda":
            set_backend(analog, "torch")
            analog.to(self.device)
        test = make_loader(_split(self.dataset, "test", self.data_dir, p["search_test_limit"]),
                           p["eval_batch"])
        samples = 1 if self.sigma == 0 else p["search_samples"]
        res = run_monte_carlo(analog, test, samples=samples, seed=p["seed"], progress=False)
        return float(res.mean), float(res.std)
