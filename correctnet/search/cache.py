"""Evaluated placement plans, cached (optionally on disk) so that no plan is trained twice.

``RUN/plans.json`` of a reproduce run: ``{format_plan(plan): {"plan", "mean", "std", ...}}``,
rewritten atomically after every new entry, shared by every search of the run (across limits
and reruns).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from correctnet.compensation.plan import format_plan, normalize_plan
from correctnet.errors import UnreadableFileError
from correctnet.fileio import read_json, write_json

__all__ = ["PlanCache", "Evaluator"]

#: ``evaluator(plan) -> (mean, std)`` of a plan's accuracy under variation (fractions).
Evaluator = Callable[[dict[str, float]], tuple[float, float]]


class PlanCache:
    """Evaluated plans ``{format_plan(plan): {"plan", "mean", "std", ...}}``, optionally on disk.

    Args:
        path: JSON file; loaded if it exists, rewritten atomically after each :meth:`put`.

    Raises:
        UnreadableFileError: ``path`` exists but is not a plan cache (corrupt JSON, or not a
            ``{key: {plan, mean, std, ...}}`` map); the message says to delete it and rerun.
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.entries: dict[str, dict] = {}
        if self.path is not None and self.path.exists():
            fix = "delete it and rerun: its plans are trained again"
            self.entries = read_json(self.path, what="plan cache", fix=fix)
            if not (isinstance(self.entries, dict) and all(
                    isinstance(e, dict) and {"plan", "mean", "std"} <= set(e)
                    for e in self.entries.values())):
                raise UnreadableFileError(f"plan cache {self.path} is unreadable (not a "
                                          f"{{plan: {{plan, mean, std}}}} map); {fix}")

    @staticmethod
    def key(plan: Mapping[str, float]) -> str:
        """Canonical key of a plan."""
        return format_plan(plan)

    def __contains__(self, plan: Mapping[str, float]) -> bool:
        return self.key(plan) in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, plan: Mapping[str, float]) -> dict | None:
        """The stored entry of ``plan`` or None."""
        return self.entries.get(self.key(plan))

    def put(self, plan: Mapping[str, float], mean: float, std: float, **extra) -> dict:
        """Store a result and persist it."""
        entry = {"plan": normalize_plan(plan), "mean": float(mean), "std": float(std), **extra}
        self.entries[self.key(plan)] = entry
        if self.path is not None:
            write_json(self.path, self.entries, sort_keys=True)
        return entry

    def evaluate(self, plan: Mapping[str, float], evaluator: Evaluator, **extra) -> dict:
        """Return the cached entry of ``plan``, calling ``evaluator`` only on a miss."""
        hit = self.get(plan)
        if hit is not None:
            return hit
        mean, std = evaluator(normalize_plan(plan))
        return self.put(plan, mean, std, **extra)
