"""Execute and record: :func:`execute` trains a command's runs and saves them, resumably.

It reuses the runs already finished in the folder (:func:`store.load_record
<numnet.lab.experiments.store.load_record>`, unless ``force``), groups the others
(:func:`~numnet.lab.experiments.plan.run_groups`), trains the groups with the one worker
function (:func:`~numnet.lab.experiments.work.work_group`) in this process (one job, plan
order) or on a backend of :mod:`numnet.lab.executor` (longest first), and saves every result
here (:func:`~numnet.lab.experiments.store.save_run`): as its group comes back, or, in this
process, as each run ends. Failures: without ``keep_going`` (reproduce) the first one is
raised, its workers stopped; with it (sweep) a run is retried ``retries`` times, recorded in
``errors/<run_id>.json`` and the others go on. Interrupted (Ctrl-C), it stops and joins the
workers, says how many runs are saved and re-raises: the same command finishes the others.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from numnet.core import runtime
from numnet.core.datasets import Datasets
from numnet.core.errors import NumnetError
from numnet.core.io import remove_stale_parts
from numnet.core.runtime import available_cores
from numnet.lab import executor
from numnet.lab.executor import Outcome, TaskFailure
from numnet.lab.experiments.plan import RunGroup, estimated_cost, run_groups
from numnet.lab.experiments.store import load_record, run_paths, save_error, save_run
from numnet.lab.experiments.work import (
    PROGRESS_FIELDS,
    DataRef,
    GroupDone,
    WorkContext,
    in_flight,
    install_data,
    load_data,
    train_group,
    work_group,
    worker_info,
)
from numnet.lab.metrics import metrics_path, write_metrics
from numnet.lab.progress import Log, ProgressDisplay, plural, stderr_log
from numnet.lab.training import RunResult, RunSpec, expected_updates


@dataclass
class Execution:
    """What :func:`execute` did: every finished run (reused or made now; models dropped) and
    its record by run id, the failed runs, which were reused, on how many processes, the
    workers' CPU seconds, the evidence figures they drew, how long it took."""

    results: dict[str, RunResult] = field(default_factory=dict)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: dict[str, TaskFailure] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)
    jobs: int = 1
    cpu_time: float = 0.0
    figures: dict[str, dict[str, bytes]] = field(default_factory=dict)
    wall_time: float = 0.0

    @property
    def made(self) -> list[str]:
        """The runs made now, in the order they were recorded."""
        return [rid for rid in self.records if rid not in self.reused]


def execute(
    specs: Sequence[RunSpec],
    out: Path,
    data: Datasets | DataRef,
    *,
    info: dict[str, Any] | None = None,
    protocol_hash: str = "",
    what: str = "numnet",
    title: str = "",
    jobs: int | None = None,
    scheduler: str | None = None,
    threads: int | None = None,
    device: str = "cpu",
    retries: int = 0,
    keep_going: bool = False,
    force: bool = False,
    figures: bool = False,
    progress: str = "auto",
    log: Log = stderr_log,
    fn: Any = work_group,
) -> Execution:
    """Train and record ``specs`` in ``out`` (see the module docstring).

    data: the data (with ``info``, their ``data_info``), or where they are (loaded here, or by
    each Dask worker with a ``scheduler``). jobs: local worker processes (None: one per CPU; 1: this
    process). threads: every worker's thread count (None: 1); with one job, this process's
    while it trains (None: as it is). figures: the workers draw each run's evidence figures
    (``Execution.figures``). fn: the worker function on workers (``work_group``; tests wrap
    it to inject faults). what, title: the command and what it makes, for the log lines.
    """
    started = time.perf_counter()
    ex = Execution()
    if isinstance(data, DataRef) and not scheduler:
        data, info = load_data(data)
    fingerprint = info["fingerprint"] if info is not None else None
    n_train = info["train_examples"] if info is not None else None
    for spec in specs:
        record = None if force else load_record(out, spec, protocol_hash, fingerprint)
        if record is not None:
            ex.records[spec.run_id] = record
            ex.results[spec.run_id] = RunResult.from_dict(record["result"])
            ex.reused.append(spec.run_id)
    groups = run_groups([s for s in specs if s.run_id not in ex.results])
    totals = {s.run_id: expected_updates(n_train, s.batch_size, s.epochs) if n_train else 0
              for s in specs}
    ex.jobs = 1 if scheduler else min(jobs or available_cores(), max(len(groups), 1))
    display = ProgressDisplay(progress, log, sum(totals[g.task_id] for g in groups))
    shared = sum(len(g.shorter) for g in groups)
    display.message(
        f"{what}: {title + ', ' if title else ''}{plural(len(specs), 'run')}"
        + (f" ({shared} taken from longer runs)" if shared else "")
        + (f", on the Dask cluster {scheduler}" if scheduler
           else f", {ex.jobs} worker processes" if ex.jobs > 1 else "") + f", output {out}")
    shown = [0]

    def label(ended: bool = True) -> str:
        """``[k/N]``: the k-th run to end (``ended``), else the next one."""
        shown[0] += ended
        return f"[{shown[0] + (not ended)}/{len(specs)}]"

    for rid in ex.reused:
        record_path, _ = run_paths(out, rid)
        if not metrics_path(record_path).is_file():  # a run saved before metrics existed
            write_metrics(record_path, ex.records[rid]["result"], n_train)
        display.end_run(label(), ex.results[rid], totals[rid], reused=True)

    def save(result: RunResult, worker: dict[str, Any], seen: dict[str, Any]) -> None:
        if result.run_id in ex.records:  # saved already (as it ended, in this process)
            return
        ex.records[result.run_id] = save_run(
            out, result, protocol_hash, seen["fingerprint"],
            train_examples=seen["train_examples"], worker=worker)
        result.model = None  # saved; do not keep every model
        ex.results[result.run_id] = result

    ctx = WorkContext(device, figures and (scheduler is not None or ex.jobs > 1),
                      data if scheduler else None, (threads or 1) if scheduler else None)
    order = sorted(groups, key=lambda g: -estimated_cost(g.trained))  # stable among equals
    if scheduler:
        outcomes = executor.iter_dask(order, fn, (ctx,), scheduler=scheduler, retries=retries)
    elif ex.jobs == 1:
        outcomes = _in_this_process(groups, data, info, ctx, threads, display, totals, label,
                                    save, keep_going, retries)
    else:
        def poll(statuses: list[tuple[RunGroup, list[float], int]]) -> None:
            display.in_flight([in_flight(*status) for status in statuses])

        outcomes = executor.iter_local(
            order, fn, (ctx,), jobs=ex.jobs, retries=retries, threads=threads or 1,
            initializer=install_data, initargs=(data, info), fields=len(PROGRESS_FIELDS),
            poll=poll, log=display.message, what=what)
    try:
        for group, done, failed in outcomes:
            if failed is None:
                ex.cpu_time += done.cpu_time
                ex.figures.update(done.figures)
                for result in done.results:
                    save(result, done.worker, done.data)
                    display.end_run(label(), ex.results[result.run_id], totals[result.run_id])
            elif not keep_going:
                if isinstance(failed.exception, NumnetError | ValueError):
                    raise failed.exception
                raise NumnetError(f"{group.task_id}: {failed.error}")
            else:
                for spec in group.specs:
                    if spec.run_id not in ex.records and spec.run_id not in ex.failures:
                        ex.failures[spec.run_id] = dataclasses.replace(failed,
                                                                       task_id=spec.run_id)
                        save_error(out, ex.failures[spec.run_id])
                        display.message(f"{label()} {spec.run_id}: FAILED: {failed.error}")
    except KeyboardInterrupt as exc:
        display.close()
        message = (f"{what}: interrupted; {len(ex.records)} of {len(specs)} runs are saved in "
                   f"{out}. Rerun the same command to finish the others.")
        log(message)
        exc.add_note(message)  # said once: the command line adds nothing
        raise
    finally:
        outcomes.close()  # stops and joins the workers when interrupted or failed
        display.close()
        for folder in ("runs", "weights", "errors"):
            remove_stale_parts(out / folder, older_than_s=0)
    ex.wall_time = time.perf_counter() - started
    return ex


def _in_this_process(groups: list[RunGroup], data: Datasets, info: dict[str, Any],
                     ctx: WorkContext, threads: int | None, display: ProgressDisplay,
                     totals: dict[str, int], label: Callable[..., str],
                     save: Callable[..., None], keep_going: bool,
                     retries: int) -> Iterator[Outcome]:
    """The groups trained here, in plan order, each run saved as it ends; outcomes as the
    executor's backends yield them. Without ``keep_going`` a failure raises at once."""
    for group in groups:
        for attempt in range(1, retries + 2):
            display.start_run(label(ended=False), group.trained, totals[group.task_id])
            try:
                with runtime.threads(threads):
                    worker = worker_info()
                    results = train_group(group, data, ctx.device, on_progress=display.update,
                                          on_result=lambda r, w=worker: save(r, w, info))
            except Exception as exc:
                if not keep_going:
                    raise
                if attempt <= retries:
                    continue
                yield group, None, executor.failure(group, exc, attempts=attempt)
            else:
                yield group, GroupDone(results, worker=worker, data=info), None
            break
