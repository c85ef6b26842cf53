"""Local execution of sweep tasks: ``jobs`` worker processes (forkserver, else spawn), each
with its threads pinned; a worker that dies is replaced and its tasks resubmitted."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

from numnet.core.errors import NumnetError
from numnet.lab.progress import Log
from numnet.lab.sweep.outcome import ALLOWED_FAILURES, Outcome, TaskFailure, TaskFn, failure
from numnet.lab.sweep.plan import DataRef, SweepTask
from numnet.lab.sweep.worker import pin_threads, run_task


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
                                      initializer=pin_threads, initargs=(threads,))

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
