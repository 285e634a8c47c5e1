"""Numba's on-disk cache of the fused kernels, kept in step with every kernel file.

Numba keys a cached kernel to the file that defines it. The fused kernels inline compiled
functions from other files (:mod:`mapping.field_kernels`, :mod:`mapping.field_blocks`, ...,
:mod:`xbar.kernels`), so after a change to one of those files alone (an edit, a ``git pull``
that leaves ``kernels.py`` as it was) Numba would load machine code built from the old
callee: silently wrong results. :func:`refresh`, run when :mod:`mapping` is imported,
hashes every kernel file and, when the hash differs from the one stamped beside the cache,
empties the cache of every kernel in them (Numba compiles them again on first use, seconds)
and stamps the new hash. A cache directory that cannot be written is left to Numba.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import ModuleType

#: Name of the stamp file in each kernel cache directory.
STAMP = "mapping-kernel-sources.sha256"


def kernel_modules() -> list[ModuleType]:
    """The modules whose compiled functions the fused kernels are built from."""
    import xbar.kernels

    from . import (converter_kernels, correction_kernels, field_blocks, field_kernels,
                   kernels, postop_kernels, window_kernels)
    return [kernels, field_kernels, field_blocks, postop_kernels, correction_kernels,
            converter_kernels, window_kernels, xbar.kernels]


def sources_digest(modules: list[ModuleType]) -> str:
    """SHA-256 over the source files of ``modules``, in order."""
    h = hashlib.sha256()
    for mod in modules:
        h.update(Path(mod.__file__).read_bytes())
    return h.hexdigest()


def _caches(modules: list[ModuleType]) -> list:
    """The on-disk caches of the compiled functions defined in ``modules``."""
    names = {mod.__name__ for mod in modules}
    found = {}
    for mod in modules:
        for value in vars(mod).values():
            cache = getattr(value, "_cache", None)
            py_func = getattr(value, "py_func", None)
            if (cache is not None and hasattr(cache, "flush") and py_func is not None
                    and py_func.__module__ in names):
                found[id(cache)] = cache
    return list(found.values())


def refresh(modules: list[ModuleType] | None = None) -> bool:
    """Empty the kernels' on-disk caches if any kernel file changed since the last stamp.

    Args:
        modules: The kernel modules (default :func:`kernel_modules`).

    Returns:
        True when the caches were emptied (changed sources, or no stamp yet).
    """
    modules = kernel_modules() if modules is None else modules
    digest = sources_digest(modules)
    caches = _caches(modules)
    stamps = {Path(cache.cache_path) / STAMP for cache in caches}
    try:
        if all(p.is_file() and p.read_text().strip() == digest for p in stamps):
            return False
        for cache in caches:
            cache.flush()
        for p in stamps:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(digest + "\n")
    except OSError:             # a read-only cache: Numba itself will not write there
        return False
    return True
