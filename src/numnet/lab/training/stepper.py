"""What the training loop (:mod:`numnet.lab.training.loop`) asks of an implementation: a
*stepper* -- numnet's is :class:`NumnetStepper` -- and the evaluations of a run's curve points
and final weights."""

from __future__ import annotations

from typing import Any

import numpy as np

from numnet.core import backend, introspect, optim, schedules
from numnet.core.datasets import Datasets
from numnet.core.losses import softmax_cross_entropy
from numnet.core.optim import SGD
from numnet.lab.training.internals import numnet_probabilities, numnet_snapshot
from numnet.lab.training.spec import RunSpec

# ------------------------------------------------------------------------------ evaluation


def evaluate(model: Any, x: Any, y: Any, batch_size: int = 1000) -> tuple[float, float]:
    """``(accuracy, mean cross-entropy)`` of ``model`` on images ``x`` (n, 784) and one-hot
    labels ``y`` (n, 10), the loss summed in chunks of ``batch_size`` (no training caches
    kept).

    One evaluation forward over all of ``x``: the model cuts it into its own chunks
    (``Sequential.eval_chunk`` rows) and spreads them over the runtime's lanes, so a helper
    thread wakes once per evaluation rather than once per chunk. A row's logits do not depend
    on the chunking, and the loss is summed chunk by chunk as before."""
    xp = backend.array_module(x)
    n = len(x)
    correct = 0
    loss_sum = 0.0
    every_logit = model.forward(x, train=False)
    for start in range(0, n, batch_size):
        logits, yb = every_logit[start : start + batch_size], y[start : start + batch_size]
        correct += int(xp.sum(xp.argmax(logits, axis=1) == xp.argmax(yb, axis=1)))
        loss, _ = softmax_cross_entropy(logits, yb, reduction="sum")
        loss_sum += float(loss)
    return correct / n, loss_sum / n


def evaluation_sets(spec: RunSpec, data: Datasets, device: str = "cpu"
                    ) -> tuple[Any, Any, Any, Any]:  # fmt: skip
    """``(x_tr, y_tr, x_te, y_te)``: the examples a run's curve points are evaluated on, as
    the protocol says (docs/protocol.md §6) -- the first ``spec.eval_train_examples`` of train
    in file order and the first ``spec.eval_test_examples`` of test; images ``(n, 784)`` in
    the run's dtype, one-hot labels ``(n, 10)``, on ``device``."""
    dtype = np.dtype(spec.dtype)
    n_tr, n_te = spec.eval_train_examples, spec.eval_test_examples
    return (backend.to_device(data.train.images[:n_tr].astype(dtype, copy=False), device),
            backend.to_device(data.train.labels[:n_tr], device),
            backend.to_device(data.test.images[:n_te].astype(dtype, copy=False), device),
            backend.to_device(data.test.labels[:n_te], device))


def parameters_finite(model: Any) -> bool:
    """True when every parameter value of ``model`` is finite."""
    for p in model.parameters():
        xp = backend.array_module(p.value)
        if not bool(xp.isfinite(p.value).all()):
            return False
    return True


# ------------------------------------------------------------------------------ the step


class NumnetStepper:
    """numnet's training step, as :func:`train_run` drives it.

    A *stepper* is what the loop needs from an implementation: ``loss(x, y)`` (forward and loss
    of a training batch, a Python float; keeps what the update needs), ``update()`` (backward
    and one SGD step for that batch), ``parameters_finite()``, ``evaluate(x, y, batch_size)``
    -> ``(accuracy, mean loss)``, and a ``model`` attribute; for the run's internals (optional:
    the loop records them when the stepper has them) ``internals(x_probe)`` -> one snapshot
    (``numnet.lab.training.internals``) and ``probabilities(x, batch_size)`` -> softmax
    probabilities ``(N, 10)`` as a NumPy array. ``numnet compare`` passes a
    PyTorch stepper (``numnet.lab.reference_torch.ReferenceTrainer``) so that both implementations
    run through this same loop, batches, evaluations and divergence rule.
    """

    def __init__(self, model: Any, lr: float, reduction: str, optimizer: Any = None,
                 schedule: Any = None, total_updates: int | None = None) -> None:
        self.model = model
        self.optimizer = optimizer if optimizer is not None else SGD(model.parameters(), lr)
        self.reduction = reduction
        #: the learning rate of each update (``numnet.core.schedules``) over a run of
        #: ``total_updates``; None keeps ``lr`` throughout
        self.schedule, self.lr, self.total_updates = schedule, lr, total_updates
        self.updates = 0  # made so far
        #: set by the internals before an update they will report: that update's size per
        #: layer, ||W_after - W_before||, is measured (``last_update_norms``). Plain SGD at a
        #: constant rate needs no measurement: its update is exactly lr * ||dL/dW||.
        self.measure_next_update = False
        self.last_update_norms: dict[str, float] | None = None
        self._plain_sgd = optimizer is None and schedule is None
        self._dlogits: Any = None

    @classmethod
    def for_run(cls, model: Any, spec: RunSpec, total_updates: int) -> NumnetStepper:
        """The stepper of a run: its optimiser (``spec.optimizer``, else plain SGD) at
        ``spec.lr``, its schedule over ``total_updates`` updates."""
        optimizer = None
        if spec.optimizer is not None:
            optimizer = optim.build(model.parameters(), spec.optimizer_spec(), lr=spec.lr)
        schedule = None if spec.schedule is None else schedules.build(spec.schedule_spec())
        return cls(model, spec.lr, spec.reduction, optimizer, schedule, total_updates)

    def loss(self, x: Any, y: Any) -> float:
        logits = self.model.forward(x)
        loss, self._dlogits = softmax_cross_entropy(logits, y, reduction=self.reduction)
        return float(loss)

    def update(self) -> None:
        if self.schedule is not None:
            self.optimizer.lr = self.schedule.lr_at(self.updates, self.lr, self.total_updates)
        self.model.backward(self._dlogits)
        measure, self.measure_next_update = self.measure_next_update, False
        before = introspect.weights(self.model) if measure and not self._plain_sgd else None
        self.optimizer.step()
        self.updates += 1
        if before is not None:
            self.last_update_norms = introspect.update_norms(self.model, before)

    def parameters_finite(self) -> bool:
        return parameters_finite(self.model)

    def evaluate(self, x: Any, y: Any, batch_size: int) -> tuple[float, float]:
        return evaluate(self.model, x, y, batch_size)

    def internals(self, x_probe: Any) -> dict[str, Any]:
        snap = numnet_snapshot(self.model, x_probe)
        if self.last_update_norms is not None:
            snap["update_norm"] = self.last_update_norms
        return snap

    def probabilities(self, x: Any, batch_size: int) -> Any:
        return numnet_probabilities(self.model, x, batch_size)
