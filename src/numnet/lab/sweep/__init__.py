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

Execution (:func:`run_sweep`): reproduce's, on ``jobs`` local worker processes or on a Dask
distributed cluster (``scheduler``: each worker loads the data once from a :class:`DataRef`;
a data dir must exist at the same path on every worker). A run that fails is retried
``retries`` times, then recorded in ``errors/<run_id>.json``, and the others go on.

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

Modules: :mod:`~numnet.lab.sweep.plan` (cells, runs, seeds), this package (the command,
:func:`sweep`), :mod:`~numnet.lab.sweep.summary` (statistics, summary.json/.md/.csv) and
:mod:`~numnet.lab.sweep.figures` (the figures).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from numnet import __version__
from numnet.core import backend
from numnet.core.errors import NumnetError
from numnet.core.io import write_bytes, write_json, write_text
from numnet.lab import data as data_mod
from numnet.lab import protocol as protocol_mod
from numnet.lab.executor import check_scheduler
from numnet.lab.experiments.execute import DataRef, Execution, execute, work_group
from numnet.lab.experiments.runner import output_folder
from numnet.lab.experiments.store import claim_folder
from numnet.lab.progress import Log, plural, stderr_log
from numnet.lab.protocol import Protocol
from numnet.lab.render import png_bytes
from numnet.lab.sweep.figures import learning_curves_bands_figure, sweep_table_figure
from numnet.lab.sweep.plan import (
    SweepPlan,
    cell_id,
    expand,
    grid_seed,
    parse_grid,
    setting_key,
)
from numnet.lab.sweep.summary import (
    SUMMARY_FORMAT,
    aggregate,
    summary_csv,
    summary_document,
    summary_markdown,
)
from numnet.lab.training import RunSpec

__all__ = [
    "SUMMARY_FORMAT",
    "SWEEP_FORMAT",
    "DataRef",
    "SweepPlan",
    "SweepResult",
    "aggregate",
    "cell_id",
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

SWEEP_FORMAT = "numnet.sweep/1"  # format names: as before the core/lab split


def run_sweep(specs: Sequence[RunSpec], out_dir: str | Path, data: DataRef, *,
              retries: int = 1, threads: int | None = 1, progress: str = "log",
              **options: Any) -> Execution:
    """Execute the runs ``specs`` of a sweep into ``out_dir``: :func:`execute` with a sweep's
    failure policy (a failed run is retried ``retries`` times, then recorded in ``errors/``,
    and the others go on: failures are in the result, never raised) and its defaults (1
    thread per worker, log lines). Locally the data are loaded here once and handed to each
    worker; on the Dask cluster at ``scheduler`` each worker loads ``data`` itself.
    ``options``: :func:`execute`'s (``jobs``, ``scheduler``, ``device``, ``force``,
    ``protocol_hash``, ``fn``, ``log``...)."""
    return execute(specs, Path(out_dir), data, what="numnet sweep", keep_going=True,
                   retries=retries, threads=threads, progress=progress, **options)


@dataclass
class SweepResult:
    """What :func:`sweep` produced."""

    out_dir: Path
    plan: SweepPlan
    outcome: Execution
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
    fn: Any = work_group,
    progress: str = "log",
    log: Log = stderr_log,
    make_figures: bool = True,
    threads: int | None = 1,
) -> SweepResult:
    """Plan, run (resumably) and aggregate a sweep; write every output into ``out_dir``.

    protocol: a Protocol, built-in name or TOML path; seed overrides its seed; quick applies
    its ``[quick]`` variant. data: where the data are (default: the protocol's dataset and
    split, from ``data_dir`` or the cache). The folder is taken as ``reproduce`` takes its
    own (``claim_folder``: locked; a folder of another command or protocol refused unless
    ``force``, which also retrains every run). Other arguments: :func:`run_sweep`.
    """
    started = time.perf_counter()
    protocol = protocol_mod.resolve(protocol, seed, quick)
    if device == "cuda" and not scheduler and not backend.cuda_available():
        raise NumnetError("--device cuda: CuPy with a CUDA device is not available here; "
                          "install numnet[gpu] on a machine with an NVIDIA GPU, or use "
                          "--device cpu")
    if data is None:
        data = DataRef(protocol.dataset, None if data_dir is None else str(data_dir),
                       validation_size=protocol.validation_size)
    plan = expand(protocol, seeds, grid, models)
    if not scheduler:
        # Locally the data are loaded here once (and handed to the workers): a missing data
        # set is one clear error. Dask workers use their own sources.
        data_mod.fetch(data.dataset, data.data_dir, data.cache_dir, verify=data.verify,
                       progress=True)
    out = output_folder(protocol, out_dir, kind="sweep")
    # what each run's numbers depend on besides its spec: the protocol and the data split
    configuration = {**protocol.semantic_dict(), "hash": protocol.hash,
                     "data": {"dataset": data.dataset, "validation_size": data.validation_size}}
    with claim_folder(out, "sweep", configuration, force=force):
        write_text(out / "protocol.toml", protocol.text)
        write_json(out / "sweep.json", {"format": SWEEP_FORMAT, "numnet": __version__,
                                        "data": dataclasses.asdict(data), "device": device,
                                        **plan.to_dict()})
        outcome = run_sweep(
            plan.runs, out, data, protocol_hash=protocol.hash, jobs=jobs, scheduler=scheduler,
            device=device, retries=retries, threads=threads, force=force, fn=fn,
            progress=progress, log=log,
            title=f"protocol {protocol.name}{' [QUICK]' if protocol.quick else ''} (hash "
                  f"{protocol.hash}), {plural(len(plan.cells), 'cell')} x "
                  f"{plural(seeds, 'seed')}")
        executor = f"dask {scheduler}" if scheduler else f"local ({outcome.jobs} jobs)"
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


def write_outputs(out_dir: str | Path, summary: dict[str, Any]) -> None:
    """summary.json, summary.csv, summary.md and the two figures (all atomic)."""
    out = Path(out_dir)
    write_json(out / "summary.json", summary)
    write_text(out / "summary.csv", summary_csv(summary))
    write_text(out / "summary.md", summary_markdown(summary))
    write_bytes(out / "summary_table.png", png_bytes(sweep_table_figure(summary)))
    write_bytes(out / "learning_curves.png", png_bytes(learning_curves_bands_figure(summary)))
