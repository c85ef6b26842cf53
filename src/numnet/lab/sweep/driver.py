"""The driver of a sweep: which tasks are still to do (resume), running them on the chosen
executor while each result is written as it arrives, and the whole command (:func:`sweep`)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from numnet import __version__
from numnet.core import backend
from numnet.core.errors import NumnetError
from numnet.core.io import write_json, write_text
from numnet.core.runtime import available_cores
from numnet.lab import data as data_mod
from numnet.lab import protocol as protocol_mod
from numnet.lab.experiments.plan import estimated_cost
from numnet.lab.metrics import write_metrics
from numnet.lab.progress import Log, plural, stderr_log
from numnet.lab.protocol import Protocol
from numnet.lab.records import default_out_dir, load_finished
from numnet.lab.sweep.aggregate import summary_document
from numnet.lab.sweep.cluster import iter_dask
from numnet.lab.sweep.local import iter_local
from numnet.lab.sweep.outcome import (
    TASK_FORMAT,
    Outcome,
    SweepOutcome,
    TaskFn,
    error_path,
    task_path,
)
from numnet.lab.sweep.plan import DataRef, SweepPlan, SweepTask, expand
from numnet.lab.sweep.render import write_outputs
from numnet.lab.sweep.worker import run_task

SWEEP_FORMAT = "numnet.sweep/1"  # format names: as before the core/lab split


def load_task(out_dir: Path, task: SweepTask, data: DataRef) -> dict[str, Any] | None:
    """The saved record of ``task`` if it was made with the same spec and data split."""
    return load_finished(task_path(out_dir, task.task_id), {
        "format": TASK_FORMAT,
        "result.spec": task.spec.to_dict(),
        "data.dataset": data.dataset,
        "data.validation_examples": data.validation_size,
    })


def run_tasks(
    tasks: Sequence[SweepTask],
    out_dir: str | Path,
    data: DataRef,
    *,
    jobs: int | None = None,
    scheduler: str | None = None,
    device: str = "cpu",
    retries: int = 1,
    threads: int | None = 1,
    force: bool = False,
    task_fn: TaskFn = run_task,
    log: Log = stderr_log,
) -> SweepOutcome:
    """Run the unfinished ``tasks`` (locally with ``jobs`` processes, or on the Dask cluster
    at ``scheduler``), writing each record to ``tasks/<task_id>.json`` as it arrives.

    ``threads``: ``numnet.core.runtime.threads`` of every worker process (1: N processes share
    the cores). ``task_fn(task, data, device, threads) -> record`` replaces :func:`run_task` (it
    must be importable by the workers). Returns a :class:`SweepOutcome`; failed tasks are in
    ``failures`` (and ``errors/``), never raised.
    """

    out = Path(out_dir)
    started = time.perf_counter()
    outcome = SweepOutcome()
    todo = []
    for task in tasks:
        record = None if force else load_task(out, task, data)
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
                                 retries=retries, threads=threads, task_fn=task_fn,
                                 log=log)
            where = f"Dask cluster {scheduler}"
        else:
            jobs = jobs or available_cores()
            outcomes = iter_local(todo, data, jobs=min(jobs, len(todo)), device=device,
                                  retries=retries, threads=threads, task_fn=task_fn,
                                  log=log)
            where = f"{min(jobs, len(todo))} local worker processes"
        log(f"numnet sweep: running {plural(len(todo), 'task')} on {where}")
        total = len(todo)
        try:
            _collect(outcomes, out, outcome, total, log)
        except KeyboardInterrupt as exc:
            outcomes.close()  # stops the local workers (their tasks are lost, not saved)
            message = (f"numnet sweep: interrupted; {len(outcome.records)} of {len(tasks)} "
                       f"tasks are saved in {out}. Rerun the same command to finish the others.")
            log(message)
            exc.add_note(message)  # said once: the command line adds nothing
            raise
    outcome.wall_time = time.perf_counter() - started
    return outcome


def _collect(outcomes: Iterator[Outcome], out: Path, outcome: SweepOutcome, total: int,
             log: Log) -> None:
    """Write each outcome as it arrives (task record or error file) and log it."""
    for k, (task, record, failure) in enumerate(outcomes, start=1):
        if task.task_id in outcome.records or task.task_id in outcome.failures:
            continue  # exactly once, whatever an executor might repeat
        if record is not None:
            # the metrics CSV first: a task with a record always has its metrics
            write_metrics(task_path(out, task.task_id), record["result"],
                          record.get("data", {}).get("train_examples"),
                          record.get("timing", {}).get("evaluation_wall_times"))
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
    log: Log = stderr_log,
    make_figures: bool = True,
    threads: int | None = 1,
) -> SweepResult:
    """Plan, run (resumably) and aggregate a sweep; write every output into ``out_dir``.

    protocol: a Protocol, built-in name or TOML path; seed overrides its seed; quick applies
    its ``[quick]`` variant. data: where workers load the data (default: the protocol's
    dataset and split, from ``data_dir`` or the cache). Other arguments: :func:`run_tasks`.
    """
    started = time.perf_counter()
    protocol = protocol_mod.resolve(protocol, seed, quick)
    if device == "cuda" and not scheduler:
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
        data_mod.fetch(data.dataset, data.data_dir, data.cache_dir, verify=data.verify,
                       progress=True)
    out = (Path(out_dir) if out_dir is not None
           else default_out_dir(protocol.name, kind="sweep", quick=protocol.quick))
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "protocol.toml", protocol.text)
    write_json(out / "sweep.json", {"format": SWEEP_FORMAT, "numnet": __version__,
                                    "data": dataclasses.asdict(data), "device": device,
                                    **plan.to_dict()})
    executor = f"dask {scheduler}" if scheduler else f"local ({jobs or available_cores()} jobs)"
    log(f"numnet sweep: protocol {protocol.name}{' [QUICK]' if protocol.quick else ''} "
        f"(hash {protocol.hash}), {plural(len(plan.cells), 'cell')} x "
        f"{plural(seeds, 'seed')} = {plural(len(plan.tasks), 'task')}, output {out}")
    outcome = run_tasks(plan.tasks, out, data, jobs=jobs, scheduler=scheduler, device=device,
                        retries=retries, threads=threads, force=force, task_fn=task_fn,
                        log=log)
    summary = summary_document(plan, outcome, executor=executor, device=device,
                               wall_time=time.perf_counter() - started, threads=threads)
    if make_figures:
        write_outputs(out, summary)
    else:
        write_json(out / "summary.json", summary)
    log(f"numnet sweep: done in {summary['timing']['wall_time']:.1f} s "
        f"({summary['timing']['tasks_run']} run, {summary['timing']['tasks_reused']} reused, "
        f"{len(outcome.failures)} failed); outputs in {out}")
    return SweepResult(out, plan, outcome, summary)
