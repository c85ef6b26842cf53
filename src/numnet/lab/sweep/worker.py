"""The worker side of a sweep: one task trained where this code runs (a local pool process or
a Dask worker), the data loaded once per process, the threads pinned once per process
(:func:`numnet.lab.executor.pin_threads`)."""

from __future__ import annotations

import functools
import os
import socket
import threading
from typing import Any

from numnet.core import runtime
from numnet.core.errors import NumnetError
from numnet.lab import data as data_mod
from numnet.lab.environment import blas_thread_counts, data_info
from numnet.lab.executor import pin_threads
from numnet.lab.sweep.outcome import TASK_FORMAT
from numnet.lab.sweep.plan import DataRef, SweepTask
from numnet.lab.training import RunSpec, train_run

_DATA_LOCK = threading.Lock()


@functools.lru_cache(maxsize=2)
def _load_cached(ref: DataRef) -> tuple[Any, dict[str, Any]]:
    data = data_mod.load(ref.dataset, ref.data_dir, cache_dir=ref.cache_dir, verify=ref.verify,
                         validation_size=ref.validation_size, progress=False)
    return data, data_info(ref.dataset, data)


def load_data(ref: DataRef) -> tuple[Any, dict[str, Any]]:
    """``(Datasets, data_info)`` for ``ref``, loaded once per process and then reused."""
    with _DATA_LOCK:  # a Dask worker may run several tasks in threads
        return _load_cached(ref)


def check_data_fits(spec: RunSpec, datasets: Any) -> None:
    """A clear error when the data are smaller than the run asks for."""
    n_train, n_test = datasets.train.num_examples, datasets.test.num_examples
    for what, need, have in (("batch_size", spec.batch_size, n_train),
                             ("eval_train_examples", spec.eval_train_examples, n_train),
                             ("eval_test_examples", spec.eval_test_examples, n_test)):
        if need > have:
            raise NumnetError(f"{spec.run_id}: {what} = {need} but the split has only {have} "
                              "examples; use a protocol that fits the data")


def run_task(
    task: SweepTask, data: DataRef, device: str = "cpu", threads: int | None = 1
) -> dict[str, Any]:
    """Train one task where this function runs (a pool worker, a Dask worker) and return its
    record (JSON-able): the RunResult's dict, the data fingerprint, the time of each evaluation
    and where it ran."""
    pin_threads(threads)
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
        # seconds at each evaluation, for the task's metrics CSV ("timing": left out when
        # records are compared, numnet.lab.records.strip_timing)
        "timing": {"evaluation_wall_times": result.evaluation_times},
        "worker": {"host": socket.gethostname(), "pid": os.getpid(),
                   "blas_threads": blas_thread_counts(),
                   "numnet_threads": runtime.get_threads()},
    }
