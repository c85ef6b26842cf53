"""Execute and record: :func:`execute` trains a command's runs and saves them, resumably, and
:func:`work_group` is the one worker function that trains them.

:func:`execute` reuses the runs already finished in the folder (:func:`store.load_record
<numnet.lab.experiments.store.load_record>`, unless ``force``), groups the others
(:func:`~numnet.lab.experiments.plan.run_groups`), trains the groups in this process (one job,
plan order) or with :func:`work_group` on a backend of :mod:`numnet.lab.executor` (longest
first), and saves every result here (:func:`~numnet.lab.experiments.store.save_run`): as its
group comes back, or, in this process, as each run ends. Failures: without ``keep_going``
(reproduce) the first one is raised, its workers stopped; with it (sweep) a run is retried
``retries`` times, recorded in ``errors/<run_id>.json`` and the others go on. Interrupted
(Ctrl-C), it stops and joins the workers, says how many runs are saved and re-raises: the same
command finishes the others.

A group (the run trained and the shorter runs taken from it, :func:`train_group`) is trained
wherever it runs -- this process, a local worker process or a Dask worker -- and its results
are *returned*, models included (on the CPU, caches dropped): this process writes every
record, as a Dask worker may not share its filesystem. The data never travel with a group: a
local worker gets them once from the executor's initializer (:func:`install_data`); a Dask
worker loads them once per process from a :class:`DataRef` (:func:`load_data`, its own cache
or sources; a data dir must exist at the same path on every worker) and pins its threads on
its first group. Local workers report their progress into their slot
(:data:`PROGRESS_FIELDS`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from numnet.core import runtime
from numnet.core.datasets import Datasets
from numnet.core.errors import NumnetError
from numnet.core.io import remove_stale_parts
from numnet.core.runtime import available_cores
from numnet.lab import data as data_mod
from numnet.lab import executor
from numnet.lab.environment import blas_thread_counts, data_info
from numnet.lab.executor import Outcome, TaskFailure
from numnet.lab.experiments.plan import RunGroup, estimated_cost, run_groups
from numnet.lab.experiments.store import load_record, run_paths, save_error, save_run
from numnet.lab.metrics import metrics_path, write_metrics
from numnet.lab.progress import InFlight, Log, ProgressDisplay, plural, stderr_log
from numnet.lab.report.internals_section import run_evidence_images
from numnet.lab.training import (
    Progress,
    Reporter,
    RunResult,
    RunSpec,
    ShorterRuns,
    expected_updates,
    train_run,
)

#: What a worker publishes in its slot (``executor.report_progress``): the fields of an
#: :class:`~numnet.lab.progress.InFlight` after the run id, less its threads.
PROGRESS_FIELDS = ("update", "total", "test_accuracy", "elapsed")


@dataclass(frozen=True)
class DataRef:
    """Where a Dask worker finds the data (the data themselves never travel with a group).

    ``data_dir``: a folder with the four IDX files (None: the cache, then the download
    sources); ``cache_dir``: the cache root (None: the default); ``verify``: check the files'
    SHA-256 against the official ones (False for home-made IDX files).
    """

    dataset: str = "mnist"
    data_dir: str | None = None
    cache_dir: str | None = None
    validation_size: int = 5000
    verify: bool = True


@dataclass(frozen=True)
class WorkContext:
    """How a worker trains its groups (picklable). ``data``: where a Dask worker loads the
    data (None: installed by the executor's initializer); ``threads``: the count a Dask worker
    pins on its first group (local workers are pinned by the executor)."""

    device: str = "cpu"
    #: draw each run's evidence figures as it ends (draw_figures)
    draw_figures: bool = False
    data: DataRef | None = None
    threads: int | None = None


@dataclass
class GroupDone:
    """What a worker returns for a group: the results (``group.specs`` order, models on the
    CPU), its CPU seconds, the runs' evidence figures ``{run_id: {file name: PNG bytes}}``
    when asked, where it ran (:func:`worker_info`) and the data it saw (``data_info``)."""

    results: list[RunResult]
    cpu_time: float = 0.0
    figures: dict[str, dict[str, bytes]] = field(default_factory=dict)
    worker: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)


def check_data_fits(spec: RunSpec, datasets: Datasets) -> None:
    """A clear error when the data are smaller than the run asks for."""
    n_train, n_test = datasets.train.num_examples, datasets.test.num_examples
    for what, need, have in (("batch_size", spec.batch_size, n_train),
                             ("eval_train_examples", spec.eval_train_examples, n_train),
                             ("eval_test_examples", spec.eval_test_examples, n_test)):
        if need > have:
            raise NumnetError(f"{spec.run_id}: {what} = {need} but the split has only {have} "
                              "examples; use a protocol that fits the data")


def train_group(group: RunGroup, data: Datasets, device: str = "cpu",
                on_progress: Callable[[Progress], None] | None = None,
                on_result: Callable[[RunResult], None] | None = None,
                figures: dict[str, dict[str, bytes]] | None = None) -> list[RunResult]:
    """Train ``group.trained`` and take its shorter runs from it; each result (its model moved
    to the CPU, caches dropped) goes to ``on_result`` as it ends, and its evidence figures
    into ``figures`` when given. Returns the results in ``group.specs`` order."""
    check_data_fits(group.trained, data)
    done: dict[str, RunResult] = {}

    def end(result: RunResult) -> None:
        if result.model is not None:
            result.model.to("cpu")
        if figures is not None:
            figures.update(draw_figures([result]))
        if on_result is not None:
            on_result(result)
        done[result.run_id] = result

    plugins = [Reporter(on_progress)] if on_progress is not None else []
    end(train_run(group.trained, data, device=device,
                  plugins=[*plugins, ShorterRuns(group.shorter, end)]))
    return [done[s.run_id] for s in group.specs]


def draw_figures(results: Iterable[RunResult]) -> dict[str, dict[str, bytes]]:
    """``{run_id: {file name: PNG bytes}}``: the evidence figures of finished runs, what
    ``write_report`` would draw from the same records (``run_evidence_images``: a run's
    figures depend on its record alone). A worker draws them as each run ends, beside the
    trainings still running, and the report embeds the bytes instead of drawing them again
    (the bytes are the same either way, tested)."""
    return {result.run_id: run_evidence_images(result.to_dict()) for result in results}


def worker_info() -> dict[str, Any]:
    """Where a group ran: host, pid, BLAS and numnet thread counts (a record's ``worker``)."""
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "blas_threads": blas_thread_counts(), "numnet_threads": runtime.get_threads()}


# ------------------------------------------------------------------------------ in a worker


_WORKER_DATA: dict[str, tuple[Datasets, dict[str, Any]]] = {}
_DATA_LOCK = threading.Lock()


def install_data(data: Datasets, info: dict[str, Any]) -> None:
    """The local executor's initializer: the data (and their ``data_info``) every group of
    this worker uses."""
    _WORKER_DATA["data"] = (data, info)


@functools.lru_cache(maxsize=2)
def _load_cached(ref: DataRef) -> tuple[Datasets, dict[str, Any]]:
    data = data_mod.load(ref.dataset, ref.data_dir, cache_dir=ref.cache_dir, verify=ref.verify,
                         validation_size=ref.validation_size, progress=False)
    return data, data_info(ref.dataset, data)


def load_data(ref: DataRef) -> tuple[Datasets, dict[str, Any]]:
    """``(Datasets, data_info)`` for ``ref``, loaded once per process and then reused."""
    with _DATA_LOCK:  # a Dask worker may run several groups in threads
        return _load_cached(ref)


def _publish(p: Progress) -> None:
    accuracy = math.nan if p.test_accuracy is None else p.test_accuracy
    executor.report_progress([p.update, p.total_updates, accuracy, p.elapsed])


def work_group(group: RunGroup, ctx: WorkContext) -> GroupDone:
    """The executor's function: :func:`train_group` in a worker process (local or Dask), its
    results returned with this process's CPU seconds for them, their figures when
    ``ctx.draw_figures``, :func:`worker_info` and the data's ``data_info``."""
    cpu = time.process_time()
    executor.pin_threads(ctx.threads)
    data, info = load_data(ctx.data) if ctx.data is not None else _WORKER_DATA["data"]
    images: dict[str, dict[str, bytes]] = {}
    results = train_group(group, data, ctx.device, on_progress=_publish,
                          figures=images if ctx.draw_figures else None)
    return GroupDone(results, time.process_time() - cpu, images, worker_info(), info)


def in_flight(group: RunGroup, values: list[float], threads: int) -> InFlight:
    """The run of ``group`` in flight, from its slot's numbers (:data:`PROGRESS_FIELDS`)."""
    update, total, accuracy, elapsed = values
    return InFlight(group.task_id, int(update), int(total),
                    None if math.isnan(accuracy) else accuracy, elapsed, threads)


# ------------------------------------------------------------------------------ execute


@dataclass
class Execution:
    """What :func:`execute` did: every finished run (reused or made now; models dropped) and
    its record by run id, the failed runs, which were reused, on how many processes, the
    workers' CPU seconds and the evidence figures they drew."""

    results: dict[str, RunResult] = field(default_factory=dict)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: dict[str, TaskFailure] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)
    jobs: int = 1
    cpu_time: float = 0.0
    figures: dict[str, dict[str, bytes]] = field(default_factory=dict)

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
    say_ends: bool = True,
    fn: Any = work_group,
) -> Execution:
    """Train and record ``specs`` in ``out`` (see the module docstring).

    data: the data (with ``info``, their ``data_info``), or where they are (loaded here, or by
    each Dask worker with a ``scheduler``). jobs: local worker processes (None: one per CPU; 1: this
    process). threads: every worker's thread count (None: 1); with one job, this process's
    while it trains (None: as it is). figures: the workers draw each run's evidence figures
    (``Execution.figures``). fn: the worker function on workers (``work_group``; tests wrap
    it to inject faults). what, title: the command and what it makes, for the log lines;
    say_ends: a line per run as it ends (False: the caller says it).
    """
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
    display = ProgressDisplay(progress, log, sum(totals[g.task_id] for g in groups),
                              say_ends=say_ends)
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
