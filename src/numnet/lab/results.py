"""results.json and results.csv: the document ``numnet reproduce`` writes and the report reads.

results.json holds the protocol's result tuples per model (``((epochs, lr), train accuracies,
test accuracies)``), every run (``RunResult.to_dict()``: curves, status, seeds, timing), the
protocol (text and hash), the data (sizes, fingerprint), the environment and the timing.
results.csv has one row per (run, evaluation).
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
               "train_accuracy", "test_accuracy", "train_loss", "test_loss")


def results_document(protocol: Protocol, results: list[RunResult], data: dict[str, Any],
                     timing: dict[str, Any], device: str = "cpu",
                     environment: dict[str, Any] | None = None) -> dict[str, Any]:
    """The content of results.json (see the module docstring)."""
    spec_results: dict[str, list[Any]] = {}
    for r in results:
        spec_results.setdefault(r.spec.model, []).append(r.spec_tuple())
    return {
        "format": RESULTS_FORMAT,
        "label": QUICK_LABEL if protocol.quick else None,
        "protocol": protocol.metadata(),
        "device": device,
        "data": data,
        "environment": environment if environment is not None else environment_info(),
        # per model, a list of ((num_epochs, learning_rate), train_acc, test_acc)
        "results": spec_results,
        "runs": [r.to_dict() for r in results],
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
        if not run["samples"]:
            writer.writerow(head + [""] * 6)
        for k, samples in enumerate(run["samples"]):
            writer.writerow(head + [k + 1, samples, repr(run["train_accuracy"][k]),
                                    repr(run["test_accuracy"][k]), repr(run["train_loss"][k]),
                                    repr(run["test_loss"][k])])
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
