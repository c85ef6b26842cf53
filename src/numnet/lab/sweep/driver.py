"""The command: a sweep planned (:func:`~numnet.lab.sweep.plan.expand`), executed and recorded
by the pipeline ``reproduce`` uses (:func:`numnet.lab.experiments.execute.execute`), then
summarised (:func:`sweep`)."""

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
from numnet.core.io import write_json, write_text
from numnet.lab import data as data_mod
from numnet.lab import protocol as protocol_mod
from numnet.lab.experiments.execute import Execution, execute
from numnet.lab.experiments.store import claim_folder
from numnet.lab.experiments.work import DataRef, work_group
from numnet.lab.progress import Log, plural, stderr_log
from numnet.lab.protocol import Protocol
from numnet.lab.records import default_out_dir
from numnet.lab.sweep.aggregate import summary_document
from numnet.lab.sweep.plan import SweepPlan, expand
from numnet.lab.sweep.render import write_outputs
from numnet.lab.training import RunSpec

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
    out = (Path(out_dir) if out_dir is not None
           else default_out_dir(protocol.name, kind="sweep", quick=protocol.quick))
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
