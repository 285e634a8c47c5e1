"""Exception hierarchy of the ``correctnet`` package: every correctnet exception, in one place.

All derive from :class:`CorrectNetError` and from the built-in they specialise, so callers can
catch either (``except ValueError`` still catches a bad plan). The command line turns any
:class:`CorrectNetError` into one line on standard error and exit code 2. The modules that
raise them re-export them (``from correctnet.compensation.modules import PlanError`` works).
"""

__all__ = ["CorrectNetError", "UsageError", "DatasetError", "CheckpointError", "TrainingError",
           "PlanError", "CandidateError", "SearchError", "SweepStoreError", "DistributedError",
           "RunConfigError", "UnreadableFileError", "DigitalBaselineError", "SeedStatsError"]


class CorrectNetError(Exception):
    """Root of every error raised by ``correctnet``."""


class UsageError(CorrectNetError, ValueError):
    """A bad argument or option value given by the user."""


class DatasetError(CorrectNetError, FileNotFoundError):
    """A dataset could not be found or read."""


class CheckpointError(CorrectNetError, ValueError):
    """A checkpoint is missing, corrupt, or of another model."""


class TrainingError(CorrectNetError, ArithmeticError):
    """Training diverged: a loss or a weight became NaN or infinite."""


class PlanError(CorrectNetError, ValueError):
    """A compensation plan names an unknown layer or has an invalid ratio."""


class CandidateError(CorrectNetError, ValueError):
    """Invalid arguments to candidate selection."""


class SearchError(CorrectNetError, ValueError):
    """Invalid search arguments (empty action sets, bad limits, ...)."""


class SweepStoreError(CorrectNetError, RuntimeError):
    """The sweep database cannot be opened or is not a sweep database."""


class DistributedError(CorrectNetError, RuntimeError):
    """Dask is not installed, or the scheduler cannot be reached."""


class RunConfigError(UsageError):
    """A run folder was created with other arguments than the ones given now."""


class UnreadableFileError(UsageError):
    """A file a run wrote earlier cannot be read back (corrupt, truncated, foreign)."""


class DigitalBaselineError(CorrectNetError, ValueError):
    """Invalid arguments to the digital-layer baseline (bad budget or costs, too many sets)."""


class SeedStatsError(CorrectNetError, ValueError):
    """Empty or ragged per-seed accuracies."""
