"""The one worker function of ``reproduce`` and ``sweep``: a
:class:`~numnet.lab.experiments.plan.RunGroup` (the run trained and the shorter runs taken from
it) trained wherever it runs -- the command's own process (``--jobs 1``), a local worker process
or a Dask worker -- and its results *returned*, models included (on the CPU, caches dropped):
the parent process writes every record (:mod:`~numnet.lab.experiments.store`), as a Dask worker
may not share its filesystem.

The data never travel with a group: a local worker gets them once from the executor's
initializer (:func:`install_data`); a Dask worker loads them once per process from a
:class:`DataRef` (:func:`load_data`, its own cache or sources; a data dir must exist at the same
path on every worker) and pins its threads on its first group. Local workers report their
progress into their slot (:data:`PROGRESS_FIELDS`).
"""

from __future__ import annotations

import functools
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from numnet.core import runtime
from numnet.core.datasets import Datasets
from numnet.core.errors import NumnetError
from numnet.lab import data as data_mod
from numnet.lab import executor
from numnet.lab.environment import blas_thread_counts, data_info
from numnet.lab.experiments.plan import RunGroup
from numnet.lab.progress import InFlight
from numnet.lab.report.internals_section import run_evidence_images
from numnet.lab.training import Progress, Reporter, RunResult, RunSpec, ShorterRuns, train_run

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

    # BLAS on one thread: OpenBLAS's sums depend on its thread count for some GEMM shapes (a
    # batch of 100 through 784 -> 32), so a run's numbers would depend on --threads and
    # --jobs. numnet's own threads split by sizes only.
    plugins = [Reporter(on_progress)] if on_progress is not None else []
    with runtime.single_threaded_blas():
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
