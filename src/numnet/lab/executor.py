"""Where the trainings of ``reproduce`` and ``sweep`` run: one call, ``fn(task, *args)`` per
task, outcomes yielded as they finish, on one of two backends.

:func:`iter_local` runs the tasks (anything with a ``task_id``) on ``jobs`` local worker
processes of a ``concurrent.futures.ProcessPoolExecutor`` (forkserver, else spawn: no inherited
threads or locks), each with its ``threads`` pinned:

- at most ``jobs`` tasks are in flight, so every submitted task is running and a broken pool
  (a worker died: killed, out of memory) tells exactly which tasks lost their worker; those
  are resubmitted to a fresh pool, up to :data:`ALLOWED_FAILURES` times each, and a task that
  raised is resubmitted ``retries`` times, then reported as a :class:`TaskFailure`;
- interrupted (Ctrl-C in the parent, or the consumer closing the generator), the workers are
  terminated and joined before the generator returns: no worker outlives it. Workers ignore
  SIGINT (a terminal sends it to the whole process group), so only the parent decides.

Every task runs in a *slot* (0 .. jobs-1, one per task in flight): a few numbers in shared
memory where the worker publishes its progress (:func:`report_progress`) and the parent
reads it for its in-flight status (``poll``, every ``poll_every`` seconds while tasks run).
Display only: nothing flows back to the task.

A worker whose parent was killed (SIGKILL: no Ctrl-C, no cleanup) ends itself: a watchdog
thread waits on the parent's sentinel and exits the worker at once (and on Linux the kernel
kills it if the forkserver dies, ``PR_SET_PDEATHSIG``).

:func:`iter_dask` runs the same ``fn(task, *args)`` on a Dask distributed cluster: one
``client.submit`` per task, outcomes as they complete. Rescheduling the tasks of a worker
that dies is the scheduler's business (``distributed.scheduler.allowed-failures``) and
``retries`` is Dask's own; nothing is home-made for scheduling, retries or transport. There
is no initializer: ``fn`` pins its threads (:func:`pin_threads`) and loads what it needs once
per worker process itself.
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from numnet.core import runtime
from numnet.core.errors import NumnetError

#: Resubmissions of a task whose worker process died (Dask's allowed-failures default is 3).
ALLOWED_FAILURES = 3


@dataclass
class TaskFailure:
    """A task that raised (or whose worker died too often): its error text and traceback."""

    task_id: str
    error: str
    traceback: str = ""
    attempts: int = 1
    exception: BaseException | None = dataclasses.field(default=None, repr=False,
                                                        compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "error": self.error, "traceback": self.traceback,
                "attempts": self.attempts}


def failure(task: Any, exc: BaseException, tb: Any = None, attempts: int = 1) -> TaskFailure:
    """The :class:`TaskFailure` of ``task`` that raised ``exc`` (with its traceback)."""
    text = "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))
    return TaskFailure(task.task_id, f"{type(exc).__name__}: {exc}", text, attempts, exc)


#: What the backends yield per task: ``(task, result, None)`` or ``(task, None, failure)``.
Outcome = tuple[Any, Any, TaskFailure | None]
#: ``poll(statuses)``: the tasks in flight, in submission order, as ``(task, values, threads)``
#: -- the numbers its worker last reported (:func:`report_progress`) and its thread count.
Poll = Callable[[list[tuple[Any, list[float], int]]], None]


def mp_context() -> Any:
    """forkserver where the platform has it (fast, no inherited threads), else spawn."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


# ------------------------------------------------------------------------------ thread setting


_PINNED: list[runtime.threads] = []  # this process's thread setting, entered and kept


def pin_threads(threads: int | None) -> None:
    """Run this process with ``numnet.core.runtime.threads(threads)`` -- numnet's helper
    threads and the BLAS pools -- from now on (None: leave them alone). Results do not depend
    on it; speed does, when N worker processes run on N CPUs.

    Done once per process (a worker initializer, or the first task on a Dask worker): the
    setting is entered and never left, for the life of the process."""
    if threads is None or _PINNED:
        return
    setting = runtime.threads(threads)
    setting.__enter__()
    _PINNED.append(setting)


# ------------------------------------------------------------------------------ slots

#: In a worker of :func:`iter_local`: the shared progress numbers of every slot (``values``,
#: ``fields`` per slot) and the slot of the task running now (``index``, None between tasks).
_SLOT: dict[str, Any] = {"values": None, "fields": 0, "index": None}


def report_progress(values: Sequence[float]) -> None:
    """Publish up to ``fields`` progress numbers in the running task's slot, for the parent's
    in-flight status; does nothing outside a task of :func:`iter_local` (the parent process, a
    Dask worker). Lock-free: one writer per value, and a torn read only shows a progress line
    a moment old."""
    if _SLOT["index"] is None:
        return
    f = _SLOT["fields"]
    n = min(len(values), f)
    _SLOT["values"][_SLOT["index"] * f:_SLOT["index"] * f + n] = [float(v) for v in values[:n]]


def _watch_parent() -> None:
    """A worker's watchdog thread: once the parent process is gone, end the worker at once --
    nobody will read its result, and an idle pool worker would wait for work forever (every
    worker holds the write end of the pool's queue). Files stay consistent: every write is
    atomic, so at most a hidden ``.part`` file is left, which the next claim of the folder
    removes."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    multiprocessing.connection.wait([parent.sentinel])
    os._exit(1)


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _exit_with_parent() -> None:
    """Linux: the kernel sends this process SIGKILL when its parent (the forkserver) dies
    (best effort; :func:`_watch_parent` covers the driver itself)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _init_worker(values: Any, fields: int, threads: int | None,
                 initializer: Callable[..., None] | None, initargs: tuple[Any, ...]) -> None:
    # Ctrl-C reaches every process of the terminal's group: the parent alone handles it
    # (terminating the workers), so a worker never dies half-way through on its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    _SLOT.update(values=values, fields=fields)
    threading.Thread(target=_watch_parent, name="numnet-watchdog", daemon=True).start()
    pin_threads(threads)
    if initializer is not None:
        initializer(*initargs)


def _run_in_slot(index: int, fn: Callable[..., Any], *args: Any) -> Any:
    _SLOT["index"] = index
    try:
        return fn(*args)
    finally:
        _SLOT["index"] = None


# ------------------------------------------------------------------------------ the executor


def iter_local(
    tasks: Sequence[Any],
    fn: Callable[..., Any],
    args: tuple[Any, ...] = (),
    *,
    jobs: int,
    retries: int = 0,
    threads: int | None = 1,
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
    fields: int = 8,
    poll: Poll | None = None,
    poll_every: float = 0.5,
    log: Callable[[str], None] | None = None,
    what: str = "numnet",
) -> Iterator[Outcome]:
    """Run ``fn(task, *args)`` for every task on ``jobs`` local worker processes, in the order
    given (sort longest first); yield ``(task, result, None)`` or ``(task, None, failure)`` as
    each finishes (see the module docstring for faults, interruption and slots).

    ``threads``: every worker's pinned thread count (None: left alone).
    ``initializer(*initargs)`` runs once in every worker after the threads are pinned (e.g. to
    install data). ``fn`` and ``initializer`` must be importable by the workers. ``what``
    names the command in log lines."""
    if jobs < 1:
        raise NumnetError(f"--jobs must be at least 1, got {jobs}")
    ctx = mp_context()
    values = ctx.RawArray("d", jobs * fields)  # the slots' progress numbers, shared

    def numbers(slot: int) -> slice:
        return slice(slot * fields, (slot + 1) * fields)
    pending: deque[Any] = deque(tasks)
    raised: dict[str, int] = {}
    died: dict[str, int] = {}

    def new_pool() -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                                      initargs=(values, fields, threads, initializer, initargs))

    pool = new_pool()
    in_flight: dict[cf.Future, tuple[Any, int]] = {}  # future -> (task, slot)
    finished = False
    try:
        while pending or in_flight:
            broken = False
            free = [s for s in range(jobs) if s not in {slot for _, slot in in_flight.values()}]
            while pending and len(in_flight) < jobs:
                task, slot = pending.popleft(), free.pop(0)
                values[numbers(slot)] = [0.0] * fields
                try:
                    fut = pool.submit(_run_in_slot, slot, fn, task, *args)
                except cf.process.BrokenProcessPool:  # broke since the last wait
                    pending.appendleft(task)
                    free.insert(0, slot)
                    broken = True
                    break
                in_flight[fut] = (task, slot)
            if not broken:
                while True:
                    done, _ = cf.wait(in_flight, timeout=poll_every if poll else None,
                                      return_when=cf.FIRST_COMPLETED)
                    if done:
                        break
                    if poll is not None:
                        poll([(t, values[numbers(s)], threads or 1)
                              for t, s in sorted(in_flight.values(), key=lambda ts: ts[1])])
                broken = any(isinstance(f.exception(), cf.process.BrokenProcessPool)
                             for f in done)
            if broken:
                cf.wait(in_flight)  # the pool fails every other in-flight future as well
                done = set(in_flight)
            for fut in done:
                task, _ = in_flight.pop(fut)
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
                            log(f"{what}: a worker died while running {task.task_id}; "
                                "resubmitting it")
                        pending.appendleft(task)
                else:
                    raised[task.task_id] = raised.get(task.task_id, 0) + 1
                    if raised[task.task_id] <= retries:
                        pending.append(task)
                    else:
                        yield task, None, failure(task, exc, attempts=raised[task.task_id])
            if broken:
                _stop(pool)
                pool = new_pool()
        finished = True
    finally:
        if not finished:
            # Interrupted (Ctrl-C, or the consumer stopped early): stop the running tasks now
            # rather than wait for them, and wait until every worker is gone.
            _stop(pool)
        pool.shutdown(wait=True, cancel_futures=True)


def _stop(pool: cf.ProcessPoolExecutor) -> None:
    """Terminate every worker of ``pool`` and wait until they are gone. Also after a broken
    pool: a worker started by a submit while the pool was breaking escapes the pool's own
    termination, and its manager thread would wait for it forever (CPython 3.11)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        process.terminate()
    for process in processes:
        process.join()
    pool.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------------------ Dask

#: How long :func:`iter_dask` waits for the Dask scheduler to answer before it gives up.
CONNECT_TIMEOUT_S = 5.0


def check_scheduler(url: str) -> str:
    """``url`` when it is a scheduler address ``tcp://HOST:PORT`` (or ``tls://``), port
    1..65535; else a NumnetError naming ``--scheduler`` with an example. Checked before any
    data is loaded or connection tried."""
    example = "e.g. --scheduler tcp://127.0.0.1:8786"
    scheme, sep, rest = url.partition("://")
    host, colon, port = rest.rpartition(":")
    if not sep or scheme not in ("tcp", "tls") or not colon or not host or "/" in rest:
        raise NumnetError(f"--scheduler {url!r} is not a scheduler address tcp://HOST:PORT; "
                          + example)
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise NumnetError(f"--scheduler {url!r}: the port must be a number from 1 to 65535, "
                          f"got {port!r}; " + example)
    return url


def iter_dask(
    tasks: Sequence[Any],
    fn: Callable[..., Any],
    args: tuple[Any, ...] = (),
    *,
    scheduler: str,
    retries: int = 0,
    timeout: float = CONNECT_TIMEOUT_S,
) -> Iterator[Outcome]:
    """Run ``fn(task, *args)`` for every task on the Dask distributed cluster at
    ``scheduler`` (``tcp://host:port``), earlier tasks first; yield outcomes as
    :func:`iter_local` does. ``fn`` must be importable by the workers."""
    try:
        from dask.distributed import Client, as_completed
    except ImportError:
        raise NumnetError("--scheduler needs Dask distributed: pip install 'numnet[cluster]'"
                          ) from None
    check_scheduler(scheduler)
    try:
        client = Client(scheduler, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        raise NumnetError(f"--scheduler {scheduler}: cannot connect to a Dask scheduler "
                          f"({exc}); start one with `dask scheduler` and workers with "
                          f"`dask worker {scheduler}`") from None
    token = uuid.uuid4().hex[:8]  # fresh keys: a rerun never picks up an older result
    try:
        futures = [client.submit(fn, task, *args, pure=False, retries=retries,
                                 key=f"numnet-{token}-{task.task_id}", priority=len(tasks) - k)
                   for k, task in enumerate(tasks)]
        by_key = dict(zip((f.key for f in futures), tasks, strict=True))
        for fut in as_completed(futures):
            task = by_key[fut.key]
            if fut.status == "finished":
                yield task, fut.result(), None
            else:
                try:
                    exc, tb = fut.exception(), fut.traceback()
                except BaseException as err:  # cancelled: no exception to fetch
                    exc, tb = err, None
                yield task, None, failure(task, exc, tb, attempts=retries + 1)
            fut.release()
    finally:
        client.close()
