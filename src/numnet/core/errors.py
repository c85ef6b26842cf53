"""Errors that carry a message meant for the user: which file or key, what is wrong, what to do.

The command line prints them as one line and exits with code 2; library users can catch
``NumnetError`` (or a subclass) instead of digging through NumPy tracebacks.
"""


__all__ = [
    "DataError", "DefinitionError", "FolderError", "KernelsError", "NumnetError", "OutputError",
    "ProtocolError", "ResultsError", "ThreadsError", "WeightsFileError",
]  # fmt: skip


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


class DefinitionError(NumnetError, ValueError):
    """A model definition (a list of layer dicts, ``models.build``) cannot work: an unknown
    layer type or key, a bad value, shapes that do not fit, a last layer that is not the 10
    logits, or a size beyond the bounds. Raised before anything is allocated, as one line
    naming the model, the layer (counted from 1) and its type. A ValueError too."""


class KernelsError(NumnetError, ValueError):
    """An unknown kernel implementation was asked for (see ``numnet.core.names.KERNELS``)."""


class OutputError(NumnetError, OSError):
    """A file or folder numnet writes could not be written: no space left, a read-only file
    system, no permission, a file in the way. The message names the path and what to do; the
    command line exits with code 1 (a write failed). An OSError too (``errno``, ``strerror``),
    so callers that catch OSError keep working."""

    def __init__(self, message: str, errno: int | None = None, strerror: str | None = None,
                 filename: str | None = None) -> None:
        OSError.__init__(self, errno, strerror, filename)
        self.message = message

    def __str__(self) -> str:
        return self.message


class FolderError(NumnetError):
    """An output folder cannot be used as asked: another numnet process is writing into it, or
    it holds the results of another configuration (``--force`` replaces them)."""


class ResultsError(NumnetError):
    """A results document (results.json) does not match its schema; the message names the key
    path (``runs[2].spec.batch_size``) and what is allowed."""


class OptimizerError(NumnetError, ValueError):
    """An optimiser or learning-rate schedule got a bad argument, an unknown spec type or key
    (the message says which, with a "did you mean"), or a saved state that does not fit it.
    A ValueError too, as PyTorch's optimisers raise for bad arguments."""


class UnsafeNameError(NumnetError, ValueError):
    """A name taken from a document or an option (a run id, a model or protocol name, a figure
    name) cannot be used as a file name: it would leave its folder (``..``, ``/``, an absolute
    path), or holds characters a file name should not (NUL, control characters, bytes that are
    not UTF-8). The message names the value and what is allowed; a ValueError too."""
