"""Curve points evaluated in another process: the :class:`EvaluationService` of the process
that starts the training workers, serving :class:`~numnet.lab.training.background.
RemoteEvaluator` (``train_run(..., evaluation_service=service.address)``).

Why: on a machine of two cores, ``reproduce``'s longest run is the critical path and the other
worker has the second core until its last run ends. A helper *thread* beside the training
takes the GIL from it (measured: a niced helper thread cost more than it gave), so that run's
points used to wait until a core was free. The reproducing process itself is idle meanwhile:
here it evaluates the points on a thread of its own, at the lowest scheduling priority
(Linux's ``SCHED_IDLE``), so it runs on what the workers leave -- the gaps between runs, and
the whole core once the other worker is done -- and the critical worker only trains.

One connection per run (a ``multiprocessing.connection`` listener, random authentication
key): the run sends ``("run", spec)``, then ``("point", key, weights)`` for each point and
``("cancel", key)`` for a point it evaluated itself; the service answers ``("started", key, None)``
before it evaluates a point (oldest first) and ``("result", key, (tr_acc, tr_loss, te_acc,
te_loss))`` or ``("error", key, text)`` after. The evaluation is :func:`stepper.evaluate` on the
run's evaluation sets with BLAS on one thread, as in the worker, so the numbers are the same.
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, Listener
from typing import Any

import numpy as np

from numnet.core import runtime
from numnet.core.datasets import Datasets
from numnet.lab.training import loop, stepper
from numnet.lab.training.background import POLL_SECONDS, BackgroundEvaluator, ServiceAddress


def available() -> bool:
    """Whether this platform can run the service's thread at the lowest priority alone (Linux
    schedules each thread on its own; elsewhere a process's priority is all its threads')."""
    return sys.platform.startswith("linux") and hasattr(os, "SCHED_IDLE")


def lowest_priority() -> bool:
    """Run the calling thread only on a core that nothing else wants (Linux ``SCHED_IDLE``;
    a thread created by this one inherits it). False where the system refused."""
    try:
        os.sched_setscheduler(threading.get_native_id(), os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        return False
    return True


class EvaluationService:
    """Evaluates the curve points of runs trained in other processes on ``data`` (the splits
    the runs train on), each run's on a thread of this process at the lowest priority.

    Use as a context manager, entered on the thread that drives the work: it holds BLAS on
    one thread while it serves (OpenBLAS takes the count from the driving thread), as every
    training does. ``address`` is what a run connects to (picklable)."""

    def __init__(self, data: Datasets) -> None:
        self._data = data
        self._authkey = secrets.token_bytes(32)
        self._listener = Listener(authkey=self._authkey)
        self.address: ServiceAddress = (self._listener.address, self._authkey)
        self._closed = threading.Event()
        self._serving: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, name="numnet-service",
                                           daemon=True)
        self._blas = runtime.single_threaded_blas()

    def __enter__(self) -> EvaluationService:
        self._blas.__enter__()
        self._accepting.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop accepting and serving (an evaluation in flight finishes first)."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._accepting.is_alive():
            try:  # wake the accepting thread: a listener closed meanwhile would not
                Client(self._listener.address, authkey=self._authkey).close()
            except OSError:
                pass
            self._accepting.join()
        self._listener.close()
        for thread in self._serving:  # each checks every POLL_SECONDS, between evaluations
            thread.join(timeout=10)
        self._blas.__exit__(None, None, None)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn = self._listener.accept()
            except (OSError, EOFError, AuthenticationError):  # a client that failed the
                continue  # handshake (or went away in it); the listener closed: checked above
            if self._closed.is_set():
                conn.close()
                return
            thread = threading.Thread(target=self._serve, args=(conn,),
                                      name="numnet-service-run", daemon=True)
            self._serving.append(thread)
            thread.start()

    def _serve(self, conn: Connection) -> None:
        """One run's points, oldest first, until it says ``close`` or goes away."""
        lowest_priority()  # refused: it still serves, sharing the cores as any thread does
        pending: dict[int, Any] = {}  # key -> weights, in the order they came
        evaluator: Any = None
        try:
            while not self._closed.is_set():
                while not pending or conn.poll():  # take every message there is
                    if not conn.poll(POLL_SECONDS):
                        if self._closed.is_set():
                            return
                        continue
                    kind, *rest = conn.recv()
                    if kind == "run":
                        spec = rest[0]
                        evaluator = BackgroundEvaluator(
                            loop.build_model(spec), stepper.evaluate,
                            stepper.evaluation_sets(spec, self._data), spec.eval_batch_size)
                    elif kind == "point":
                        pending[rest[0]] = rest[1]
                    elif kind == "cancel":
                        pending.pop(rest[0], None)
                    elif kind == "close":
                        return
                key = next(iter(pending))
                weights = pending.pop(key)
                conn.send(("started", key, None))
                try:  # a diverging run's overflow is expected: the run's loop judges the losses
                    with np.errstate(all="ignore"):
                        answer = ("result", key, evaluator.evaluate_here(weights))
                except Exception as exc:  # the run raises it where it waits for the point
                    answer = ("error", key, f"{type(exc).__name__}: {exc}")
                conn.send(answer)
        except (EOFError, OSError):
            return  # the run's process went away (ended, or was stopped)
        finally:
            conn.close()

