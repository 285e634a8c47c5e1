"""``correctnet reproduce``: the whole CorrectNet study as resumable stages.

Stages (in order; each stores its result in ``RUN/stages/<name>.json`` when done):

1. ``train_plain``, ``train_lipschitz``, ``train_variation_aware``: the three networks, once
   per training seed (``preset.seeds``; :func:`correctnet.training.train.train_model`,
   checkpoint per epoch, so an interrupted training resumes at its last epoch).
2. ``evaluate_baselines``: clean accuracy and Monte-Carlo accuracy (``preset.samples`` samples
   on the test set, the same device samples for every network and seed) under ``sigma``.
3. ``candidates``: variation in layers ``i..L`` for decreasing ``i`` (Fig. 9) for every
   network; candidates of each compensated network's base.
4. ``search``, ``search_variation_aware_compensated``: exhaustive search where the action
   space is small, then REINFORCE for each overhead limit, on CorrectNet's base
   (``preset.base``, the Lipschitz network) and on the variation-aware network; every plan
   evaluation (train compensation briefly + Monte-Carlo on a subset) is cached in
   ``RUN/plans.json`` / ``RUN/plans_variation_aware_compensated.json``; the final plan is
   the most accurate of the limits' solutions (``preset.plan_choice``).
5. ``train_compensation``, ``train_compensation_variation_aware_compensated``: the chosen plan
   trained with ``preset.final_epochs`` on every seed's base network (``RUN/correctnet.pt``,
   ``RUN/correctnet_seed1.pt``, ...).
6. ``evaluate_correctnet``, ``evaluate_variation_aware_compensated``: clean and Monte-Carlo
   accuracy of the compensated networks.
7. ``digital_baseline``: the same weight budgets spent on keeping layers digital instead;
   ``calibration``: the three networks again with mean-gain calibration (first seed).
8. ``sweeps``: accuracy vs sigma for every network, sigma x tile size for CorrectNet.
9. ``report``: the PNG figures; once it has finished, the pipeline writes ``RUN/report.json``
   and ``RUN/report.md`` (with every stage's time, this one's included), once.

The stages are one explicit, ordered list (:data:`STAGE_LIST`) of functions of
:mod:`correctnet.study.stages`, each called with the run's
:class:`~correctnet.study.context.StudyContext` (:class:`Pipeline` is that context plus the
loop); nothing is looked up by name and the stages never import this module.

Exact resume: every random draw of a stage comes from a generator seeded from the preset's
seed and the stage's name (plus the plan, for each plan the search trains; see
:mod:`correctnet.seeding`), and each stage runs with the global RNGs seeded from
``derive_seed(seed, stage)`` and restored afterwards. A run interrupted anywhere (even by
``kill -9``) and resumed in a fresh process therefore gives the same files, bit for bit, as an
uninterrupted one (on the same machine with the same ``--threads``: the thread count changes
the order of floating-point sums).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from correctnet.compensation.plan import format_plan
from correctnet.seeding import derive_seed, isolated_rng
from correctnet.study import compensation_stages, stages
from correctnet.study.context import COMPENSATED, StudyContext
from correctnet.study.digital_stage import digital_baseline
from correctnet.study.report import write_report

__all__ = ["STAGES", "STAGE_LIST", "Stage", "Pipeline"]


@dataclass(frozen=True)
class Stage:
    """One step of the study."""

    name: str
    """File stem of its result (``RUN/stages/<name>.json``) and its seed's name."""
    run: Callable[[StudyContext], dict]
    """Does the work; returns the JSON-safe result that is stored."""
    summary: Callable[[dict], str]
    """The one line logged when it finishes."""


# ------------------------------------------------------------------ one log line per stage
def _summary_train(result: dict) -> str:
    """``clean 87.18%``."""
    return f"clean {result['clean']:.2%}"


def _summary_evaluate_baselines(result: dict) -> str:
    """``plain 73.74% +- 6.39%, ...``."""
    return ", ".join(f"{v} {r['mean']:.2%} +- {r['std']:.2%}"
                     for v, r in result["variants"].items())


def _summary_candidates(result: dict) -> str:
    """``candidates [...]``."""
    return f"candidates {result['candidates']}"


def _summary_search(result: dict) -> str:
    """The best plan, its overhead and how many plans were evaluated."""
    b = result["best"]
    return (f"best plan {format_plan(b['plan'])} (overhead {b['overhead']:.2%}, "
            f"{result['evaluations']} plans evaluated)")


def _summary_train_compensation(result: dict) -> str:
    """The trained plan and its overhead."""
    return f"plan {format_plan(result['plan'])}, overhead {result['overhead']:.2%}"


def _summary_evaluate_compensated(result: dict) -> str:
    """``84.90% +- 0.82% (base lipschitz)``."""
    return f"{result['mean']:.2%} +- {result['std']:.2%} (base {result.get('base', '?')})"


def _summary_digital(result: dict) -> str:
    """The digital-layer baseline at CorrectNet's overhead."""
    d = result["correctnet"]
    return (f"layers {d['layers'] or '-'} kept digital ({d['overhead']:.2%}): "
            f"{d['mean']:.2%} +- {d['std']:.2%}")


def _summary_calibration(result: dict) -> str:
    """``plain 73.7% -> 76.1%, ...`` (uncalibrated -> mean-gain calibrated)."""
    return ", ".join(f"{v} {r['uncalibrated_mean']:.2%} -> {r['mean']:.2%}"
                     for v, r in result.items())


def _summary_done(result: dict) -> str:
    """``done`` (stages without a headline number)."""
    return "done"


def _summary_report(result: dict) -> str:
    """``wrote report.md``."""
    return f"wrote {result['report_md']}"


#: The study, in the order it runs.
STAGE_LIST: tuple[Stage, ...] = (
    Stage("train_plain", stages.train_plain, _summary_train),
    Stage("train_lipschitz", stages.train_lipschitz, _summary_train),
    Stage("train_variation_aware", stages.train_variation_aware, _summary_train),
    Stage("evaluate_baselines", stages.evaluate_baselines, _summary_evaluate_baselines),
    Stage("candidates", compensation_stages.candidates, _summary_candidates),
    *(Stage(compensation_stages.stage_names(name)[step],
            compensation_stages.stage_functions(name)[step], summary)
      for step, summary in (("search", _summary_search),
                            ("train", _summary_train_compensation),
                            ("evaluate", _summary_evaluate_compensated))
      for name in COMPENSATED),
    Stage("digital_baseline", digital_baseline, _summary_digital),
    Stage("calibration", stages.calibration, _summary_calibration),
    Stage("sweeps", stages.sweeps, _summary_done),
    Stage("report", stages.report, _summary_report),
)
#: Stage names in order.
STAGES: tuple[str, ...] = tuple(stage.name for stage in STAGE_LIST)


class Pipeline(StudyContext):
    """One reproduce run in the folder ``out``: the study's context and the loop over its stages.

    Takes :class:`~correctnet.study.context.StudyContext`'s arguments, plus:

    Args:
        before_stage: Test hook, called with each stage's name before it runs.

    Raises:
        UsageError: ``sigma`` is not a finite number >= 0.
        RunConfigError: ``out`` holds a run started with other arguments.
    """

    def __init__(self, *args, before_stage: Callable[[str], None] | None = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.before_stage = before_stage

    def run(self, *, until: str | None = None) -> dict:
        """Run every unfinished stage (up to and including ``until``), then write the report.

        The report (``report.json``, ``report.md``) is written once, after the last stage, when
        that stage ran in this call (or its files are missing); a rerun of a finished run
        leaves them as they are.

        Returns:
            ``{stage: result}`` of the finished stages.
        """
        results = {}
        ran: set[str] = set()
        for stage in STAGE_LIST:
            if self.store.done(stage.name):
                results[stage.name] = self.store.result(stage.name)
                self.log(f"[{stage.name}] done earlier ({self.store.seconds(stage.name):.1f} s), "
                         "skipped")
            else:
                results[stage.name] = self._run_stage(stage)
                ran.add(stage.name)
            if stage.name == until:
                break
        last = STAGE_LIST[-1].name
        if last in results and (last in ran or not self.store.path("report.json").exists()):
            with isolated_rng(derive_seed(self.preset.seed, "report.json")):  # same on resume
                write_report(self, results[last]["figures"], self.stage_seconds())
        return results

    def _run_stage(self, stage: Stage) -> dict:
        """Run one stage with its own seeded global RNGs; store and log its result."""
        if self.before_stage is not None:
            self.before_stage(stage.name)
        t0 = time.perf_counter()
        with isolated_rng(derive_seed(self.preset.seed, stage.name)):
            result = stage.run(self)
        seconds = time.perf_counter() - t0
        self.store.finish(stage.name, result, seconds)
        try:
            line = "skipped (preset)" if result.get("skipped") else stage.summary(result)
        except (KeyError, TypeError):
            line = "done"
        self.log(f"[{stage.name}] {line} ({seconds:.1f} s)")
        return result

    def stage_seconds(self) -> dict[str, float]:
        """``{stage: seconds}`` of the finished stages."""
        return {n: self.store.seconds(n) for n in STAGES if self.store.done(n)}
