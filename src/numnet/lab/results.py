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

import base64
import csv
import io
import json
import math
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from numnet.core import documents, models, optim, schedules
from numnet.core.errors import ResultsError, UnsafeNameError
from numnet.core.io import check_safe_name
from numnet.core.names import CUSTOM_MODEL_NAME, MODEL_NAMES, NUM_CLASSES
from numnet.lab.environment import environment_info
from numnet.lab.protocol import DATASET_SIZES, MAX_UPDATES_PER_RUN, Protocol, planned_updates
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
    doc = documents.read_json(path, "results file", max_bytes=MAX_RESULTS_BYTES,
                              max_depth=MAX_DEPTH, error=ResultsError)
    return validate(doc, documents.display(path))


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
#: Bounds of the other sizes the report takes from a document (each sets how many cells,
#: panels or points it draws): settings per model (the figure's rows), seeds (as NumPy's),
#: images and channels of the final-model figures, pixels of one encoded image.
MAX_SETTING = 100
#: A sweep's grid cells are numbered up to its task count (numnet.lab.sweep.plan's cap).
MAX_SWEEP_SETTING = 10**4
MAX_SEED = 2**63 - 1
MAX_CLASSES = 100
MAX_PANELS = 64
MAX_IMAGE_VALUES = 10**6
#: Bounds of the file itself (:mod:`numnet.core.documents`): bytes and nesting depth.
MAX_RESULTS_BYTES = documents.MAX_JSON_BYTES
MAX_DEPTH = documents.MAX_JSON_DEPTH
#: The format of a run record, ``runs/<run_id>.json`` (written by
#: ``numnet.lab.experiments.store``; a sweep's ``tasks/<task_id>.json`` holds a run the same
#: way, under ``result``).
RUN_FORMAT = "numnet.run/1"
#: Train examples assumed where a document does not say (the largest data set numnet knows):
#: only used to bound the updates a run's epochs plan.
DEFAULT_TRAIN_EXAMPLES = max(n for n, _ in DATASET_SIZES.values())


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
            where = f"{path}.{key}" if path else key
            raise ResultsError(f"{self.source}: {_printable(where)} is missing; "
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

    def name(self, value: Any, path: str) -> None:
        """A name numnet makes a file name of (a run id: ``figures/<run_id>.*.png``)."""
        self.text(value, path)
        try:
            check_safe_name(value, path)
        except UnsafeNameError:
            self.fail(path, "a file-name-safe id (1-100 of letters, digits, '.', '_', '-', "
                      "'+'; no '/', no '..')", value)

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
    s.integer(s.get(p, "seed", "protocol"), "protocol.seed", 0, MAX_SEED)
    if not isinstance(p.get("quick", False), bool):
        s.fail("protocol.quick", "true or false", p.get("quick"))
    s.integer(s.get(p, "batch_size", "protocol"), "protocol.batch_size", 1, MAX_BATCH_SIZE)
    s.integer(s.get(p, "eval_every", "protocol"), "protocol.eval_every", 1, MAX_UPDATES_PER_RUN)
    for key in ("eval_train_examples", "eval_test_examples"):
        s.integer(s.get(p, key, "protocol"), f"protocol.{key}", 1, MAX_EXAMPLES)
    models = s.get(p, "models", "protocol")
    if (not isinstance(models, list) or len(models) > MAX_SETTING
            or not all(isinstance(m, str) for m in models)):
        s.fail("protocol.models", "a list of model names", models)
    settings = s.table(p.get("settings", {}), "protocol.settings")
    for model, rows in settings.items():
        if not isinstance(rows, list) or len(rows) > MAX_SETTING:
            s.fail(f"protocol.settings.{model}", f"a list of at most {MAX_SETTING} [epochs, lr] "
                   "pairs", rows)
        for k, row in enumerate(rows):
            if not (isinstance(row, list) and len(row) == 2):
                s.fail(f"protocol.settings.{model}[{k}]", "an [epochs, lr] pair", row)
            s.integer(row[0], f"protocol.settings.{model}[{k}][0]", 1, MAX_UPDATES_PER_RUN)
            s.number(row[1], f"protocol.settings.{model}[{k}][1]", low=0.0)
    quick = p.get("quick_options")
    if quick is not None:
        for key, value in s.table(quick, "protocol.quick_options").items():
            s.integer(value, f"protocol.quick_options.{key}", 1, MAX_EXAMPLES)
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
        _validate_run(s, s.table(run, f"runs[{i}]"), f"runs[{i}]",
                      train_examples or DEFAULT_TRAIN_EXAMPLES)
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
        s.integer(u, f"{path}.update[{k}]", 0, MAX_UPDATES_PER_RUN)
    n = len(updates)
    for key, value in internals.items():
        where = f"{path}.{key}"
        if key == "update":
            continue
        if key == "start":
            _validate_internals(s, value, where)
        elif key in ("probe_examples",):
            s.integer(value, where, 0, MAX_EXAMPLES)
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


#: the longest JSON text of a spec's layers, optimiser or schedule (a definition of thousands
#: of layers is refused by the core anyway)
MAX_OPTION_TEXT = 1 << 20


def _validate_options(s: _Schema, spec: dict[str, Any], sp: str) -> None:
    """A spec's custom layers, optimiser and schedule (canonical JSON text, each optional),
    checked by the core's own checks: what ``numnet predict`` and a resumed run would build."""
    checks = {"layers": models.check_definition, "optimizer": optim.check_spec,
              "schedule": schedules.check_spec}
    for key, check in checks.items():
        text = spec.get(key)
        if text is None:
            continue
        if not isinstance(text, str) or len(text) > MAX_OPTION_TEXT:
            s.fail(f"{sp}.{key}", f"JSON text of at most {MAX_OPTION_TEXT} characters", text)
        try:
            value = json.loads(text)
            if key == "layers":
                check(value, name=str(spec.get("model")))
            else:
                check(value, where=f"{sp}.{key}")
        except (ValueError, TypeError, AttributeError, RecursionError) as exc:
            s.fail(f"{sp}.{key}", f"a valid {key} ({exc})", text[:80])


def _validate_run(s: _Schema, run: dict[str, Any], path: str, train_examples: int,
                  max_setting: int = MAX_SETTING) -> None:
    s.name(s.get(run, "run_id", path), f"{path}.run_id")
    spec = s.table(s.get(run, "spec", path), f"{path}.spec")
    sp = f"{path}.spec"
    model = s.get(spec, "model", sp)
    if model not in MODEL_NAMES and not (isinstance(model, str)
                                         and re.fullmatch(CUSTOM_MODEL_NAME, model)):
        s.fail(f"{sp}.model", f"one of {', '.join(MODEL_NAMES)} or a custom model's name (a "
               "letter, then up to 39 letters, digits, '-' or '_')", model)
    _validate_options(s, spec, sp)
    s.integer(s.get(spec, "batch_size", sp), f"{sp}.batch_size", 1, MAX_BATCH_SIZE)
    s.integer(s.get(spec, "epochs", sp), f"{sp}.epochs", 1, MAX_UPDATES_PER_RUN)
    if planned_updates(spec["epochs"], spec["batch_size"], train_examples) > MAX_UPDATES_PER_RUN:
        s.fail(f"{sp}.epochs", f"at most {MAX_UPDATES_PER_RUN:.0e} updates' worth at batch "
               f"{spec['batch_size']}", spec["epochs"])
    s.number(s.get(spec, "lr", sp), f"{sp}.lr", low=0.0)
    for key in ("reduction", "dtype", "weight_init", "bias_init", "conv_activation"):
        s.text(s.get(spec, key, sp), f"{sp}.{key}")
    if "eval_every" in spec:
        s.integer(spec["eval_every"], f"{sp}.eval_every", 1, MAX_UPDATES_PER_RUN)
    for key in ("eval_train_examples", "eval_test_examples", "eval_batch_size"):
        if key in spec:
            s.integer(spec[key], f"{sp}.{key}", 1, MAX_EXAMPLES)
    s.integer(s.get(spec, "seed", sp), f"{sp}.seed", 0, MAX_SEED)
    # null: an ad hoc run; bounded: the setting is a row of the report's figure
    s.integer(s.get(spec, "setting", sp), f"{sp}.setting", 1, max_setting, none=True)
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
    n = len(samples)
    _validate_samples(s, run, samples, path)
    for key in ("train_accuracy", "test_accuracy"):
        s.numbers(s.get(run, key, path), f"{path}.{key}", n, low=0.0, high=1.0)
    for key in ("train_loss", "test_loss"):
        s.numbers(s.get(run, key, path), f"{path}.{key}", n, low=0.0)
    s.integer(s.get(run, "evaluations", path), f"{path}.evaluations", n, n)
    for key in ("final_train_accuracy", "final_test_accuracy"):
        s.number(s.get(run, key, path), f"{path}.{key}", 0.0, 1.0, none=True)
    for key in ("init_seed", "shuffle_seed"):
        s.integer(s.get(run, key, path), f"{path}.{key}", 0, MAX_SEED)
    s.text(run.get("shared_with"), f"{path}.shared_with", none=True)
    for key in ("wall_time", "updates_per_second"):
        s.number(s.get(run, key, path), f"{path}.{key}", low=0.0)
    if run.get("internals") is not None:
        _validate_internals(s, run["internals"], f"{path}.internals")
    final_model = run.get("final_model")
    if final_model is not None:
        _validate_final_model(s, s.table(final_model, f"{path}.final_model"),
                              f"{path}.final_model")
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


def _validate_samples(s: _Schema, run: dict[str, Any], samples: Any, path: str) -> None:
    """The examples seen at each evaluation: integers, and -- where the spec says how often a
    run evaluates -- exactly what its counts imply: evaluation k after ``k * eval_every``
    updates (``samples[k-1] = k * eval_every * batch_size``), as many evaluations as
    ``updates // eval_every`` for a run that did not diverge (no more for one that did)."""
    if not isinstance(samples, list):
        s.fail(f"{path}.samples", "a list of integers", samples)
    spec, updates = run["spec"], run.get("updates")
    batch, every = spec["batch_size"], spec.get("eval_every")
    for k, v in enumerate(samples):
        s.integer(v, f"{path}.samples[{k}]", 0, MAX_UPDATES_PER_RUN * MAX_BATCH_SIZE)
        if isinstance(every, int) and v != (k + 1) * every * batch:
            s.fail(f"{path}.samples[{k}]", f"{(k + 1) * every * batch} (evaluation {k + 1} "
                   f"after {(k + 1) * every} updates of {batch} examples)", v)
    if isinstance(every, int) and isinstance(updates, int) and not isinstance(updates, bool):
        expected = updates // every
        if len(samples) > expected or (run.get("status") == "ok" and len(samples) != expected):
            s.fail(f"{path}.samples", f"a list of {expected} evaluations ({updates} updates, "
                   f"one evaluation every {every})", f"{len(samples)} evaluations")


def _validate_image(s: _Schema, image: Any, path: str, dims: int) -> None:
    """An encoded image of the final-model figures (``{"shape", "lo", "hi", "b64"}``, see
    ``numnet.lab.training.internals.encode_image``): its shape bounded and matching its bytes,
    so that decoding it allocates what the document says and no more."""
    s.table(image, path)
    shape = s.get(image, "shape", path)
    if (not isinstance(shape, list) or len(shape) != dims or not all(
            isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_IMAGE_VALUES
            for n in shape) or math.prod(shape) > MAX_IMAGE_VALUES):
        s.fail(f"{path}.shape", f"a list of {dims} sizes (at most {MAX_IMAGE_VALUES} values)",
               shape)
    for key in ("lo", "hi"):
        s.number(s.get(image, key, path), f"{path}.{key}")
    b64 = s.get(image, "b64", path)
    s.text(b64, f"{path}.b64")
    if len(b64) != 4 * -(-math.prod(shape) // 3):
        s.fail(f"{path}.b64", f"the base64 of {math.prod(shape)} bytes (its shape)",
               f"{len(b64)} characters")
    try:
        base64.b64decode(b64, validate=True)
    except ValueError:
        s.fail(f"{path}.b64", "base64 text", b64)


def _validate_final_model(s: _Schema, final: dict[str, Any], path: str) -> None:
    """The final model's evidence (``numnet.lab.training.internals``): a square confusion
    table of counts over at most MAX_CLASSES classes, the most confused images (label,
    predicted class, probability, image), the CNN's filters, feature maps and digit, each
    image bounded (see :func:`_validate_image`)."""
    for key, value in final.items():
        if not isinstance(value, list | dict | int | float | str):
            s.fail(f"{path}.{key}", "a list or an object", value)
    confusion = final.get("confusion")
    if confusion is not None and not (
            isinstance(confusion, list) and 1 <= len(confusion) <= MAX_CLASSES and all(
                isinstance(row, list) and len(row) == len(confusion) and all(
                    isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= MAX_EXAMPLES
                    for c in row)
                for row in confusion)):
        s.fail(f"{path}.confusion", f"a square table of counts (at most {MAX_CLASSES} classes)",
               confusion)
    if "update" in final:
        s.integer(final["update"], f"{path}.update", 0, MAX_UPDATES_PER_RUN)
    classes = len(confusion) if confusion else NUM_CLASSES
    confused = final.get("confused", [])
    if not isinstance(confused, list):
        s.fail(f"{path}.confused", "a list of images", confused)
    for k, e in enumerate(confused[:CONFUSED_SHOWN]):  # the figure draws these only
        ep = f"{path}.confused[{k}]"
        s.table(e, ep)
        for key in ("label", "predicted"):
            s.integer(s.get(e, key, ep), f"{ep}.{key}", 0, classes - 1)
        s.number(s.get(e, "prob", ep), f"{ep}.prob", 0.0, 1.0)
        _validate_image(s, s.get(e, "image", ep), f"{ep}.image", 2)
    filters = final.get("filters")
    if filters is not None:
        s.table(filters, f"{path}.filters")
        s.text(s.get(filters, "layer", f"{path}.filters"), f"{path}.filters.layer")
        _validate_image(s, s.get(filters, "weights", f"{path}.filters"),
                        f"{path}.filters.weights", 3)
        if filters["weights"]["shape"][0] > MAX_PANELS:
            s.fail(f"{path}.filters.weights.shape[0]", f"at most {MAX_PANELS} filters",
                   filters["weights"]["shape"][0])
    maps = final.get("feature_maps")
    if maps is not None:
        s.table(maps, f"{path}.feature_maps")
        if len(maps) > 8:
            s.fail(f"{path}.feature_maps", "at most 8 layers", f"{len(maps)} layers")
        for name, image in maps.items():
            _validate_image(s, image, f"{path}.feature_maps.{name}", 3)
            if image["shape"][0] > MAX_PANELS:
                s.fail(f"{path}.feature_maps.{name}.shape[0]", f"at most {MAX_PANELS} channels",
                       image["shape"][0])
    digit = final.get("digit")
    if digit is not None:
        s.table(digit, f"{path}.digit")
        s.integer(s.get(digit, "index", f"{path}.digit"), f"{path}.digit.index", 0,
                  MAX_EXAMPLES)
        s.integer(s.get(digit, "label", f"{path}.digit"), f"{path}.digit.label", 0,
                  classes - 1)
        _validate_image(s, s.get(digit, "image", f"{path}.digit"), f"{path}.digit.image", 2)
    if filters is None and (maps is not None or digit is not None):
        s.fail(f"{path}.filters", "present with feature_maps and digit", None)


#: The most confused images the confusion figure shows (the rest are not read).
CONFUSED_SHOWN = 16


def validate_run(run: Any, source: str, path: str = "result",
                 max_setting: int = MAX_SWEEP_SETTING) -> dict[str, Any]:
    """Check one run (``RunResult.to_dict()``: what a run record or a sweep task record holds
    under ``result``) against the schema; return it. ResultsError naming ``source`` and
    ``path`` otherwise (see :func:`validate_run_record`). ``max_setting``: a sweep's grid
    numbers its cells' settings up to its task count (the report, which draws a row per
    setting, allows MAX_SETTING)."""
    s = _Schema(source)
    _validate_run(s, s.table(run, path), path, DEFAULT_TRAIN_EXAMPLES, max_setting)
    return run


def validate_run_record(doc: Any, source: str) -> dict[str, Any]:
    """Check a run record (``runs/<run_id>.json``, format ``numnet.run/1``: ``protocol_hash``,
    ``data_fingerprint``, ``weights``, ``weights_format`` and the run under ``result``, as
    ``numnet.lab.experiments.store.save_run`` writes it) against the schema; return it.

    The run is checked as a results.json run is (:func:`_validate_run`: accuracies in [0, 1],
    losses finite and >= 0, batch size, epochs and updates positive and bounded, curves as long
    as the counts imply, settings and seeds bounded, the run id a safe file name); the weights
    path must be ``weights/<run_id>.npz``. A ResultsError naming ``source`` and the key path
    otherwise, e.g. ``runs/x.json: result.test_accuracy[3] must be a finite number from 0.0 to
    1.0, got 7.5``."""
    s = _Schema(source)
    s.table(doc, "the record")
    if doc.get("format") != RUN_FORMAT:
        s.fail("format", repr(RUN_FORMAT), doc.get("format"))
    for key in ("protocol_hash", "data_fingerprint", "weights_format"):
        s.text(doc.get(key), key, none=True)
    run = s.table(s.get(doc, "result", ""), "result")
    _validate_run(s, run, "result", DEFAULT_TRAIN_EXAMPLES)
    weights = doc.get("weights")
    if weights is not None and weights != f"weights/{run['run_id']}.npz":
        s.fail("weights", f"'weights/{run['run_id']}.npz' (the run's weights file)", weights)
    return doc


def read_run_record(path: str | Path) -> dict[str, Any]:
    """The run record at ``path`` read through :mod:`numnet.core.documents` (a regular file,
    bounded in size and depth, finite numbers only) and checked by
    :func:`validate_run_record`; ResultsError naming the file (and the key) otherwise."""
    shown = documents.display(path)
    doc = documents.read_json(path, "run record", max_bytes=MAX_RESULTS_BYTES,
                              max_depth=MAX_DEPTH, error=ResultsError)
    return validate_run_record(doc, shown)


def check_folder_records(folder: str | Path) -> int:
    """For ``numnet report DIR`` on a folder without results.json: check every run record the
    report would assemble (``DIR/runs/*.json``, else the ``*.json`` of format ``numnet.run/1``
    in ``DIR`` itself) before anything reads them; return how many there are.

    In ``runs/`` every ``*.json`` is numnet's own, so one that cannot be read (NaN, too large,
    nested too deep, not JSON, not a regular file) or does not match the schema is a
    ResultsError naming it; in ``DIR`` itself other JSON files may sit beside the records, so
    only those that say they are run records are checked."""
    folder = Path(folder)
    if os.path.lexists(folder / "results.json"):
        # the report reads results.json (load_results checks it), if it is a regular file: a
        # FIFO or a directory there is said, not passed over for the records
        documents.open_regular(folder / "results.json", "results file", ResultsError).close()
        return 0
    for where, strict in ((folder / "runs", True), (folder, False)):
        count = 0
        for path in sorted(where.glob("*.json")) if where.is_dir() else ():
            try:
                doc = documents.read_json(path, "run record", max_bytes=MAX_RESULTS_BYTES,
                                          max_depth=MAX_DEPTH, error=ResultsError)
            except ResultsError:
                if strict:
                    raise
                continue
            if not strict and not (isinstance(doc, dict) and doc.get("format") == RUN_FORMAT):
                continue
            validate_run_record(doc, documents.display(path))
            count += 1
        if count:
            return count
    return 0
