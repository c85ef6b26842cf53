"""``numnet compare``: a protocol run twice, with numnet and with PyTorch, side by side (Q2).

Every run of the protocol is trained by numnet and by the PyTorch reference
(:mod:`numnet.lab.reference_torch`: plain ``torch.nn`` + ``torch.optim.SGD``, summed or mean loss as
the protocol says), both through numnet's own loop (:func:`numnet.lab.training.train_run` with a
PyTorch *stepper*), so both see **the same initial weights** (the numnet model built from the
run's init seed, copied into PyTorch) and **the same batches in the same order** (the run's
shuffle seed), and are evaluated and checked for divergence by the same code. For the CNN
(model 4) PyTorch runs a second time with ``channels_last`` memory format, for timing.

Per run it records: final and best test accuracy of both, the largest gap between the two
curves, wall time of both and the ratio PyTorch / numnet (> 1: numnet is faster), the status
(``ok`` or ``diverged`` at update N) of each, the diagnosis of each by
:func:`numnet.lab.report.diagnose` (the report's rules), and the float64 agreement below.

Float64 agreement (:func:`float64_agreement`). numnet and PyTorch are the same computation, so
in float64, from the same weights on the same batches, their losses must agree to rounding:

1. *trajectory*: both train independently for the first ``updates`` (200) updates of the run;
   the largest relative difference of the batch loss, ``|L_numnet - L_torch| / max(|L_numnet|,
   |L_torch|)``, must stay below ``tolerance`` (1e-9).
2. Some runs amplify rounding exponentially (a chaotic regime, e.g. model 1 at lr 0.1 with the
   summed loss: a 1e-16 difference grows about 10x every 10 updates). There two *identical*
   computations that merely round differently separate, so the trajectory check cannot tell a
   bug from rounding. When the trajectory difference exceeds the tolerance, two more checks
   run and decide instead:

   - *control*: numnet against numnet fed each batch with its rows reversed (the same
     mathematics; only the order of the sums over the batch, hence the rounding, differs).
     The *horizon* is the number of leading updates during which the control stays within
     ``control_tolerance`` (1e-12): over the horizon the run does not yet amplify rounding, and
     there the trajectory difference must still be below ``tolerance``;
   - *lockstep*: at every one of the updates, PyTorch is given numnet's current weights, both
     compute the loss and make one update; the relative difference of the loss and of the
     updated weights must be below ``tolerance`` at every update.

A run that fails raises :class:`AgreementError` after every output is written (the CLI exits
with code 1). Outputs in ``out_dir``::

    compare.json          everything above, per run, plus versions, threads, machine
    compare_curves.png    the 3x4 learning-curve grid, numnet (solid) and PyTorch (dashed)
    compare.html          the Q2 section (self-contained, the figure embedded)
    compare.md            the same for terminals and notebooks
    protocol.toml         the protocol used
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as _dt
import html
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from numnet.core.datasets import DataSet, Datasets
from numnet.core.errors import NumnetError
from numnet.lab import protocol as protocol_mod
from numnet.lab.protocol import Protocol
from numnet.lab.training import RunResult, RunSpec

COMPARE_FORMAT = "numnet.lab.compare/1"
TOLERANCE = 1e-9
CONTROL_TOLERANCE = 1e-12
AGREEMENT_UPDATES = 200
OVERLAY_TITLE = "Learning Curves for all Tasks and Hyper-parameter settings"
IMPLEMENTATIONS = ("numnet", "pytorch", "pytorch_channels_last")

Log = Callable[[str], None]


class AgreementError(NumnetError):
    """numnet and PyTorch disagree in float64 beyond the tolerance: a bug in one of them."""


@dataclass
class CompareOutcome:
    """What :func:`run_compare` produced: the output folder and the compare.json document."""

    out_dir: Path
    doc: dict[str, Any]
    failed: list[str] = field(default_factory=list)  # run ids that failed the agreement

    @property
    def passed(self) -> bool:
        return not self.failed


# ------------------------------------------------------------------------------ threads


@contextlib.contextmanager
def thread_limit(threads: int | None) -> Iterator[None]:
    """Run numnet (its BLAS, and its conv fast path's helper thread, at most 2) and PyTorch's
    intra-op pool with ``threads`` threads each inside the block (None: leave all as they
    are). The same count for both keeps the time ratio fair; 1 is the robust choice on a
    machine whose cores are shared (threaded BLAS and OpenMP spin-wait, and slow down many
    times when other processes hold the cores)."""
    from numnet.core import runtime
    from numnet.lab.experiments import blas_limit
    from numnet.lab.reference_torch import import_torch

    torch = import_torch()
    before, layers_before = torch.get_num_threads(), runtime.get_threads()
    with blas_limit(threads):
        if threads is not None:
            torch.set_num_threads(threads)
            runtime.set_threads(min(threads, 2))  # numnet's conv fast path: 1 or 2 threads
        try:
            yield
        finally:
            torch.set_num_threads(before)
            runtime.set_threads(layers_before)


# ------------------------------------------------------------------------------ float64 check


def _rel(a: float, b: float) -> float:
    if a == b:
        return 0.0
    if not (math.isfinite(a) and math.isfinite(b)):
        return math.inf
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def _param_rel(numnet_model: Any, torch_model: Any) -> float:
    """Largest, over the parameters, of ``max|p_numnet - p_torch| / max|p_numnet|``."""
    from numnet.lab.reference_torch import numnet_layout_arrays

    worst = 0.0
    for p, q in zip(numnet_model.parameters(), numnet_layout_arrays(torch_model), strict=True):
        scale = float(np.max(np.abs(p.value)))
        diff = float(np.max(np.abs(p.value - q)))
        worst = max(worst, diff / scale if scale > 0 else diff)
    return worst if math.isfinite(worst) else math.inf


def _numnet_stepper(spec64: RunSpec) -> Any:
    from numnet.lab.training import NumnetStepper, build_model

    return NumnetStepper(build_model(spec64), spec64.lr, spec64.reduction)


def _steppers(spec64: RunSpec) -> tuple[Any, Any]:
    """A fresh numnet float64 model for ``spec64`` and its PyTorch twin, as steppers."""
    from numnet.lab.reference_torch import ReferenceTrainer, reference_from_numnet
    from numnet.lab.training import NumnetStepper, build_model

    model = build_model(spec64)
    twin = reference_from_numnet(model, spec64.model)
    return (NumnetStepper(model, spec64.lr, spec64.reduction),
            ReferenceTrainer(twin, lr=spec64.lr, reduction=spec64.reduction))


def _batches(spec: RunSpec, train: DataSet, n: int) -> Iterator[tuple[int, np.ndarray, Any]]:
    """The run's first ``n`` batches (its shuffle seed), images cast to float64."""
    from numnet.lab.training import make_batch_source

    source = make_batch_source(spec, train)
    for i in range(1, n + 1):
        x, y = source.next_batch(spec.batch_size)
        yield i, x.astype(np.float64), y


def float64_agreement(
    spec: RunSpec,
    train: DataSet,
    updates: int = AGREEMENT_UPDATES,
    *,
    tolerance: float = TOLERANCE,
    control_tolerance: float = CONTROL_TOLERANCE,
) -> dict[str, Any]:
    """The float64 agreement of numnet and PyTorch over the first ``updates`` updates of the
    run ``spec`` (its init and shuffle seeds, options and learning rate; dtype forced to
    float64). See the module docstring for the three checks and the pass rule. Returns a
    JSON-able dict; ``passed`` says whether the run passed."""
    from numnet.lab.training import expected_updates

    spec64 = dataclasses.replace(spec, dtype="float64")
    n = min(updates, expected_updates(train.num_examples, spec.batch_size, spec.epochs))
    result: dict[str, Any] = {
        "dtype": "float64", "requested_updates": updates, "updates": n,
        "tolerance": tolerance, "control_tolerance": control_tolerance,
    }
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        # 1. trajectory: both train on their own.
        numnet, torch_ = _steppers(spec64)
        rel: list[float] = []
        both_diverged_at = None
        for i, x, y in _batches(spec, train, n):
            a, b = numnet.loss(x, y), torch_.loss(x, y)
            if not (math.isfinite(a) or math.isfinite(b)):
                both_diverged_at = i  # the same verdict in both; nothing more to compare
                break
            rel.append(_rel(a, b))
            if not (math.isfinite(a) and math.isfinite(b)):
                break  # one diverged, the other not: rel is inf
            numnet.update()
            torch_.update()
        worst = max(rel, default=0.0)
        result.update(
            method="trajectory",
            compared_updates=len(rel),
            both_diverged_at_update=both_diverged_at,
            max_rel_loss_diff=worst,
            at_update=(rel.index(worst) + 1) if rel else None,
            final_rel_param_diff=_param_rel(numnet.model, torch_.model) if rel else None,
            rel_loss_diff_curve=_thin(rel),
        )
        if worst <= tolerance:
            result["passed"] = True
            return result

        # 2a. control: numnet against itself with each batch's rows reversed.
        numnet, reversed_ = _numnet_stepper(spec64), _numnet_stepper(spec64)
        control: list[float] = []
        for _i, x, y in _batches(spec, train, len(rel)):
            a, c = numnet.loss(x, y), reversed_.loss(x[::-1].copy(), y[::-1].copy())
            control.append(_rel(a, c))
            if not (math.isfinite(a) and math.isfinite(c)):
                break
            numnet.update()
            reversed_.update()
        horizon = next((k for k, r in enumerate(control) if r > control_tolerance), len(control))
        within = max(rel[:horizon], default=0.0)

        # 2b. lockstep: PyTorch restarts every update from numnet's weights.
        from numnet.lab.reference_torch import copy_numnet_weights

        numnet, torch_ = _steppers(spec64)
        lock_loss, lock_param, lock_at = 0.0, 0.0, None
        lock_updates = 0
        for i, x, y in _batches(spec, train, len(rel)):
            copy_numnet_weights(numnet.model, torch_.model)
            a, b = numnet.loss(x, y), torch_.loss(x, y)
            r = _rel(a, b)
            if not (math.isfinite(a) and math.isfinite(b)):
                if math.isfinite(a) or math.isfinite(b):
                    lock_loss, lock_at = math.inf, i
                break
            numnet.update()
            torch_.update()
            lock_updates = i
            rp = _param_rel(numnet.model, torch_.model)
            if max(r, rp) > max(lock_loss, lock_param):
                lock_at = i
            lock_loss, lock_param = max(lock_loss, r), max(lock_param, rp)

    result.update(
        method="trajectory + control + lockstep",
        control_max_rel_loss_diff=max(control, default=0.0),
        control_rel_loss_diff_curve=_thin(control),
        horizon=horizon,
        max_rel_loss_diff_within_horizon=within,
        lockstep_updates=lock_updates,
        lockstep_max_rel_loss_diff=lock_loss,
        lockstep_max_rel_param_diff=lock_param,
        lockstep_at_update=lock_at,
    )
    result["passed"] = bool(within <= tolerance and lock_loss <= tolerance
                            and lock_param <= tolerance)
    return result


def _thin(values: list[float], points: int = 50) -> list[list[float]]:
    """``[[update, value], ...]`` at most ``points`` samples (every k-th and the worst), for
    compare.json (JSON-safe: inf becomes 1e308)."""
    if not values:
        return []
    step = max(1, math.ceil(len(values) / points))
    keep = set(range(step - 1, len(values), step)) | {int(np.argmax(values)), 0}
    return [[k + 1, min(values[k], 1e308)] for k in sorted(keep)]


# ------------------------------------------------------------------------------ one run


def curve_gap(a: list[float], b: list[float], samples: list[int]) -> tuple[float | None,
                                                                           int | None]:
    """Largest ``|a[k] - b[k]|`` over the evaluations both curves have, and its sample count."""
    n = min(len(a), len(b))
    if n == 0:
        return None, None
    diffs = [abs(a[k] - b[k]) for k in range(n)]
    k = int(np.argmax(diffs))
    return diffs[k], samples[k]


def _diagnosis(run: dict[str, Any]) -> dict[str, Any]:
    """The reproduce report's diagnosis (:func:`numnet.lab.report.diagnose`) of one run dict."""
    from numnet.lab.report import diagnose

    d = diagnose(run)
    return {"verdict": d.verdict, "labels": d.labels, "findings": d.findings,
            "numbers": d.numbers}


def refresh_diagnoses(doc: dict[str, Any]) -> dict[str, Any]:
    """Recompute every run's diagnosis with the current rules (so that the findings and the
    rules printed beside them always match); returns ``doc``, changed in place."""
    for r in doc["runs"]:
        r["diagnosis"] = {impl: _diagnosis(r["runs"][impl]) for impl in ("numnet", "pytorch")}
    return doc


def _impl_summary(r: RunResult) -> dict[str, Any]:
    d = r.to_dict()
    d["best_test_accuracy"] = max(r.test_accuracy) if r.test_accuracy else None
    d["best_train_accuracy"] = max(r.train_accuracy) if r.train_accuracy else None
    return d


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def compare_record(
    spec: RunSpec,
    numnet_run: RunResult,
    torch_run: RunResult,
    torch_cl_run: RunResult | None,
    agreement: dict[str, Any] | None,
) -> dict[str, Any]:
    """One run's entry of compare.json (see the module docstring)."""
    runs = {"numnet": _impl_summary(numnet_run), "pytorch": _impl_summary(torch_run),
            "pytorch_channels_last": _impl_summary(torch_cl_run) if torch_cl_run else None}
    n, t = runs["numnet"], runs["pytorch"]
    samples = n["samples"] if len(n["samples"]) >= len(t["samples"]) else t["samples"]
    gap_test, at_test = curve_gap(n["test_accuracy"], t["test_accuracy"], samples)
    gap_train, at_train = curve_gap(n["train_accuracy"], t["train_accuracy"], samples)
    cl = runs["pytorch_channels_last"]
    diagnosis = {impl: _diagnosis(runs[impl]) for impl in ("numnet", "pytorch")}
    final_diff = None
    if n["final_test_accuracy"] is not None and t["final_test_accuracy"] is not None:
        final_diff = n["final_test_accuracy"] - t["final_test_accuracy"]
    return {
        "run_id": spec.run_id,
        "model": spec.model,
        "setting": spec.setting,
        "epochs": spec.epochs,
        "lr": spec.lr,
        "reduction": spec.reduction,
        "seed": spec.seed,
        "init_seed": numnet_run.init_seed,
        "shuffle_seed": numnet_run.shuffle_seed,
        "accuracy": {
            "numnet_final_test": n["final_test_accuracy"],
            "pytorch_final_test": t["final_test_accuracy"],
            "final_test_diff": final_diff,
            "numnet_best_test": n["best_test_accuracy"],
            "pytorch_best_test": t["best_test_accuracy"],
            "numnet_final_train": n["final_train_accuracy"],
            "pytorch_final_train": t["final_train_accuracy"],
            "max_gap_test": gap_test,
            "max_gap_test_at_samples": at_test,
            "max_gap_train": gap_train,
            "max_gap_train_at_samples": at_train,
            "compared_evaluations": min(len(n["samples"]), len(t["samples"])),
        },
        "time": {
            "numnet_s": n["wall_time"],
            "pytorch_s": t["wall_time"],
            "ratio_pytorch_over_numnet": _ratio(t["wall_time"], n["wall_time"]),
            "pytorch_channels_last_s": cl["wall_time"] if cl else None,
            "ratio_channels_last_over_numnet": _ratio(cl["wall_time"], n["wall_time"])
            if cl else None,
        },
        "stability": {
            impl: ({"status": runs[impl]["status"],
                    "diverged_at_update": runs[impl]["diverged_at_update"],
                    "divergence_reason": runs[impl]["divergence_reason"]}
                   if runs[impl] else None)
            for impl in IMPLEMENTATIONS
        } | {"same": (n["status"], n["diverged_at_update"])
             == (t["status"], t["diverged_at_update"])},
        "agreement": agreement,
        "diagnosis": diagnosis,
        "runs": runs,
    }


# ------------------------------------------------------------------------------ the command


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
    log: Log | None = None,
    tolerance: float = TOLERANCE,
) -> CompareOutcome:
    """Run every run of ``protocol`` with numnet and with PyTorch and write the outputs.

    protocol: a :class:`Protocol`, a built-in name or a TOML path; ``models`` restricts it,
    ``seed`` overrides its seed, ``quick`` applies its ``[quick]`` variant (as ``numnet
    reproduce``). data: SPEC's splits (loaded for the protocol's dataset when None).
    agreement_updates: float64 agreement over this many first updates of each run (0: skip).
    channels_last: also time PyTorch's channels_last layout for model 4. threads: numnet's
    BLAS and PyTorch's threads (the same for both; None leaves the libraries' defaults).
    progress: "bars", "log", "none" or "auto". Raises :class:`AgreementError` (after writing
    every output) when a run fails the float64 agreement.
    """
    from numnet.lab import experiments
    from numnet.lab.reference_torch import ReferenceTrainer, import_torch, reference_from_numnet
    from numnet.lab.training import build_model, expected_updates, train_run

    torch = import_torch()
    log = log or experiments._stderr_log
    started = time.perf_counter()
    started_at = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    protocol = protocol_mod.resolve(protocol, seed, quick)
    specs = experiments.plan_runs(protocol, models)
    out = Path(out_dir) if out_dir is not None else _default_out_dir(protocol)
    out.mkdir(parents=True, exist_ok=True)
    experiments.write_text(out / "protocol.toml", protocol.text)
    if data is None:
        from numnet.lab import data as data_mod

        data = data_mod.load(dataset=protocol.dataset, data_dir=data_dir,
                             validation_size=protocol.validation_size,
                             progress=progress != "none")
    protocol_mod.check_against_data(protocol, data.train.num_examples, data.test.num_examples)
    info = experiments.data_info(protocol.dataset, data)

    if progress == "auto":
        progress = "bars" if sys.stderr.isatty() else "log"
    totals = {s.run_id: expected_updates(data.train.num_examples, s.batch_size, s.epochs)
              for s in specs}
    n_impl = {s.run_id: 3 if channels_last and s.model == "model4" else 2 for s in specs}
    display = experiments.ProgressDisplay(
        progress, log, sum(totals[s.run_id] * n_impl[s.run_id] for s in specs))
    quick_note = f" [{experiments.QUICK_LABEL}]" if protocol.quick else ""
    display.message(f"numnet compare: protocol {protocol.name}{quick_note} (hash "
                    f"{protocol.hash}), {len(specs)} runs x numnet/PyTorch, output {out}")

    records: list[dict[str, Any]] = []
    with thread_limit(threads):
        environment = experiments.environment_info()
        environment["torch"] = {
            "version": torch.__version__,
            "threads": torch.get_num_threads(),
            "mkldnn": bool(torch.backends.mkldnn.is_available()),
        }
        environment["threads_setting"] = threads
        from numnet.core import runtime

        environment["numnet_conv_threads"] = runtime.get_threads()

        def document(complete: bool) -> dict[str, Any]:
            return compare_document(protocol, records, info, environment, {
                "started_at": started_at,
                "finished_at": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                "wall_time": time.perf_counter() - started,
            }, complete=complete, agreement_updates=agreement_updates, tolerance=tolerance)

        try:
            for k, spec in enumerate(specs, start=1):
                total = totals[spec.run_id]
                label = f"[{k}/{len(specs)}]"
                display.start_run(f"{label} numnet", spec, total)
                numnet_run = train_run(spec, data, on_progress=display.update)
                display.end_run(f"{label} numnet", numnet_run, total)

                def torch_run(cl: bool, spec: RunSpec = spec, label: str = label,
                              total: int = total) -> RunResult:
                    name = f"{label} PyTorch" + (" channels_last" if cl else "")
                    twin = reference_from_numnet(build_model(spec), spec.model,
                                                 channels_last=cl)
                    stepper = ReferenceTrainer(twin, lr=spec.lr, reduction=spec.reduction,
                                               channels_last=cl)
                    display.start_run(name, spec, total)
                    result = train_run(spec, data, on_progress=display.update, stepper=stepper)
                    display.end_run(name, result, total)
                    return result

                pt_run = torch_run(False)
                cl_run = torch_run(True) if n_impl[spec.run_id] == 3 else None
                agreement = None
                if agreement_updates > 0:
                    t0 = time.perf_counter()
                    agreement = float64_agreement(spec, data.train, agreement_updates,
                                                  tolerance=tolerance)
                    agreement["wall_time"] = time.perf_counter() - t0
                    display.message(f"{label} float64 agreement {spec.run_id}: "
                                    f"{describe_agreement(agreement)}")
                for r in (numnet_run, pt_run, cl_run):
                    if r is not None:
                        r.model = None
                records.append(compare_record(spec, numnet_run, pt_run, cl_run, agreement))
                experiments.write_json(out / "compare.json", document(complete=False))
        finally:
            display.close()

    doc = document(complete=True)
    write_outputs(out, doc)
    failed = [r["run_id"] for r in records if r["agreement"] and not r["agreement"]["passed"]]
    log(f"numnet compare: done in {doc['timing']['wall_time']:.1f} s; outputs in {out}")
    outcome = CompareOutcome(out_dir=out, doc=doc, failed=failed)
    if failed:
        worst = {r["run_id"]: r["agreement"] for r in records if r["run_id"] in failed}
        detail = "; ".join(f"{rid}: {describe_agreement(a)}" for rid, a in worst.items())
        raise AgreementError(
            f"numnet and PyTorch disagree in float64 beyond {tolerance:g} in "
            f"{len(failed)} run(s) ({detail}); one of the two implementations has a bug. "
            f"Details in {out / 'compare.json'}"
        )
    return outcome


def _default_out_dir(protocol: Protocol) -> Path:
    from numnet.lab.experiments import default_out_dir

    d = default_out_dir(protocol)
    return d.with_name("compare-" + d.name)


def describe_agreement(a: dict[str, Any]) -> str:
    """One line: the float64 agreement of a run."""
    verdict = "PASS" if a["passed"] else "FAIL"
    text = (f"{verdict}: max relative loss difference {a['max_rel_loss_diff']:.2e} over "
            f"{a['compared_updates']} updates")
    if a.get("both_diverged_at_update"):
        text += f" (both diverged at update {a['both_diverged_at_update']})"
    if "lockstep_max_rel_loss_diff" in a:
        text += (f"; rounding-sensitive run: numnet vs itself (batch rows reversed) "
                 f"{a['control_max_rel_loss_diff']:.2e}, within the horizon of {a['horizon']} "
                 f"updates {a['max_rel_loss_diff_within_horizon']:.2e}; lockstep loss "
                 f"{a['lockstep_max_rel_loss_diff']:.2e}, weights "
                 f"{a['lockstep_max_rel_param_diff']:.2e}")
    return text


def compare_document(
    protocol: Protocol,
    records: list[dict[str, Any]],
    data: dict[str, Any],
    environment: dict[str, Any],
    timing: dict[str, Any],
    *,
    complete: bool = True,
    agreement_updates: int = AGREEMENT_UPDATES,
    tolerance: float = TOLERANCE,
) -> dict[str, Any]:
    """The content of compare.json."""
    from numnet.lab.experiments import QUICK_LABEL

    agreements = [r["agreement"] for r in records if r["agreement"]]
    times = {impl: sum(r["time"][f"{impl}_s"] for r in records) for impl in ("numnet", "pytorch")}
    return {
        "format": COMPARE_FORMAT,
        "complete": complete,
        "label": QUICK_LABEL if protocol.quick else None,
        "protocol": protocol.metadata(),
        "data": data,
        "environment": environment,
        "agreement_settings": {"updates": agreement_updates, "tolerance": tolerance,
                               "control_tolerance": CONTROL_TOLERANCE, "dtype": "float64"},
        "summary": {
            "runs": len(records),
            "agreement_passed": all(a["passed"] for a in agreements) if agreements else None,
            "agreement_failed_runs": [r["run_id"] for r in records
                                      if r["agreement"] and not r["agreement"]["passed"]],
            "max_rel_loss_diff": max((a["max_rel_loss_diff"] for a in agreements),
                                     default=None),
            "numnet_s": times["numnet"],
            "pytorch_s": times["pytorch"],
            "ratio_pytorch_over_numnet": _ratio(times["pytorch"], times["numnet"]),
        },
        "runs": records,
        "timing": timing,
    }


def load_compare(out_dir: str | Path) -> dict[str, Any]:
    """Read ``out_dir/compare.json`` (checking its format)."""
    from numnet.lab.experiments import read_json

    path = Path(out_dir) / "compare.json"
    doc = read_json(path)
    if not isinstance(doc, dict) or doc.get("format") != COMPARE_FORMAT:
        raise NumnetError(f"{path} is not a numnet compare file (format {COMPARE_FORMAT}); "
                          "run `numnet compare --out DIR` first")
    return doc


def write_outputs(out_dir: str | Path, doc: dict[str, Any]) -> dict[str, Path]:
    """Write compare.json, compare_curves.png, compare.html and compare.md (atomically)."""
    from numnet.lab.experiments import write_bytes, write_json, write_text
    from numnet.lab.plots import png_bytes

    out = Path(out_dir)
    refresh_diagnoses(doc)
    write_json(out / "compare.json", _json_safe(doc))
    png = png_bytes(overlay_figure(doc))
    write_bytes(out / "compare_curves.png", png)
    write_text(out / "compare.html", render_html(doc, png))
    write_text(out / "compare.md", render_markdown(doc))
    return {name: out / name for name in
            ("compare.json", "compare_curves.png", "compare.html", "compare.md")}


def _json_safe(obj: Any) -> Any:
    """inf -> 1e308 (strict JSON has no infinity; only the agreement figures can be inf)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return 1e308 if obj > 0 else (-1e308 if obj < 0 else None)
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


# ------------------------------------------------------------------------------ figure


# numnet: thick, light solid lines; PyTorch: thin, dark dashes drawn on top, so that where the
# two curves coincide (they usually do) both stay visible.
NUMNET_STYLE = {"linestyle": "-", "linewidth": 3.2, "alpha": 0.45}
PYTORCH_STYLE = {"linestyle": "--", "linewidth": 1.3}
NUMNET_COLORS = ("#1f77b4", "#ff7f0e")  # train, test (the reproduce figure's colours)
PYTORCH_COLORS = ("#0b2f5c", "#9c3d00")  # darker shades of the same


def _impl_doc(doc: dict[str, Any], impl: str) -> dict[str, Any]:
    """A results-document view (``protocol`` + ``runs``) of one implementation's runs."""
    return {"protocol": doc["protocol"], "label": doc.get("label"),
            "runs": [r["runs"][impl] for r in doc["runs"] if r["runs"].get(impl)]}


def overlay_figure(doc: dict[str, Any]) -> Any:
    """SPEC's 3x4 learning-curve grid with both implementations per panel: numnet solid,
    PyTorch dashed (train blue, test orange); a diverged run is noted in its panel."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from numnet.lab import plots

    numnet_doc = _impl_doc(doc, "numnet")
    models, rows, runs = plots.run_grid(numnet_doc)
    torch_runs = {(r["spec"]["model"], r["spec"]["setting"]): r
                  for r in _impl_doc(doc, "pytorch")["runs"]}
    fig = Figure(figsize=plots.LEARNING_CURVES_SIZE, dpi=plots.DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, max(1, len(models)), squeeze=False)
    for col, model in enumerate(models):
        for row in range(rows):
            ax = axes[row][col]
            ax.set_title(f"Task {model.removeprefix('model')}")
            run, trun = runs.get((model, row + 1)), torch_runs.get((model, row + 1))
            if run is None:
                planned = doc["protocol"].get("settings", {}).get(model, [])
                note = "not run" if row < len(planned) else "no such setting"
                ax.text(0.5, 0.5, note, ha="center", va="center", color="grey",
                        transform=ax.transAxes)
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            notes = []
            for r, who, style, colors in ((run, "numnet", NUMNET_STYLE, NUMNET_COLORS),
                                          (trun, "PyTorch", PYTORCH_STYLE, PYTORCH_COLORS)):
                if r is None:
                    continue
                if r["samples"]:
                    ax.plot(r["samples"], r["train_accuracy"], color=colors[0],
                            label=f"{who} train", **style)
                    ax.plot(r["samples"], r["test_accuracy"], color=colors[1],
                            label=f"{who} test", **style)
                if r["status"] == "diverged":
                    notes.append(f"{who} DIVERGED at update {r['diverged_at_update']}")
            if notes:
                ax.text(0.5, 0.3, "\n".join(notes), ha="center", va="center", fontsize=11,
                        color=plots.DIVERGED_COLOR, fontweight="bold", transform=ax.transAxes)
            spec = run["spec"]
            ax.set_xlabel("Number of samples processed")
            ax.set_ylabel(f"Epochs: {spec['epochs']}, Learning rate: {spec['lr']:g}")
            ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
            ax.grid(True, alpha=0.3)
            if ax.get_lines():
                ax.legend(loc="lower right", fontsize=8)
    quick = " — QUICK (reduced smoke-test variant)" if doc.get("label") else ""
    fig.suptitle(f"{OVERLAY_TITLE}: numnet (solid) vs PyTorch (dashed){quick}", fontsize=17)
    p = doc["protocol"]
    fig.text(0.995, 0.005, f"numnet compare — protocol {p['name']} (hash {p['hash']}), "
             f"seed {p['seed']}; same initial weights and batch order in both",
             ha="right", va="bottom", fontsize=9, color="grey")
    fig.tight_layout(rect=(0, 0.015, 1, 0.96))
    return fig


# ------------------------------------------------------------------------------ Q2 answers


def _acc(x: float | None) -> str:
    return "—" if x is None else f"{x:.4f}"


def _secs(x: float | None) -> str:
    return "—" if x is None else f"{x:.1f} s"


def _x(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}x"


def _status(stab: dict[str, Any] | None) -> str:
    if not stab:
        return "—"
    if stab["status"] == "diverged":
        return f"diverged @ {stab['diverged_at_update']}"
    return "ok"


def _label(r: dict[str, Any]) -> str:
    return f"M{r['model'].removeprefix('model')} s{r['setting']} ({r['epochs']}, {r['lr']:g})"


def q2_answers(doc: dict[str, Any]) -> dict[str, list[str]]:
    """The Q2 answers as plain-text statements, each with its numbers and its rule:
    ``{"runtime": [...], "performance": [...], "stability": [...], "fit": [...],
    "agreement": [...]}``."""
    from numnet.lab.report import RULES

    runs = doc["runs"]
    env = doc.get("environment", {})
    threads = env.get("threads_setting")
    out: dict[str, list[str]] = {k: [] for k in
                                 ("runtime", "performance", "stability", "fit", "agreement")}
    if not runs:
        return out

    # Runtime.
    s = doc["summary"]
    thread_text = (f"{threads} thread(s) each for numnet's BLAS and PyTorch" if threads
                   else "each library's default threads")
    out["runtime"].append(
        f"Rule: ratio = PyTorch wall time / numnet wall time of the same run (same updates, "
        f"same evaluations, {thread_text}); > 1 means numnet is faster. Wall times on a "
        f"shared machine are noisy.")
    out["runtime"].append(
        f"All {len(runs)} runs: numnet {_secs(s['numnet_s'])}, PyTorch {_secs(s['pytorch_s'])}"
        f" (ratio {_x(s['ratio_pytorch_over_numnet'])}).")
    by_model: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by_model.setdefault(r["model"], []).append(r)
    for model, rs in by_model.items():
        tn = sum(r["time"]["numnet_s"] for r in rs)
        tp = sum(r["time"]["pytorch_s"] for r in rs)
        text = (f"Model {model.removeprefix('model')}: numnet {_secs(tn)}, PyTorch "
                f"{_secs(tp)} (ratio {_x(_ratio(tp, tn))})")
        cl = [r["time"]["pytorch_channels_last_s"] for r in rs]
        if all(c is not None for c in cl):
            tcl = sum(cl)
            text += (f"; PyTorch channels_last {_secs(tcl)} (ratio {_x(_ratio(tcl, tn))})")
        out["runtime"].append(text + ".")

    # Final performance.
    out["performance"].append(
        "Rule: both start from the same weights and see the same batches, so any difference "
        f"comes from {doc['protocol'].get('dtype', 'float32')} rounding (amplified in runs "
        "that amplify rounding, see the agreement). Final = last evaluation; gap = largest "
        "|numnet - PyTorch| test accuracy over the evaluations both made.")
    diffs = [(abs(r["accuracy"]["final_test_diff"]), r) for r in runs
             if r["accuracy"]["final_test_diff"] is not None]
    if diffs and max(t[0] for t in diffs) == 0:
        out["performance"].append(
            f"The final test accuracies are identical in all {len(diffs)} runs.")
    elif diffs:
        d, r = max(diffs, key=lambda t: t[0])
        out["performance"].append(
            f"Largest difference of final test accuracy: {100 * d:.2f} points "
            f"({_label(r)}: numnet {_acc(r['accuracy']['numnet_final_test'])}, PyTorch "
            f"{_acc(r['accuracy']['pytorch_final_test'])}); mean over {len(diffs)} runs "
            f"{100 * sum(t[0] for t in diffs) / len(diffs):.2f} points.")
    gaps = [(r["accuracy"]["max_gap_test"], r) for r in runs
            if r["accuracy"]["max_gap_test"] is not None]
    if gaps:
        g, r = max(gaps, key=lambda t: t[0])
        out["performance"].append(
            f"Largest gap along the test curves: {100 * g:.2f} points ({_label(r)}, at "
            f"{r['accuracy']['max_gap_test_at_samples']:.3g} samples).")
    for model, rs in by_model.items():
        parts = []
        for impl, name in (("numnet", "numnet"), ("pytorch", "PyTorch")):
            ok = [r for r in rs if r["runs"][impl]["status"] == "ok"
                  and r["runs"][impl]["final_test_accuracy"] is not None]
            if ok:
                best = max(ok, key=lambda r, impl=impl: r["runs"][impl]["final_test_accuracy"])
                parts.append(f"{name} {_acc(best['runs'][impl]['final_test_accuracy'])} "
                             f"(setting {best['setting']})")
        if parts:
            out["performance"].append(
                f"Model {model.removeprefix('model')} best final test accuracy: "
                + ", ".join(parts) + ".")

    # Stability.
    out["stability"].append(
        "Rule (the runner's): a run diverges when its batch loss or its parameters become "
        "non-finite; it stops there.")
    for impl, name in (("numnet", "numnet"), ("pytorch", "PyTorch")):
        div = [r for r in runs if r["stability"][impl]["status"] == "diverged"]
        if div:
            out["stability"].append(
                f"Diverged in {name}: " + ", ".join(
                    f"{_label(r)} at update {r['stability'][impl]['diverged_at_update']}"
                    for r in div) + ".")
        else:
            out["stability"].append(f"Diverged in {name}: none of the {len(runs)} runs.")
    same = all(r["stability"]["same"] for r in runs)
    out["stability"].append(
        "numnet and PyTorch diverge in the same runs at the same update." if same else
        "numnet and PyTorch differ in divergence: " + ", ".join(
            f"{_label(r)} (numnet {_status(r['stability']['numnet'])}, PyTorch "
            f"{_status(r['stability']['pytorch'])})" for r in runs
            if not r["stability"]["same"]) + ".")
    sensitive = [r for r in runs if r["agreement"] and "control_max_rel_loss_diff" in
                 r["agreement"]]
    if sensitive:
        out["stability"].append(
            "Rounding-sensitive (chaotic) runs, where a 1e-16 difference grows to > "
            f"{CONTROL_TOLERANCE:g} within the first updates (numnet against itself with "
            "each batch's rows reversed): " + ", ".join(
                f"{_label(r)} (control {r['agreement']['control_max_rel_loss_diff']:.1e} after "
                f"{r['agreement']['compared_updates']} updates, horizon "
                f"{r['agreement']['horizon']})" for r in sensitive)
            + ". Their learning rate is past the stable range; the two implementations "
            "separate there just as numnet separates from itself.")
    unstable = [r for r in runs if "unstable" in r["diagnosis"]["numnet"]["labels"]]
    if unstable:
        out["stability"].append(
            "Flagged unstable by the report's rule (" + dict(RULES)["unstable"].rstrip(".")
            + "): "
            + ", ".join(f"{_label(r)} (numnet)" for r in unstable) + ".")

    # Under- and over-fitting.
    rules = dict(RULES)
    out["fit"].append("Rules (numnet.lab.report.diagnose, as in the reproduce report): "
                      f"over-fitting: {rules['over-fitting']} Under-fitting: "
                      f"{rules['under-fitting']}")
    for verdict in ("over-fitting", "under-fitting", "not learning", "diverged", "good fit"):
        hit = [r for r in runs if verdict in r["diagnosis"]["numnet"]["labels"]
               or verdict in r["diagnosis"]["pytorch"]["labels"]]
        if not hit:
            if verdict in ("over-fitting", "under-fitting"):
                out["fit"].append(f"{verdict.capitalize()}: no run.")
            continue
        out["fit"].append(f"{verdict.capitalize()}: {len(hit)} run(s): "
                          + ", ".join(_label(r) for r in hit) + ".")
        for r in hit:
            dn, dp = r["diagnosis"]["numnet"], r["diagnosis"]["pytorch"]
            both = verdict in dn["labels"] and verdict in dp["labels"]
            who = "numnet and PyTorch" if both else ("numnet only" if verdict in dn["labels"]
                                                     else "PyTorch only")
            finding = next((f for f in (dn if verdict in dn["labels"] else dp)["findings"]
                            if f.lower().startswith(verdict.split()[0])), "")
            out["fit"].append(f"  {_label(r)} ({who}): {finding}".rstrip())

    # Float64 agreement.
    st = doc["agreement_settings"]
    out["agreement"].append(
        f"Rule: float64, the same weights and batches, the first {st['updates']} updates of "
        f"each run; the largest relative difference of the batch loss must be < "
        f"{st['tolerance']:g}. Where a run amplifies rounding (numnet vs itself with reversed "
        f"batch rows exceeds {st['control_tolerance']:g}), the check applies over the updates "
        f"before that point, and a lockstep check (PyTorch restarted from numnet's weights at "
        "every update) must agree to the same tolerance at every update.")
    ag = [r for r in runs if r["agreement"]]
    if ag:
        worst = max(ag, key=lambda r: r["agreement"]["max_rel_loss_diff"])
        failed = [r for r in ag if not r["agreement"]["passed"]]
        out["agreement"].append(
            f"{len(ag) - len(failed)} of {len(ag)} runs pass. Largest trajectory difference "
            f"{worst['agreement']['max_rel_loss_diff']:.2e} ({_label(worst)}).")
        for r in failed:
            out["agreement"].append(f"FAIL {_label(r)}: {describe_agreement(r['agreement'])}")
    return out


def side_by_side_rows(doc: dict[str, Any]) -> list[list[str]]:
    """The per-run table (header first), shared by the terminal, Markdown and HTML."""
    rows = [["run", "(epochs, lr)", "numnet final/best test", "PyTorch final/best test",
             "max gap", "numnet time", "PyTorch time", "ratio", "channels_last (ratio)",
             "status numnet / PyTorch", "float64 max rel diff"]]
    for r in doc["runs"]:
        a, t, st, ag = r["accuracy"], r["time"], r["stability"], r["agreement"]
        cl = (f"{_secs(t['pytorch_channels_last_s'])} ({_x(t['ratio_channels_last_over_numnet'])})"
              if t["pytorch_channels_last_s"] is not None else "—")
        agree = "—"
        if ag:
            agree = f"{ag['max_rel_loss_diff']:.1e} {'PASS' if ag['passed'] else 'FAIL'}"
            if "horizon" in ag:
                agree += f" (chaotic; lockstep {max(ag['lockstep_max_rel_loss_diff'], ag['lockstep_max_rel_param_diff']):.0e})"  # noqa: E501
        rows.append([
            r["run_id"], f"({r['epochs']}, {r['lr']:g})",
            f"{_acc(a['numnet_final_test'])} / {_acc(a['numnet_best_test'])}",
            f"{_acc(a['pytorch_final_test'])} / {_acc(a['pytorch_best_test'])}",
            "—" if a["max_gap_test"] is None else f"{100 * a['max_gap_test']:.2f} pt",
            _secs(t["numnet_s"]), _secs(t["pytorch_s"]), _x(t["ratio_pytorch_over_numnet"]),
            cl, f"{_status(st['numnet'])} / {_status(st['pytorch'])}", agree,
        ])
    return rows


def format_table(doc: dict[str, Any] | CompareOutcome) -> str:
    """The side-by-side table as aligned text (for the terminal)."""
    if isinstance(doc, CompareOutcome):
        doc = doc.doc
    rows = side_by_side_rows(doc)
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                     .rstrip() for row in rows)


Q2_CSS = """
table.side { border-collapse:collapse; font-size:13px; margin:8px 0 14px; }
table.side th, table.side td { padding:5px 9px; border-bottom:1px solid var(--line);
  text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
table.side th { background:#eef2f9; text-align:center; }
table.side td:first-child { text-align:left; font-weight:600; }
table.side td.fail { color:#c62828; font-weight:700; }
.q2 h3 { margin:16px 0 6px; }
.q2 ul { margin:4px 0 10px; padding-left:20px; }
.q2 li { margin:3px 0; }
.q2 li.rule { color:var(--muted); list-style:none; margin-left:-16px; font-size:13px; }
.q2 li.sub { margin-left:22px; list-style:circle; font-size:13.5px; }
"""

Q2_HEADINGS = (
    ("runtime", "Runtime"),
    ("performance", "Final performance"),
    ("stability", "Stability of training"),
    ("fit", "Which runs under-fit, which over-fit"),
    ("agreement", "Float64 agreement (numnet and PyTorch are the same computation)"),
)


def q2_section_html(doc: dict[str, Any], overlay_png: bytes | None = None) -> str:
    """The Q2 section as an HTML fragment (``<section class="q2">``), for compare.html and
    for embedding in another report (its styles: :data:`Q2_CSS` on top of the report's)."""
    esc = html.escape
    answers = q2_answers(doc)
    parts = ['<section class="q2" id="q2"><h2>Q2 — numnet vs PyTorch (torch.nn + '
             "torch.optim.SGD): same weights, same batches</h2>"]
    if doc.get("label"):
        parts.append('<p><span class="quick">QUICK</span> reduced smoke-test variant: '
                     "these are not the protocol's results.</p>")
    if not doc.get("complete", True):
        parts.append("<p><strong>Incomplete:</strong> not every run has finished.</p>")
    rows = side_by_side_rows(doc)
    head = "".join(f"<th>{esc(c)}</th>" for c in rows[0])
    body = []
    for row in rows[1:]:
        cells = []
        for k, c in enumerate(row):
            cls = ' class="fail"' if (k == len(row) - 1 and "FAIL" in c) else ""
            cells.append(f"<td{cls}>{esc(c)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    parts.append(f'<table class="side"><thead><tr>{head}</tr></thead>'
                 f"<tbody>{''.join(body)}</tbody></table>")
    for key, title in Q2_HEADINGS:
        items = answers[key]
        if not items:
            continue
        lis = "".join(
            f'<li class="rule">{esc(s)}</li>' if s.startswith("Rule")
            else f'<li class="sub">{esc(s.strip())}</li>' if s.startswith("  ")
            else f"<li>{esc(s)}</li>"
            for s in items)
        parts.append(f"<h3>{esc(title)}</h3><ul>{lis}</ul>")
    if overlay_png is not None:
        data = base64.b64encode(overlay_png).decode("ascii")
        parts.append(
            '<h3>Learning curves, both implementations</h3><figure>'
            f'<img src="data:image/png;base64,{data}" alt="numnet vs PyTorch learning curves">'
            "<figcaption>Thick light lines: numnet; dark dashes: PyTorch. Train accuracy (blue) "
            "on the first "
            f"{doc['protocol']['eval_train_examples']} train examples, test accuracy (orange)."
            "</figcaption></figure>")
    parts.append("</section>")
    return "\n".join(parts)


def render_html(doc: dict[str, Any], overlay_png: bytes | None = None) -> str:
    """compare.html: a self-contained page holding the Q2 section and the environment."""
    from numnet.lab.report import CSS

    esc = html.escape
    p = doc["protocol"]
    env = doc.get("environment", {})
    torch_env = env.get("torch", {})
    machine = env.get("machine", {})
    env_rows = [
        ("numnet / NumPy / PyTorch", f"{env.get('numnet')} / {env.get('numpy')} / "
                                     f"{torch_env.get('version')}"),
        ("Threads", f"setting {env.get('threads_setting')}; PyTorch "
                    f"{torch_env.get('threads')}, mkldnn {torch_env.get('mkldnn')}"),
        ("Machine", f"{machine.get('processor', '')} · {machine.get('cpu_count')} CPUs · "
                    f"{machine.get('platform', '')}"),
        ("Data", f"{doc['data'].get('dataset')} (fingerprint {doc['data'].get('fingerprint')})"),
        ("Started / wall time", f"{doc['timing'].get('started_at')} / "
                                f"{doc['timing'].get('wall_time', 0):.1f} s"),
    ]
    env_html = "".join(f"<tr><td class='muted'>{esc(k)}</td><td>{esc(v)}</td></tr>"
                       for k, v in env_rows)
    quick = ' <span class="quick">QUICK</span>' if doc.get("label") else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>numnet compare: {esc(p['name'])}</title>
<style>{CSS}{Q2_CSS}</style></head>
<body>
<header><h1>numnet compare: {esc(p['name'])}{quick}</h1>
<p>Protocol <code>{esc(p['source'])}</code> · hash <code>{esc(p['hash'])}</code> · seed
<code>{p['seed']}</code> · {len(doc['runs'])} runs, each trained by numnet and by PyTorch</p>
</header>
<main>
{q2_section_html(doc, overlay_png)}
<section><h2>Environment</h2><table class="kv">{env_html}</table></section>
<section><h2>Protocol file</h2><pre>{esc(p.get('text') or '')}</pre></section>
</main>
<footer>numnet compare · compare.json holds every number shown here</footer>
</body></html>
"""


def render_markdown(doc: dict[str, Any]) -> str:
    """compare.md: the Q2 section as Markdown (the figure linked as a file next to it)."""
    p = doc["protocol"]
    lines = [f"# numnet compare: {p['name']}" + (" — QUICK" if doc.get("label") else ""), "",
             f"Protocol `{p['source']}` (hash `{p['hash']}`), seed {p['seed']}; "
             f"{len(doc['runs'])} runs, each trained by numnet and by PyTorch from the same "
             "weights on the same batches.", ""]
    rows = side_by_side_rows(doc)
    lines.append("| " + " | ".join(rows[0]) + " |")
    lines.append("|" + "---|" * len(rows[0]))
    lines.extend("| " + " | ".join(row) + " |" for row in rows[1:])
    lines.append("")
    answers = q2_answers(doc)
    for key, title in Q2_HEADINGS:
        if answers[key]:
            lines += [f"## {title}", ""]
            lines.extend(f"  - {s.strip()}" if s.startswith("  ")
                         else f"- {'*' + s + '*' if s.startswith('Rule') else s}"
                         for s in answers[key])
            lines.append("")
    lines += ["![numnet vs PyTorch learning curves](compare_curves.png)", ""]
    return "\n".join(lines)


__all__ = [
    "AgreementError",
    "CompareOutcome",
    "compare_document",
    "compare_record",
    "curve_gap",
    "describe_agreement",
    "float64_agreement",
    "format_table",
    "load_compare",
    "overlay_figure",
    "q2_answers",
    "q2_section_html",
    "refresh_diagnoses",
    "render_html",
    "render_markdown",
    "run_compare",
    "side_by_side_rows",
    "thread_limit",
    "write_outputs",
]
