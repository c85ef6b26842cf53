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
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

from numnet.core import documents
from numnet.core.errors import ResultsError, UnsafeNameError
from numnet.core.io import check_safe_name
from numnet.core.names import MODEL_NAMES, NUM_CLASSES
from numnet.lab.environment import environment_info
from numnet.lab.protocol import (
    DATASET_SIZES,
    MAX_UPDATES_PER_RUN,
    MODEL_NAME_PATTERN,
    TABLE_OPTIONS,
    Protocol,
    check_table_option,
    planned_updates,
)
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
    return validate(_read(path, "results file"), documents.display(path))


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
#: The most confused images the confusion figure shows (the rest are not read).
CONFUSED_SHOWN = 16
#: Bounds of the file itself (:mod:`numnet.core.documents`): bytes and nesting depth.
MAX_RESULTS_BYTES = documents.MAX_JSON_BYTES
MAX_DEPTH = documents.MAX_JSON_DEPTH
#: The format of a run record, ``runs/<run_id>.json`` (written by
#: ``numnet.lab.experiments.store``, for reproduce, train and sweep alike; a sweep's run ids
#: end in ``-seed<r>``).
RUN_FORMAT = "numnet.run/1"
#: Train examples assumed where a document does not say (the largest data set numnet knows):
#: only used to bound the updates a run's epochs plan.
DEFAULT_TRAIN_EXAMPLES = max(n for n, _ in DATASET_SIZES.values())
#: the internals' series: one per layer (objects of series) or one per run (a series)
LAYER_SERIES = (*PER_LAYER, "dead_fraction")
#: the longest JSON text of a spec's layers, optimiser or schedule (a definition of thousands
#: of layers is refused by the core anyway)
MAX_OPTION_TEXT = 1 << 20


class Rule(NamedTuple):
    """What one key of a results document may hold (see :meth:`_Schema.check`).

    ``kind``: ``"int"`` or ``"num"`` (a finite number) from ``low`` to ``high``; one of
    :data:`TESTS`; ``"name"`` (a file-name-safe id); ``"series"`` (a list of ``length``
    numbers from ``low`` to ``high``, null entries allowed when ``null``); ``"obj"`` (an
    object whose keys follow ``fields``); a tuple of the values allowed; or a function
    ``(schema, value, path)`` that checks the value. ``null``: None is allowed; ``opt``: the
    key may be absent."""

    kind: Any
    low: float | None = None
    high: float | None = None
    null: bool = False
    opt: bool = False
    length: int | None = None
    fields: dict[str, Rule] | None = None


#: the kinds of :class:`Rule` that are one test: kind -> (test, what the value must be)
TESTS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "str": (lambda v: isinstance(v, str), "a string"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "strs": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
             "a list of strings"),
    "run_ids": (lambda v: isinstance(v, list), "a list of run ids"),
    "model": (lambda v: v in MODEL_NAMES or (isinstance(v, str)
                                             and MODEL_NAME_PATTERN.fullmatch(v) is not None),
              f"one of {', '.join(MODEL_NAMES)} or a custom model's name (a letter, then up to "
              "39 letters, digits, '-' or '_')"),
    "model_names": (lambda v: isinstance(v, list) and len(v) <= MAX_SETTING
                    and all(isinstance(m, str) for m in v), "a list of model names"),
}
STR = Rule("str")
OPT_STR = Rule("str", null=True, opt=True)
SEED = Rule("int", 0, MAX_SEED)
UPDATES = Rule("int", 0, MAX_UPDATES_PER_RUN)
ACCURACY = Rule("num", 0.0, 1.0)
LOSS = Rule("num", 0.0)


#: what every schema error says to do
REBUILD = "rebuild the file with `numnet reproduce --out DIR` (or restore it)"


def _key(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Schema:
    """The checks of :func:`validate`: each raises ResultsError naming the file and the key
    path (``runs[2].spec.batch_size``) and saying what is allowed."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, what: str, value: Any) -> NoReturn:
        shown = repr(value)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise ResultsError(f"{self.source}: {documents.printable(path)} must be {what}, got "
                           f"{shown}; {REBUILD}")

    def get(self, table: dict[str, Any], key: str, path: str) -> Any:
        if key not in table:
            raise ResultsError(f"{self.source}: {documents.printable(_key(path, key))} is "
                               f"missing; {REBUILD}")
        return table[key]

    def table(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(path, "a JSON object", value)
        return value

    def fields(self, table: dict[str, Any], path: str, rules: dict[str, Rule]) -> None:
        """Check the keys of ``table`` (at ``path``) that ``rules`` name, in their order."""
        for key, rule in rules.items():
            if not (rule.opt and key not in table):
                self.check(self.get(table, key, path), _key(path, key), rule)

    def check(self, value: Any, path: str, rule: Rule) -> None:
        kind = rule.kind
        if value is None and rule.null and kind != "series":
            return
        if callable(kind):
            kind(self, value, path)
        elif kind in TESTS:
            test, what = TESTS[kind]
            if not test(value):
                self.fail(path, what + (" or null" if rule.null else ""), value)
        elif isinstance(kind, tuple):
            if value not in kind:
                self.fail(path, f"one of {', '.join(kind)}", value)
        elif kind == "obj":
            self.fields(self.table(value, path), path, rule.fields or {})
        elif kind == "name":  # numnet makes file names of it: figures/<run_id>.*.png
            self.check(value, path, STR)
            try:
                check_safe_name(value, path)
            except UnsafeNameError:
                self.fail(path, "a file-name-safe id (1-100 of letters, digits, '.', '_', '-', "
                          "'+'; no '/', no '..')", value)
        elif kind == "series":
            if not isinstance(value, list):
                self.fail(path, "a list of numbers", value)
            if rule.length is not None and len(value) != rule.length:
                self.fail(path, f"a list of {rule.length} entries (as long as the run's series)",
                          value)
            entry = rule._replace(kind="num")
            for k, v in enumerate(value):
                self.check(v, f"{path}[{k}]", entry)
        else:
            self._number(value, path, rule)

    def _number(self, value: Any, path: str, rule: Rule) -> None:
        integer, low, high = rule.kind == "int", rule.low, rule.high
        if isinstance(value, bool) or not isinstance(value, int if integer else int | float):
            self.fail(path, ("an integer" if integer else "a number")
                      + (" or null" if rule.null else ""), value)
        if integer and (value < low or (high is not None and value > high)):
            self.fail(path, f"an integer from {low}" + (f" to {high}" if high else ""), value)
        if not integer and (not math.isfinite(value) or (low is not None and value < low)
                            or (high is not None and value > high)):
            bounds = f" from {low}" if low is not None else ""
            bounds += f" to {high}" if high is not None else ""
            self.fail(path, f"a finite number{bounds}", value)


def _settings(s: _Schema, settings: Any, path: str) -> None:
    """``{model: [[epochs, lr], ...]}``: at most MAX_SETTING rows (the figure's) per model."""
    for model, rows in s.table(settings, path).items():
        if not isinstance(rows, list) or len(rows) > MAX_SETTING:
            s.fail(f"{path}.{model}", f"a list of at most {MAX_SETTING} [epochs, lr] pairs", rows)
        for k, row in enumerate(rows):
            if not (isinstance(row, list) and len(row) == 2):
                s.fail(f"{path}.{model}[{k}]", "an [epochs, lr] pair", row)
            s.check(row[0], f"{path}.{model}[{k}][0]", Rule("int", 1, MAX_UPDATES_PER_RUN))
            s.check(row[1], f"{path}.{model}[{k}][1]", Rule("num", 0.0))


def _quick_options(s: _Schema, options: Any, path: str) -> None:
    for key, value in s.table(options, path).items():
        s.check(value, f"{path}.{key}", Rule("int", 1, MAX_EXAMPLES))


#: results.json, but its runs (:func:`_validate_run`) and its format and label
DOCUMENT = {
    "protocol": Rule("obj", fields={  # Protocol.metadata()
        **dict.fromkeys(("name", "source", "hash"), STR),
        **dict.fromkeys(("description", "text", "dtype"), OPT_STR),
        "seed": SEED,
        "quick": Rule("bool", opt=True),
        "batch_size": Rule("int", 1, MAX_BATCH_SIZE),
        "eval_every": Rule("int", 1, MAX_UPDATES_PER_RUN),
        **dict.fromkeys(("eval_train_examples", "eval_test_examples"),
                        Rule("int", 1, MAX_EXAMPLES)),
        "models": Rule("model_names"),
        "settings": Rule(_settings, opt=True),
        "quick_options": Rule(_quick_options, null=True, opt=True),
    }),
    "data": Rule("obj", opt=True, fields={
        "train_examples": Rule("int", 1, MAX_EXAMPLES, null=True, opt=True)}),
    "environment": Rule("obj", opt=True),
    "timing": Rule("obj", opt=True, fields={
        "wall_time": Rule("num", 0.0, opt=True), "cpu_time": Rule("num", 0.0, opt=True),
        "reused_runs": Rule("run_ids", opt=True)}),
    "results": Rule("obj", opt=True),
    "device": Rule("str", opt=True),
}


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
    s.fields(doc, "", DOCUMENT)
    runs = s.get(doc, "runs", "")
    if not isinstance(runs, list) or not runs:
        s.fail("runs", "a non-empty list of runs", runs)
    if len(runs) > MAX_RUNS:
        s.fail("runs", f"at most {MAX_RUNS} runs", f"{len(runs)} runs")
    train_examples = doc.get("data", {}).get("train_examples") or DEFAULT_TRAIN_EXAMPLES
    seen: set[str] = set()
    for i, run in enumerate(runs):
        _validate_run(s, s.table(run, f"runs[{i}]"), f"runs[{i}]", train_examples)
        if run["run_id"] in seen:
            s.fail(f"runs[{i}].run_id", "unique", run["run_id"])
        seen.add(run["run_id"])
    return doc


def _validate_options(s: _Schema, spec: dict[str, Any], sp: str) -> None:
    """A spec's custom layers, optimiser and schedule (canonical JSON text, each optional),
    checked by the core's own checks: what ``numnet predict`` and a resumed run would build."""
    for key in TABLE_OPTIONS:
        text = spec.get(key)
        if text is None:
            continue
        if not isinstance(text, str) or len(text) > MAX_OPTION_TEXT:
            s.fail(f"{sp}.{key}", f"JSON text of at most {MAX_OPTION_TEXT} characters", text)
        try:
            # the one JSON reader: depth bounded before parsing, finite numbers only
            table = documents.loads_json(text, f"{sp}.{key}", f"{key} table", error=ValueError)
            check_table_option(key, table, f"{sp}.{key}", str(spec.get("model")))
        except (ValueError, TypeError, AttributeError) as exc:
            s.fail(f"{sp}.{key}", f"a valid {key} ({exc})", text[:80])


def _validate_run(s: _Schema, run: dict[str, Any], path: str, train_examples: int,
                  max_setting: int = MAX_SETTING) -> None:
    s.fields(run, path, {"run_id": Rule("name"), "spec": Rule("obj")})
    spec, sp = run["spec"], f"{path}.spec"
    s.fields(spec, sp, {
        "model": Rule("model"),
        "batch_size": Rule("int", 1, MAX_BATCH_SIZE),
        "epochs": Rule("int", 1, MAX_UPDATES_PER_RUN),
        "lr": Rule("num", 0.0),
        **dict.fromkeys(("reduction", "dtype", "weight_init", "bias_init", "conv_activation"),
                        STR),
        "eval_every": Rule("int", 1, MAX_UPDATES_PER_RUN, opt=True),
        **dict.fromkeys(("eval_train_examples", "eval_test_examples", "eval_batch_size"),
                        Rule("int", 1, MAX_EXAMPLES, opt=True)),
        "seed": SEED,
        # null: an ad hoc run; bounded: the setting is a row of the report's figure
        "setting": Rule("int", 1, max_setting, null=True),
    })
    _validate_options(s, spec, sp)
    if planned_updates(spec["epochs"], spec["batch_size"], train_examples) > MAX_UPDATES_PER_RUN:
        s.fail(f"{sp}.epochs", f"at most {MAX_UPDATES_PER_RUN:.0e} updates' worth at batch "
               f"{spec['batch_size']}", spec["epochs"])
    s.fields(run, path, {
        "status": Rule(STATUSES),
        "updates": UPDATES,
        "diverged_at_update": UPDATES._replace(null=run.get("status") != "diverged"),
        "divergence_reason": OPT_STR,
    })
    n = _validate_samples(s, run, path)
    s.fields(run, path, {
        **dict.fromkeys(("train_accuracy", "test_accuracy"), Rule("series", 0.0, 1.0, length=n)),
        **dict.fromkeys(("train_loss", "test_loss"), Rule("series", 0.0, length=n)),
        "evaluations": Rule("int", n, n),
        **dict.fromkeys(("final_train_accuracy", "final_test_accuracy"),
                        ACCURACY._replace(null=True)),
        "init_seed": SEED,
        "shuffle_seed": SEED,
        "shared_with": OPT_STR,
        "wall_time": LOSS,
        "updates_per_second": LOSS,
        "internals": Rule(_validate_internals, null=True, opt=True),
        "final_model": Rule(_validate_final_model, null=True, opt=True),
        "diagnosis": Rule("obj", null=True, opt=True, fields={
            "verdict": Rule("str", opt=True),
            **dict.fromkeys(("labels", "reasons", "notes"), Rule("strs", opt=True))}),
        # the evaluation of the weights after the last update
        "final_weights": Rule("obj", null=True, opt=True, fields={
            "update": UPDATES, "train_accuracy": ACCURACY, "test_accuracy": ACCURACY,
            "train_loss": LOSS, "test_loss": LOSS}),
    })


def _validate_samples(s: _Schema, run: dict[str, Any], path: str) -> int:
    """The examples seen at each evaluation: integers, and -- where the spec says how often a
    run evaluates -- exactly what its counts imply: evaluation k after ``k * eval_every``
    updates (``samples[k-1] = k * eval_every * batch_size``), as many evaluations as
    ``updates // eval_every`` for a run that did not diverge (no more for one that did).
    Returns how many there are (the length of every series)."""
    samples = s.get(run, "samples", path)
    if not isinstance(samples, list):
        s.fail(f"{path}.samples", "a list of integers", samples)
    spec, updates = run["spec"], run["updates"]
    batch, every = spec["batch_size"], spec.get("eval_every")
    for k, v in enumerate(samples):
        s.check(v, f"{path}.samples[{k}]", Rule("int", 0, MAX_UPDATES_PER_RUN * MAX_BATCH_SIZE))
        if every is not None and v != (k + 1) * every * batch:
            s.fail(f"{path}.samples[{k}]", f"{(k + 1) * every * batch} (evaluation {k + 1} "
                   f"after {(k + 1) * every} updates of {batch} examples)", v)
    if every is not None:
        expected = updates // every
        if len(samples) > expected or (run["status"] == "ok" and len(samples) != expected):
            s.fail(f"{path}.samples", f"a list of {expected} evaluations ({updates} updates, "
                   f"one evaluation every {every})", f"{len(samples)} evaluations")
    return len(samples)


def _image(dims: int, panels: str | None = None) -> Rule:
    """The rule of an encoded image of the final-model figures (``{"shape", "lo", "hi",
    "b64"}``, see ``numnet.lab.training.internals.encode_image``) of ``dims`` dimensions: its
    shape bounded and matching its bytes, so that decoding it allocates what the document says
    and no more; ``panels``: what its first axis counts (at most MAX_PANELS of them)."""
    def check(s: _Schema, image: Any, path: str) -> None:
        shape = s.get(s.table(image, path), "shape", path)
        if (not isinstance(shape, list) or len(shape) != dims or not all(
                isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_IMAGE_VALUES
                for n in shape) or math.prod(shape) > MAX_IMAGE_VALUES):
            s.fail(f"{path}.shape", f"a list of {dims} sizes (at most {MAX_IMAGE_VALUES} "
                   "values)", shape)
        s.fields(image, path, {"lo": Rule("num"), "hi": Rule("num"), "b64": STR})
        b64 = image["b64"]
        if len(b64) != 4 * -(-math.prod(shape) // 3):
            s.fail(f"{path}.b64", f"the base64 of {math.prod(shape)} bytes (its shape)",
                   f"{len(b64)} characters")
        try:
            base64.b64decode(b64, validate=True)
        except ValueError:
            s.fail(f"{path}.b64", "base64 text", b64)
        if panels and shape[0] > MAX_PANELS:
            s.fail(f"{path}.shape[0]", f"at most {MAX_PANELS} {panels}", shape[0])
    return Rule(check)


def _validate_final_model(s: _Schema, final: Any, path: str) -> None:
    """The final model's evidence (``numnet.lab.training.internals``): a square confusion
    table of counts over at most MAX_CLASSES classes, the most confused images (label,
    predicted class, probability, image), the CNN's filters, feature maps and digit, each
    image bounded (see :func:`_image`)."""
    for key, value in s.table(final, path).items():
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
    label = Rule("int", 0, (len(confusion) if confusion else NUM_CLASSES) - 1)
    s.fields(final, path, {"update": UPDATES._replace(opt=True)})
    confused = final.get("confused", [])
    if not isinstance(confused, list):
        s.fail(f"{path}.confused", "a list of images", confused)
    for k, e in enumerate(confused[:CONFUSED_SHOWN]):  # the figure draws these only
        s.check(e, f"{path}.confused[{k}]", Rule("obj", fields={
            "label": label, "predicted": label, "prob": ACCURACY, "image": _image(2)}))
    s.fields(final, path, {
        "filters": Rule("obj", null=True, opt=True, fields={
            "layer": STR, "weights": _image(3, "filters")}),
        "feature_maps": Rule(_feature_maps, null=True, opt=True),
        "digit": Rule("obj", null=True, opt=True, fields={
            "index": Rule("int", 0, MAX_EXAMPLES), "label": label, "image": _image(2)}),
    })
    if final.get("filters") is None and (final.get("feature_maps") is not None
                                         or final.get("digit") is not None):
        s.fail(f"{path}.filters", "present with feature_maps and digit", None)


def _feature_maps(s: _Schema, maps: Any, path: str) -> None:
    if len(s.table(maps, path)) > 8:
        s.fail(path, "at most 8 layers", f"{len(maps)} layers")
    for name in maps:
        s.check(maps[name], f"{path}.{name}", _image(3, "channels"))


def _validate_internals(s: _Schema, internals: Any, path: str) -> None:
    """The training internals of a run: ``update`` (a list of update numbers) and, per
    quantity, a series as long as it (numbers or null), or an object of such series per layer;
    ``start`` the same structure for the first updates."""
    updates = s.get(s.table(internals, path), "update", path)
    if not isinstance(updates, list):
        s.fail(f"{path}.update", "a list of update numbers", updates)
    for k, u in enumerate(updates):
        s.check(u, f"{path}.update[{k}]", UPDATES)
    series = Rule("series", null=True, length=len(updates))
    for key, value in internals.items():
        where = f"{path}.{key}"
        if key == "update":
            continue
        if key == "start":
            _validate_internals(s, value, where)
        elif key == "probe_examples":
            s.check(value, where, Rule("int", 0, MAX_EXAMPLES))
        elif key == "lr":
            s.check(value, where, LOSS)
        elif key in LAYER_SERIES or (isinstance(value, dict) and key not in SCALARS):
            for layer, entries in s.table(value, where).items():
                s.check(entries, f"{where}.{layer}", series)
        elif (isinstance(value, int | float) and not isinstance(value, bool)
              and key not in SCALARS):
            s.check(value, where, Rule("num"))  # a scalar of the recording (a count, a time)
        else:
            s.check(value, where, series)


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

    The run is checked as a results.json run is (:func:`_validate_run`); the weights path must
    be ``weights/<run_id>.npz``. A ResultsError naming ``source`` and the key path otherwise,
    e.g. ``runs/x.json: result.test_accuracy[3] must be a finite number from 0.0 to 1.0, got
    7.5``."""
    s = _Schema(source)
    s.table(doc, "the record")
    if doc.get("format") != RUN_FORMAT:
        s.fail("format", repr(RUN_FORMAT), doc.get("format"))
    s.fields(doc, "", dict.fromkeys(("protocol_hash", "data_fingerprint", "weights_format"),
                                    OPT_STR))
    run = s.table(s.get(doc, "result", ""), "result")
    _validate_run(s, run, "result", DEFAULT_TRAIN_EXAMPLES)
    weights = doc.get("weights")
    if weights is not None and weights != f"weights/{run['run_id']}.npz":
        s.fail("weights", f"'weights/{run['run_id']}.npz' (the run's weights file)", weights)
    return doc


def _read(path: str | Path, what: str) -> Any:
    """The JSON document at ``path`` through :mod:`numnet.core.documents` (a regular file,
    bounded in size and depth, finite numbers only); ResultsError naming the file otherwise."""
    return documents.read_json(path, what, max_bytes=MAX_RESULTS_BYTES, max_depth=MAX_DEPTH,
                               error=ResultsError)


def read_run_record(path: str | Path) -> dict[str, Any]:
    """The run record at ``path`` (:func:`_read`), checked by :func:`validate_run_record`."""
    return validate_run_record(_read(path, "run record"), documents.display(path))


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
                doc = _read(path, "run record")
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
