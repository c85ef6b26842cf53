"""Execution of sweep tasks on a Dask distributed cluster: one ``client.submit`` per task,
results as they complete; rescheduling after a worker dies is the scheduler's business."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence

from numnet.core.errors import NumnetError
from numnet.lab.progress import Log
from numnet.lab.sweep.outcome import Outcome, TaskFn, failure
from numnet.lab.sweep.plan import DataRef, SweepTask
from numnet.lab.sweep.worker import run_task

#: How long a sweep waits for the Dask scheduler to answer before it gives up.
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
    tasks: Sequence[SweepTask], data: DataRef, *, scheduler: str, device: str = "cpu",
    retries: int = 0, threads: int | None = 1, task_fn: TaskFn = run_task,
    log: Log | None = None, timeout: float = CONNECT_TIMEOUT_S,
) -> Iterator[Outcome]:
    """Run ``tasks`` on the Dask distributed cluster at ``scheduler`` (``tcp://host:port``);
    yield outcomes as in :func:`iter_local`. Worker deaths are the scheduler's business
    (it reschedules); ``retries`` is Dask's per-task retry count for tasks that raise."""
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
    token = uuid.uuid4().hex[:8]  # fresh keys: a rerun never picks up an older sweep's result
    try:
        # earlier tasks first (the driver orders them longest first)
        futures = [client.submit(task_fn, task, data, device, threads, pure=False,
                                 retries=retries, key=f"numnet-sweep-{token}-{task.task_id}",
                                 priority=len(tasks) - k)
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
