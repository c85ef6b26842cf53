"""A NumPy-backed stand-in for CuPy, to test numnet's array-module switch without a GPU.

``make_fake_cupy()`` returns a module object to put in ``sys.modules["cupy"]``. Its arrays are
:class:`FakeDeviceArray`, an ``ndarray`` subclass whose class lives in a module named
``cupy...`` (what :func:`numnet.core.backend.array_module` looks at), so numnet takes its "cuda"
path; every computation is NumPy's, so results must be bit-identical to the CPU path.

It is strict where CuPy is strict, so that code that would break on a GPU breaks here:

- a ufunc (``+``, ``@``, ``np.maximum``...) mixing a device array with a host ``ndarray``
  raises TypeError (CuPy refuses implicit host-to-device transfers);
- ``asarray`` of a host array copies (a host-to-device transfer), ``get()`` copies back;
- a NumPy *function* (``np.where``, ``np.concatenate``...) called directly on a device array
  is recorded in ``module.host_calls`` with the calling numnet line: such code only works
  on CuPy through NumPy's ``__array_function__`` dispatch, and creation functions
  (``np.zeros``...) would silently make host arrays. Layers should ask ``array_module``.
"""

from __future__ import annotations

import traceback
import types
from typing import Any

import numpy as np


class FakeDeviceArray(np.ndarray):
    """An ndarray that numnet.core.backend takes for a CuPy array."""

    __module__ = "cupy._fake"
    host_calls: list[str] | None = None  # set by make_fake_cupy

    def get(self) -> np.ndarray:
        """Device -> host copy, as ``cupy.ndarray.get``."""
        return np.array(self.view(np.ndarray))

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        outs = kwargs.get("out") or ()
        for a in (*inputs, *outs):
            if type(a) is np.ndarray and a.ndim > 0:
                raise TypeError(f"{ufunc.__name__}: a host numpy.ndarray {a.shape} mixed with "
                                "device arrays (CuPy refuses implicit transfers)")
        args = [_unwrap(a) for a in inputs]
        if outs:
            kwargs["out"] = tuple(_unwrap(o) for o in outs)
        result = getattr(ufunc, method)(*args, **kwargs)
        if outs:
            return outs[0] if len(outs) == 1 else outs
        return _wrap(result)

    def __array_function__(self, func: Any, types_: Any, args: Any, kwargs: Any) -> Any:
        if FakeDeviceArray.host_calls is not None:
            FakeDeviceArray.host_calls.append(f"np.{func.__name__} at {_caller()}")
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))


def _caller() -> str:
    for frame in reversed(traceback.extract_stack()[:-2]):
        if "/numnet/" in frame.filename:
            return f"{frame.filename.split('/numnet/')[-1]}:{frame.lineno} ({frame.line})"
    return "?"


def _unwrap(obj: Any) -> Any:
    if isinstance(obj, FakeDeviceArray):
        return obj.view(np.ndarray)
    if isinstance(obj, list | tuple):
        return type(obj)(_unwrap(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _unwrap(v) for k, v in obj.items()}
    return obj


def _wrap(obj: Any) -> Any:
    if type(obj) is np.ndarray:
        return obj.view(FakeDeviceArray)
    if isinstance(obj, tuple):
        return tuple(_wrap(o) for o in obj)
    return obj


def _device_function(fn: Any) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        outs = kwargs.get("out")
        result = fn(*_unwrap(args), **_unwrap(kwargs))
        return outs if outs is not None else _wrap(result)
    call.__name__ = getattr(fn, "__name__", "fn")
    return call


class _Namespace(types.ModuleType):
    """Attribute access on a NumPy namespace, callables turned into device functions."""

    def __init__(self, name: str, source: Any) -> None:
        super().__init__(name)
        self._source = source

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._source, attr)
        if isinstance(value, type):  # dtypes (np.float32), np.dtype...: as they are
            return value
        if isinstance(value, types.ModuleType):
            return _Namespace(f"{self.__name__}.{attr}", value)
        if callable(value):
            return _device_function(value)
        return value  # constants: np.inf, np.newaxis


def _asarray(a: Any, dtype: Any = None, order: Any = None) -> FakeDeviceArray:
    if isinstance(a, FakeDeviceArray):
        return _wrap(np.asarray(a.view(np.ndarray), dtype=dtype, order=order))
    return np.array(a, dtype=dtype, order=order, copy=True).view(FakeDeviceArray)  # transfer


def make_fake_cupy() -> types.ModuleType:
    """A fresh fake ``cupy`` module (with its own ``host_calls`` list)."""
    module = _Namespace("cupy", np)
    module.ndarray = FakeDeviceArray
    module.asarray = _asarray
    module.array = _asarray
    module.asnumpy = lambda a: np.array(_unwrap(a))
    runtime = types.SimpleNamespace(getDeviceCount=lambda: 1)
    module.cuda = types.SimpleNamespace(
        runtime=runtime, Device=lambda *a: types.SimpleNamespace(synchronize=lambda: None)
    )
    module.host_calls = []
    FakeDeviceArray.host_calls = module.host_calls
    module.is_fake = True
    return module
