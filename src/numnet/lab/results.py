"""results.json and results.csv: the document ``numnet reproduce`` writes and the report reads.

results.json holds the protocol's result tuples per model (``((epochs, lr), train accuracies,
test accuracies)``), every run (``RunResult.to_dict()``: curves, status, seeds, timing), the
protocol (text and hash), the data (sizes, fingerprint), the environment and the timing; each
run also carries its ``diagnosis`` (``{"verdict", "labels", "reasons", "notes"}``, see
:mod:`numnet.lab.report.diagnosis`) when the caller gives it. In a run, ``final_train_accuracy``
/ ``final_test_accuracy`` are the last curve point and ``final_weights`` the evaluation of the
weights after the last update (the saved ones).
results.csv has one row per (run, evaluation); its last columns repeat, on each row of a run,
the run's diagnosis and its final-weights accuracies.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from numnet.core.errors import NumnetError
from numnet.core.io import read_json
from numnet.lab.environment import environment_info
from numnet.lab.protocol import Protocol
from numnet.lab.training import RunResult

RESULTS_FORMAT = "numnet.results/1"
QUICK_LABEL = "QUICK"
CSV_COLUMNS = ("protocol", "quick", "run_id", "model", "setting", "epochs", "lr", "reduction",
               "seed", "status", "diverged_at_update", "evaluation", "samples",
               "train_accuracy", "test_accuracy", "train_loss", "test_loss",
               "diagnosis", "diagnosis_reasons", "final_weights_update",
               "final_weights_train_accuracy", "final_weights_test_accuracy")


def results_document(protocol: Protocol, results: list[RunResult], data: dict[str, Any],
                     timing: dict[str, Any], device: str = "cpu",
                     environment: dict[str, Any] | None = None,
                     diagnoses: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The content of results.json (see the module docstring). ``diagnoses``: ``{run_id:
    Diagnosis.to_record()}``, stored as each run's ``diagnosis``."""
    spec_results: dict[str, list[Any]] = {}
    for r in results:
        spec_results.setdefault(r.spec.model, []).append(r.spec_tuple())
    runs = [r.to_dict() for r in results]
    for run in runs:
        if diagnoses and run["run_id"] in diagnoses:
            run["diagnosis"] = diagnoses[run["run_id"]]
    return {
        "format": RESULTS_FORMAT,
        "label": QUICK_LABEL if protocol.quick else None,
        "protocol": protocol.metadata(),
        "device": device,
        "data": data,
        "environment": environment if environment is not None else environment_info(),
        # per model, a list of ((num_epochs, learning_rate), train_acc, test_acc)
        "results": spec_results,
        "runs": runs,
        "timing": timing,
    }


def results_csv(doc: dict[str, Any]) -> str:
    """results.csv: one row per (run, evaluation); a run without evaluations gets one row
    with the evaluation columns empty."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for run in doc["runs"]:
        s = run["spec"]
        head = [doc["protocol"]["name"], doc["protocol"]["quick"], run["run_id"], s["model"],
                s["setting"], s["epochs"], repr(s["lr"]), s["reduction"], s["seed"],
                run["status"], run["diverged_at_update"] or ""]
        diag = run.get("diagnosis") or {}
        fw = run.get("final_weights") or {}
        tail = ["; ".join(diag.get("labels", [])), " | ".join(diag.get("reasons", [])),
                fw.get("update", ""), repr(fw["train_accuracy"]) if fw else "",
                repr(fw["test_accuracy"]) if fw else ""]
        if not run["samples"]:
            writer.writerow(head + [""] * 6 + tail)
        for k, samples in enumerate(run["samples"]):
            writer.writerow(head + [k + 1, samples, repr(run["train_accuracy"][k]),
                                    repr(run["test_accuracy"][k]), repr(run["train_loss"][k]),
                                    repr(run["test_loss"][k])] + tail)
    return buf.getvalue()


def load_results(out_dir: str | Path) -> dict[str, Any]:
    """Read ``out_dir/results.json`` (checking its format)."""
    path = Path(out_dir) / "results.json"
    doc = read_json(path)
    if not isinstance(doc, dict) or doc.get("format") != RESULTS_FORMAT:
        raise NumnetError(
            f"{path} is not a numnet results file (format {RESULTS_FORMAT}); "
            "run `numnet reproduce --out DIR` first"
        )
    return doc


def final_test(run: dict[str, Any]) -> tuple[float | None, str]:
    """``(test accuracy, what it is)`` to show as a run's final figure: the final weights'
    (``"final weights"``), or for records made before that evaluation existed the last curve
    point (``"last curve point"``)."""
    fw = run.get("final_weights")
    if fw:
        return fw["test_accuracy"], "final weights"
    return run.get("final_test_accuracy"), "last curve point"


def final_train(run: dict[str, Any]) -> float | None:
    """The train accuracy that goes with :func:`final_test`."""
    fw = run.get("final_weights")
    return fw["train_accuracy"] if fw else run.get("final_train_accuracy")


def iter_runs(doc: dict[str, Any]) -> Iterator[RunResult]:
    """The runs of a results document as :class:`RunResult` objects."""
    for run in doc["runs"]:
        yield RunResult.from_dict(run)


Grid = dict[tuple[str, int], dict[str, Any]]


def run_grid(doc: dict[str, Any]) -> tuple[list[str], int, Grid]:
    """``(models, rows, runs)``: the models present (protocol order; the figure's columns), the
    number of settings (its rows) and ``{(model, setting): run dict}``."""
    runs = {(r["spec"]["model"], r["spec"]["setting"]): r for r in doc["runs"]}
    present = {m for m, _ in runs}
    models = [m for m in doc["protocol"]["models"] if m in present] or sorted(present)
    settings = doc["protocol"].get("settings", {})
    rows = max([len(settings.get(m, [])) for m in models]
               + [s for (_, s) in runs if s is not None] + [1])
    return models, rows, runs


def grid_table(doc: dict[str, Any],
               cell: Callable[[str, int, dict[str, Any] | None], str]) -> list[list[str]]:
    """The summary table's layout (header first): ``["", "Setting 1", ...]``, then per model
    ``["Model k", cell(model, setting, run or None), ...]``."""
    models, rows, runs = run_grid(doc)
    table = [["", *[f"Setting {s}" for s in range(1, rows + 1)]]]
    for model in models:
        table.append([f"Model {model.removeprefix('model')}",
                      *[cell(model, s, runs.get((model, s))) for s in range(1, rows + 1)]])
    return table
