"""Evaluations beside the training: a curve point's evaluation runs on a helper thread, on a
copy of the weights at its update, while the training goes on (``loop.train_run``).

An evaluation reads the weights and nothing else, so its numbers are those of the same
evaluation made in line: the copy model has the same layers and kernels, and a row's logits do
not depend on how the rows are chunked. The helper runs its chunks on its own thread, 1,000 rows
at a time: fewer, longer NumPy calls, so it takes the GIL less often from the training thread
(measured, model 4 on 2 cores: a training step took 5.56 ms alone, 6.34 ms beside an evaluation
in 256-row chunks, 5.63 ms beside 1,000-row chunks). What the
loop must keep in order -- the curve, the divergence rule (a non-finite evaluation loss stops
the run at that update, its weights restored from the copy), the shorter runs' ends -- it
settles by waiting for the evaluations up to those points.

Two ways to use it (``train_run``):

- beside, one at a time: the evaluation of a point goes to the helper when the run may use
  a second thread, and the next point waits for it, so the helper never falls behind;
- deferred (``defer_evaluations``): while no second core is free, a point's weights wait in
  a queue instead of being evaluated in line; once a core is free, the helper takes them,
  oldest first, while the training goes on; what is left when the run must settle (its end, a
  shorter run's end, a divergence check) the training thread evaluates itself, newest first,
  on a second copy (:meth:`BackgroundEvaluator.evaluate_here`), while the helper works from
  the oldest. ``reproduce`` defers the evaluations of its longest run, the critical path: the
  other workers' runs keep their core, and its evaluations fill the cores they leave.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from numnet.core import runtime

CHUNK_ROWS = 1000  # rows per chunk of a helper's evaluation forward
Evaluate = Callable[[Any, Any, Any, int], tuple[float, float]]


#: The most curve points a run with ``defer_evaluations`` (``loop.train_run``) keeps waiting
#: for a free core; beyond, the oldest is evaluated in line. Each keeps a copy of the weights
#: (model 4: about 100 KB).
MAX_DEFERRED = 64


@dataclasses.dataclass
class CurvePoint:
    """A curve point not yet on the curve: its update, the weights there (a ``state_dict``)
    and the internals snapshot, then the helper's future or the evaluation's result."""

    update: int
    weights: dict[str, np.ndarray]
    snapshot: Any = None
    future: Any = None
    result: tuple[float, float, float, float] | None = None


class BackgroundEvaluator:
    """Evaluates copies of ``model``'s weights on ``sets = (x_tr, y_tr, x_te, y_te)`` on one
    helper thread; ``submit(weights)`` gives a future of ``(tr_acc, tr_loss, te_acc,
    te_loss)``."""

    def __init__(self, model: Any, evaluate: Evaluate, sets: tuple[Any, Any, Any, Any],
                 batch_size: int) -> None:  # fmt: skip
        self._model = copy.deepcopy(model)  # its own buffers: training goes on in the original
        self._here_chunk = self._model.eval_chunk  # the caller's copy: the model's own chunks
        self._model.eval_chunk = max(self._model.eval_chunk or 0, CHUNK_ROWS)
        self._evaluate = evaluate
        self._sets = sets
        self._batch_size = batch_size
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="numnet-eval")
        self._here: Any = None  # the caller's copy (evaluate_here), made when first needed

    def submit(self, weights: dict[str, np.ndarray]) -> Future:
        """Evaluate ``weights`` (a ``state_dict``, not changed afterwards) on the helper, under
        the caller's floating-point error settings."""
        return self._pool.submit(runtime.with_callers_errstate(self._run), weights)

    def training_done(self) -> None:
        """The training has ended: the helper's evaluations from now on use the model's own
        chunks (faster; the long ones only spared the training thread GIL hand-overs)."""
        self._model.eval_chunk = self._here_chunk

    def evaluate_here(self, weights: dict[str, np.ndarray]) -> tuple[float, float, float, float]:
        """The evaluation of ``weights`` on the calling thread, on a second copy of the model
        (the helper may be evaluating other weights at the same time)."""
        if self._here is None:
            self._here = copy.deepcopy(self._model)
            self._here.eval_chunk = self._here_chunk
        return self._run(weights, self._here)

    def _run(self, weights: dict[str, np.ndarray],
             model: Any = None) -> tuple[float, float, float, float]:  # fmt: skip
        model = self._model if model is None else model
        with runtime.single_lane():
            model.load_state_dict(weights)
            x_tr, y_tr, x_te, y_te = self._sets
            tr_acc, tr_loss = self._evaluate(model, x_tr, y_tr, self._batch_size)
            te_acc, te_loss = self._evaluate(model, x_te, y_te, self._batch_size)
        return tr_acc, tr_loss, te_acc, te_loss

    def close(self) -> None:
        """Stop the helper (an evaluation in flight finishes first)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
