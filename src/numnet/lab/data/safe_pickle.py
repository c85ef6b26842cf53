"""A restricted unpickler for pickles of NumPy arrays (such as the classic ``mnist.pkl.gz``).

``pickle.load`` runs whatever callables a pickle names, so a hostile file can run
``os.system``. :class:`ArrayUnpickler` resolves exactly three globals and refuses every other:

- ``numpy.core.multiarray._reconstruct`` (also spelled ``numpy._core.multiarray._reconstruct``),
  accepted only to build a plain ``numpy.ndarray``;
- ``numpy.ndarray``;
- ``numpy.dtype``, refusing object dtypes (which could carry arbitrary Python objects).

Containers (tuples, lists, dicts), numbers and strings need no globals and load as usual.
Python 2 pickles (``mnist.pkl.gz`` is one) are read with ``encoding="latin1"``, the encoding
NumPy needs for their byte strings.
"""

from __future__ import annotations

import io
import pickle
from typing import Any, BinaryIO

import numpy as np

from numnet.core.errors import DataError

try:  # NumPy >= 2 moved the module; importing the old name only emits a DeprecationWarning
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"_reconstruct of {subtype!r}: only numpy.ndarray is allowed")
    return _np_reconstruct(subtype, shape, dtype)


def _dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError(f"dtype {dtype} holds Python objects; refused")
    return dtype


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
}


class ArrayUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that only resolves the globals of :data:`ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused to load global {module}.{name} (only NumPy arrays are allowed)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed")


def safe_load(file: BinaryIO, name: str, *, encoding: str = "latin1") -> Any:
    """Unpickle ``file`` with :class:`ArrayUnpickler`; ``name`` labels errors.

    Raises :class:`DataError` ("<name>: refused to load global os.system ...") for a refused
    global and for a damaged pickle.
    """
    try:
        return ArrayUnpickler(file, encoding=encoding).load()
    except pickle.UnpicklingError as exc:
        raise DataError(f"{name}: {exc}") from None
    except (EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        # what damaged pickles raise (truncated data, bad opcodes, wrong arguments)
        raise DataError(f"{name}: not a valid pickle of NumPy arrays: {exc!r}") from None


def safe_loads(data: bytes, name: str, *, encoding: str = "latin1") -> Any:
    """:func:`safe_load` on bytes."""
    return safe_load(io.BytesIO(data), name, encoding=encoding)
