"""``numnet compare``: every run of a protocol trained by numnet and by the PyTorch twin through
the same loop, then the float64 agreement of each, written as it goes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, NamedTuple

from numnet.core import runtime
from numnet.core.datasets import Datasets
from numnet.core.io import folder_lock
from numnet.lab import protocol as protocol_mod
from numnet.lab.compare.agreement import (
    AGREEMENT_UPDATES,
    TOLERANCE,
    AgreementError,
    describe_agreement,
    float64_agreement,
)
from numnet.lab.compare.record import compare_document, compare_record, save_document
from numnet.lab.compare.render import write_outputs
from numnet.lab.environment import environment_info
from numnet.lab.experiments.plan import plan_runs
from numnet.lab.experiments.runner import output_folder, set_up
from numnet.lab.progress import Log, ProgressDisplay, plural, stderr_log
from numnet.lab.protocol import Protocol
from numnet.lab.records import timestamp
from numnet.lab.reference_torch import ReferenceTrainer, build_twin, import_torch
from numnet.lab.results import QUICK_LABEL
from numnet.lab.training import (
    Reporter,
    RunResult,
    RunSpec,
    build_model,
    expected_updates,
    train_run,
)


class CompareOutcome(NamedTuple):
    """What :func:`run_compare` produced: the output folder and the compare.json document."""

    out_dir: Path
    doc: dict[str, Any]


def convolutional(spec: RunSpec) -> bool:
    """Whether the run's model has a convolution (model 4, or layers with a conv2d): PyTorch
    then also runs it in ``channels_last`` memory format, for timing."""
    if spec.layers is None:
        return spec.model == "model4"
    return "conv2d" in spec.layer_types()


def run_compare(
    protocol: Protocol | str | Path = "assignment",
    data: Datasets | None = None,
    out_dir: str | Path | None = None,
    *,
    models: list[str] | None = None,
    quick: bool = False,
    seed: int | None = None,
    agreement_updates: int = AGREEMENT_UPDATES,
    channels_last: bool = True,
    threads: int | None = 1,
    data_dir: str | Path | None = None,
    progress: str = "auto",
    log: Log = stderr_log,
    tolerance: float = TOLERANCE,
    device: str = "cpu",
    verify: bool = True,
) -> CompareOutcome:
    """Run every run of ``protocol`` with numnet and with PyTorch and write the outputs.

    protocol: a :class:`Protocol`, a built-in name or a TOML path; ``models`` restricts it,
    ``seed`` overrides its seed, ``quick`` applies its ``[quick]`` variant (as ``numnet
    reproduce``). data: the protocol's splits (loaded for the protocol's dataset when None).
    agreement_updates: float64 agreement over this many first updates of each run (0: skip).
    channels_last: also time PyTorch's channels_last layout for a convolutional model
    (:func:`convolutional`). threads:
    ``numnet.core.runtime.threads(threads)`` -- numnet, BLAS and PyTorch alike, so the time
    ratio is fair (None leaves the libraries' defaults). progress: "bars", "log", "none" or
    "auto". device: where numnet's runs compute (PyTorch's run on the CPU); verify: check
    the data against the pinned checksums. Raises :class:`AgreementError` (after writing every
    output) when a run fails the float64 agreement.
    """
    torch = import_torch()  # before runtime.threads, which sets PyTorch's threads once imported
    resolved = protocol_mod.resolve(protocol, seed, quick)
    plan_runs(resolved, models)  # an unknown model is said before the folder is made
    # Locked before anything is written into it: two compares never mix their outputs.
    with folder_lock(output_folder(resolved, out_dir, "compare"), "numnet compare") as out:
        started = time.perf_counter()
        started_at = timestamp()
        resolved, specs, out, data, info = set_up(resolved, None, False, models, out, data,
                                                  data_dir, progress, kind="compare",
                                                  verify=verify)
        totals = {s.run_id: expected_updates(data.train.num_examples, s.batch_size, s.epochs)
                  for s in specs}
        n_impl = {s.run_id: 3 if channels_last and convolutional(s) else 2 for s in specs}
        display = ProgressDisplay(
            progress, log, sum(totals[s.run_id] * n_impl[s.run_id] for s in specs))
        quick_note = f" [{QUICK_LABEL}]" if resolved.quick else ""
        display.message(f"numnet compare: protocol {resolved.name}{quick_note} (hash "
                        f"{resolved.hash}), {plural(len(specs), 'run')} x numnet/PyTorch, "
                        f"output {out}")

        records: list[dict[str, Any]] = []
        with runtime.threads(threads):
            environment = environment_info(threads)
            environment["torch"] = {"version": torch.__version__,
                                    "threads": torch.get_num_threads(),
                                    "mkldnn": bool(torch.backends.mkldnn.is_available())}

            def document(complete: bool) -> dict[str, Any]:
                return compare_document(resolved, records, info, environment, {
                    "started_at": started_at,
                    "finished_at": timestamp(),
                    "wall_time": time.perf_counter() - started,
                }, complete=complete, agreement_updates=agreement_updates,
                    tolerance=tolerance)

            def train(spec: RunSpec, name: str, cl: bool | None = None) -> RunResult:
                """One run: numnet's (``cl`` None) or that of the PyTorch twin of the run's
                own numnet model (built-in or custom layers), channels_last when ``cl``."""
                total = totals[spec.run_id]
                stepper = None
                if cl is not None:
                    twin = build_twin(build_model(spec), channels_last=cl)
                    stepper = ReferenceTrainer.for_run(twin, spec, total)
                display.start_run(name, spec, total)
                result = train_run(spec, data, device=device if stepper is None else "cpu",
                                   stepper=stepper, plugins=[Reporter(display.update)])
                display.end_run(name, result, total)
                result.model = None
                return result

            try:
                for k, spec in enumerate(specs, start=1):
                    label = f"[{k}/{len(specs)}]"
                    numnet_run = train(spec, f"{label} numnet")
                    pt_run = train(spec, f"{label} PyTorch", cl=False)
                    cl_run = (train(spec, f"{label} PyTorch channels_last", cl=True)
                              if n_impl[spec.run_id] == 3 else None)
                    agreement = None
                    if agreement_updates > 0:
                        t0 = time.perf_counter()
                        agreement = float64_agreement(spec, data.train, agreement_updates,
                                                      tolerance=tolerance)
                        agreement["wall_time"] = time.perf_counter() - t0
                        display.message(f"{label} float64 agreement {spec.run_id}: "
                                        f"{describe_agreement(agreement)}")
                    records.append(compare_record(spec, numnet_run, pt_run, cl_run, agreement))
                    save_document(out, document(complete=False))
            finally:
                display.close()

        doc = document(complete=True)
        write_outputs(out, doc)
    log(f"numnet compare: done in {doc['timing']['wall_time']:.1f} s; outputs in {out}")
    failed = {r["run_id"]: r["agreement"] for r in records
              if r["agreement"] and not r["agreement"]["passed"]}
    if failed:
        detail = "; ".join(f"{rid}: {describe_agreement(a)}" for rid, a in failed.items())
        raise AgreementError(
            f"numnet and PyTorch disagree in float64 beyond {tolerance:g} in "
            f"{len(failed)} run(s) ({detail}); one of the two implementations has a bug. "
            f"Details in {out / 'compare.json'}"
        )
    return CompareOutcome(out, doc)
