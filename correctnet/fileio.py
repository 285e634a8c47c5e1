"""Files written so that a killed process never leaves half of one: the one atomic write.

Every file ``correctnet`` writes (checkpoints, compensators, stage results, plan caches, the
report, sweep CSVs) goes through :func:`atomic_write`: the content is written to a temporary
file in the destination's folder and moved onto the destination with :func:`os.replace`,
which is atomic on POSIX and Windows. Readers therefore see the old file or the new one, never
a torn one; on an error the temporary file is removed and the destination is left as it was.

The temporary file is ``<name>.tmp`` by default: a run folder has one writer, and the name is
fixed, so a checkpoint's bytes do not depend on it (``torch.save`` names its archive after
the file it writes). ``unique=True`` (``.<name>.<random>.tmp``, ``mkstemp``) is for files
several processes may write at once (a sweep's CSV).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from correctnet.errors import UnreadableFileError, UsageError

__all__ = ["atomic_write", "write_text", "write_json", "read_json", "ensure_output_dir"]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, *, unique: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` atomically.

    Args:
        path: Destination file (parent folders are created).
        unique: Use a temporary file unique to this call (``.<name>.<random>.tmp``, mode
            0644), for destinations several writers may write at the same time; default
            ``<name>.tmp``.

    Yields:
        The temporary file's path (with ``unique``, an empty file exists there).

    Raises:
        Whatever the body raises; the temporary file is then removed and ``path`` untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if unique:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    else:
        tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        if unique:
            os.chmod(tmp, 0o644)        # mkstemp creates 0600; these files are for sharing
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_write`); returns the path."""
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, data: Any, *, sort_keys: bool = False) -> Path:
    """Write ``data`` as JSON (indent 1) atomically (:func:`atomic_write`).

    Args:
        path: Destination file.
        data: JSON-able data; numpy / torch values (``.tolist()``), sets and tuples are
            stored as lists.
        sort_keys: Sort object keys (as ``json.dumps``).

    Returns:
        ``Path(path)``.
    """
    return write_text(path, json.dumps(data, indent=1, sort_keys=sort_keys, default=_jsonable))


def _jsonable(obj: Any) -> Any:
    """``json.dumps`` fallback: numpy / torch values by ``tolist``, sets and tuples as lists."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    raise TypeError(f"cannot store {type(obj).__name__} as JSON")


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
