"""The one pipeline of every experiment -- plan, execute, record, render -- and ``numnet
reproduce``, its first user (``numnet sweep``, :mod:`numnet.lab.sweep`, is a reproduce over
seeds and a grid; ``numnet train`` records its one run the same way).

- **Plan** (:mod:`~numnet.lab.experiments.plan`): every run is a
  :class:`~numnet.lab.training.RunSpec` (:func:`plan_runs`; a sweep's carry a ``replicate``
  label); the runs one training makes are grouped (:func:`run_groups`).
- **Execute** (:mod:`~numnet.lab.experiments.execute`): the groups are trained in this
  process (``jobs=1``) or by the one worker function on a backend of
  :mod:`numnet.lab.executor` (local worker processes, or a Dask cluster for a sweep), which
  returns their results.
- **Record** (:mod:`~numnet.lab.experiments.store`): this process writes every run's record,
  metrics and weights, and reads them back to resume; the folder is claimed (locked, its
  configuration checked) for the whole command.
- **Render**: reproduce's results and report (below); a sweep's summary over the same records.

``reproduce`` plans the runs of a protocol, trains each one with
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

``reproduce`` and ``train`` are in :mod:`~numnet.lab.experiments.runner`; how the runs are
parallelised, resumed and interrupted is in :mod:`~numnet.lab.experiments.execute`.
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
from numnet.lab.experiments.store import RUN_FORMAT, run_paths, save_run

__all__ = [
    "RUN_FORMAT",
    "ReproduceOutcome",
    "RunGroup",
    "estimated_cost",
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
