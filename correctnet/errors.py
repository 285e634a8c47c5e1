"""Exception hierarchy of the ``correctnet`` package."""


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
