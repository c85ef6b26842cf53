"""Losses: softmax cross-entropy, stable for any logits (log-sum-exp), with its gradient.

For logits ``z`` ``(N, K)`` and one-hot labels ``y`` ``(N, K)`` (the protocol's loss):

    loss = sum_i ( -z_i[y_i] + log sum_c exp z_i[c] )        (reduction="sum")
    dloss/dz = softmax(z) - y                                  (divided by N for "mean")

Everything is computed in the logits' dtype: a float32 model gets a float32 gradient. The
functions are the plain kernels of ``numnet.core.kernels.plain`` (one implementation, derived
in ``docs/derivations.md`` §1), under the names the rest of numnet imports them by.
"""

from __future__ import annotations

from numnet.core.kernels.plain import REDUCTIONS, log_softmax, softmax, softmax_cross_entropy

__all__ = ["REDUCTIONS", "log_softmax", "softmax", "softmax_cross_entropy"]
