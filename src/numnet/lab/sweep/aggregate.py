"""The summary of a sweep: per cell, the counts and the statistics of its runs (final
accuracies with a 95% t-interval, per-evaluation bands of the curves), and summary.json.

Aggregation counts runs with status ``ok``; a diverged run (a result, not an error) is counted
in ``n_diverged`` and left out of the statistics; a failed run is counted in ``n_error``.
The runs are read from their records (``runs/<run_id>.json``, ``record["result"]``), the same
records ``reproduce`` writes.
"""

from __future__ import annotations

import math
from typing import Any

from numnet import __version__
from numnet.lab.environment import environment_info
from numnet.lab.executor import TaskFailure
from numnet.lab.experiments.execute import Execution
from numnet.lab.stats import curve_stats, describe_proportion
from numnet.lab.sweep.plan import SweepPlan, cell_id
from numnet.lab.training import RunSpec

SUMMARY_FORMAT = "numnet.sweep-summary/1"  # format names: as before the core/lab split


def aggregate(plan: SweepPlan, records: dict[str, dict[str, Any]],
              failures: dict[str, TaskFailure] | None = None) -> list[dict[str, Any]]:
    """Per cell of ``plan``: counts, the statistics of the final test and train accuracies of
    its ``ok`` runs (``records``: run records by run id), and the per-evaluation statistics of
    its curves (for the bands)."""
    failures = failures or {}
    by_cell: dict[str, list[RunSpec]] = {}
    for spec in plan.runs:
        by_cell.setdefault(cell_id(spec), []).append(spec)
    cells = []
    for cell in plan.cells:
        specs = by_cell.get(cell.cell_id, [])
        runs = [records[s.run_id]["result"] for s in specs if s.run_id in records]
        ok = [r for r in runs if r["status"] == "ok"]
        samples = max((r["samples"] for r in ok), key=len, default=[])
        cells.append({
            "cell_id": cell.cell_id,
            "model": cell.model,
            "setting": cell.setting,
            "label": cell.label,
            "epochs": cell.spec.epochs,
            "lr": cell.spec.lr,
            "reduction": cell.spec.reduction,
            "spec": cell.spec.to_dict(),
            "n_tasks": len(specs),
            "n_ok": len(ok),
            "n_diverged": sum(r["status"] != "ok" for r in runs),
            "n_error": sum(s.run_id in failures for s in specs),
            "n_missing": sum(s.run_id not in records and s.run_id not in failures
                             for s in specs),
            "seeds": [s.seed for s in specs],
            "final_test_accuracy": describe_proportion([r["final_test_accuracy"] for r in ok]),
            "final_train_accuracy": describe_proportion([r["final_train_accuracy"] for r in ok]),
            "final_test_accuracies": [r["final_test_accuracy"] for r in runs],
            "statuses": [r["status"] for r in runs],
            "curves": {
                "samples": list(samples),
                "train_accuracy": curve_stats([r["train_accuracy"] for r in ok]),
                "test_accuracy": curve_stats([r["test_accuracy"] for r in ok]),
            },
        })
    return cells


def pct(x: float | None, digits: int = 2) -> str:
    """A fraction in percent with ``digits`` decimals, or a dash when there is none."""
    return "-" if x is None else f"{100 * x:.{digits}f}"


def ci_text(d: dict[str, Any]) -> str:
    """The 95% interval of a :func:`numnet.lab.stats.describe` in percent, ``[a, b]`` or ``-``."""
    return "-" if d["ci95"] is None else f"[{pct(d['ci95'][0])}, {pct(d['ci95'][1])}]"


def cell_text(cell: dict[str, Any]) -> str:
    """``"92.41 ± 0.18 (n=5)"`` (final test accuracy in %; problems noted)."""
    d = cell["final_test_accuracy"]
    text = pct(d["mean"]) if d["std"] is None else f"{pct(d['mean'])} ± {pct(d['std'])}"
    text += f" (n={d['n']})"
    notes = [f"{cell[k]} {w}" for k, w in (("n_diverged", "diverged"), ("n_error", "failed"),
                                           ("n_missing", "missing")) if cell[k]]
    return text + (f" [{', '.join(notes)}]" if notes else "")


def summary_document(plan: SweepPlan, outcome: Execution, *, executor: str, device: str,
                     wall_time: float, threads: int | None = 1) -> dict[str, Any]:
    """The content of summary.json (``threads``: the workers' ``--threads`` setting)."""
    records = outcome.records
    fingerprints = sorted({r["data_fingerprint"] for r in records.values()})
    run_now = outcome.made
    return {
        "format": SUMMARY_FORMAT,
        "numnet": __version__,
        "protocol": plan.to_dict()["protocol"],
        "seeds": plan.seeds,
        "grid": plan.grid,
        "executor": executor,
        "device": device,
        "data": {"dataset": plan.protocol.dataset, "fingerprints": fingerprints,
                 "consistent": len(fingerprints) <= 1},
        "environment": environment_info(threads),
        "cells": aggregate(plan, records, outcome.failures),
        "failures": [f.to_dict() for f in outcome.failures.values()],
        "timing": {  # wall_time: this invocation; task times: sums of the runs' own times
            "wall_time": wall_time,
            "task_time_total": math.fsum(r["result"]["wall_time"] for r in records.values()),
            "task_time_run_now": math.fsum(records[t]["result"]["wall_time"] for t in run_now),
            "tasks_run": len(run_now),
            "tasks_reused": len(outcome.reused),
        },
    }
