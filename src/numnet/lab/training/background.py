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

Three ways to use it (``train_run``):

- beside, one at a time: the evaluation of a point goes to the helper when the run may use
  a second thread, and the next point waits for it, so the helper never falls behind;
- deferred (``defer_evaluations``): while no second core is free, a point's weights wait in
  a queue instead of being evaluated in line; once a core is free, the helper takes them,
  oldest first, while the training goes on; what is left when the run must settle (its end, a
  shorter run's end, a divergence check) the training thread evaluates itself, newest first,
  on a second copy (:meth:`BackgroundEvaluator.evaluate_here`), while the helper works from
  the oldest;
- in another process (``evaluation_service``, :class:`RemoteEvaluator`): deferred, each
  point sent as it comes to the ``numnet.lab.training.service.EvaluationService`` of the
  process that started the worker, which evaluates it on a core the workers leave.
  ``reproduce`` does this (or, where it cannot, defers) for its longest run, the critical
  path: the other workers' runs keep their core, and its evaluations fill the cores they leave.
"""

from __future__ import annotations

import copy
import dataclasses
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from multiprocessing.connection import Client
from typing import Any

import numpy as np

from numnet.core import runtime
from numnet.core.errors import NumnetError

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
        self._pool: ThreadPoolExecutor | None = None  # the helper, started when first needed
        self._here: Any = None  # the caller's copy (evaluate_here), made when first needed

    def has_core(self) -> bool:
        """Whether a point handed over now is evaluated beside the training rather than taking
        turns with it: the run may use a second thread."""
        return runtime.get_threads() > 1

    def submit(self, weights: dict[str, np.ndarray]) -> Future:
        """Evaluate ``weights`` (a ``state_dict``, not changed afterwards) on the helper, under
        the caller's floating-point error settings."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="numnet-eval")
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
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


#: Where an :class:`~numnet.lab.training.service.EvaluationService` listens: its
#: ``multiprocessing.connection`` address and authentication key (picklable).
ServiceAddress = tuple[Any, bytes]
#: How often a side of the connection that waits for a message checks whether it should stop.
POLL_SECONDS = 0.2


class RemoteEvaluator(BackgroundEvaluator):
    """A :class:`BackgroundEvaluator` whose helper is an
    :class:`~numnet.lab.training.service.EvaluationService` in another process (the one that
    started the training's worker): ``submit`` sends the weights there and never blocks the
    training, and the future completes when the service's answer comes back.

    The service takes the points oldest first; a point whose future is cancelled before the
    service's "started" came back (``Future.cancel`` is True: the training evaluates it
    itself, :meth:`evaluate_here`) is skipped there -- unless the two messages crossed, and
    then both evaluate it, and the service's answer is dropped: one evaluation wasted where
    the two sides meet. The two evaluations are the same code on the same weights, so the
    numbers do not depend on which side made them."""

    def __init__(self, model: Any, evaluate: Evaluate, sets: tuple[Any, Any, Any, Any],
                 batch_size: int, spec: Any, address: ServiceAddress) -> None:  # fmt: skip
        super().__init__(model, evaluate, sets, batch_size)
        where, authkey = address
        self._conn = Client(where, authkey=authkey)
        self._conn.send(("run", spec))
        self._outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._futures: dict[int, Future] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._sender = threading.Thread(target=self._send_all, name="numnet-eval-send",
                                        daemon=True)
        self._receiver = threading.Thread(target=self._receive_all, name="numnet-eval-receive",
                                          daemon=True)
        self._sender.start()
        self._receiver.start()

    def has_core(self) -> bool:
        return True  # the service runs where a core is free; the training keeps its own

    def submit(self, weights: dict[str, np.ndarray]) -> Future:
        future: Future = Future()
        with self._lock:
            key = len(self._futures)
            self._futures[key] = future
        future.add_done_callback(
            lambda f: f.cancelled() and self._outbox.put(("cancel", key)))
        self._outbox.put(("point", key, weights))
        return future

    def _send_all(self) -> None:
        """Send the outbox in order (on this thread: a full pipe must not stop the training)."""
        while True:
            message = self._outbox.get()
            try:
                self._conn.send(message)
            except OSError:
                return  # the service is gone: _receive_all fails the futures
            if message[0] == "close":
                return

    def _receive_all(self) -> None:
        """The service's answers: a point started, its result, or its error."""
        while not self._closing.is_set():
            try:
                if not self._conn.poll(POLL_SECONDS):
                    continue
                kind, key, value = self._conn.recv()
            except (EOFError, OSError):
                break
            with self._lock:
                future = self._futures[key]
            try:
                if kind == "started":
                    future.set_running_or_notify_cancel()  # False: cancelled, evaluated here
                elif kind == "result" and not future.cancelled():
                    future.set_result(value)
                elif kind == "error" and not future.cancelled():
                    future.set_exception(NumnetError(f"evaluation service: {value}"))
            except InvalidStateError:
                pass  # cancelled meanwhile: the training evaluated it itself
        if self._closing.is_set():
            return
        with self._lock:
            futures = list(self._futures.values())
        for future in futures:  # the service went away: no answer will come
            try:
                future.set_exception(NumnetError("evaluation service: connection lost"))
            except InvalidStateError:
                pass  # answered, or cancelled and evaluated here

    def close(self) -> None:
        """Tell the service this run is over and close the connection."""
        self._outbox.put(("close",))
        self._sender.join()
        self._closing.set()
        self._receiver.join()
        self._conn.close()
        super().close()
