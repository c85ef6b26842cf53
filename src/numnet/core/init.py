"""Parameter initialisers, all driven by an explicit ``numpy.random.Generator`` (no global RNG).

Values are drawn on the host in float64 and then cast to the requested dtype, so a float32 and a
float64 model built from the same seed hold the same weights up to float32 rounding.

Fans (the protocol; Glorot & Bengio 2010):
- Linear weight ``(in, out)``: fan_in = in, fan_out = out.
- Conv2D weight HWIO ``(kh, kw, c_in, c_out)``: fan_in = kh*kw*c_in, fan_out = kh*kw*c_out.

:func:`fan_sum_limit` is another rule, the one an earlier NumPy solution of the course used for
its convolution kernels (the ``notebook-variant`` protocol): ``sqrt(6 / (kh*kw*c_in*c_out +
c_out))`` -- the kernel's size plus its bias count where Glorot has fan_in + fan_out.
"""

from __future__ import annotations

import math

import numpy as np


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight: ``(in, out)`` or HWIO ``(kh, kw, in, out)``."""
    if len(shape) == 2:
        return shape[0], shape[1]
    if len(shape) == 4:
        receptive = shape[0] * shape[1]
        return receptive * shape[2], receptive * shape[3]
    raise ValueError(f"fans are defined for 2-d (in, out) or 4-d HWIO weights, got shape {shape}")


def glorot_limit(shape: tuple[int, ...]) -> float:
    """Xavier/Glorot uniform limit ``sqrt(6 / (fan_in + fan_out))``."""
    fan_in, fan_out = fans(shape)
    return math.sqrt(6.0 / (fan_in + fan_out))


def fan_sum_limit(shape: tuple[int, ...]) -> float:
    """``sqrt(6 / (size + n_out))`` of a weight of ``shape``: ``(in, out)`` or HWIO
    ``(kh, kw, c_in, c_out)``, size the number of its values and n_out its last axis. For the
    protocol's convolutions, ``sqrt(6 / 80)`` (3x3x1x8) and ``sqrt(6 / 584)`` (3x3x8x8)."""
    if len(shape) not in (2, 4):
        raise ValueError(f"fan_sum_limit is defined for 2-d (in, out) or 4-d HWIO weights, "
                         f"got shape {shape}")
    return math.sqrt(6.0 / (math.prod(shape) + shape[-1]))


def uniform_fan_sum(
    rng: np.random.Generator, shape: tuple[int, ...], dtype: str | np.dtype = "float32"
) -> np.ndarray:
    """Weights uniform in ``+-fan_sum_limit(shape)`` (one ``rng.uniform`` call, C order)."""
    return uniform(rng, shape, fan_sum_limit(shape), dtype)


def uniform(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    limit: float,
    dtype: str | np.dtype = "float32",
) -> np.ndarray:
    """Values drawn uniformly in ``[-limit, limit)`` (one ``rng.uniform`` call, C order)."""
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def glorot_uniform(
    rng: np.random.Generator, shape: tuple[int, ...], dtype: str | np.dtype = "float32"
) -> np.ndarray:
    """Xavier/Glorot uniform weights: ``uniform(rng, shape, sqrt(6 / (fan_in + fan_out)))``."""
    return uniform(rng, shape, glorot_limit(shape), dtype)


def zeros(shape: tuple[int, ...], dtype: str | np.dtype = "float32") -> np.ndarray:
    """All-zero values (the protocol's bias initialisation); consumes no random numbers."""
    return np.zeros(shape, dtype=dtype)
