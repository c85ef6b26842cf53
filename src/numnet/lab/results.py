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
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from numnet.core.errors import ResultsError
from numnet.core.io import read_json
from numnet.core.names import MODEL_NAMES
from numnet.lab.environment import environment_info
from numnet.lab.protocol import MAX_UPDATES_PER_RUN, Protocol, planned_updates
from numnet.lab.training import RunResult
from numnet.lab.training.internals import PER_LAYER, SCALARS

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
    """Read ``out_dir/results.json``, checked against the schema (:func:`validate`) before
    anything reads it: a hand-edited or damaged file is one ResultsError naming the key."""
    path = Path(out_dir) / "results.json"
    return validate(read_json(path), str(path))


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


# ------------------------------------------------------------------------------ schema

#: Bounds of the numbers a results document may hold: beyond them the report would draw a
#: plan of more than MAX_UPDATES_PER_RUN updates (``batch_size: 0`` made it loop forever).
MAX_BATCH_SIZE = 10**6
MAX_EXAMPLES = 10**8
MAX_RUNS = 10**4
STATUSES = ("ok", "diverged")


#: the internals' series: one per layer (objects of series) or one per run (a series)
LAYER_SERIES = (*PER_LAYER, "dead_fraction")


def _printable(path: str) -> str:
    """A key path with the document's control characters escaped (the message stays one
    line)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in path)


class _Schema:
    """The checks of :func:`validate`: each raises ResultsError naming the file and the key
    path (``runs[2].spec.batch_size``) and saying what is allowed."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, what: str, value: Any) -> None:
        shown = repr(value)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise ResultsError(f"{self.source}: {_printable(path)} must be {what}, got {shown}; "
                           "rebuild the file with `numnet reproduce --out DIR` (or restore it)")

    def get(self, table: dict[str, Any], key: str, path: str) -> Any:
        if key not in table:
            raise ResultsError(f"{self.source}: {_printable(f'{path}.{key}')} is missing; "
                               "rebuild the file with `numnet reproduce --out DIR` (or "
                               "restore it)")
        return table[key]

    def table(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(path, "a JSON object", value)
        return value

    def text(self, value: Any, path: str, none: bool = False) -> None:
        if not (isinstance(value, str) or (none and value is None)):
            self.fail(path, "a string" + (" or null" if none else ""), value)

    def integer(self, value: Any, path: str, low: int = 0, high: int | None = None,
                none: bool = False) -> None:
        if none and value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, "an integer" + (" or null" if none else ""), value)
        if value < low or (high is not None and value > high):
            self.fail(path, f"an integer from {low}" + (f" to {high}" if high else ""), value)

    def number(self, value: Any, path: str, low: float | None = None,
               high: float | None = None, none: bool = False) -> None:
        if none and value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(path, "a number" + (" or null" if none else ""), value)
        if (not math.isfinite(value) or (low is not None and value < low)
                or (high is not None and value > high)):
            bounds = f" from {low}" if low is not None else ""
            bounds += f" to {high}" if high is not None else ""
            self.fail(path, f"a finite number{bounds}", value)

    def numbers(self, value: Any, path: str, length: int | None, **bounds: Any) -> int:
        if not isinstance(value, list):
            self.fail(path, "a list of numbers", value)
        if length is not None and len(value) != length:
            self.fail(path, f"a list of {length} entries (as long as the run's series)", value)
        for k, v in enumerate(value):
            self.number(v, f"{path}[{k}]", **bounds)
        return len(value)


def validate(doc: Any, source: str = "results.json") -> dict[str, Any]:
    """Check a results document against the schema before anything reads it; return it.

    A hand-edited or damaged file is a ResultsError naming ``source`` and the key path: missing
    keys, strings for numbers, ``runs: []``, curves of mismatched lengths, numbers out of
    bounds (``batch_size: 0``, ``epochs: 1e9``: a plan beyond MAX_UPDATES_PER_RUN updates).
    """
    s = _Schema(source)
    s.table(doc, "the document")
    if doc.get("format") != RESULTS_FORMAT:
        raise ResultsError(f"{source} is not a numnet results file (format {RESULTS_FORMAT}); "
                           "run `numnet reproduce --out DIR` first")
    if doc.get("label") not in (None, QUICK_LABEL):
        s.fail("label", f"null or {QUICK_LABEL!r}", doc.get("label"))
    p = s.table(s.get(doc, "protocol", ""), "protocol")
    for key in ("name", "source", "hash"):
        s.text(s.get(p, key, "protocol"), f"protocol.{key}")
    for key in ("description", "text", "dtype"):
        s.text(p.get(key), f"protocol.{key}", none=True)
    s.integer(s.get(p, "seed", "protocol"), "protocol.seed")
    if not isinstance(p.get("quick", False), bool):
        s.fail("protocol.quick", "true or false", p.get("quick"))
    s.integer(s.get(p, "batch_size", "protocol"), "protocol.batch_size", 1, MAX_BATCH_SIZE)
    for key in ("eval_every", "eval_train_examples", "eval_test_examples"):
        s.integer(s.get(p, key, "protocol"), f"protocol.{key}", 1)
    models = s.get(p, "models", "protocol")
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        s.fail("protocol.models", "a list of model names", models)
    settings = s.table(p.get("settings", {}), "protocol.settings")
    for model, rows in settings.items():
        if not isinstance(rows, list):
            s.fail(f"protocol.settings.{model}", "a list of [epochs, lr] pairs", rows)
        for k, row in enumerate(rows):
            if not (isinstance(row, list) and len(row) == 2):
                s.fail(f"protocol.settings.{model}[{k}]", "an [epochs, lr] pair", row)
            s.integer(row[0], f"protocol.settings.{model}[{k}][0]", 1)
            s.number(row[1], f"protocol.settings.{model}[{k}][1]", low=0.0)
    quick = p.get("quick_options")
    if quick is not None:
        for key, value in s.table(quick, "protocol.quick_options").items():
            s.integer(value, f"protocol.quick_options.{key}", 1)
    for key in ("data", "environment", "timing", "results"):
        if key in doc:
            s.table(doc[key], key)
    s.text(doc.get("device", "cpu"), "device")
    data = doc.get("data", {})
    train_examples = data.get("train_examples")
    s.integer(train_examples, "data.train_examples", 1, MAX_EXAMPLES, none=True)
    timing = doc.get("timing", {})
    for key in ("wall_time", "cpu_time"):
        if key in timing:
            s.number(timing[key], f"timing.{key}", low=0.0)
    if "reused_runs" in timing and not isinstance(timing["reused_runs"], list):
        s.fail("timing.reused_runs", "a list of run ids", timing["reused_runs"])

    runs = s.get(doc, "runs", "")
    if not isinstance(runs, list) or not runs:
        s.fail("runs", "a non-empty list of runs", runs)
    if len(runs) > MAX_RUNS:
        s.fail("runs", f"at most {MAX_RUNS} runs", f"{len(runs)} runs")
    seen: set[str] = set()
    for i, run in enumerate(runs):
        _validate_run(s, s.table(run, f"runs[{i}]"), f"runs[{i}]", train_examples or 55000)
        if run["run_id"] in seen:
            s.fail(f"runs[{i}].run_id", "unique", run["run_id"])
        seen.add(run["run_id"])
    return doc


def _validate_internals(s: _Schema, internals: Any, path: str) -> None:
    """The training internals of a run: ``update`` (a list of update numbers) and, per
    quantity, a series as long as it (numbers or null), or an object of such series per layer;
    ``start`` the same structure for the first updates."""
    s.table(internals, path)
    updates = s.get(internals, "update", path)
    if not isinstance(updates, list):
        s.fail(f"{path}.update", "a list of update numbers", updates)
    for k, u in enumerate(updates):
        s.integer(u, f"{path}.update[{k}]")
    n = len(updates)
    for key, value in internals.items():
        where = f"{path}.{key}"
        if key == "update":
            continue
        if key == "start":
            _validate_internals(s, value, where)
        elif key in ("probe_examples",):
            s.integer(value, where)
        elif key == "lr":
            s.number(value, where, low=0.0)
        elif key in LAYER_SERIES or (isinstance(value, dict) and key not in SCALARS):
            for layer, series in s.table(value, where).items():
                s.numbers(series, f"{where}.{layer}", n, none=True)
        elif (isinstance(value, int | float) and not isinstance(value, bool)
              and key not in SCALARS):
            s.number(value, where)  # a scalar of the recording (a count, a time)
        else:
            s.numbers(value, where, n, none=True)


def _validate_run(s: _Schema, run: dict[str, Any], path: str, train_examples: int) -> None:
    s.text(s.get(run, "run_id", path), f"{path}.run_id")
    spec = s.table(s.get(run, "spec", path), f"{path}.spec")
    sp = f"{path}.spec"
    model = s.get(spec, "model", sp)
    if model not in MODEL_NAMES:
        s.fail(f"{sp}.model", f"one of {', '.join(MODEL_NAMES)}", model)
    s.integer(s.get(spec, "batch_size", sp), f"{sp}.batch_size", 1, MAX_BATCH_SIZE)
    s.integer(s.get(spec, "epochs", sp), f"{sp}.epochs", 1)
    if planned_updates(spec["epochs"], spec["batch_size"], train_examples) > MAX_UPDATES_PER_RUN:
        s.fail(f"{sp}.epochs", f"at most {MAX_UPDATES_PER_RUN:.0e} updates' worth at batch "
               f"{spec['batch_size']}", spec["epochs"])
    s.number(s.get(spec, "lr", sp), f"{sp}.lr", low=0.0)
    for key in ("reduction", "dtype", "weight_init", "bias_init", "conv_activation"):
        s.text(s.get(spec, key, sp), f"{sp}.{key}")
    for key in ("eval_every", "eval_train_examples", "eval_test_examples", "eval_batch_size"):
        if key in spec:
            s.integer(spec[key], f"{sp}.{key}", 1)
    s.integer(s.get(spec, "seed", sp), f"{sp}.seed")
    s.integer(s.get(spec, "setting", sp), f"{sp}.setting", 1, none=True)  # null: ad hoc run
    status = s.get(run, "status", path)
    if status not in STATUSES:
        s.fail(f"{path}.status", f"one of {', '.join(STATUSES)}", status)
    s.integer(s.get(run, "updates", path), f"{path}.updates", 0, MAX_UPDATES_PER_RUN)
    diverged_at = s.get(run, "diverged_at_update", path)
    s.integer(diverged_at, f"{path}.diverged_at_update", 0, MAX_UPDATES_PER_RUN,
              none=status != "diverged")
    s.text(run.get("divergence_reason"), f"{path}.divergence_reason", none=True)
    samples = s.get(run, "samples", path)
    if not isinstance(samples, list):
        s.fail(f"{path}.samples", "a list of integers", samples)
    for k, v in enumerate(samples):
        s.integer(v, f"{path}.samples[{k}]")
    n = len(samples)
    for key in ("train_accuracy", "test_accuracy"):
        s.numbers(s.get(run, key, path), f"{path}.{key}", n, low=0.0, high=1.0)
    for key in ("train_loss", "test_loss"):
        s.numbers(s.get(run, key, path), f"{path}.{key}", n, low=0.0)
    s.integer(s.get(run, "evaluations", path), f"{path}.evaluations", n, n)
    for key in ("final_train_accuracy", "final_test_accuracy"):
        s.number(s.get(run, key, path), f"{path}.{key}", 0.0, 1.0, none=True)
    for key in ("init_seed", "shuffle_seed"):
        s.integer(s.get(run, key, path), f"{path}.{key}")
    for key in ("wall_time", "updates_per_second"):
        s.number(s.get(run, key, path), f"{path}.{key}", low=0.0)
    if run.get("internals") is not None:
        _validate_internals(s, run["internals"], f"{path}.internals")
    final_model = run.get("final_model")
    if final_model is not None:
        s.table(final_model, f"{path}.final_model")
        confusion = final_model.get("confusion")
        if confusion is not None and not (
                isinstance(confusion, list) and all(
                    isinstance(row, list) and len(row) == len(confusion) and all(
                        isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in row)
                    for row in confusion)):
            s.fail(f"{path}.final_model.confusion", "a square table of counts", confusion)
        for key, value in final_model.items():
            if key != "confusion" and not isinstance(value, list | dict | int | float | str):
                s.fail(f"{path}.final_model.{key}", "a list or an object", value)
    diagnosis = run.get("diagnosis")
    if diagnosis is not None:
        s.table(diagnosis, f"{path}.diagnosis")
        s.text(diagnosis.get("verdict", ""), f"{path}.diagnosis.verdict")
        for key in ("labels", "reasons", "notes"):
            items = diagnosis.get(key, [])
            if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
                s.fail(f"{path}.diagnosis.{key}", "a list of strings", items)
    final = run.get("final_weights")
    if final is not None:  # the evaluation of the weights after the last update
        s.table(final, f"{path}.final_weights")
        fp = f"{path}.final_weights"
        s.integer(s.get(final, "update", fp), f"{fp}.update", 0, MAX_UPDATES_PER_RUN)
        for key in ("train_accuracy", "test_accuracy"):
            s.number(s.get(final, key, fp), f"{fp}.{key}", 0.0, 1.0)
        for key in ("train_loss", "test_loss"):
            s.number(s.get(final, key, fp), f"{fp}.{key}", low=0.0)
