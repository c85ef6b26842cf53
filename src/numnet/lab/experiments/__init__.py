"""``numnet reproduce``: every run of a protocol, resumable, with all its outputs.

:func:`reproduce` plans the runs of a protocol (:func:`plan_runs`), trains each one with
:func:`numnet.lab.training.train_run`, saves each finished run as it completes, then writes the
results and the report into the output folder::

    OUT/
      protocol.toml             the protocol file used (verbatim)
      runs/<run_id>.json        one finished run (curves, status, seeds, timing): resume markers
      runs/<run_id>.metrics.csv its evaluations, one row per split (numnet.lab.metrics)
      weights/<run_id>.npz      its trained weights (numnet.core.serialize)
      results.json              the protocol's result tuples per model + every run + metadata
                                (versions, BLAS, threads, machine, protocol text and hash, data,
                                quick flag): numnet.lab.results
      results.csv               one row per (run, evaluation)
      learning_curves.png       the 3x4 learning-curve figure
      summary_table.png         the table of final test accuracies
      report.html, report.md    the report (numnet.lab.report)

Every file is written atomically. A run counts as finished once ``runs/<run_id>.json`` exists
(written after its weights); rerunning with the same ``--out`` reuses finished runs whose
protocol hash, run spec and data fingerprint match, and trains the rest. ``force=True`` retrains
everything. Interrupting (Ctrl-C) loses at most the runs in progress.

Seeds: run ``(model, setting k)`` of a protocol with seed ``s`` gets
:func:`run_seed` ``(s, model, k)`` (numpy ``SeedSequence``), or :func:`model_seed` ``(s, model)``
when the protocol has ``[training] shared_start`` (the built-in assignment protocols): then
every setting of a model starts from the same weights and sees the same batches. Either way a
run's result does not depend on which other runs are made (``--models 4`` gives the full run's
model-4 results).

Shared runs: under shared starts, a run that is a prefix of another (same spec but fewer
epochs: :func:`run_groups`) is taken from the longer run at its own last update (550*E + 1
for E epochs), identical to training it alone; its record says ``shared_with``.

Parallel: the trainings (:class:`RunGroup`) run on ``jobs`` worker processes of
:mod:`numnet.lab.executor` (default one per core; ``jobs=1`` in this process), longest first
(:func:`estimated_cost`), each single-threaded while others wait and sharing the idle cores
once fewer trainings than cores are left. Each worker saves the runs it ends
(:mod:`~numnet.lab.experiments.work`); an interruption stops and joins the workers, keeping
every run that ended.

Modules: :mod:`~numnet.lab.experiments.plan` (runs and seeds),
:mod:`~numnet.lab.experiments.store` (finished runs on disk, resume),
:mod:`~numnet.lab.experiments.work` (one training, here or in a worker),
:mod:`~numnet.lab.experiments.runner` (``reproduce`` and ``train``).
"""

from numnet.lab.experiments.plan import (
    RunGroup,
    estimated_cost,
    model_name,
    model_seed,
    parse_model,
    parse_models,
    plan_runs,
    run_groups,
    run_seed,
)
from numnet.lab.experiments.runner import ReproduceOutcome, reproduce, train_one
from numnet.lab.experiments.store import RUN_FORMAT, load_run, run_paths, save_run

__all__ = [
    "RUN_FORMAT",
    "ReproduceOutcome",
    "RunGroup",
    "estimated_cost",
    "load_run",
    "model_name",
    "model_seed",
    "parse_model",
    "parse_models",
    "plan_runs",
    "reproduce",
    "run_groups",
    "run_paths",
    "run_seed",
    "save_run",
    "train_one",
]
