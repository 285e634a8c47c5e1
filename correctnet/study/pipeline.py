"""``correctnet reproduce``: the whole CorrectNet study as resumable stages.

Stages (in order; each stores its result in ``RUN/stages/<name>.json`` when done):

1. ``train_plain``, ``train_lipschitz``, ``train_variation_aware``: the three networks
   (:func:`correctnet.training.train_model`, checkpoint per epoch, so an interrupted
   training resumes at its last epoch).
2. ``evaluate_baselines``: clean accuracy and Monte-Carlo accuracy (``preset.samples`` samples
   on the test set) of the three networks under ``sigma``.
3. ``candidates``: variation in layers ``i..L`` for decreasing ``i`` (Fig. 9), for the base
   network (Lipschitz) and the plain one; candidates of the base network.
4. ``search``: exhaustive search where the action space is small, then REINFORCE for each
   overhead limit; every plan evaluation (train compensation briefly + Monte-Carlo on a
   subset) is cached in ``RUN/plans.json``.
5. ``train_compensation``: the best plan trained with ``preset.final_epochs`` on the whole
   training set (``RUN/correctnet.pt``).
6. ``evaluate_correctnet``: clean and Monte-Carlo accuracy of the compensated network.
7. ``sweeps``: accuracy vs sigma for every network, sigma x tile size for CorrectNet.
8. ``report``: ``RUN/report.md``, ``RUN/report.json`` and PNG figures.

Exact resume: every random draw of a stage comes from a generator seeded from the preset's
seed and the stage's name (plus the plan, for each plan the search trains; see
:mod:`correctnet.seeding`), and each stage runs with the global RNGs seeded from
``derive_seed(seed, stage)`` and restored afterwards. A run interrupted anywhere (even by
``kill -9``) and resumed in a fresh process therefore gives the same files, bit for bit, as an
uninterrupted one (on the same machine with the same ``--threads``: the thread count changes
the order of floating-point sums).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from correctnet.compensation.modules import format_plan
from correctnet.hardware import xbar_config
from correctnet.study.presets import Preset
from correctnet.study.runstore import RunStore
from correctnet.seeding import derive_seed, isolated_rng
from correctnet.variants import VARIANTS

__all__ = ["STAGES", "VARIANTS", "Pipeline", "xbar_config"]

STAGES: tuple[str, ...] = (
    "train_plain", "train_lipschitz", "train_variation_aware", "evaluate_baselines",
    "candidates", "search", "train_compensation", "evaluate_correctnet", "sweeps", "report",
)


class Pipeline:
    """One reproduce run in the folder ``out``.

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
        before_stage: Test hook, called with each stage's name before it runs.
        client: ``dask.distributed.Client`` (``--workers`` / ``--scheduler``): the search
            stage evaluates independent plans on its workers; None: in-process. Results are
            the same either way, so it is not part of the stored run configuration.
        worker_threads: Compute threads each worker task sets (None: leave the workers').

    Raises:
        RunConfigError: ``out`` holds a run started with other arguments.
    """

    def __init__(self, model: str, dataset: str, sigma: float, out: str | Path, preset: Preset,
                 *, device: str | None = None, data_dir: str | None = None,
                 progress: bool = True, log: Callable[[str], None] | None = None,
                 before_stage: Callable[[str], None] | None = None, client=None,
                 worker_threads: int | None = None) -> None:
        from correctnet.workloads.data import dataset_info

        if not (math.isfinite(sigma) and sigma >= 0):
            from correctnet.errors import UsageError
            raise UsageError(f"--sigma must be a finite number >= 0, got {sigma!r}")
        self.model_name, self.dataset, self.sigma = model, dataset, float(sigma)
        self.preset = preset
        self.info = dataset_info(dataset)
        self.device = device
        self.data_dir = data_dir
        self.progress = progress
        self.log = log or (lambda line: None)
        self.before_stage = before_stage
        self.client, self.worker_threads = client, worker_threads
        self.store = RunStore(out, {"model": model, "dataset": dataset, "sigma": self.sigma,
                                    "preset": preset.to_dict()})
        self._data: dict = {}

    # ------------------------------------------------------------------ helpers
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

    def checkpoint(self, variant: str) -> Path:
        """Checkpoint file of a trained network."""
        return self.store.path(f"{variant}.pt")

    def network(self, variant: str) -> nn.Module:
        """Load a trained network (float, eval mode)."""
        from correctnet.workloads.checkpoint import load_checkpoint

        model, _ = load_checkpoint(self.checkpoint(variant), expect_model=self.model_name)
        return model.eval()

    def correctnet_network(self) -> nn.Module:
        """The compensated float network (base + trained compensators)."""
        from correctnet.compensation.train import load_compensation

        model, _ = load_compensation(self.store.path("correctnet.pt"),
                                     self.network(self.preset.base))
        return model.eval()

    def hardware(self, sigma: float, tile: int | None = None):
        """The study's crossbar config (:func:`xbar_config`) at ``sigma``.

        Uses this preset's tile size (unless ``tile`` is given) and line resistance, with
        ideal DAC/ADC.
        """
        p = self.preset
        return xbar_config(sigma, tile or p.tile, line_resistance=p.line_resistance)

    def monte_carlo(self, model: nn.Module, *, sigma: float, samples: int,
                    limit: int | None, tile: int | None = None, seed: int | None = None,
                    layers=None, bits: int | None = None, converted: bool = False,
                    line_resistance: float = 0.0) -> dict:
        """Monte-Carlo accuracy of ``model`` on the first ``limit`` test images.

        ``line_resistance`` (ohm per wire segment) > 0 solves every tile with IR drop.

        Returns:
            ``{"mean", "std", "accuracies"}`` (fractions).
        """
        from mapping import convert_to_crossbar, run_monte_carlo

        analog = model
        if not converted:
            cfg = xbar_config(sigma, tile or self.preset.tile, dac_bits=bits, adc_bits=bits,
                              line_resistance=line_resistance)
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
        """Float (digital, variation-free) accuracy."""
        from correctnet.training.train import evaluate

        return float(evaluate(model, self.loader("test", limit), "cpu"))

    # ------------------------------------------------------------------ running
    def run(self, *, until: str | None = None) -> dict:
        """Run every unfinished stage (up to and including ``until``).

        Returns:
            ``{stage: result}`` of the finished stages.
        """
        from correctnet.study import stages as pipeline_stages

        results = {}
        for name in STAGES:
            if self.store.done(name):
                results[name] = self.store.result(name)
                self.log(f"[{name}] done earlier ({self.store.seconds(name):.1f} s), skipped")
            else:
                if self.before_stage is not None:
                    self.before_stage(name)
                t0 = time.perf_counter()
                with isolated_rng(derive_seed(self.preset.seed, name)):
                    result = getattr(pipeline_stages, name)(self)
                seconds = time.perf_counter() - t0
                self.store.finish(name, result, seconds)
                results[name] = result
                self.log(f"[{name}] {_summary(name, result)} ({seconds:.1f} s)")
                if name == "report":
                    from correctnet.study.report import finalize_stage_times

                    finalize_stage_times(self)
            if name == until:
                break
        return results

    def stage_seconds(self) -> dict[str, float]:
        """``{stage: seconds}`` of the finished stages."""
        return {n: self.store.seconds(n) for n in STAGES if self.store.done(n)}

    def replace_preset(self, **changes) -> Preset:
        """A copy of the preset with ``changes`` (for notebooks)."""
        return dataclasses.replace(self.preset, **changes)


def _summary(name: str, result: dict) -> str:
    """One short human line for a finished stage."""
    try:
        if name.startswith("train_") and name != "train_compensation":
            return f"clean {result['clean']:.2%}"
        if name == "evaluate_baselines":
            return ", ".join(f"{v} {r['mean']:.2%} +- {r['std']:.2%}"
                             for v, r in result["variants"].items())
        if name == "candidates":
            return f"candidates {result['candidates']}"
        if name == "search":
            b = result["best"]
            return (f"best plan {format_plan(b['plan'])} (overhead {b['overhead']:.2%}, "
                    f"{result['evaluations']} plans evaluated)")
        if name == "train_compensation":
            return f"plan {format_plan(result['plan'])}, overhead {result['overhead']:.2%}"
        if name == "evaluate_correctnet":
            return f"CorrectNet {result['mean']:.2%} +- {result['std']:.2%}"
        if name == "report":
            return f"wrote {result['report_md']}"
    except (KeyError, TypeError):
        pass
    return "done"

