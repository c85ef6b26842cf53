"""Errors that carry a message meant for the user: which file or key, what is wrong, what to do.

The command line prints them as one line and exits with code 2; library users can catch
``NumnetError`` (or a subclass) instead of digging through NumPy tracebacks.
"""


class NumnetError(Exception):
    """Base class of every user-facing numnet error."""


class DataError(NumnetError):
    """A data file or data source is missing, malformed, truncated or fails its checksum."""


class ProtocolError(NumnetError):
    """A protocol file has an unknown key or a bad value (the message names the key path)."""


class WeightsFileError(NumnetError):
    """A saved-weights file is corrupted or does not match the model it is loaded into."""


class ThreadsError(NumnetError, ValueError):
    """A thread count (``--threads``, ``NUMNET_THREADS``, ``set_threads``) is not a positive
    integer. A ValueError too, so callers that catch ValueError keep working."""


class KernelsError(NumnetError, ValueError):
    """An unknown kernel implementation was asked for (see ``numnet.core.names.KERNELS``)."""
