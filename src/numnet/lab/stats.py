"""Statistics of repeated runs: n, mean, sample std, min, max and a Student-t confidence
interval of the mean (sweep summaries; for accuracies intersected with [0, 1], see
:func:`describe`), per-evaluation band statistics of learning curves, and
the comparisons of two curves (compare). Pure Python on lists of floats; no SciPy needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""

    def nonzero(v: float) -> float:
        return v if abs(v) > 1e-300 else 1e-300

    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 / nonzero(1.0 - qab * x / qap)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        # the even and the odd step of the fraction
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                   -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 / nonzero(1.0 + aa * d)
            c = nonzero(1.0 + aa / c)
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """CDF of Student's t distribution with ``df`` degrees of freedom."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (bisection on
    :func:`t_cdf`; |error| < 1e-10). ``t_quantile(0.975, 4)`` = 2.7764451..."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"need 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return 0.5 * (lo + hi)


#: The domain of an accuracy (a proportion): its confidence intervals stay inside it.
PROPORTION = (0.0, 1.0)


def describe(values: Sequence[float], confidence: float = 0.95,
             bounds: tuple[float, float] | None = None) -> dict[str, Any]:
    """n, mean, std (sample, ddof=1), min, max and the t-based ``confidence`` interval of the
    mean (``mean +- t_{(1+c)/2, n-1} * std / sqrt(n)``). std and the interval are None for
    n < 2; everything but n is None for n = 0.

    ``bounds=(lo, hi)``: the values' domain (``PROPORTION`` for accuracies). The interval is
    then intersected with it, and ``"interval"`` says so: the true mean lies in the domain, so
    this keeps the t-interval's coverage (why not a logit-scale interval or a bootstrap:
    docs/reliability.md, "Intervals of accuracies"). Values outside ``bounds`` are a ValueError
    (a caller's bug, not a statistic)."""
    v = [float(x) for x in values]
    n = len(v)
    if bounds is not None:
        lo, hi = bounds
        outside = [x for x in v if not lo <= x <= hi]  # also catches NaN
        if outside:
            raise ValueError(f"values outside [{lo}, {hi}]: {outside[:3]}")
    out: dict[str, Any] = {"n": n, "mean": None, "std": None, "min": None, "max": None,
                           "ci95": None}
    if bounds is not None:
        out["interval"] = f"t, intersected with [{bounds[0]:g}, {bounds[1]:g}]"
    if n == 0:
        return out
    mean = math.fsum(v) / n
    if bounds is not None:  # rounding of the sum must not step outside the domain either
        mean = min(max(mean, bounds[0]), bounds[1])
    out.update(mean=mean, min=min(v), max=max(v))
    if n >= 2:
        std = math.sqrt(math.fsum((x - mean) ** 2 for x in v) / (n - 1))
        half = t_quantile(0.5 + confidence / 2.0, n - 1) * std / math.sqrt(n)
        low, high = mean - half, mean + half
        if bounds is not None:
            low, high = max(low, bounds[0]), min(high, bounds[1])
        out.update(std=std, ci95=[low, high])
    return out


def describe_proportion(values: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """:func:`describe` of proportions (accuracies): the interval inside [0, 1]."""
    return describe(values, confidence, bounds=PROPORTION)


def curve_stats(curves: list[list[float]]) -> dict[str, list[float | None]]:
    """Per evaluation k (over the runs that reached it): n, mean, std, min, max."""
    length = max((len(c) for c in curves), default=0)
    stats: dict[str, list[float | None]] = {k: [] for k in ("n", "mean", "std", "min", "max")}
    for k in range(length):
        d = describe([c[k] for c in curves if len(c) > k])
        for key in stats:
            stats[key].append(d[key])
    return stats


def curve_gap(a: Sequence[float], b: Sequence[float],
              samples: Sequence[int]) -> tuple[float | None, int | None]:
    """Largest ``|a[k] - b[k]|`` over the evaluations both curves have, and ``samples[k]``
    there; ``(None, None)`` when one curve is empty."""
    n = min(len(a), len(b))
    if n == 0:
        return None, None
    diffs = [abs(a[k] - b[k]) for k in range(n)]
    k = max(range(n), key=diffs.__getitem__)  # the first largest, as numpy.argmax
    return diffs[k], samples[k]


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, or None when either is missing or ``b`` is zero."""
    return a / b if a is not None and b else None


def window_mean(values: Sequence[float], end: int, w: int) -> float:
    """Mean of the ``w`` values ending at index ``end`` (exclusive), clipped at the start."""
    end = max(1, end)
    chunk = values[max(0, end - w) : end]
    return sum(chunk) / len(chunk)
