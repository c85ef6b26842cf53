"""Local execution of sweep tasks: ``jobs`` worker processes (forkserver, else spawn), each
with its threads pinned; a worker that dies is replaced and its tasks resubmitted.

Termination: an interrupt of the driver (Ctrl-C, or SIGTERM, which the command line raises as
an interrupt) terminates the workers at once. A driver that dies without a word (SIGKILL, a
crash) takes its workers with it: each worker watches the driver's pid and exits within
:data:`WATCH_INTERVAL_S` once it is gone; on Linux it also asks the kernel
(``PR_SET_PDEATHSIG``) to kill it when its parent (the forkserver) dies. So no worker is left
running a task for nobody, parented to pid 1.
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

from numnet.core.errors import NumnetError
from numnet.lab.progress import Log
from numnet.lab.sweep.outcome import ALLOWED_FAILURES, Outcome, TaskFailure, TaskFn, failure
from numnet.lab.sweep.plan import DataRef, SweepTask
from numnet.lab.sweep.worker import pin_threads, run_task

#: How often a worker checks that the driver is still alive.
WATCH_INTERVAL_S = 0.5
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _exit_with_parent() -> None:
    """Linux: the kernel sends this process SIGKILL when its parent dies (best effort)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _watch_driver(driver_pid: int) -> None:
    """A daemon thread that ends this worker once the driver process is gone."""
    def watch() -> None:
        while True:
            time.sleep(WATCH_INTERVAL_S)
            try:
                os.kill(driver_pid, 0)
            except ProcessLookupError:
                os._exit(1)  # nobody will read this worker's result: stop now
            except PermissionError:
                pass  # alive, another user's (cannot happen for our own driver)
    threading.Thread(target=watch, name="numnet-driver-watch", daemon=True).start()


def init_worker(threads: int | None, driver_pid: int) -> None:
    """The initializer of every local worker: exit with the driver, then pin the threads."""
    _exit_with_parent()
    _watch_driver(driver_pid)
    pin_threads(threads)


def mp_context() -> Any:
    """forkserver where the platform has it (fast, no inherited threads), else spawn."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def iter_local(
    tasks: Sequence[SweepTask], data: DataRef, *, jobs: int, device: str = "cpu",
    retries: int = 0, threads: int | None = 1, task_fn: TaskFn = run_task,
    log: Log | None = None,
) -> Iterator[Outcome]:
    """Run ``tasks`` on ``jobs`` local worker processes; yield ``(task, record, None)`` or
    ``(task, None, failure)`` as each finishes. A broken pool (a worker died) is replaced and
    its in-flight tasks resubmitted (up to :data:`ALLOWED_FAILURES` times each); a task that
    raised is resubmitted ``retries`` times, then reported."""
    if jobs < 1:
        raise NumnetError(f"--jobs must be at least 1, got {jobs}")
    pending: deque[SweepTask] = deque(tasks)
    raised: dict[str, int] = {}
    died: dict[str, int] = {}

    def new_pool() -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(max_workers=jobs, mp_context=mp_context(),
                                      initializer=init_worker, initargs=(threads, os.getpid()))

    pool = new_pool()
    in_flight: dict[cf.Future, SweepTask] = {}
    finished = False
    try:
        while pending or in_flight:
            # Never more than ``jobs`` in flight: every submitted task is running, so a broken
            # pool tells exactly which tasks lost their worker.
            broken = False
            while pending and len(in_flight) < jobs:
                task = pending.popleft()
                try:
                    fut = pool.submit(task_fn, task, data, device, threads)
                except cf.process.BrokenProcessPool:  # broke since the last wait
                    pending.appendleft(task)
                    broken = True
                    break
                in_flight[fut] = task
            if not broken:
                done, _ = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
                broken = any(isinstance(f.exception(), cf.process.BrokenProcessPool)
                             for f in done)
            if broken:
                cf.wait(in_flight)  # the pool fails every other in-flight future as well
                done = set(in_flight)
            for fut in done:
                task = in_flight.pop(fut)
                exc = fut.exception()
                if exc is None:
                    yield task, fut.result(), None
                elif isinstance(exc, cf.process.BrokenProcessPool):
                    died[task.task_id] = died.get(task.task_id, 0) + 1
                    if died[task.task_id] > ALLOWED_FAILURES:
                        yield task, None, TaskFailure(
                            task.task_id, f"worker process died {died[task.task_id]} times "
                            "while running this task", attempts=died[task.task_id])
                    else:
                        if log:
                            log(f"numnet sweep: a worker died while running {task.task_id}; "
                                "resubmitting it")
                        pending.appendleft(task)
                else:
                    raised[task.task_id] = raised.get(task.task_id, 0) + 1
                    if raised[task.task_id] <= retries:
                        pending.append(task)
                    else:
                        yield task, None, failure(task, exc, attempts=raised[task.task_id])
            if broken:
                pool.shutdown(wait=True, cancel_futures=True)
                pool = new_pool()
        finished = True
    finally:
        if not finished:
            # Interrupted (Ctrl-C, or the consumer stopped early): stop the running tasks now
            # rather than wait for them (a signal may have reached this process only).
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
