"""The summary of a sweep, from the run records ``reproduce`` writes too
(``runs/<run_id>.json``, ``record["result"]``): per cell the counts and statistics of its runs
(final accuracies with a 95% t-interval, per-evaluation bands of the curves) in summary.json,
and summary.md, summary.csv and the figures written from summary.json alone.

Aggregation counts runs with status ``ok``; a diverged run (a result, not an error) is counted
in ``n_diverged`` and left out of the statistics; a failed run is counted in ``n_error``.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any

from numnet import __version__
from numnet.lab.environment import environment_info
from numnet.lab.executor import TaskFailure
from numnet.lab.experiments.execute import Execution
from numnet.lab.render import Bullets, Doc, P, Section, Table, to_markdown
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


def summary_markdown(summary: dict[str, Any]) -> str:
    """summary.md: the mean ± std table (the reproduce table's layout) then one row per
    cell in detail."""
    cells = summary["cells"]
    models = list(dict.fromkeys(c["model"] for c in cells))
    settings = range(1, max((c["setting"] for c in cells), default=0) + 1)
    grid = {(c["model"], c["setting"]): c for c in cells}
    p = summary["protocol"]
    quick = " — QUICK (reduced smoke-test variant)" if p["quick"] else ""
    t = summary["timing"]
    return to_markdown(Doc(
        f"Sweep: {p['name']}{quick}, {summary['seeds']} seeds per cell", [
            P(f"Protocol hash {p['hash']}, base seed {p['seed']}"
              + (f", grid {summary['grid']}" if summary["grid"] else "")
              + f"; executed on {summary['executor']}, device {summary['device']}."),
            P("Final test accuracy (%), mean ± sample std over seeds (runs with status ok):"),
            Table([[f"Model {m.removeprefix('model')}",
                    *[cell_text(grid[(m, k)]) if (m, k) in grid else "" for k in settings]]
                   for m in models], ["", *[f"Setting {k}" for k in settings]]),
            Table([[c["cell_id"], c["label"], f"{c['n_ok']}/{c['n_tasks']}",
                    *[pct(c["final_test_accuracy"][k]) for k in ("mean", "std", "min", "max")],
                    ci_text(c["final_test_accuracy"]), str(c["n_diverged"]), str(c["n_error"])]
                   for c in cells],
                  ["cell", "setting", "n ok", "mean %", "std %", "min %", "max %",
                   "95% CI % (t, within 0-100)", "diverged", "failed"])],
        [Section("Failed tasks", [Bullets([f"{f['task_id']}: {f['error']}"
                                           for f in summary["failures"]])])]
        if summary["failures"] else [],
        footer=f"Wall time of this invocation {t['wall_time']:.1f} s ({t['tasks_run']} tasks "
               f"run, {t['tasks_reused']} reused); sum of the runs' own times "
               f"{t['task_time_total']:.1f} s ({t['task_time_run_now']:.1f} s run now)."))


SUMMARY_CSV_COLUMNS = ("cell_id", "model", "setting", "epochs", "lr", "reduction", "n_tasks",
                       "n_ok", "n_diverged", "n_error", "mean", "std", "min", "max", "ci95_low",
                       "ci95_high", "train_mean", "train_std")


def summary_csv(summary: dict[str, Any]) -> str:
    """summary.csv: one row per cell (final test accuracy statistics as fractions)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(SUMMARY_CSV_COLUMNS)
    for c in summary["cells"]:
        d, tr = c["final_test_accuracy"], c["final_train_accuracy"]
        ci = d["ci95"] or [None, None]
        row = [c["cell_id"], c["model"], c["setting"], c["epochs"], repr(c["lr"]),
               c["reduction"], c["n_tasks"], c["n_ok"], c["n_diverged"], c["n_error"],
               d["mean"], d["std"], d["min"], d["max"], ci[0], ci[1], tr["mean"], tr["std"]]
        writer.writerow(["" if v is None else v for v in row])
    return buf.getvalue()
