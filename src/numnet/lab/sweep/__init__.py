"""``numnet sweep``: many seeds (and a grid of settings) per cell, run locally on ``jobs``
worker processes or on a Dask distributed cluster, aggregated into mean +- spread.

A sweep is a ``reproduce`` over seeds and a grid. It is a protocol (restricted to some
models), optionally a grid that replaces the protocol's settings, and ``seeds`` replicates:
every (model, setting, replicate) is one run, a :class:`numnet.lab.training.RunSpec` whose
``replicate`` labels it (run id ``<cell_id>-seed<r>``, e.g. ``model4-setting2-seed3``), and the
runs go through the same pipeline as reproduce's (:mod:`numnet.lab.experiments`): plan,
execute, record, render.

Seeds (:func:`expand`):

- without a grid, replicate ``r`` of a protocol seeded ``s`` is exactly the run that
  ``numnet reproduce --seed s+r`` makes (:func:`numnet.lab.experiments.plan_runs`): replicate 0
  *is* the protocol's own run, and any replicate can be re-made alone with ``reproduce``;
- with a grid, a setting's seed is keyed by its content (model and every grid field), not by
  its position: ``SeedSequence([s + r, crc32(model), crc32(setting key)])``. Adding a value to
  the grid leaves the seeds (and results) of the other settings unchanged.

Under ``[training] shared_start`` a run that is a prefix of another of the same replicate is
taken from it, as reproduce does: fewer trainings, the same numbers.

Execution (:func:`run_sweep`, :func:`numnet.lab.experiments.execute.execute`): the one worker
function on ``jobs`` local worker processes (each with ``threads`` threads, 1 by default, and
the data handed over once) or on a Dask distributed cluster (``scheduler``: each worker loads
the data once from a :class:`DataRef`, its own cache or sources; a data dir must exist at the
same path on every worker). Workers return their results; this process writes every record.
A run that fails is retried ``retries`` times, then recorded in ``errors/<run_id>.json``, and
the others go on.

Output folder (every file written atomically; the folder locked while the sweep runs)::

    OUT/
      sweep.json              the plan: protocol (text, hash), grid, seeds, models, every run
      protocol.toml           the protocol file used (verbatim)
      runs/<run_id>.json      one finished run: the record reproduce writes (format
                              numnet.run/1), with ``worker`` (host, pid, threads)
      runs/<run_id>.metrics.csv, weights/<run_id>.npz   as reproduce writes them
      errors/<run_id>.json    a run that failed (error, traceback); retried on the next run
      summary.json            per cell: final accuracies' n, mean, std, min, max, 95% t-interval;
                              per evaluation: mean, std, min, max of the curves
      summary.csv, summary.md
      summary_table.png       (plots) rows "Model 1".., columns "Setting 1"..: mean +- std (n)
      learning_curves.png     the 3x4 layout, mean curves with +-std and min-max bands

Resuming: a run whose record holds the same spec (and protocol, and data) is reused, as in
reproduce; rerunning the same command finishes an interrupted sweep, and more ``--seeds`` add
replicates. ``force=True`` redoes all.

Aggregation counts runs with status ``ok``; a diverged run (a result, not an error) is counted
in ``n_diverged`` and left out of the statistics (its curve ends early and its final accuracy
is that of its last finite evaluation); a failed run is counted in ``n_error``.

Modules: :mod:`~numnet.lab.sweep.plan` (cells, runs, seeds), :mod:`~numnet.lab.sweep.driver`
(the command), :mod:`~numnet.lab.sweep.aggregate` (statistics, summary.json),
:mod:`~numnet.lab.sweep.render` and :mod:`~numnet.lab.sweep.figures` (summary.md/.csv and the
figures).
"""

from numnet.lab.executor import check_scheduler
from numnet.lab.experiments.work import DataRef
from numnet.lab.sweep.aggregate import SUMMARY_FORMAT, aggregate, cell_text, summary_document
from numnet.lab.sweep.driver import SWEEP_FORMAT, SweepResult, run_sweep, sweep
from numnet.lab.sweep.plan import (
    GRID_KEYS,
    Cell,
    SweepPlan,
    cell_id,
    expand,
    grid_seed,
    parse_grid,
    setting_key,
)
from numnet.lab.sweep.render import summary_csv, summary_markdown, write_outputs

__all__ = [
    "GRID_KEYS",
    "SUMMARY_FORMAT",
    "SWEEP_FORMAT",
    "Cell",
    "DataRef",
    "SweepPlan",
    "SweepResult",
    "aggregate",
    "cell_id",
    "cell_text",
    "check_scheduler",
    "expand",
    "grid_seed",
    "parse_grid",
    "run_sweep",
    "setting_key",
    "summary_csv",
    "summary_document",
    "summary_markdown",
    "sweep",
    "write_outputs",
]
