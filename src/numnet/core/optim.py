"""Optimisers that update ``Parameter.value`` in place from ``Parameter.grad``.

The protocol's optimiser is plain SGD on the summed loss: ``theta <- theta - lr * dL/dtheta``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from numnet.core.backend import array_module, to_numpy
from numnet.core.layers import Parameter


class SGD:
    """Stochastic gradient descent, optionally with momentum (PyTorch's convention).

    Without momentum: ``p -= lr * g``. With momentum ``mu``: ``v = mu * v + g; p -= lr * v``
    (``v`` starts at zero).

    ``lr`` may be changed between steps (``opt.lr = ...``). It is cast to each parameter's
    dtype at every step, so a NumPy float64 learning rate never promotes a float32 model.
    """

    def __init__(self, params: Iterable[Parameter], lr: float, momentum: float = 0.0) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("SGD got an empty parameter list")
        if float(lr) < 0 or float(momentum) < 0:
            raise ValueError(f"lr and momentum must be >= 0, got lr={lr}, momentum={momentum}")
        self.lr = lr
        self.momentum = momentum
        self._velocity: list[Any] | None = None
        self._scratch: list[Any] = [None] * len(self.params)

    def step(self) -> None:
        """Apply one update to every parameter from its current ``grad``."""
        if self.momentum:
            self._step_momentum()
            return
        for k, p in enumerate(self.params):
            xp = array_module(p.value)
            lr = p.value.dtype.type(self.lr)
            tmp = self._scratch[k]
            if tmp is None or tmp.shape != p.grad.shape or array_module(tmp) is not xp:
                tmp = self._scratch[k] = xp.empty_like(p.value)
            xp.multiply(p.grad, lr, out=tmp)
            p.value -= tmp

    def _step_momentum(self) -> None:
        if self._velocity is None:
            self._velocity = [array_module(p.value).zeros_like(p.value) for p in self.params]
        for k, (p, v) in enumerate(zip(self.params, self._velocity, strict=True)):
            xp = array_module(p.value)
            if array_module(v) is not xp:  # the model moved device since the last step
                v = self._velocity[k] = to_numpy(v) if xp is np else xp.asarray(v)
            mu, lr = p.value.dtype.type(self.momentum), p.value.dtype.type(self.lr)
            v *= mu
            v += p.grad
            p.value -= lr * v

    def zero_grad(self) -> None:
        """Set every gradient to zero (not needed by numnet's layers, which overwrite grads)."""
        for p in self.params:
            p.grad[...] = 0
