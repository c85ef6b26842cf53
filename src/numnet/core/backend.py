"""The array-module switch: the same layer code runs on NumPy arrays or on CuPy arrays.

Layers never import NumPy's array API directly for their math; they ask ``array_module(x)``
for the module that owns ``x``. Parameters are created on the host (NumPy, seeded) and moved
with ``to_device``; results come back with ``to_numpy``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from numnet.core.names import DEVICES

__all__ = ["DEVICES", "array_module", "cuda_available", "to_device", "to_numpy", "xp_for"]


def _cupy() -> ModuleType | None:
    try:
        import cupy  # type: ignore[import-not-found]
    except Exception:  # ImportError, or CUDA libraries missing at import time
        return None
    return cupy


def array_module(*arrays: Any) -> ModuleType:
    """Return ``cupy`` if any of ``arrays`` is a CuPy array, else ``numpy``."""
    for a in arrays:
        if type(a).__module__.startswith("cupy"):
            cp = _cupy()
            if cp is not None:
                return cp
    return np


def cuda_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    cp = _cupy()
    if cp is None:
        return False
    try:
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def xp_for(device: str) -> ModuleType:
    """The array module for a device name ("cpu" or "cuda"); a clear error when unavailable."""
    if device == "cpu":
        return np
    if device == "cuda":
        if not cuda_available():
            raise RuntimeError(
                "device 'cuda' requested but CuPy with a CUDA device is not available; "
                "install the extra numnet[gpu] on a machine with an NVIDIA GPU, or use --device cpu"
            )
        return _cupy()  # type: ignore[return-value]
    raise ValueError(f"unknown device {device!r}; expected one of {DEVICES}")


def to_device(array: Any, device: str) -> Any:
    """Copy ``array`` to ``device`` ("cpu" -> NumPy, "cuda" -> CuPy); no copy if already there."""
    xp = xp_for(device)
    if xp is np:
        return to_numpy(array)
    return xp.asarray(array)


def to_numpy(array: Any) -> np.ndarray:
    """Return ``array`` as a NumPy array (a device-to-host copy for CuPy arrays)."""
    if type(array).__module__.startswith("cupy"):
        return array.get()
    return np.asarray(array)
