"""compare.json: per run, both implementations' results side by side (accuracies, gaps,
times and their ratio, stability, diagnoses, the float64 agreement), and the whole document."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from numnet.core.errors import NumnetError
from numnet.core.io import read_json, write_json
from numnet.lab.compare.agreement import AGREEMENT_UPDATES, CONTROL_TOLERANCE, TOLERANCE
from numnet.lab.protocol import Protocol
from numnet.lab.report.diagnosis import diagnose
from numnet.lab.results import QUICK_LABEL
from numnet.lab.stats import curve_gap, ratio
from numnet.lab.training import RunResult, RunSpec

COMPARE_FORMAT = "numnet.compare/1"  # format names: as before the core/lab split
IMPLEMENTATIONS = ("numnet", "pytorch", "pytorch_channels_last")


def _diagnosis(run: dict[str, Any]) -> dict[str, Any]:
    """The reproduce report's diagnosis (:func:`numnet.lab.report.diagnose`) of one run dict."""
    d = diagnose(run)
    return {"verdict": d.verdict, "labels": d.labels, "findings": d.findings,
            "numbers": d.numbers}


def _impl_summary(r: RunResult) -> dict[str, Any]:
    d = r.to_dict()
    d["best_test_accuracy"] = max(r.test_accuracy) if r.test_accuracy else None
    d["best_train_accuracy"] = max(r.train_accuracy) if r.train_accuracy else None
    return d


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
            "ratio_pytorch_over_numnet": ratio(t["wall_time"], n["wall_time"]),
            "pytorch_channels_last_s": cl["wall_time"] if cl else None,
            "ratio_channels_last_over_numnet": ratio(cl["wall_time"], n["wall_time"])
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
            "ratio_pytorch_over_numnet": ratio(times["pytorch"], times["numnet"]),
        },
        "runs": records,
        "timing": timing,
    }


def load_compare(out_dir: str | Path) -> dict[str, Any]:
    """Read ``out_dir/compare.json`` (checking its format)."""
    path = Path(out_dir) / "compare.json"
    doc = read_json(path)
    if not isinstance(doc, dict) or doc.get("format") != COMPARE_FORMAT:
        raise NumnetError(f"{path} is not a numnet compare file (format {COMPARE_FORMAT}); "
                          "run `numnet compare --out DIR` first")
    return doc


def _json_safe(obj: Any) -> Any:
    """inf -> 1e308 (strict JSON has no infinity; only the agreement figures can be inf)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return 1e308 if obj > 0 else (-1e308 if obj < 0 else None)
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def save_document(out_dir: Path, doc: dict[str, Any]) -> None:
    """Write compare.json (strict JSON: infinities as +-1e308, see :func:`_json_safe`)."""
    write_json(out_dir / "compare.json", _json_safe(doc))
