"""Exceptions of the ``xbar`` package.

Every error derives from :class:`XbarError` and from the matching built-in, so callers can
catch either ``XbarError`` or, for example, ``ValueError``.
"""

from __future__ import annotations


class XbarError(Exception):
    """Root of every error raised by ``xbar``."""


class ConfigError(XbarError, ValueError):
    """A configuration field is out of range or of the wrong type (message names the path)."""


class ShapeError(XbarError, ValueError):
    """An array has the wrong number of dimensions or a size that does not match the layer."""


class InputError(XbarError, ValueError):
    """An array holds NaN/inf values, or an argument (such as ``rng``) has the wrong kind."""


class NotProgrammedError(XbarError, RuntimeError):
    """The crossbar was used before ``program(rng)`` or ``program_ideal()`` was called."""


class ConvergenceError(XbarError, RuntimeError):
    """An iterative solver (the IR-drop line solver) did not reach its tolerance in time."""
