"""``numnet sweep``: many seeds (and a grid of settings) per cell, run as independent tasks,
locally on N worker processes or on a Dask distributed cluster, aggregated into mean +- spread.

Tasks. A sweep is a protocol (restricted to some models), optionally a grid that replaces the
protocol's settings, and ``seeds`` replicates. Every (model, setting, replicate) is one
:class:`SweepTask` holding the full :class:`numnet.lab.training.RunSpec` it trains; a task is a pure
function of its spec and the data, so it may run in any process on any machine.

Seeds (:func:`expand`):

- without a grid, replicate ``r`` of a protocol seeded ``s`` is exactly the run that
  ``numnet reproduce --seed s+r`` makes (:func:`numnet.lab.experiments.plan_runs`): replicate 0 *is*
  the protocol's own run, and any replicate can be re-made alone with ``reproduce``;
- with a grid, a setting's seed is keyed by its content (model and every grid field), not by
  its position: ``SeedSequence([s + r, crc32(model), crc32(setting key)])``. Adding a value to
  the grid leaves the seeds (and results) of the other settings unchanged.

Execution (:func:`run_tasks`):

- local: a ``concurrent.futures.ProcessPoolExecutor`` with a forkserver (else spawn) context and
  ``jobs`` workers, each with its BLAS pinned to ``blas_threads`` (1) thread by threadpoolctl, so
  N processes do not oversubscribe the cores. At most ``jobs`` tasks are in flight, so every
  submitted task is running. A worker that dies (killed, out of memory) breaks the pool: the
  tasks that were in flight are resubmitted to a fresh pool, up to :data:`ALLOWED_FAILURES`
  times each (as Dask's scheduler does); results already received are kept, so every task's
  result is recorded exactly once.
- Dask: ``Client(scheduler)``, one ``client.submit(..., retries=retries, pure=False)`` per task
  and ``as_completed``. Dask's scheduler reschedules the tasks of a worker that dies
  (``distributed.scheduler.allowed-failures``) and ``retries`` resubmits a task that raised.
  Nothing is home-made for scheduling, retries or transport.
- The data never travels with a task: a task carries a :class:`DataRef` (dataset name, data dir,
  cache dir, split) and each worker process loads it once (:func:`load_data`, cached per
  process) from its own cache or sources. A data dir must exist at the same path on every worker.

A task that raises is reported (its error and traceback in ``errors/<task_id>.json``) and the
others go on; ``run_tasks`` returns the failures alongside the results.

Output folder (every file written atomically)::

    OUT/
      sweep.json             the plan: protocol (text, hash), grid, seeds, models, every task
      protocol.toml          the protocol file used (verbatim)
      tasks/<task_id>.json   one finished task (RunResult.to_dict() + data fingerprint + worker)
      errors/<task_id>.json  a task that failed (error, traceback); retried on the next run
      summary.json           per cell: final accuracies' n, mean, std, min, max, 95% t-interval;
                             per evaluation: mean, std, min, max of the curves
      summary.csv, summary.md
      summary_table.png      (plots) rows "Model 1".., columns "Setting 1"..: mean +- std (n)
      learning_curves.png    SPEC's 3x4 layout, mean curves with +-std and min-max bands

Resuming: a task whose ``tasks/<task_id>.json`` holds the same spec (and dataset, split) is
skipped; rerunning the same command finishes an interrupted sweep. ``force=True`` redoes all.

Aggregation counts runs with status ``ok``; a diverged run (a result, not an error) is counted
in ``n_diverged`` and left out of the statistics (its curve ends early and its final accuracy
is that of its last finite evaluation); a failed task is counted in ``n_error``.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import datetime as _dt
import functools
import io
import itertools
import json
import math
import multiprocessing
import os
import socket
import sys
import threading
import time
import traceback
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from numnet import __version__
from numnet.core.errors import NumnetError
from numnet.lab import protocol as protocol_mod
from numnet.lab.protocol import Protocol
from numnet.lab.training import RunSpec

SWEEP_FORMAT = "numnet.lab.sweep/1"
TASK_FORMAT = "numnet.lab.sweep-task/1"
SUMMARY_FORMAT = "numnet.lab.sweep-summary/1"
#: Resubmissions of a task whose worker process died (Dask's allowed-failures default is 3).
ALLOWED_FAILURES = 3
#: Keys of a task record that depend on the clock or on where it ran (not on the result).
NONDETERMINISTIC_KEYS = frozenset({"wall_time", "updates_per_second", "worker", "timing"})

#: Grid keys and how their values are parsed; every key is a RunSpec field.
GRID_KEYS: dict[str, Callable[[str], Any]] = {}

Log = Callable[[str], None]


def _stderr_log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ plan


@dataclass(frozen=True)
class DataRef:
    """Where a worker finds the data (the data itself never travels with a task).

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
class Cell:
    """One cell of the summary: a model and one setting, made ``seeds`` times.

    ``spec`` is the cell's RunSpec with ``seed=0`` (the replicates differ only in the seed);
    ``seed_key`` is None when the seeds are the protocol's (:func:`numnet.lab.experiments.run_seed`)
    and the setting's content key when they come from a grid.
    """

    cell_id: str
    model: str
    setting: int
    label: str
    spec: RunSpec
    seed_key: str | None = None


@dataclass(frozen=True)
class SweepTask:
    """One run of a sweep: ``spec`` (with its own seed) is everything it computes from."""

    task_id: str
    cell_id: str
    replicate: int
    spec: RunSpec


@dataclass(frozen=True)
class SweepPlan:
    """The cells and tasks of a sweep, in order (models, then settings, then replicates)."""

    protocol: Protocol
    seeds: int
    grid: dict[str, list[Any]]
    cells: tuple[Cell, ...]
    tasks: tuple[SweepTask, ...]

    def to_dict(self) -> dict[str, Any]:
        p = self.protocol
        return {
            "protocol": {"name": p.name, "source": p.source, "hash": p.hash, "seed": p.seed,
                         "quick": p.quick, "dataset": p.dataset,
                         "validation_size": p.validation_size,
                         "models": [m.name for m in p.models], "text": p.text},
            "seeds": self.seeds,
            "grid": self.grid,
            "cells": [{"cell_id": c.cell_id, "model": c.model, "setting": c.setting,
                       "label": c.label, "seed_key": c.seed_key, "spec": c.spec.to_dict()}
                      for c in self.cells],
            "tasks": [{"task_id": t.task_id, "cell_id": t.cell_id, "replicate": t.replicate,
                       "seed": t.spec.seed} for t in self.tasks],
        }


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be a positive integer")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise ValueError("must be a positive finite number")
    return value


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return text
    return parse


GRID_KEYS.update({
    "lr": _positive_float,
    "epochs": _positive_int,
    "batch_size": _positive_int,
    "reduction": _choice(protocol_mod.REDUCTIONS),
    "bias_init": _choice(protocol_mod.BIAS_INITS),
    "conv_activation": _choice(protocol_mod.CONV_ACTIVATIONS),
})


def parse_grid(items: Sequence[str] | None) -> dict[str, list[Any]]:
    """``["lr=0.1,0.01", "epochs=5,10"]`` -> ``{"lr": [0.1, 0.01], "epochs": [5, 10]}``.

    Keys: see :data:`GRID_KEYS`. Values keep their order; duplicates are dropped. A key given
    twice is an error. Raises NumnetError naming the offending item.
    """
    grid: dict[str, list[Any]] = {}
    for item in items or ():
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise NumnetError(f"--grid {item!r}: expected KEY=V1,V2,... (e.g. lr=0.1,0.01)")
        if key not in GRID_KEYS:
            raise NumnetError(
                f"--grid {item!r}: unknown key {key!r}; use one of {', '.join(GRID_KEYS)}"
            )
        if key in grid:
            raise NumnetError(f"--grid: key {key!r} given twice; list all its values once")
        parsed: list[Any] = []
        for text in values.split(","):
            text = text.strip()
            if not text:
                continue
            try:
                value = GRID_KEYS[key](text)
            except ValueError as exc:
                raise NumnetError(f"--grid {key}={text!r}: {exc}") from None
            if value not in parsed:
                parsed.append(value)
        if not parsed:
            raise NumnetError(f"--grid {item!r}: no value given for {key!r}")
        grid[key] = parsed
    return grid


def setting_key(spec: RunSpec, keys: Iterable[str]) -> str:
    """The content key of a grid setting: ``"epochs=5;lr=0.1"`` (sorted keys, exact reprs)."""
    return ";".join(f"{k}={getattr(spec, k)!r}" for k in sorted(set(keys) | {"epochs", "lr"}))


def grid_seed(base_seed: int, model: str, key: str) -> int:
    """Seed of a grid setting's run: ``SeedSequence([base_seed, crc32(model), crc32(key)])``'s
    first uint32 word (independent of the other settings and of their order)."""
    ss = np.random.SeedSequence([base_seed, zlib.crc32(model.encode()), zlib.crc32(key.encode())])
    return int(ss.generate_state(1)[0])


def _label(spec: RunSpec, keys: Iterable[str]) -> str:
    label = f"Epochs: {spec.epochs}, Learning rate: {spec.lr:g}"
    extra = [f"{k}={getattr(spec, k)}" for k in sorted(set(keys) - {"epochs", "lr"})]
    return label + (f" ({', '.join(extra)})" if extra else "")


def expand(
    protocol: Protocol,
    seeds: int,
    grid: dict[str, list[Any]] | None = None,
    models: list[str] | None = None,
) -> SweepPlan:
    """Expand protocol x grid x seeds into cells and tasks (seed rules: module docstring).

    With a grid, each model's settings become: for every protocol setting, every combination
    of the grid's values replacing the corresponding fields; duplicates are merged (first
    occurrence kept). E.g. ``lr=0.1,0.01`` on model 3's (5, 0.003), (40, 0.003), (40, 0.05)
    gives (5, 0.1), (5, 0.01), (40, 0.1), (40, 0.01).
    """
    from numnet.lab.experiments import plan_runs

    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise NumnetError(f"--seeds must be a positive integer, got {seeds!r}")
    grid = dict(grid or {})
    base = plan_runs(protocol, models)  # replicate 0 of the protocol; validates ``models``
    cells: list[Cell] = []
    if not grid:
        for spec in base:
            cells.append(Cell(spec.run_id, spec.model, int(spec.setting or 1), _label(spec, ()),
                              dataclasses.replace(spec, seed=0)))
    else:
        keys = list(grid)
        by_model: dict[str, list[RunSpec]] = {}
        for spec in base:
            for values in itertools.product(*(grid[k] for k in keys)):
                changed = dataclasses.replace(spec, seed=0, setting=None,
                                              **dict(zip(keys, values, strict=True)))
                if changed not in by_model.setdefault(spec.model, []):
                    by_model[spec.model].append(changed)
        for model, specs in by_model.items():
            for k, spec in enumerate(specs, start=1):
                spec = dataclasses.replace(spec, setting=k)
                cells.append(Cell(spec.run_id, model, k, _label(spec, keys), spec,
                                  seed_key=setting_key(spec, keys)))
    tasks: list[SweepTask] = []
    for cell in cells:
        for r in range(seeds):
            if cell.seed_key is None:
                seed = plan_runs(protocol.with_seed(protocol.seed + r), [cell.model])[
                    cell.setting - 1].seed
            else:
                seed = grid_seed(protocol.seed + r, cell.model, cell.seed_key)
            tasks.append(SweepTask(f"{cell.cell_id}-seed{r}", cell.cell_id, r,
                                   dataclasses.replace(cell.spec, seed=seed)))
    return SweepPlan(protocol, seeds, grid, tuple(cells), tuple(tasks))


# ------------------------------------------------------------------------------ worker side

_DATA_LOCK = threading.Lock()
_BLAS_LIMIT: Any = None  # the threadpoolctl limiter of this process, kept alive


def pin_blas_threads(threads: int | None) -> None:
    """Limit this process's BLAS (and OpenMP) pools to ``threads``, and numnet's own helper
    thread of the conv fast path (``numnet.core.runtime.set_threads``) to as many, at most 2
    (None: leave them alone). Results do not depend on it; speed does, when N worker
    processes share N cores.

    Done once per process (a worker initializer, or the first task on a Dask worker)."""
    global _BLAS_LIMIT
    if threads is None or _BLAS_LIMIT is not None:
        return
    from threadpoolctl import threadpool_limits

    from numnet.core import runtime

    _BLAS_LIMIT = threadpool_limits(limits=threads)
    runtime.set_threads(min(2, max(1, threads)))


@functools.lru_cache(maxsize=2)
def _load_cached(ref: DataRef) -> tuple[Any, dict[str, Any]]:
    from numnet.lab import data as data_mod
    from numnet.lab.experiments import data_info

    data = data_mod.load(ref.dataset, ref.data_dir, cache_dir=ref.cache_dir, verify=ref.verify,
                         validation_size=ref.validation_size, progress=False)
    return data, data_info(ref.dataset, data)


def load_data(ref: DataRef) -> tuple[Any, dict[str, Any]]:
    """``(Datasets, data_info)`` for ``ref``, loaded once per process and then reused."""
    with _DATA_LOCK:  # a Dask worker may run several tasks in threads
        return _load_cached(ref)


def run_task(
    task: SweepTask, data: DataRef, device: str = "cpu", blas_threads: int | None = 1
) -> dict[str, Any]:
    """Train one task where this function runs (a pool worker, a Dask worker) and return its
    record (JSON-able): the RunResult's dict, the data fingerprint and where it ran."""
    from numnet.lab.training import train_run

    pin_blas_threads(blas_threads)
    datasets, info = load_data(data)
    check_data_fits(task.spec, datasets)
    result = train_run(task.spec, datasets, device=device)
    return {
        "format": TASK_FORMAT,
        "task_id": task.task_id,
        "cell_id": task.cell_id,
        "replicate": task.replicate,
        "device": device,
        "data": info,
        "result": result.to_dict(),
        "worker": {"host": socket.gethostname(), "pid": os.getpid(),
                   "blas_threads": _blas_threads(), "numnet_threads": _numnet_threads()},
    }


def _numnet_threads() -> int:
    from numnet.core import runtime

    return runtime.get_threads()


def _blas_threads() -> list[int]:
    """The thread counts of this process's BLAS pools (threadpoolctl), e.g. ``[1]``."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [int(p["num_threads"]) for p in threadpool_info() if p.get("user_api") == "blas"]


def check_data_fits(spec: RunSpec, datasets: Any) -> None:
    """A clear error when the data are smaller than the run asks for."""
    n_train, n_test = datasets.train.num_examples, datasets.test.num_examples
    for what, need, have in (("batch_size", spec.batch_size, n_train),
                             ("eval_train_examples", spec.eval_train_examples, n_train),
                             ("eval_test_examples", spec.eval_test_examples, n_test)):
        if need > have:
            raise NumnetError(f"{spec.run_id}: {what} = {need} but the split has only {have} "
                              "examples; use a protocol that fits the data")


def _worker_init(blas_threads: int | None) -> None:
    pin_blas_threads(blas_threads)


# ------------------------------------------------------------------------------ executors


@dataclass
class TaskFailure:
    """A task that raised (or whose worker died too often): its error text and traceback."""

    task_id: str
    error: str
    traceback: str = ""
    attempts: int = 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


TaskFn = Callable[..., dict[str, Any]]
Outcome = tuple[SweepTask, dict[str, Any] | None, TaskFailure | None]


def _failure(task: SweepTask, exc: BaseException, tb: Any = None, attempts: int = 1) -> TaskFailure:
    text = "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))
    return TaskFailure(task.task_id, f"{type(exc).__name__}: {exc}", text, attempts)


def mp_context() -> Any:
    """forkserver where the platform has it (fast, no inherited threads), else spawn."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def iter_local(
    tasks: Sequence[SweepTask], data: DataRef, *, jobs: int, device: str = "cpu",
    retries: int = 0, blas_threads: int | None = 1, task_fn: TaskFn = run_task,
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
                                      initializer=_worker_init, initargs=(blas_threads,))

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
                    fut = pool.submit(task_fn, task, data, device, blas_threads)
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
                        yield task, None, _failure(task, exc, attempts=raised[task.task_id])
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


def iter_dask(
    tasks: Sequence[SweepTask], data: DataRef, *, scheduler: str, device: str = "cpu",
    retries: int = 0, blas_threads: int | None = 1, task_fn: TaskFn = run_task,
    log: Log | None = None, timeout: float = 30.0,
) -> Iterator[Outcome]:
    """Run ``tasks`` on the Dask distributed cluster at ``scheduler`` (``tcp://host:port``);
    yield outcomes as in :func:`iter_local`. Worker deaths are the scheduler's business
    (it reschedules); ``retries`` is Dask's per-task retry count for tasks that raise."""
    try:
        from dask.distributed import Client, as_completed
    except ImportError:
        raise NumnetError("--scheduler needs Dask distributed: pip install 'numnet[cluster]'"
                          ) from None
    try:
        client = Client(scheduler, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise NumnetError(f"--scheduler {scheduler}: cannot connect to a Dask scheduler "
                          f"({exc}); start one with `dask scheduler` and workers with "
                          f"`dask worker {scheduler}`") from None
    token = uuid.uuid4().hex[:8]  # fresh keys: a rerun never picks up an older sweep's result
    try:
        # earlier tasks first (the driver orders them longest first)
        futures = [client.submit(task_fn, task, data, device, blas_threads, pure=False,
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
                yield task, None, _failure(task, exc, tb, attempts=retries + 1)
            fut.release()
    finally:
        client.close()


# ------------------------------------------------------------------------------ the driver


def task_path(out_dir: Path, task_id: str) -> Path:
    return out_dir / "tasks" / f"{task_id}.json"


def error_path(out_dir: Path, task_id: str) -> Path:
    return out_dir / "errors" / f"{task_id}.json"


def load_finished(out_dir: Path, task: SweepTask, data: DataRef) -> dict[str, Any] | None:
    """The saved record of ``task`` if it was made with the same spec and data split."""
    path = task_path(out_dir, task.task_id)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if (record.get("format") != TASK_FORMAT
                or record["result"]["spec"] != task.spec.to_dict()
                or record["data"]["dataset"] != data.dataset
                or record["data"]["validation_examples"] != data.validation_size):
            return None
        return record
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable: redo


@dataclass
class SweepOutcome:
    """What :func:`run_tasks` did: the records by task id, the failures, what was reused."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: dict[str, TaskFailure] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)
    wall_time: float = 0.0


def run_tasks(
    tasks: Sequence[SweepTask],
    out_dir: str | Path,
    data: DataRef,
    *,
    jobs: int | None = None,
    scheduler: str | None = None,
    device: str = "cpu",
    retries: int = 1,
    blas_threads: int | None = 1,
    force: bool = False,
    task_fn: TaskFn = run_task,
    log: Log = _stderr_log,
) -> SweepOutcome:
    """Run the unfinished ``tasks`` (locally with ``jobs`` processes, or on the Dask cluster
    at ``scheduler``), writing each record to ``tasks/<task_id>.json`` as it arrives.

    ``task_fn(task, data, device, blas_threads) -> record`` replaces :func:`run_task` (it
    must be importable by the workers). Returns a :class:`SweepOutcome`; failed tasks are in
    ``failures`` (and ``errors/``), never raised.
    """

    out = Path(out_dir)
    started = time.perf_counter()
    outcome = SweepOutcome()
    todo = []
    for task in tasks:
        record = None if force else load_finished(out, task, data)
        if record is not None:
            outcome.records[task.task_id] = record
            outcome.reused.append(task.task_id)
        else:
            todo.append(task)
    if outcome.reused:
        log(f"numnet sweep: {len(outcome.reused)} of {len(tasks)} tasks already finished "
            f"in {out}; skipping them")
    if todo:
        todo.sort(key=lambda t: -estimated_cost(t.spec))  # stable: plan order among equals
        if scheduler:
            outcomes = iter_dask(todo, data, scheduler=scheduler, device=device,
                                 retries=retries, blas_threads=blas_threads, task_fn=task_fn,
                                 log=log)
            where = f"Dask cluster {scheduler}"
        else:
            jobs = jobs or default_jobs()
            outcomes = iter_local(todo, data, jobs=min(jobs, len(todo)), device=device,
                                  retries=retries, blas_threads=blas_threads, task_fn=task_fn,
                                  log=log)
            where = f"{min(jobs, len(todo))} local worker processes"
        log(f"numnet sweep: running {len(todo)} tasks on {where}")
        total = len(todo)
        try:
            _collect(outcomes, out, outcome, total, log)
        except KeyboardInterrupt:
            outcomes.close()  # stops the local workers (their tasks are lost, not saved)
            log(f"numnet sweep: interrupted; {len(outcome.records)} of {len(tasks)} tasks are "
                f"saved in {out}. Rerun the same command to finish the others.")
            raise
    outcome.wall_time = time.perf_counter() - started
    return outcome


def _collect(outcomes: Iterator[Outcome], out: Path, outcome: SweepOutcome, total: int,
             log: Log) -> None:
    """Write each outcome as it arrives (task record or error file) and log it."""
    from numnet.lab.experiments import write_json

    for k, (task, record, failure) in enumerate(outcomes, start=1):
        if task.task_id in outcome.records or task.task_id in outcome.failures:
            continue  # exactly once, whatever an executor might repeat
        if record is not None:
            write_json(task_path(out, task.task_id), record)
            error_path(out, task.task_id).unlink(missing_ok=True)
            outcome.records[task.task_id] = record
            r = record["result"]
            acc = r["final_test_accuracy"]
            log(f"[{k}/{total}] {task.task_id}: {r['status']}, final test accuracy "
                f"{'-' if acc is None else f'{acc:.4f}'}, {r['wall_time']:.1f} s "
                f"({record['worker']['host']}:{record['worker']['pid']})")
        else:
            assert failure is not None
            write_json(error_path(out, task.task_id), failure.to_dict())
            outcome.failures[task.task_id] = failure
            log(f"[{k}/{total}] {task.task_id}: FAILED: {failure.error}")


#: Rough relative cost of one epoch per model (this CPU, float32): the scheduling order only.
MODEL_EPOCH_COST = {"model1": 1.0, "model2": 1.5, "model3": 2.0, "model4": 12.0}


def estimated_cost(spec: RunSpec) -> float:
    """A rough cost of a run (epochs x per-model epoch cost); tasks start longest first, so
    that the last long runs do not start when every other worker is already idle."""
    return spec.epochs * MODEL_EPOCH_COST.get(spec.model, 1.0)


def default_jobs() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# ------------------------------------------------------------------------------ statistics


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """CDF of Student's t distribution with ``df`` degrees of freedom."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (bisection on
    :func:`t_cdf`; |error| < 1e-10). ``t_quantile(0.975, 4)`` = 2.7764451..."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"need 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return 0.5 * (lo + hi)


def describe(values: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """n, mean, std (sample, ddof=1), min, max and the t-based ``confidence`` interval of the
    mean (``mean +- t_{(1+c)/2, n-1} * std / sqrt(n)``). std and the interval are None for
    n < 2; everything but n is None for n = 0."""
    v = [float(x) for x in values]
    n = len(v)
    out: dict[str, Any] = {"n": n, "mean": None, "std": None, "min": None, "max": None,
                           "ci95": None}
    if n == 0:
        return out
    mean = math.fsum(v) / n
    out.update(mean=mean, min=min(v), max=max(v))
    if n >= 2:
        std = math.sqrt(math.fsum((x - mean) ** 2 for x in v) / (n - 1))
        half = t_quantile(0.5 + confidence / 2.0, n - 1) * std / math.sqrt(n)
        out.update(std=std, ci95=[mean - half, mean + half])
    return out


def _curve_stats(curves: list[list[float]]) -> dict[str, list[float | None]]:
    """Per evaluation k (over the runs that reached it): n, mean, std, min, max."""
    length = max((len(c) for c in curves), default=0)
    stats: dict[str, list[float | None]] = {k: [] for k in ("n", "mean", "std", "min", "max")}
    for k in range(length):
        d = describe([c[k] for c in curves if len(c) > k])
        for key in stats:
            stats[key].append(d[key])
    return stats


def aggregate(plan: SweepPlan, records: dict[str, dict[str, Any]],
              failures: dict[str, TaskFailure] | None = None) -> list[dict[str, Any]]:
    """Per cell of ``plan``: counts, the statistics of the final test and train accuracies of
    its ``ok`` runs, and the per-evaluation statistics of its curves (for the bands)."""
    failures = failures or {}
    by_cell: dict[str, list[SweepTask]] = {}
    for task in plan.tasks:
        by_cell.setdefault(task.cell_id, []).append(task)
    cells = []
    for cell in plan.cells:
        tasks = by_cell.get(cell.cell_id, [])
        runs = [records[t.task_id]["result"] for t in tasks if t.task_id in records]
        ok = [r for r in runs if r["status"] == "ok"]
        samples = max((r["samples"] for r in ok), key=len, default=[])
        cells.append({
            "cell_id": cell.cell_id,
            "model": cell.model,
            "setting": cell.setting,
            "label": cell.label,
            "epochs": cell.spec.epochs,
            "lr": cell.spec.lr,
            "reduction": cell.spec.reduction,
            "spec": cell.spec.to_dict(),
            "n_tasks": len(tasks),
            "n_ok": len(ok),
            "n_diverged": sum(r["status"] != "ok" for r in runs),
            "n_error": sum(t.task_id in failures for t in tasks),
            "n_missing": sum(t.task_id not in records and t.task_id not in failures
                             for t in tasks),
            "seeds": [t.spec.seed for t in tasks],
            "final_test_accuracy": describe([r["final_test_accuracy"] for r in ok]),
            "final_train_accuracy": describe([r["final_train_accuracy"] for r in ok]),
            "final_test_accuracies": [r["final_test_accuracy"] for r in runs],
            "statuses": [r["status"] for r in runs],
            "curves": {
                "samples": list(samples),
                "train_accuracy": _curve_stats([r["train_accuracy"] for r in ok]),
                "test_accuracy": _curve_stats([r["test_accuracy"] for r in ok]),
            },
        })
    return cells


# ------------------------------------------------------------------------------ outputs


def _pct(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f}"


def cell_text(cell: dict[str, Any]) -> str:
    """``"92.41 ± 0.18 (n=5)"`` (final test accuracy in %; problems noted)."""
    d = cell["final_test_accuracy"]
    text = _pct(d["mean"]) if d["std"] is None else f"{_pct(d['mean'])} ± {_pct(d['std'])}"
    text += f" (n={d['n']})"
    notes = [f"{cell[k]} {w}" for k, w in (("n_diverged", "diverged"), ("n_error", "failed"),
                                           ("n_missing", "missing")) if cell[k]]
    return text + (f" [{', '.join(notes)}]" if notes else "")


def summary_markdown(summary: dict[str, Any]) -> str:
    """summary.md: the mean ± std table (SPEC's layout) then one row per cell in detail."""
    cells = summary["cells"]
    models = list(dict.fromkeys(c["model"] for c in cells))
    rows = max((c["setting"] for c in cells), default=0)
    grid = {(c["model"], c["setting"]): c for c in cells}
    p = summary["protocol"]
    quick = " — QUICK (reduced smoke-test variant)" if p["quick"] else ""
    lines = [f"# Sweep: {p['name']}{quick}, {summary['seeds']} seeds per cell", "",
             f"Protocol hash {p['hash']}, base seed {p['seed']}"
             + (f", grid {summary['grid']}" if summary["grid"] else "")
             + f"; executed on {summary['executor']}, device {summary['device']}.", "",
             "Final test accuracy (%), mean ± sample std over seeds (runs with status ok):", "",
             "| | " + " | ".join(f"Setting {k}" for k in range(1, rows + 1)) + " |",
             "|---|" + "---|" * rows]
    for m in models:
        row = [cell_text(grid[(m, k)]) if (m, k) in grid else "" for k in range(1, rows + 1)]
        lines.append(f"| Model {m.removeprefix('model')} | " + " | ".join(row) + " |")
    lines += ["", "| cell | setting | n ok | mean % | std % | min % | max % | 95% CI % "
              "| diverged | failed |", "|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        d = c["final_test_accuracy"]
        ci = "-" if d["ci95"] is None else f"[{_pct(d['ci95'][0])}, {_pct(d['ci95'][1])}]"
        lines.append(f"| {c['cell_id']} | {c['label']} | {c['n_ok']}/{c['n_tasks']} | "
                     f"{_pct(d['mean'])} | {_pct(d['std'])} | {_pct(d['min'])} | "
                     f"{_pct(d['max'])} | {ci} | {c['n_diverged']} | {c['n_error']} |")
    if summary["failures"]:
        lines += ["", "## Failed tasks", ""]
        lines += [f"- {f['task_id']}: {f['error']}" for f in summary["failures"]]
    t = summary["timing"]
    lines += ["", f"Wall time of this invocation {t['wall_time']:.1f} s ({t['tasks_run']} tasks "
              f"run, {t['tasks_reused']} reused); sum of the runs' own times "
              f"{t['task_time_total']:.1f} s ({t['task_time_run_now']:.1f} s run now).", ""]
    return "\n".join(lines)


SUMMARY_CSV_COLUMNS = ("cell_id", "model", "setting", "epochs", "lr", "reduction", "n_tasks",
                       "n_ok", "n_diverged", "n_error", "mean", "std", "min", "max", "ci95_low",
                       "ci95_high", "train_mean", "train_std")


def summary_csv(summary: dict[str, Any]) -> str:
    """summary.csv: one row per cell (final test accuracy statistics as fractions)."""
    import csv

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(SUMMARY_CSV_COLUMNS)
    for c in summary["cells"]:
        d, tr = c["final_test_accuracy"], c["final_train_accuracy"]
        ci = d["ci95"] or [None, None]
        row = [c["cell_id"], c["model"], c["setting"], c["epochs"], repr(c["lr"]),
               c["reduction"], c["n_tasks"], c["n_ok"], c["n_diverged"], c["n_error"],
               d["mean"], d["std"], d["min"], d["max"], ci[0], ci[1], tr["mean"], tr["std"]]
        writer.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def summary_document(plan: SweepPlan, outcome: SweepOutcome, *, executor: str, device: str,
                     wall_time: float) -> dict[str, Any]:
    """The content of summary.json."""
    from numnet.lab.experiments import environment_info

    records = outcome.records
    fingerprints = sorted({r["data"]["fingerprint"] for r in records.values()})
    run_now = [t for t in records if t not in outcome.reused]
    return {
        "format": SUMMARY_FORMAT,
        "numnet": __version__,
        "protocol": plan.to_dict()["protocol"],
        "seeds": plan.seeds,
        "grid": plan.grid,
        "executor": executor,
        "device": device,
        "data": {"dataset": plan.protocol.dataset, "fingerprints": fingerprints,
                 "consistent": len(fingerprints) <= 1},
        "environment": environment_info(),
        "cells": aggregate(plan, records, outcome.failures),
        "failures": [f.to_dict() for f in outcome.failures.values()],
        "timing": {  # wall_time: this invocation; task times: sums of the runs' own times
            "wall_time": wall_time,
            "task_time_total": math.fsum(r["result"]["wall_time"] for r in records.values()),
            "task_time_run_now": math.fsum(records[t]["result"]["wall_time"] for t in run_now),
            "tasks_run": len(run_now),
            "tasks_reused": len(outcome.reused),
        },
    }


def write_outputs(out_dir: str | Path, summary: dict[str, Any]) -> None:
    """summary.json, summary.csv, summary.md and the two figures (all atomic)."""
    from numnet.lab import plots
    from numnet.lab.experiments import write_bytes, write_json, write_text

    out = Path(out_dir)
    write_json(out / "summary.json", summary)
    write_text(out / "summary.csv", summary_csv(summary))
    write_text(out / "summary.md", summary_markdown(summary))
    write_bytes(out / "summary_table.png", plots.png_bytes(plots.sweep_table_figure(summary)))
    write_bytes(out / "learning_curves.png",
                plots.png_bytes(plots.learning_curves_bands_figure(summary)))


def default_out_dir(protocol: Protocol, root: str | Path = "runs") -> Path:
    """``runs/sweep-<protocol>[-quick]-<YYYYmmdd-HHMMSS>``."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"sweep-{protocol.name}{'-quick' if protocol.quick else ''}-{stamp}"


@dataclass
class SweepResult:
    """What :func:`sweep` produced."""

    out_dir: Path
    plan: SweepPlan
    outcome: SweepOutcome
    summary: dict[str, Any]

    @property
    def ok(self) -> bool:
        return not self.outcome.failures


def sweep(
    protocol: Protocol | str | Path = "assignment",
    seeds: int = 5,
    *,
    grid: dict[str, list[Any]] | None = None,
    models: list[str] | None = None,
    out_dir: str | Path | None = None,
    jobs: int | None = None,
    scheduler: str | None = None,
    device: str = "cpu",
    quick: bool = False,
    seed: int | None = None,
    data: DataRef | None = None,
    data_dir: str | None = None,
    retries: int = 1,
    force: bool = False,
    task_fn: TaskFn = run_task,
    log: Log = _stderr_log,
    make_figures: bool = True,
) -> SweepResult:
    """Plan, run (resumably) and aggregate a sweep; write every output into ``out_dir``.

    protocol: a Protocol, built-in name or TOML path; seed overrides its seed; quick applies
    its ``[quick]`` variant. data: where workers load the data (default: the protocol's
    dataset and split, from ``data_dir`` or the cache). Other arguments: :func:`run_tasks`.
    """
    from numnet.lab.experiments import write_json, write_text

    started = time.perf_counter()
    protocol = protocol_mod.resolve(protocol, seed, quick)
    if device == "cuda" and not scheduler:
        from numnet.core import backend

        if not backend.cuda_available():
            raise NumnetError("--device cuda: CuPy with a CUDA device is not available here; "
                              "install numnet[gpu] on a machine with an NVIDIA GPU, or use "
                              "--device cpu")
    if data is None:
        data = DataRef(protocol.dataset, None if data_dir is None else str(data_dir),
                       validation_size=protocol.validation_size)
    plan = expand(protocol, seeds, grid, models)
    if not scheduler:
        # Locally the workers share this machine's cache: fetch (and check) the files once
        # here, so that a missing data set is one clear error, not a failure per task, and
        # the workers do not download concurrently. Dask workers use their own sources.
        from numnet.lab import data as data_mod

        data_mod.fetch(data.dataset, data.data_dir, data.cache_dir, verify=data.verify,
                       progress=True)
    out = Path(out_dir) if out_dir is not None else default_out_dir(protocol)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "protocol.toml", protocol.text)
    write_json(out / "sweep.json", {"format": SWEEP_FORMAT, "numnet": __version__,
                                    "data": dataclasses.asdict(data), "device": device,
                                    **plan.to_dict()})
    executor = f"dask {scheduler}" if scheduler else f"local ({jobs or default_jobs()} jobs)"
    log(f"numnet sweep: protocol {protocol.name}{' [QUICK]' if protocol.quick else ''} "
        f"(hash {protocol.hash}), {len(plan.cells)} cells x {seeds} seeds = "
        f"{len(plan.tasks)} tasks, output {out}")
    outcome = run_tasks(plan.tasks, out, data, jobs=jobs, scheduler=scheduler, device=device,
                        retries=retries, force=force, task_fn=task_fn, log=log)
    summary = summary_document(plan, outcome, executor=executor, device=device,
                               wall_time=time.perf_counter() - started)
    if make_figures:
        write_outputs(out, summary)
    else:
        write_json(out / "summary.json", summary)
    log(f"numnet sweep: done in {summary['timing']['wall_time']:.1f} s "
        f"({summary['timing']['tasks_run']} run, {summary['timing']['tasks_reused']} reused, "
        f"{len(outcome.failures)} failed); outputs in {out}")
    return SweepResult(out, plan, outcome, summary)


def deterministic(record: dict[str, Any]) -> dict[str, Any]:
    """A task record without what depends on the clock or the worker (what must be identical
    between a local and a Dask execution of the same task)."""
    def strip(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if k not in NONDETERMINISTIC_KEYS}
        if isinstance(obj, list):
            return [strip(v) for v in obj]
        return obj
    return strip(record)
