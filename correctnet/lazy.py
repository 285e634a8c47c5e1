"""Lazy re-exports for the package and its subpackages (PEP 562).

Each ``__init__.py`` maps its public names to the modules that define them; a name is imported
on first use, so ``import correctnet.training`` stays cheap and ``correctnet --version`` does
not import torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_getattr"]


def lazy_getattr(package: str, table: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``table[name]`` and returns its ``name``.

    Args:
        package: The package's ``__name__`` (for the error message).
        table: ``{public name: dotted module that defines it}``.

    Returns:
        The function to assign to the package's ``__getattr__``; it raises
        ``AttributeError`` for names not in ``table``.
    """
    def __getattr__(name: str) -> Any:
        if name in table:
            return getattr(importlib.import_module(table[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
