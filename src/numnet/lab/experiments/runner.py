"""``numnet reproduce`` (every run of a protocol, resumable, all outputs) and ``numnet train``
(one run, saved the same way)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from numnet.core import runtime
from numnet.core.datasets import Datasets
from numnet.core.errors import NumnetError
from numnet.core.io import make_dir, write_json, write_text
from numnet.core.layers import check_kernels
from numnet.core.names import DEFAULT_KERNELS
from numnet.lab import data as data_mod
from numnet.lab import protocol as protocol_mod
from numnet.lab.environment import data_info, environment_info
from numnet.lab.experiments.execute import execute
from numnet.lab.experiments.plan import plan_runs
from numnet.lab.experiments.store import claim_folder
from numnet.lab.progress import Log, stderr_log
from numnet.lab.protocol import Protocol
from numnet.lab.records import default_out_dir, timestamp
from numnet.lab.report import diagnosis_records, write_report
from numnet.lab.results import QUICK_LABEL, results_csv, results_document
from numnet.lab.training import RunResult, RunSpec

#: numnet threads of each worker process unless --threads says (a training step runs on one)
WORKER_THREADS = 1


@dataclass
class ReproduceOutcome:
    """What :func:`reproduce` did: where, which runs, which were reused, how long."""

    out_dir: Path
    protocol: Protocol
    results: list[RunResult]
    reused: list[str] = field(default_factory=list)
    trained: list[str] = field(default_factory=list)
    wall_time: float = 0.0  # the whole call, report included
    results_json: dict[str, Any] = field(default_factory=dict, repr=False)


def set_up(
    protocol: Protocol | str | Path,
    seed: int | None,
    quick: bool,
    models: list[str] | None,
    out_dir: str | Path | None,
    data: Datasets | None,
    data_dir: str | Path | None,
    progress: str,
    *,
    kind: str | None = None,
    kernels: str = DEFAULT_KERNELS,
    internals: bool = True,
    verify: bool = True,
) -> tuple[Protocol, list[RunSpec], Path, Datasets, dict[str, Any]]:
    """What ``reproduce`` and ``compare`` do first: resolve the protocol (``--seed``,
    ``--quick``), plan its runs, make the output folder (default :func:`default_out_dir` with
    ``kind``) holding protocol.toml, load the data unless given (``verify``: against the pinned
    checksums), check its sizes against the protocol. Returns ``(protocol, specs, out_dir,
    data, data_info)``."""
    protocol = protocol_mod.resolve(protocol, seed, quick)
    specs = plan_runs(protocol, models, kernels, internals)
    out = make_dir(output_folder(protocol, out_dir, kind))
    write_text(out / "protocol.toml", protocol.text)
    if data is None:
        data = data_mod.load(dataset=protocol.dataset, data_dir=data_dir,
                             validation_size=protocol.validation_size, verify=verify,
                             progress=progress != "none")
    protocol_mod.check_against_data(protocol, data.train.num_examples, data.test.num_examples)
    return protocol, specs, out, data, data_info(protocol.dataset, data)


def reproduce(
    protocol: Protocol | str | Path = "assignment",
    data: Datasets | None = None,
    out_dir: str | Path | None = None,
    *,
    models: list[str] | None = None,
    seed: int | None = None,
    quick: bool = False,
    force: bool = False,
    device: str = "cpu",
    data_dir: str | Path | None = None,
    progress: str = "auto",
    log: Log = stderr_log,
    make_report: bool = True,
    threads: int | None = None,
    kernels: str = DEFAULT_KERNELS,
    internals: bool = True,
    verify: bool = True,
    jobs: int | None = None,
) -> ReproduceOutcome:
    """Run every run of ``protocol`` (restricted to ``models``) and write all outputs.

    protocol: a :class:`Protocol`, a built-in name or a TOML path. data: the protocol's
    splits (loaded with ``numnet.lab.data.load`` for the protocol's dataset when None, from
    ``data_dir`` or the cache). seed overrides the protocol seed; quick applies the protocol's
    ``[quick]`` variant. progress: "bars", "log", "none" or "auto" (bars on a terminal, else
    log lines). kernels: the core implementation ("fast" or "plain").

    jobs: worker processes (None: one per CPU); 1 trains in this process, one run after the
    other. Each worker trains one group at a time, longest first (:func:`estimated_cost`);
    runs that are a prefix of another (:func:`run_groups`) are taken from it
    (:func:`~numnet.lab.experiments.execute.execute`). threads: with one job,
    ``numnet.core.runtime.threads(threads)`` while training (None: leave the thread counts as
    they are); with several, every worker's count (None: one each). Results depend on neither.
    internals: record the training internals (``numnet.lab.training.internals``). verify:
    check the data against the pinned checksums (False: ``--no-verify``).
    Returns a :class:`ReproduceOutcome`; raises KeyboardInterrupt after saving what finished.
    """
    started = time.perf_counter()
    check_kernels(kernels)
    if jobs is not None and jobs < 1:
        raise NumnetError(f"jobs must be at least 1, got {jobs}")
    protocol = protocol_mod.resolve(protocol, seed, quick)
    plan_runs(protocol, models, kernels)  # an unknown model is said before the folder is taken
    out = output_folder(protocol, out_dir)
    configuration = {**protocol.semantic_dict(), "hash": protocol.hash}
    with claim_folder(out, "reproduce", configuration, force=force):
        cpu_started = time.process_time()
        started_at = timestamp()
        protocol, specs, out, data, info = set_up(protocol, None, False, models, out, data,
                                                  data_dir, progress, kernels=kernels,
                                                  internals=internals, verify=verify)
        with runtime.threads(threads), runtime.single_threaded_blas():  # as every training runs
            # the counts of this process; the workers' are timing["threads_per_run"]
            environment = environment_info(threads)
        quick_note = f" [{QUICK_LABEL}]" if protocol.quick else ""
        # Each run's evidence figures depend on its record alone: with workers, the worker that
        # trained a run draws them, not this process after the last run (execute.draw_figures).
        ex = execute(specs, out, data, info=info, protocol_hash=protocol.hash,
                     what="numnet reproduce", title=f"protocol {protocol.name}{quick_note} "
                     f"(hash {protocol.hash})", jobs=jobs, threads=threads, device=device,
                     force=force, figures=make_report, progress=progress, log=log)
        outcome = ReproduceOutcome(out_dir=out, protocol=protocol,
                                   results=[ex.results[s.run_id] for s in specs],
                                   reused=list(ex.reused),
                                   trained=[s.run_id for s in specs if s.run_id not in ex.reused])
        outcome.wall_time = time.perf_counter() - started
        trained = [ex.results[rid] for rid in outcome.trained]
        timing = {
            "started_at": started_at,
            "finished_at": timestamp(),
            "wall_time": outcome.wall_time,
            # this process and the workers, all threads
            "cpu_time": time.process_time() - cpu_started + ex.cpu_time,
            "training_time": sum(r.wall_time for r in trained if r.shared_with is None),
            "reused_runs": list(outcome.reused),
            # worker processes (1: this process) and their threads; results depend on neither
            "jobs": ex.jobs,
            "threads_per_run": threads if threads or ex.jobs == 1 else WORKER_THREADS,
            "shared_runs": {r.run_id: r.shared_with for r in trained if r.shared_with},
        }
        outcome.results_json = results_document(
            protocol, outcome.results, info, timing, device, environment,
            diagnoses=diagnosis_records([r.to_dict() for r in outcome.results]))
        write_json(out / "results.json", outcome.results_json)
        write_text(out / "results.csv", results_csv(outcome.results_json))
        if make_report:
            write_report(out, outcome.results_json, ex.figures)
        # results.json's wall time ends before the report; the command's includes it
        outcome.wall_time = time.perf_counter() - started
        log(f"numnet reproduce: done in {outcome.wall_time:.1f} s ({len(outcome.trained)} trained"
            + (f", {len(timing['shared_runs'])} of them taken from longer runs"
               if timing["shared_runs"] else "")
            + f", {len(outcome.reused)} reused); outputs in {out}")
        return outcome


def output_folder(protocol: Protocol, out_dir: str | Path | None, kind: str | None = None
                  ) -> Path:
    """``out_dir``, or the default folder of ``protocol`` (:func:`default_out_dir`)."""
    return (Path(out_dir) if out_dir is not None
            else default_out_dir(protocol.name, kind=kind, quick=protocol.quick))


def train_one(
    spec: RunSpec,
    data: Datasets,
    out_dir: str | Path,
    *,
    dataset: str = "mnist",
    device: str = "cpu",
    progress: str = "auto",
    log: Log = stderr_log,
    threads: int | None = None,
    force: bool = False,
) -> RunResult:
    """``numnet train``: one run, made and saved in ``out_dir`` by reproduce's :func:`execute`
    in this process (``weights/<run_id>.npz``, ``runs/<run_id>.metrics.csv``,
    ``runs/<run_id>.json``).
    ``threads``: as for :func:`reproduce`; the spec says which kernels.

    Like reproduce, it resumes or refuses: a folder holding this very run finished (record and
    verified weights, same data) gives that run back without training (``force`` retrains);
    runs of other run ids sit side by side in one folder, but the same run id made another way
    (another seed, batch size...) is refused (FolderError saying what differs) unless
    ``force``; the folder is locked while the run trains."""
    check_kernels(spec.kernels)
    with claim_folder(Path(out_dir), "train", spec.to_dict(), force=force,
                      entry=spec.run_id) as out:
        ex = execute([spec], out, data, info=data_info(dataset, data), what="numnet train",
                     jobs=1, threads=threads, device=device, force=force, progress=progress,
                     log=log, say_ends=False)  # train prints the run's result itself
    if ex.reused:
        log(f"numnet train: {spec.run_id} is already finished in {out}; reused (pass "
            "--force to train it again)")
    return ex.results[spec.run_id]
