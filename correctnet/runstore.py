"""A run folder for resumable pipelines: stored config, per-stage results, atomic JSON.

Layout::

    RUN/config.json          arguments the run was started with (checked on every rerun)
    RUN/stages/<name>.json   {"seconds": float, "result": {...}} once the stage finished
    RUN/...                  checkpoints and caches the stages write themselves

A stage counts as done only when its JSON file exists; files are written to
``<file>.tmp`` and moved into place with ``os.replace``, so a run killed at any
moment resumes at the first unfinished stage and loses nothing finished.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from correctnet.errors import UsageError

__all__ = ["RunConfigError", "RunStore", "write_json"]


class RunConfigError(UsageError):
    """A run folder was created with other arguments than the ones given now."""


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON atomically (``<path>.tmp`` then ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False, default=_jsonable))
    os.replace(tmp, path)
    return path


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    raise TypeError(f"cannot store {type(obj).__name__} as JSON")


class RunStore:
    """The run folder ``root``; checks or writes ``config.json`` on creation.

    Args:
        root: Run folder (created if missing).
        config: JSON-safe dict identifying the run (model, dataset, sigma, preset, ...).

    Raises:
        RunConfigError: ``root`` holds a run started with a different ``config``.
    """

    def __init__(self, root: str | os.PathLike, config: dict) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.config = json.loads(json.dumps(config, default=_jsonable))
        path = self.root / "config.json"
        if path.exists():
            old = json.loads(path.read_text())
            if old != self.config:
                diff = sorted(k for k in set(old) | set(self.config)
                              if old.get(k) != self.config.get(k))
                details = "; ".join(f"{k}: stored {old.get(k)!r}, given {self.config.get(k)!r}"
                                    for k in diff)
                raise RunConfigError(
                    f"run folder {self.root} was started with other arguments ({details}); "
                    "rerun with the same arguments to resume, or choose another --out")
        else:
            write_json(path, self.config)

    def path(self, name: str) -> Path:
        """A file inside the run folder."""
        return self.root / name

    def _stage_file(self, name: str) -> Path:
        return self.root / "stages" / f"{name}.json"

    def done(self, name: str) -> bool:
        """Whether stage ``name`` finished."""
        return self._stage_file(name).exists()

    def result(self, name: str) -> dict:
        """The stored result of a finished stage.

        Raises:
            UsageError: the stage has not finished.
        """
        path = self._stage_file(name)
        if not path.exists():
            raise UsageError(f"stage {name!r} of run {self.root} has not finished")
        return json.loads(path.read_text())["result"]

    def seconds(self, name: str) -> float:
        """Wall time the finished stage took."""
        return float(json.loads(self._stage_file(name).read_text())["seconds"])

    def finish(self, name: str, result: dict, seconds: float) -> None:
        """Store a finished stage's result."""
        write_json(self._stage_file(name), {"seconds": float(seconds), "result": result})
