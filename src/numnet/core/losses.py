"""Softmax cross-entropy, stable for any logits (log-sum-exp), with its gradient.

For logits ``z`` ``(N, K)`` and one-hot labels ``y`` ``(N, K)`` (SPEC):

    loss = sum_i ( -z_i[y_i] + log sum_c exp z_i[c] )        (reduction="sum", SPEC's loss)
    dloss/dz = softmax(z) - y                                  (divided by N for "mean")

Everything is computed in the logits' dtype: a float32 model gets a float32 gradient.
"""

from __future__ import annotations

from typing import Any

from numnet.core.backend import array_module

Array = Any
REDUCTIONS = ("sum", "mean")


def log_softmax(logits: Array) -> Array:
    """``z - logsumexp(z)`` row by row, shifted by the row maximum so nothing overflows."""
    xp = array_module(logits)
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))


def softmax(logits: Array) -> Array:
    """Row-wise softmax ``(N, K) -> (N, K)``, shifted by the row maximum."""
    xp = array_module(logits)
    e = xp.exp(logits - logits.max(axis=1, keepdims=True))
    e /= e.sum(axis=1, keepdims=True)
    return e


def softmax_cross_entropy(
    logits: Array, labels: Array, reduction: str = "sum"
) -> tuple[float, Array]:
    """Cross-entropy of ``softmax(logits)`` against ``labels``; returns ``(loss, dlogits)``.

    logits: ``(N, K)`` float. labels: one-hot (or any rows of class probabilities) ``(N, K)``,
    or integer class indices ``(N,)``. reduction: "sum" (SPEC: summed over the batch) or "mean".
    Returns the loss as a Python float and ``dloss/dlogits`` ``(N, K)`` in the logits' dtype:
    ``softmax(z) * sum_c y[c] - y`` (= ``p - y`` for one-hot rows), divided by N for "mean".
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    xp = array_module(logits)
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, K), got shape {tuple(logits.shape)}")
    n, k = logits.shape
    if labels.ndim == 1:  # class indices -> one-hot, in the logits' dtype
        onehot = xp.zeros((n, k), dtype=logits.dtype)
        onehot[xp.arange(n), labels.astype(xp.int64)] = 1
        labels = onehot
    elif tuple(labels.shape) != (n, k):
        raise ValueError(f"labels shape {tuple(labels.shape)} does not match logits {(n, k)}")
    labels = labels.astype(logits.dtype, copy=False)

    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = xp.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    log_probs = shifted - xp.log(total)
    loss = -(labels * log_probs).sum()
    grad = exp / total
    grad *= labels.sum(axis=1, keepdims=True)
    grad -= labels
    if reduction == "mean":
        loss = loss / n
        grad /= n
    return float(loss), grad
