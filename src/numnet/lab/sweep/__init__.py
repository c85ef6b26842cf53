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
  ``jobs`` workers, each pinned to ``threads`` (1) thread by ``numnet.core.runtime.threads``
  (numnet's helper threads and BLAS), so N processes do not oversubscribe the cores. At most
  ``jobs`` tasks are in flight, so every submitted task is running. A worker that dies (killed,
  out of memory) breaks the pool: the tasks that were in flight are resubmitted to a fresh
  pool, up to :data:`ALLOWED_FAILURES` times each (as Dask's scheduler does); results already
  received are kept, so every task's result is recorded exactly once.
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
      learning_curves.png    the 3x4 layout, mean curves with +-std and min-max bands

Resuming: a task whose ``tasks/<task_id>.json`` holds the same spec (and dataset, split) is
skipped; rerunning the same command finishes an interrupted sweep. ``force=True`` redoes all.

Aggregation counts runs with status ``ok``; a diverged run (a result, not an error) is counted
in ``n_diverged`` and left out of the statistics (its curve ends early and its final accuracy
is that of its last finite evaluation); a failed task is counted in ``n_error``.

Modules: :mod:`~numnet.lab.sweep.plan` (cells, tasks, seeds), :mod:`~numnet.lab.sweep.worker`
(one task, in a worker), :mod:`~numnet.lab.sweep.local` (on :mod:`numnet.lab.executor`, shared
with reproduce) and :mod:`~numnet.lab.sweep.cluster`
(the two executors), :mod:`~numnet.lab.sweep.outcome` (task records and failures),
:mod:`~numnet.lab.sweep.driver` (resume, collection, the command),
:mod:`~numnet.lab.sweep.aggregate` (statistics, summary.json), :mod:`~numnet.lab.sweep.render`
and :mod:`~numnet.lab.sweep.figures` (summary.md/.csv and the figures).
"""

from numnet.lab.stats import describe, t_cdf, t_quantile
from numnet.lab.sweep.aggregate import SUMMARY_FORMAT, aggregate, cell_text, summary_document
from numnet.lab.sweep.cluster import check_scheduler, iter_dask
from numnet.lab.sweep.driver import (
    SWEEP_FORMAT,
    SweepResult,
    estimated_cost,
    load_task,
    run_tasks,
    sweep,
)
from numnet.lab.sweep.local import iter_local, mp_context
from numnet.lab.sweep.outcome import (
    ALLOWED_FAILURES,
    TASK_FORMAT,
    SweepOutcome,
    TaskFailure,
    error_path,
    task_path,
)
from numnet.lab.sweep.plan import (
    GRID_KEYS,
    Cell,
    DataRef,
    SweepPlan,
    SweepTask,
    expand,
    grid_seed,
    parse_grid,
    setting_key,
)
from numnet.lab.sweep.render import summary_csv, summary_markdown, write_outputs
from numnet.lab.sweep.worker import check_data_fits, load_data, pin_threads, run_task

__all__ = [
    "ALLOWED_FAILURES",
    "GRID_KEYS",
    "SUMMARY_FORMAT",
    "SWEEP_FORMAT",
    "TASK_FORMAT",
    "Cell",
    "DataRef",
    "SweepOutcome",
    "SweepPlan",
    "SweepResult",
    "SweepTask",
    "TaskFailure",
    "aggregate",
    "cell_text",
    "check_data_fits",
    "describe",
    "error_path",
    "estimated_cost",
    "expand",
    "grid_seed",
    "check_scheduler",
    "iter_dask",
    "iter_local",
    "load_data",
    "load_task",
    "mp_context",
    "parse_grid",
    "pin_threads",
    "run_task",
    "run_tasks",
    "setting_key",
    "summary_csv",
    "summary_document",
    "summary_markdown",
    "sweep",
    "t_cdf",
    "t_quantile",
    "task_path",
    "write_outputs",
]
