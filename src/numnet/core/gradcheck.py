"""Central finite-difference gradient checks (float64), reusable by any test.

``numerical_gradient(f, array)`` perturbs ``array`` in place, coordinate by coordinate:
``(f(a + h e_i) - f(a - h e_i)) / 2h``. ``max_relative_error`` compares it with an analytic
gradient. ``check_layer`` and ``check_model`` run the whole comparison for a layer (scalar
``sum(y * R)`` with a fixed random R) or a model (softmax cross-entropy), returning the max
relative error per parameter and for the input.

The error measure, per element: ``|a - n| / max(|a|, |n|, floor)`` with
``floor = FLOOR_RATIO * scale`` (scale = the largest |analytic| element of that array). Central
differences carry an absolute error of about ``eps_machine * |f| / h`` whatever the element, so
an element thousands of times smaller than the array's largest (or exactly zero, as behind a dead
ReLU) is judged relative to the floor rather than to itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from numnet.core.losses import softmax_cross_entropy

FLOOR_RATIO = 1e-3
DEFAULT_EPS = 1e-5


def numerical_gradient(
    f: Callable[[], float],
    array: np.ndarray,
    eps: float = DEFAULT_EPS,
    indices: np.ndarray | None = None,
) -> np.ndarray:
    """Central differences of the scalar ``f()`` with respect to ``array`` (perturbed in place,
    restored after each coordinate).

    indices: flat indices to check; None checks every element and returns ``array``'s shape,
    otherwise a 1-d array aligned with ``indices``.
    """
    if array.dtype != np.float64:
        raise TypeError(f"gradient checks need float64 arrays, got {array.dtype}")
    flat = array.reshape(-1)  # a view: perturbing it perturbs array
    if not np.shares_memory(flat, array):
        raise ValueError("array must be contiguous so that it can be perturbed in place")
    coords = np.arange(flat.size) if indices is None else np.asarray(indices)
    grad = np.empty(len(coords), dtype=np.float64)
    for k, i in enumerate(coords):
        old = flat[i]
        flat[i] = old + eps
        f_plus = f()
        flat[i] = old - eps
        f_minus = f()
        flat[i] = old
        grad[k] = (f_plus - f_minus) / (2 * eps)
    return grad.reshape(array.shape) if indices is None else grad


def max_relative_error(
    analytic: np.ndarray, numeric: np.ndarray, scale: float | None = None
) -> float:
    """Largest ``|a - n| / max(|a|, |n|, FLOOR_RATIO * scale)`` over the elements.

    scale: the magnitude of the whole gradient array (default: the largest |a| or |n| here);
    pass it when ``analytic`` and ``numeric`` are a sample of a bigger array.
    """
    a = np.asarray(analytic, dtype=np.float64).ravel()
    n = np.asarray(numeric, dtype=np.float64).ravel()
    if a.shape != n.shape:
        raise ValueError(f"shapes differ: analytic {a.shape}, numeric {n.shape}")
    if a.size == 0:
        return 0.0
    if scale is None:
        scale = max(float(np.abs(a).max()), float(np.abs(n).max()))
    floor = max(FLOOR_RATIO * scale, np.finfo(np.float64).tiny)
    denom = np.maximum(np.maximum(np.abs(a), np.abs(n)), floor)
    return float((np.abs(a - n) / denom).max())


def _sample(size: int, coords: int | None, rng: np.random.Generator) -> np.ndarray | None:
    if coords is None or coords >= size:
        return None
    return np.sort(rng.choice(size, size=coords, replace=False))


def _compare(
    f: Callable[[], float],
    arrays: dict[str, np.ndarray],
    analytic: dict[str, np.ndarray],
    eps: float,
    coords: int | None,
    rng: np.random.Generator,
) -> dict[str, float]:
    """Max relative error of each analytic gradient against central differences of ``f``
    (which reads ``arrays`` in place), on ``coords`` random coordinates per array."""
    errors = {}
    for name, arr in arrays.items():
        idx = _sample(arr.size, coords, rng)
        num = numerical_gradient(f, arr, eps, idx)
        ana = analytic[name] if idx is None else analytic[name].ravel()[idx]
        errors[name] = max_relative_error(ana, num, scale=float(np.abs(analytic[name]).max()))
    return errors


def check_layer(
    layer: Any,
    x: np.ndarray,
    seed: int = 0,
    eps: float = DEFAULT_EPS,
    coords: int | None = None,
) -> dict[str, float]:
    """Gradient check of one layer on input ``x`` (float64, parameters float64).

    The scalar is ``sum(layer.forward(x) * R)`` with R standard normal (fixed by ``seed``), so
    dL/dy = R. Returns ``{"input": err, "<param name>": err, ...}`` (``max_relative_error``).
    coords: check only this many random coordinates per array (None: all).
    """
    rng = np.random.default_rng(seed)
    x = np.array(x, dtype=np.float64)  # own contiguous copy, perturbed in place
    y = layer.forward(x, train=True)
    r = rng.standard_normal(y.shape)
    dx = layer.backward(r.copy(), input_grad=True)
    analytic = {"input": np.array(dx)}
    analytic.update({name: np.array(p.grad) for name, p in layer.named_parameters()})

    def f() -> float:
        return float(np.sum(layer.forward(x, train=False) * r))

    arrays = {"input": x, **{name: p.value for name, p in layer.named_parameters()}}
    return _compare(f, arrays, analytic, eps, coords, rng)


def check_model(
    model: Any,
    x: np.ndarray,
    labels: np.ndarray,
    reduction: str = "sum",
    coords: int | None = 30,
    seed: int = 0,
    eps: float = DEFAULT_EPS,
) -> dict[str, float]:
    """Gradient check of a whole model under softmax cross-entropy (float64 model).

    Returns ``{"input": err, "<dotted param name>": err, ...}``; ``coords`` random coordinates
    of each array are checked (None: all), on the batch ``x`` with one-hot ``labels``.
    """
    rng = np.random.default_rng(seed)
    x = np.array(x, dtype=np.float64)
    logits = model.forward(x, train=True)
    _, dlogits = softmax_cross_entropy(logits, labels, reduction)
    dx = model.backward(dlogits, input_grad=True)
    params = dict(model.named_parameters())
    analytic = {"input": np.array(dx), **{n: np.array(p.grad) for n, p in params.items()}}

    def f() -> float:
        return softmax_cross_entropy(model.forward(x, train=False), labels, reduction)[0]

    arrays = {"input": x, **{n: p.value for n, p in params.items()}}
    return _compare(f, arrays, analytic, eps, coords, rng)
