"""Parameter initialisers, all driven by an explicit ``numpy.random.Generator`` (no global RNG).

Values are drawn on the host in float64 and then cast to the requested dtype, so a float32 and a
float64 model built from the same seed hold the same weights up to float32 rounding.

Fans (the protocol; Glorot & Bengio 2010):
- Linear weight ``(in, out)``: fan_in = in, fan_out = out.
- Conv2D weight HWIO ``(kh, kw, c_in, c_out)``: fan_in = kh*kw*c_in, fan_out = kh*kw*c_out.
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
