"""Property-based: protocol files and results documents near the schema -- wrong types, unknown
keys, out-of-range numbers, odd strings, missing pieces -- are either accepted or refused with
ONE line (a NumnetError; exit 2 or 1 from the command line), never a traceback. Validation
paths only (protocol loading, ``numnet report`` on a results.json): no training."""

from __future__ import annotations

import copy
import json
import math
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny_mnist import TINY_PROTOCOL, tiny_datasets

import numnet.lab.data
from numnet.core.errors import NumnetError
from numnet.lab import protocol
from numnet.lab.cli import main

# ------------------------------------------------------------------ a small TOML writer


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) \
            else repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string is a JSON string (ASCII escapes)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def to_toml(doc: dict) -> str:
    """A TOML document: top-level scalars first, then one [table] per dict value."""
    lines = [f"{json.dumps(k)} = {toml_value(v)}" for k, v in doc.items()
             if not isinstance(v, dict)]
    for k, v in doc.items():
        if isinstance(v, dict):
            lines.append(f"[{json.dumps(k)}]")
            lines += [f"{json.dumps(kk)} = {toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ strategies

odd_text = st.one_of(
    st.sampled_from(["", " ", "../x", "/abs", "a/b", "<script>", "model9", "sum", "mean",
                     "float32", "mnist", "tiny", "x" * 300, "\u00e9\u4e2d", "\x00", "nan"]),
    st.text(alphabet=string.printable, max_size=12),
)
numbers = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, -1, 2**31, 10**9, 10**18]),
    st.floats(allow_nan=True, allow_infinity=True),
)
scalars = st.one_of(numbers, odd_text, st.booleans())
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(odd_text, inner, max_size=3)), max_leaves=6)

KEYS = {
    "": ["name", "description", "seed", "bogus"],
    "data": ["dataset", "validation_size", "bogus"],
    "training": ["batch_size", "eval_every", "eval_train_examples", "eval_test_examples",
                 "eval_batch_size", "dtype", "bogus"],
    "quick": ["epochs", "eval_every", "eval_train_examples", "eval_test_examples"],
    "defaults": ["reduction", "weight_init", "bias_init", "conv_activation", "optimizer",
                 "weight_decay", "schedule"],
}
#: layer tables: known types with plausible or odd keys and values, and odd types
layer = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(
        ["linear", "conv2d", "maxpool2d", "avgpool2d", "flatten", "relu", "tanh", "dropout",
         "batchnorm", "lineer", "conv3d"])},
        optional={"units": st.one_of(st.integers(-2, 40), scalars),
                  "filters": st.integers(-1, 9), "kernel": st.one_of(st.integers(-1, 40),
                                                                     scalars),
                  "size": st.integers(-1, 40), "stride": st.integers(-1, 4),
                  "padding": st.sampled_from(["same", "valid", "full"]),
                  "rate": st.one_of(st.floats(-1, 2), scalars),
                  "momentum": st.floats(allow_nan=True), "eps": numbers}),
    scalars)
layers = st.one_of(st.lists(layer, max_size=6),
                   st.just([{"type": "linear", "units": 10}]),
                   st.just([{"type": "conv2d", "filters": 4, "kernel": 3},
                            {"type": "linear", "units": 10}]),
                   scalars)
optimizer = st.one_of(st.fixed_dictionaries(
    {"type": st.sampled_from(["sgd", "adam", "adamw", "rmsprop", "adamm", "lbfgs"])},
    optional={"momentum": numbers, "betas": st.lists(numbers, max_size=3), "eps": numbers,
              "alpha": numbers, "nesterov": st.booleans(), "weight_decay": numbers,
              "bogus": scalars}), scalars)
schedule = st.one_of(st.fixed_dictionaries(
    {"type": st.sampled_from(["constant", "step", "cosine", "cosin", "linear"])},
    optional={"step_size": numbers, "gamma": numbers, "min_lr": numbers,
              "warmup_updates": numbers}), scalars)
setting = st.dictionaries(st.sampled_from(["epochs", "lr", "momentum", "label"]), scalars,
                          max_size=3)
setting_options = st.fixed_dictionaries({}, optional={
    "optimizer": optimizer, "schedule": schedule, "weight_decay": numbers, "layers": layers})
model_body = st.fixed_dictionaries({}, optional={
    "settings": st.one_of(st.lists(st.tuples(setting, setting_options).map(
        lambda pair: {**pair[0], **pair[1]}), max_size=3), scalars),
    "reduction": scalars, "conv_activation": scalars, "layers": layers,
    "optimizer": optimizer, "schedule": schedule, "weight_decay": numbers})


@st.composite
def protocol_docs(draw) -> dict:
    doc: dict = {}
    for table, keys in KEYS.items():
        chosen = draw(st.dictionaries(st.sampled_from(keys), values, max_size=3))
        if table:
            doc[table] = chosen
        else:
            doc.update(chosen)
    models = draw(st.dictionaries(st.sampled_from(["model1", "model2", "model4", "model7",
                                                   "my-net", "../x", "1bad"]),
                                  model_body, max_size=2))
    if models:
        doc["models"] = models
    return doc


FAST = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def one_line(message: str) -> None:
    assert message and "\n" not in message and "Traceback" not in message, message


@FAST
@given(protocol_docs())
def test_generated_protocols_load_or_fail_in_one_line(tmp_path, doc) -> None:
    path = tmp_path / "gen.toml"
    path.write_text(to_toml(doc), encoding="utf-8")
    try:
        protocol.load(path)
    except NumnetError as exc:
        one_line(str(exc))


@FAST
@given(st.sampled_from(TINY_PROTOCOL.splitlines()), st.sampled_from(
    ["", "= 1", "[[x]]", "\ufeff", "lr = 1e309", "epochs = -0", "\x00", "[models.model1]",
     "settings = 5", "batch_size = 1.5", "seed = 99999999999999999999"]))
def test_edited_protocol_text_loads_or_fails_in_one_line(tmp_path, line, replacement) -> None:
    path = tmp_path / "edit.toml"
    path.write_text(TINY_PROTOCOL.replace(line, replacement, 1), encoding="utf-8")
    try:
        protocol.load(path)
    except NumnetError as exc:
        one_line(str(exc))


# ------------------------------------------------------------------ results documents


@pytest.fixture(scope="module")
def results_doc(tmp_path_factory) -> dict:
    """The results.json of a finished quick reproduce (model 2 only, tiny data)."""
    root = tmp_path_factory.mktemp("fuzz")
    (root / "p.toml").write_text(TINY_PROTOCOL)
    mp = pytest.MonkeyPatch()
    data = tiny_datasets()
    mp.setattr(numnet.lab.data, "load", lambda *a, **k: data)
    try:
        assert main(["reproduce", "--protocol", str(root / "p.toml"), "--quick", "--models",
                     "2", "--out", str(root / "out"), "--quiet", "--threads", "1"]) == 0
    finally:
        mp.undo()
    return json.loads((root / "out" / "results.json").read_text())


def paths_of(doc, prefix=()):
    """Every key path of a JSON document (dict keys and list indices)."""
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from paths_of(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from paths_of(v, (*prefix, i))


@st.composite
def mutations(draw, doc):
    """``doc`` with 1-3 of its values replaced by odd JSON values or removed."""
    doc = copy.deepcopy(doc)
    paths = [p for p in paths_of(doc) if p and p[0] not in ("environment",)]
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths))
        parent = doc
        try:
            for key in path[:-1]:
                parent = parent[key]
            if draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = draw(st.one_of(
                    values, st.just([]), st.just({}), st.just(None)))
        except (KeyError, IndexError, TypeError):
            continue  # the path went away with an earlier mutation
    return doc


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_report_on_mutated_results_is_one_line_or_a_report(results_doc, tmp_path_factory,
                                                           capsys, data) -> None:
    doc = data.draw(mutations(results_doc))
    folder = tmp_path_factory.mktemp("m")
    (folder / "results.json").write_text(json.dumps(doc))  # NaN/Infinity written as JSON allows
    code = main(["report", str(folder)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if code == 0:
        assert (folder / "report.html").is_file()
    else:
        assert code in (1, 2) and len(err.strip().splitlines()) == 1, err
        assert err.startswith("numnet: error: ")


def _mutated(doc: dict, change) -> dict:
    doc = copy.deepcopy(doc)
    change(doc["runs"][0]["internals"])
    return doc


@pytest.mark.parametrize(("change", "error"), [
    (lambda i: i.update(logit_absmax=0), "internals.logit_absmax must be a list of numbers"),
    (lambda i: i.update(dead_fraction=[0.5]), "internals.dead_fraction must be a JSON object"),
    (lambda i: i["dead_fraction"].update({"\r": 0}), r"internals.dead_fraction.\r must be"),
    (lambda i: i.pop("logit_absmax"), None),  # a series not recorded: drawn without it
], ids=["scalar-series", "list-for-layers", "control-key", "missing-series"])
def test_report_on_internals_found_by_the_fuzzing(results_doc, tmp_path, capsys, change,
                                                  error) -> None:
    """Cases Hypothesis found: a series given as a number, per-layer series given as a list, a
    key with a carriage return, a series left out (the plot's log axis then has no point)."""
    (tmp_path / "results.json").write_text(json.dumps(_mutated(results_doc, change)))
    code = main(["report", str(tmp_path)])
    err = capsys.readouterr().err
    if error is None:
        assert code == 0 and (tmp_path / "report.html").is_file(), err
    else:
        assert code == 2 and len(err.strip().splitlines()) == 1 and error in err, err


def test_report_on_a_run_without_its_setting_found_by_the_fuzzing(results_doc, tmp_path,
                                                                  capsys) -> None:
    """Hypothesis found it: a run's spec without ``setting`` (numnet always writes it, null for
    an ad hoc run) is one line naming the key, not a KeyError in the figures."""
    doc = copy.deepcopy(results_doc)
    del doc["runs"][0]["spec"]["setting"]
    (tmp_path / "results.json").write_text(json.dumps(doc))
    code = main(["report", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "runs[0].spec.setting is missing" in err, err
