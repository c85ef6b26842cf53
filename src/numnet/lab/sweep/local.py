"""Local execution of sweep tasks: :func:`numnet.lab.executor.iter_local` (``jobs`` worker
processes, forkserver else spawn, each with its threads pinned; a worker that dies is replaced
and its tasks resubmitted), running :func:`numnet.lab.sweep.worker.run_task` per task."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from numnet.lab import executor
from numnet.lab.executor import mp_context
from numnet.lab.progress import Log
from numnet.lab.sweep.outcome import Outcome, TaskFn
from numnet.lab.sweep.plan import DataRef, SweepTask
from numnet.lab.sweep.worker import run_task

__all__ = ["iter_local", "mp_context"]


def iter_local(
    tasks: Sequence[SweepTask], data: DataRef, *, jobs: int, device: str = "cpu",
    retries: int = 0, threads: int | None = 1, task_fn: TaskFn = run_task,
    log: Log | None = None,
) -> Iterator[Outcome]:
    """Run ``tasks`` on ``jobs`` local worker processes; yield ``(task, record, None)`` or
    ``(task, None, failure)`` as each finishes. A broken pool (a worker died) is replaced and
    its in-flight tasks resubmitted (up to :data:`numnet.lab.executor.ALLOWED_FAILURES` times
    each); a task that raised is resubmitted ``retries`` times, then reported."""
    return executor.iter_local(tasks, task_fn, (data, device, threads), jobs=jobs,
                               retries=retries, threads=threads, log=log, what="numnet sweep")
