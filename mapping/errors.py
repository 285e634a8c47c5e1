"""Exception hierarchy of the ``mapping`` package.

Every error derives from :class:`MappingError` and from the closest built-in, so callers can
catch either (``except MappingError`` or ``except ValueError``).
"""


class MappingError(Exception):
    """Root of every error raised by ``mapping``."""


class UnsupportedLayerError(MappingError, TypeError):
    """A layer cannot be mapped onto crossbars (e.g. a grouped convolution)."""


class LayerSelectionError(MappingError, ValueError):
    """A ``layers=`` selection names a layer that does not exist or an index out of range."""


class BackendError(MappingError, ValueError):
    """An unknown execution backend, or a backend that cannot run the layer's state."""


class NotProgrammedError(MappingError, RuntimeError):
    """A crossbar layer was run with a state it does not hold (e.g. numba after resample())."""


class DataError(MappingError, ValueError):
    """Evaluation data is empty or not made of ``(inputs, labels)`` batches."""


class ArgumentTypeError(MappingError, TypeError):
    """An argument has the wrong type (a config that is not an XbarConfig, a bad rng, ...)."""


class NumericalError(MappingError, ArithmeticError):
    """A crossbar evaluation produced NaN/inf outputs, so no accuracy can be reported.

    Typical cause: a variation sigma so large that ``exp(theta)`` overflows float32.
    """
