"""One training of ``reproduce`` -- a :class:`~numnet.lab.experiments.plan.RunGroup`: the run
trained and the shorter runs taken from it -- where it runs: in the reproducing process
(``--jobs 1``) or in a worker process of :mod:`numnet.lab.executor`.

Each finished run is saved (weights, then record) where it ends, by the process that made it:
a shorter run at its last update, the trained run at its end. So an interrupted ``reproduce``
keeps every run that ended, whichever process made it. Workers get the data once (the
executor's initializer, :func:`install_data`) and report their progress into their slot.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from numnet.core import runtime
from numnet.core.datasets import Datasets
from numnet.lab import executor
from numnet.lab.experiments.figures import draw_figures
from numnet.lab.experiments.plan import RunGroup
from numnet.lab.experiments.store import save_run
from numnet.lab.training import Progress, Reporter, RunResult, ShorterRuns, train_run

#: What a worker publishes in its slot: update, total updates, evaluations, last train and
#: test accuracy (NaN before the first evaluation), seconds since the run started.
PROGRESS_FIELDS = ("update", "total", "evaluations", "train_accuracy", "test_accuracy",
                   "elapsed")


@dataclass(frozen=True)
class RunContext:
    """Where a training saves its runs and what their records say (picklable)."""

    out_dir: Path
    protocol_hash: str
    fingerprint: str
    device: str = "cpu"
    #: workers draw their runs' evidence figures as each group ends (experiments.figures)
    draw_figures: bool = False


def train_group(group: RunGroup, ctx: RunContext, data: Datasets,
                on_progress: Callable[[Progress], None] | None = None,
                figures: dict[str, dict[str, bytes]] | None = None) -> list[RunResult]:
    """Train ``group.trained``, take its shorter runs from it, save each run as it ends (and
    draw its evidence figures into ``figures`` when given: a shorter run's overlap the rest
    of the group); the results (models dropped, saved) in ``group.specs`` order."""
    done: dict[str, RunResult] = {}

    def save(result: RunResult) -> None:
        save_run(ctx.out_dir, result, ctx.protocol_hash, ctx.fingerprint,
                 train_examples=data.train.num_examples)
        if figures is not None:
            figures.update(draw_figures([result]))
        result.model = None  # saved; do not keep (or send) every model
        done[result.run_id] = result

    # BLAS on one thread: OpenBLAS's sums depend on its thread count for some GEMM shapes (a
    # batch of 100 through 784 -> 32), so a run's numbers would depend on --threads, --jobs
    # and on when a worker's thread share changes. numnet's own threads split by sizes only.
    plugins = [Reporter(on_progress)] if on_progress is not None else []
    with runtime.single_threaded_blas():
        save(train_run(group.trained, data, device=ctx.device,
                       plugins=[*plugins, ShorterRuns(group.shorter, save)]))
    return [done[s.run_id] for s in group.specs]


# ------------------------------------------------------------------------------ in a worker


_WORKER_DATA: dict[str, Datasets] = {}


def install_data(data: Datasets) -> None:
    """The executor's initializer: the data every training of this worker uses."""
    _WORKER_DATA["data"] = data


def _publish(p: Progress) -> None:
    slot = executor.current_slot()
    if slot is not None:
        nan = math.nan
        slot.report([p.update, p.total_updates, p.evaluations,
                     nan if p.train_accuracy is None else p.train_accuracy,
                     nan if p.test_accuracy is None else p.test_accuracy, p.elapsed])


def work_group(group: RunGroup, ctx: RunContext
               ) -> tuple[list[RunResult], float, dict[str, dict[str, bytes]]]:  # fmt: skip
    """:func:`train_group` in a worker: ``(results, this process's CPU seconds for it, the
    runs' evidence figures)`` -- the figures ``{run_id: {file name: PNG bytes}}`` when
    ``ctx.draw_figures``, else empty."""
    cpu = time.process_time()
    images: dict[str, dict[str, bytes]] = {}
    results = train_group(group, ctx, _WORKER_DATA["data"], on_progress=_publish,
                          figures=images if ctx.draw_figures else None)
    return results, time.process_time() - cpu, images


def progress_of(values: list[float]) -> dict[str, Any]:
    """A slot's numbers (:data:`PROGRESS_FIELDS`) by name; NaN accuracies become None."""
    d: dict[str, Any] = dict(zip(PROGRESS_FIELDS, values, strict=False))
    for key in ("train_accuracy", "test_accuracy"):
        if key in d and math.isnan(d[key]):
            d[key] = None
    return d
