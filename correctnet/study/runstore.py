"""A run folder for resumable pipelines: stored config and per-stage results.

Layout::

    RUN/config.json          arguments the run was started with (checked on every rerun)
    RUN/stages/<name>.json   {"seconds": float, "result": {...}} once the stage finished
    RUN/...                  checkpoints and caches the stages write themselves

A stage counts as done only when its JSON file exists; files are written atomically
(:func:`correctnet.fileio.atomic_write`), so a run killed at any moment resumes at the first
unfinished stage and loses nothing finished.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from correctnet.errors import RunConfigError, UnreadableFileError, UsageError
from correctnet.fileio import _jsonable, ensure_output_dir, read_json, write_json

__all__ = ["RunConfigError", "RunStore", "UnreadableFileError", "config_differences"]


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat or {prefix[:-1]: data}
    return {prefix[:-1]: data}


def config_differences(old: dict, new: dict, *, show: int = 6) -> str:
    """The keys (dotted for nested dicts) whose values differ, e.g. ``preset.base``.

    Outer keys come first, then a nested ``name`` (so ``preset.name`` leads when whole presets
    differ), then the rest alphabetically.

    Args:
        old: Stored configuration.
        new: Given configuration.
        show: List at most this many keys (values shown when short), then ``and N more``.

    Returns:
        ``"preset.base: stored 'plain', given 'lipschitz'; ..."``.
    """
    a, b = _flatten(old), _flatten(new)
    missing = object()
    # outer keys first, and a nested ``name`` (the preset's) before its other fields
    keys = sorted((k for k in set(a) | set(b) if a.get(k, missing) != b.get(k, missing)),
                  key=lambda k: (k.count("."), not k.endswith(".name"), k))
    parts = []
    for key in keys[:show]:
        was, now = repr(a.get(key, "(none)")), repr(b.get(key, "(none)"))
        parts.append(f"{key}: stored {was}, given {now}" if len(was) + len(now) <= 60
                     else key)
    if len(keys) > show:
        parts.append(f"and {len(keys) - show} more")
    return "; ".join(parts)


class RunStore:
    """The run folder ``root``; checks or writes ``config.json`` on creation.

    Args:
        root: Run folder (created if missing).
        config: JSON-safe dict identifying the run (model, dataset, sigma, preset, ...).

    Raises:
        RunConfigError: ``root`` holds a run started with a different ``config`` (the message
            names the differing keys, see :func:`config_differences`).
        UsageError: ``root`` cannot be created or written (:func:`ensure_output_dir`).
        UnreadableFileError: ``config.json`` (here) or a stage file (:meth:`result`,
            :meth:`seconds`) is damaged; the message names the file and the fix.
    """

    def __init__(self, root: str | os.PathLike, config: dict) -> None:
        self.root = ensure_output_dir(root)
        self.config = json.loads(json.dumps(config, default=_jsonable))
        path = self.root / "config.json"
        if path.exists():
            old = read_json(path, what="run configuration",
                            fix="move the run folder away (or choose another --out) and rerun")
            if old != self.config:
                raise RunConfigError(
                    f"run folder {self.root} was started with other arguments "
                    f"({config_differences(old, self.config)}); rerun with the same arguments "
                    "to resume, or choose another --out")
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
        return self._stage(name)["result"]

    def seconds(self, name: str) -> float:
        """Wall time the finished stage took."""
        return float(self._stage(name)["seconds"])

    def _stage(self, name: str) -> dict:
        """The stage file's content, checked; a damaged file names itself and the fix."""
        path = self._stage_file(name)
        fix = "delete it and rerun: the stage runs again"
        data = read_json(path, what=f"stage result of {name!r}", fix=fix)
        if not (isinstance(data, dict) and "result" in data
                and isinstance(data.get("seconds"), (int, float))):
            raise UnreadableFileError(f"stage result of {name!r} {path} is unreadable (not a "
                                      f"stage file: no 'result' and 'seconds'); {fix}")
        return data

    def finish(self, name: str, result: dict, seconds: float) -> None:
        """Store a finished stage's result."""
        write_json(self._stage_file(name), {"seconds": float(seconds), "result": result})
