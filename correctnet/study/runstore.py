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
import tempfile
from pathlib import Path
from typing import Any

from correctnet.errors import UsageError

__all__ = ["RunConfigError", "RunStore", "UnreadableFileError", "config_differences",
           "ensure_output_dir", "read_json", "write_json"]


class RunConfigError(UsageError):
    """A run folder was created with other arguments than the ones given now."""


class UnreadableFileError(UsageError):
    """A file a run wrote earlier cannot be read back (corrupt, truncated, foreign)."""


def ensure_output_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """Create ``path`` (with parents) and check that a file can be written in it.

    Called before any work starts, so a bad output folder fails at once instead of after
    training.

    Args:
        path: Output folder.
        option: The command-line option that named it (for the message).

    Returns:
        ``Path(path)``.

    Raises:
        UsageError: the folder cannot be created or written (a file in the way, a read-only
            or kernel pseudo-filesystem such as /proc or /sys, no permission); one line
            naming ``option``, the path and the OS reason.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, FileExistsError) or (path.exists() and not path.is_dir()):
            reason = "a file of that name exists"
        raise UsageError(f"{option} {path}: cannot create or write this folder ({reason}); "
                         f"choose another {option}") from exc
    return path


def read_json(path: str | os.PathLike, *, what: str = "file", fix: str | None = None) -> Any:
    """Read a JSON file this package wrote, with one clear error if it is damaged.

    Args:
        path: The file.
        what: What the file is, for the message (e.g. "stage result").
        fix: What the user should do (default: move the file away and rerun).

    Raises:
        UnreadableFileError: the file cannot be read or is not valid JSON.
    """
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        fix = fix or "move it away (or delete it) and rerun to recompute it"
        raise UnreadableFileError(f"{what} {path} is unreadable ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else ''}); "
                                  f"{fix}") from exc


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON atomically (``<path>.tmp`` then ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False, default=_jsonable))
    os.replace(tmp, path)
    return path


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
