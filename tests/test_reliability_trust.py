"""Trust at every boundary: every file a user can hand numnet goes through one document layer
(``numnet.core.documents``: regular files only, bounded bytes and nesting, finite numbers), every
file name made from a document's content through one function (``numnet.core.io.child_path``),
run records through the schema (``numnet.lab.results.validate_run_record``), weights and images
with every size checked before it is allocated, accuracies' intervals inside [0, 1]. Each
hostile input ends in exit 0 with a correct result or one line and exit 1/2: no traceback, no
hang, no stray file outside the output folder (tiny data, in process)."""

from __future__ import annotations

import copy
import json
import math
import os
import re
import shutil
import struct
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hostile_support import no_hang, peak_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from test_reliability_cli import one_line_error
from tiny_mnist import TINY_PROTOCOL, tiny_datasets

import numnet.lab.data
from numnet.core import documents, io, models, serialize
from numnet.core.errors import (
    DataError,
    FolderError,
    NumnetError,
    ProtocolError,
    ResultsError,
    UnsafeNameError,
    WeightsFileError,
)
from numnet.lab import predict, protocol, results, stats
from numnet.lab.cli import main

DATA = tiny_datasets()
TRAIN = ["train", "--model", "1", "--epochs", "1", "--batch-size", "10", "--eval-every", "20",
         "--eval-train-examples", "100", "--eval-test-examples", "100", "--quiet",
         "--threads", "1"]
SOME = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(autouse=True)
def loads(monkeypatch):
    """The tiny digits instead of MNIST; the list records every load (none: refused first)."""
    calls: list[int] = []

    def load(*args, **kwargs):
        calls.append(1)
        return DATA

    monkeypatch.setattr(numnet.lab.data, "load", load)
    return calls


def tree(path: Path) -> set[str]:
    """Every path under ``path`` (to check that nothing was written outside a folder)."""
    return {str(p.relative_to(path)) for p in path.rglob("*")}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished quick reproduce (models 2 and 4) to copy and edit."""
    root = tmp_path_factory.mktemp("trust")
    (root / "p.toml").write_text(TINY_PROTOCOL)
    mp = pytest.MonkeyPatch()
    mp.setattr(numnet.lab.data, "load", lambda *a, **k: DATA)
    try:
        assert main(["reproduce", "--protocol", str(root / "p.toml"), "--quick", "--models",
                     "2,4", "--out", str(root / "out"), "--quiet", "--threads", "1"]) == 0
    finally:
        mp.undo()
    return root / "out"


def records_folder(finished: Path, where: Path) -> Path:
    """A copy of the run records of ``finished`` (no results.json): ``numnet report``
    assembles the report from them."""
    out = where / "records"
    shutil.copytree(finished / "runs", out / "runs")
    return out


def edit_record(folder: Path, change, name: str = "model2-setting1.json") -> Path:
    path = folder / "runs" / name
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))  # NaN written as JSON allows
    return path


# ------------------------------------------------------------------ the document layer


def test_non_regular_files_are_refused_at_once_never_waited_on(tmp_path) -> None:
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    link = tmp_path / "dangling.json"
    link.symlink_to(tmp_path / "nowhere")
    cases = [(fifo, "is not a regular file"), (tmp_path, "is a directory"),
             (Path("/dev/null"), "is not a regular file"), (link, "broken symbolic link"),
             (tmp_path / "missing.json", "no such results file"),
             (tmp_path / "missing.json" / "under", "no such results file")]
    for path, message in cases:
        with no_hang(5), pytest.raises(ResultsError, match=message) as info:
            documents.read_json(path, "results file", error=ResultsError)
        assert "\n" not in str(info.value)


def test_size_is_checked_before_reading(tmp_path) -> None:
    big = tmp_path / "big.json"
    big.write_bytes(b"[" + b"0," * (4 << 20) + b"0]")  # 8 MiB of valid JSON
    peak, raised = peak_bytes(lambda: documents.read_json(big, max_bytes=1 << 20))
    assert isinstance(raised, NumnetError) and "more than the 1.0 MiB" in str(raised)
    assert peak < 1 << 20  # refused from its size: not read


@pytest.mark.parametrize("text", [
    "[" * 100_000 + "]" * 100_000,
    '{"a":' * 50_000 + "1" + "}" * 50_000,
    "[" * 100_000,  # never closed
])
def test_nesting_bombs_are_refused_before_parsing(tmp_path, text) -> None:
    path = tmp_path / "deep.json"
    path.write_text(text)
    with pytest.raises(ResultsError, match="nests 100000 levels|nests 50000 levels"):
        documents.read_json(path, "results file", error=ResultsError)


def test_brackets_inside_strings_do_not_nest(tmp_path) -> None:
    doc = {"a": "[" * 1000 + '\\"{' * 1000, "b": [[["x"]]]}
    path = tmp_path / "ok.json"
    path.write_text(json.dumps(doc))
    assert documents.read_json(path) == doc
    assert documents.nesting_depth(json.dumps(doc)) == 4 == documents.value_depth(doc)


@pytest.mark.parametrize(("text", "where"), [
    ('{"a": [1, NaN]}', "a[1] is nan"),
    ('{"a": {"b": Infinity}}', "a.b is inf"),
    ('{"a": 1e999}', "a is inf"),
    ('{"a": "\\ud800"}', "a holds a lone surrogate"),
])
def test_values_json_cannot_hold_are_named_by_key(tmp_path, text, where) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ResultsError) as info:
        documents.read_json(path, "run record", error=ResultsError)
    message = str(info.value)
    assert where in message and "bad.json" in message and "bug" not in message


@SOME
@given(st.binary(max_size=300) | st.text(alphabet='[]{}":,0123456789.eE+-natrufIiyN\\ ',
                                         max_size=300).map(str.encode))
def test_any_bytes_are_a_value_or_one_line(tmp_path_factory, data) -> None:
    path = tmp_path_factory.mktemp("j") / "doc.json"
    path.write_bytes(data)
    try:
        value = documents.read_json(path, max_bytes=200, max_depth=5)
    except NumnetError as exc:
        assert "\n" not in str(exc) and "doc.json" in str(exc)
    else:
        assert len(data) <= 200 and documents.value_depth(value) <= 5
        assert documents.first_bad_value(value) is None


@SOME
@given(st.integers(1, 40), st.sampled_from(["[", '{"k":']))
def test_depth_is_accepted_up_to_the_bound_and_refused_beyond(tmp_path_factory, depth,
                                                              opening) -> None:
    closing = "]" if opening == "[" else "}"
    path = tmp_path_factory.mktemp("d") / "nested.json"
    path.write_text(opening * depth + "0" + closing * depth)
    if depth <= 20:
        assert documents.value_depth(documents.read_json(path, max_depth=20)) == depth
    else:
        with pytest.raises(NumnetError, match=f"nests {depth} levels"):
            documents.read_json(path, max_depth=20)


@pytest.mark.parametrize("text", [
    "x = " + "[" * 10_000 + "]" * 10_000,
    "x = " + "{a = " * 5_000 + "1" + "}" * 5_000,
    "x." * 2_000 + "y = 1",  # dotted keys nest without a bracket
    "[" + "a." * 2_000 + "b]\nc = 1",
])
def test_protocol_nesting_bombs_are_one_line(tmp_path, capsys, text) -> None:
    path = tmp_path / "deep.toml"
    path.write_text(text)
    with pytest.raises(ProtocolError, match="nests"):
        protocol.load(path)
    assert main(["train", "--protocol", str(path), "--model", "1", "--setting", "1"]) == 2
    one_line_error(capsys, "deep.toml", "nests")


def test_protocol_brackets_in_strings_and_comments_do_not_nest(tmp_path) -> None:
    text = TINY_PROTOCOL.replace('name = "tiny"', 'name = "tiny" # [[[[[[[[[[[[[[[[[[')
    text += '\n# ' + "[" * 50 + '\n'
    path = tmp_path / "p.toml"
    path.write_text(text.replace('description = "', 'description = "' + "{" * 50, 1))
    assert protocol.load(path).name == "tiny"


def test_protocol_through_a_fifo_or_too_large(tmp_path, capsys) -> None:
    fifo = tmp_path / "p.toml"
    os.mkfifo(fifo)
    with no_hang(5):
        assert main(["train", "--protocol", str(fifo), "--model", "1", "--setting", "1"]) == 2
    one_line_error(capsys, "is not a regular file")
    big = tmp_path / "big.toml"
    big.write_text("# padding\n" * 200_000)
    assert main(["train", "--protocol", str(big), "--model", "1", "--setting", "1"]) == 2
    one_line_error(capsys, "big.toml", "more than the 1.0 MiB")


# ------------------------------------------------------------------ safe names


@pytest.mark.parametrize("name", [
    "../x", "..", ".", "/etc/passwd", "a/b", "a\\b", "a\x00b", "x" * 101, ".hidden", "-rf",
    "", "a..b", "ok\udcff", "tab\there", "new\nline", "\u00e9t\u00e9", "C:x", 7, None,
])
def test_unsafe_names_are_refused_naming_the_value(tmp_path, name) -> None:
    with pytest.raises(UnsafeNameError) as info:
        io.child_path(tmp_path, name, ".json", "run id")
    message = str(info.value)
    assert "\n" not in message and message.startswith("run id ")
    message.encode("utf-8")  # printable as UTF-8 whatever the name held


@pytest.mark.parametrize("name", ["model1-setting1", "model4-e3-lr1e+06", "a", "x" * 100,
                                  "model2-e1-lr0.01"])
def test_safe_names_stay_inside(tmp_path, name) -> None:
    assert io.child_path(tmp_path, name, ".json").parent == tmp_path


@SOME
@given(st.text(max_size=120) | st.binary(max_size=60).map(os.fsdecode))
def test_any_name_stays_inside_or_is_refused(tmp_path_factory, name) -> None:
    folder = tmp_path_factory.mktemp("names")
    try:
        path = io.child_path(folder, name, ".png")
    except UnsafeNameError as exc:
        assert "\n" not in str(exc)
    else:
        assert path.parent == folder and Path(os.path.abspath(path)).parent == folder


# ------------------------------------------------------------------ numnet report


def test_run_ids_cannot_write_figures_outside_the_folder(finished, tmp_path, capsys) -> None:
    out = tmp_path / "deep" / "edited"
    out.mkdir(parents=True)
    doc = json.loads((finished / "results.json").read_text())
    for k, escape in enumerate(["../../escaped", "/tmp/abs", "a/b", "x\x00y"]):
        doc["runs"][0]["run_id"] = escape
        (out / "results.json").write_text(json.dumps(doc))
        before = tree(tmp_path)
        assert main(["report", str(out)]) == 2
        one_line_error(capsys, "runs[0].run_id must be a file-name-safe id")
        assert tree(tmp_path) == before, k


@pytest.mark.parametrize(("change", "fragments"), [
    (lambda r: r["result"]["test_accuracy"].__setitem__(0, 7.5),
     ["result.test_accuracy[0] must be a finite number from 0.0 to 1.0, got 7.5"]),
    (lambda r: r["result"]["final_weights"].__setitem__("test_accuracy", 7.5),
     ["result.final_weights.test_accuracy"]),
    (lambda r: r["result"]["spec"].__setitem__("batch_size", 0), ["result.spec.batch_size"]),
    (lambda r: r["result"]["spec"].__setitem__("epochs", 0), ["result.spec.epochs"]),
    (lambda r: r["result"].__setitem__("updates", -1), ["result.updates"]),
    (lambda r: r["result"]["train_loss"].pop(), ["result.train_loss must be a list of"]),
    (lambda r: [r["result"][k].pop() for k in ("samples", "train_accuracy", "test_accuracy",
                                               "train_loss", "test_loss")],
     ["result.samples must be a list of"]),
    (lambda r: r["result"]["samples"].__setitem__(0, 3), ["result.samples[0] must be"]),
    (lambda r: r["result"]["train_loss"].__setitem__(1, float("nan")),
     ["result.train_loss[1] is nan", "model2-setting1.json"]),
    (lambda r: r["result"]["spec"].__setitem__("setting", 10**9), ["result.spec.setting"]),
    (lambda r: r["result"].__setitem__("run_id", "../../escaped"), ["result.run_id"]),
    (lambda r: r["result"]["final_model"].__setitem__("confusion", [[1] * 200] * 200),
     ["result.final_model.confusion"]),
    (lambda r: r.__setitem__("result", [1, 2]), ["result must be a JSON object"]),
], ids=["accuracy-7.5", "final-accuracy", "batch-0", "epochs-0", "updates-negative",
        "short-curve", "short-everything", "samples-wrong", "nan", "setting-huge",
        "run-id-escape", "confusion-huge", "result-list"])
def test_report_refuses_a_bad_run_record_in_one_line(finished, tmp_path, capsys, change,
                                                     fragments) -> None:
    folder = records_folder(finished, tmp_path)
    edit_record(folder, change)
    before = tree(tmp_path)
    assert main(["report", str(folder)]) == 2
    line = one_line_error(capsys, "model2-setting1.json", *fragments)
    assert "bug" not in line
    assert tree(tmp_path) == before  # nothing written


def test_report_on_good_records_still_works(finished, tmp_path, capsys) -> None:
    folder = records_folder(finished, tmp_path)
    assert main(["report", str(folder)]) == 0, capsys.readouterr().err
    assert (folder / "report.html").is_file()


@pytest.mark.parametrize("content", ["[" * 100_000, "not json", "{}"])
def test_report_refuses_unreadable_files_among_the_records(finished, tmp_path, capsys,
                                                           content) -> None:
    folder = records_folder(finished, tmp_path)
    (folder / "runs" / "model2-setting1.json").write_text(content)
    assert main(["report", str(folder)]) == 2
    one_line_error(capsys, "model2-setting1.json")


def test_report_on_a_fifo_record_does_not_hang(finished, tmp_path, capsys) -> None:
    folder = records_folder(finished, tmp_path)
    os.mkfifo(folder / "runs" / "zz.json")
    with no_hang(10):
        assert main(["report", str(folder)]) == 2
    one_line_error(capsys, "zz.json", "is not a regular file")


@pytest.mark.parametrize("kind", ["fifo", "directory", "dangling"])
def test_a_results_file_that_is_not_a_file_is_said(finished, tmp_path, capsys, kind) -> None:
    folder = records_folder(finished, tmp_path)
    target = folder / "results.json"
    {"fifo": os.mkfifo, "directory": os.mkdir,
     "dangling": lambda p: p.symlink_to(tmp_path / "nowhere")}[kind](target)
    with no_hang(10):
        assert main(["report", str(folder)]) == 2
    one_line_error(capsys, "results.json")


def test_results_file_bombs_are_one_line(finished, tmp_path, capsys, monkeypatch) -> None:
    out = tmp_path / "bomb"
    out.mkdir()
    (out / "results.json").write_text('{"runs": ' + "[" * 200_000 + "]" * 200_000 + "}")
    assert main(["report", str(out)]) == 2
    one_line_error(capsys, "results.json", "nests")
    monkeypatch.setattr(results, "MAX_RESULTS_BYTES", 1000)
    shutil.copy(finished / "results.json", out / "results.json")
    assert main(["report", str(out)]) == 2
    one_line_error(capsys, "results.json", "more than the 1000 bytes")


def _mutations(draw, doc):
    paths = []

    def walk(v, p):
        paths.append(p)
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, (*p, k))
        elif isinstance(v, list):
            for i, x in enumerate(v[:3]):
                walk(x, (*p, i))

    walk(doc["result"], ("result",))
    for _ in range(draw(st.integers(1, 2))):
        path = draw(st.sampled_from(paths[1:]))
        parent = doc
        try:
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1]] = draw(st.one_of(
                st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                st.floats(allow_nan=True, allow_infinity=True), st.just("../x"),
                st.just([]), st.just({}), st.just("x" * 200),
                st.lists(st.floats(-2, 2), max_size=3)))
        except (KeyError, IndexError, TypeError):
            continue
    return doc


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_records_are_a_report_or_one_line(finished, tmp_path_factory, capsys,
                                                  data) -> None:
    root = tmp_path_factory.mktemp("mut")
    folder = records_folder(finished, root)
    path = folder / "runs" / "model4-setting1.json"
    doc = _mutations(data.draw, json.loads(path.read_text()))
    path.write_text(json.dumps(doc))
    before = tree(root.parent)
    code = main(["report", str(folder)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if code == 0:
        assert (folder / "report.html").is_file()
        page = (folder / "report.md").read_text()
        assert all(0 <= r <= 1 for r in _percentages(page))
    else:
        assert code in (1, 2) and len(err.strip().splitlines()) == 1, err
    assert {p for p in tree(root.parent) - before if not p.startswith(root.name)} == set()


def _percentages(text: str) -> list[float]:
    """The four-decimal accuracies of the Markdown summary ("0.9123")."""
    return [float(x) for x in re.findall(r"\| (\d+\.\d{4})", text)]


def test_records_that_fail_the_schema_are_redone_not_trusted(finished, tmp_path) -> None:
    from numnet.lab.experiments.store import load_record
    from numnet.lab.training import RunSpec

    folder = tmp_path / "copy"
    for sub in ("runs", "weights"):
        shutil.copytree(finished / sub, folder / sub)
    path = folder / "runs" / "model2-setting1.json"
    record = json.loads(path.read_text())
    spec = RunSpec.from_dict(record["result"]["spec"])

    def load() -> dict | None:
        return load_record(folder, spec, record["protocol_hash"], record["data_fingerprint"])

    assert load() is not None
    record["result"]["test_accuracy"][0] = 7.5
    path.write_text(json.dumps(record))
    assert load() is None
    path.write_text("[" * 100_000)
    assert load() is None


def test_validate_run_record_directly(finished) -> None:
    path = finished / "runs" / "model4-setting1.json"
    record = results.read_run_record(path)
    assert record["result"]["run_id"] == "model4-setting1"
    bad = copy.deepcopy(record)
    bad["weights"] = "../../elsewhere.npz"
    with pytest.raises(ResultsError, match="weights must be 'weights/model4-setting1.npz'"):
        results.validate_run_record(bad, "x.json")


# ------------------------------------------------------------------ output folders


@pytest.mark.parametrize("blocked", ["weights", "runs", "figures"])
def test_a_file_where_an_output_subfolder_goes_is_refused_before_training(
        tmp_path, capsys, loads, blocked) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / blocked).write_text("in the way")
    assert main([*TRAIN, "--lr", "0.01", "--out", str(out)]) == 1
    one_line_error(capsys, f"{out / blocked}", "a file is in the way")
    assert loads == []  # refused before the data and the training


def test_lock_file_that_is_a_link_or_a_fifo_is_refused(tmp_path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    (out / io.LOCK_NAME).symlink_to(target)
    with pytest.raises(FolderError, match="symbolic link"), io.folder_lock(out):
        pass
    assert target.read_text() == "keep me"
    (out / io.LOCK_NAME).unlink()
    os.mkfifo(out / io.LOCK_NAME)
    with no_hang(5), pytest.raises(FolderError, match="not a regular file"), io.folder_lock(out):
        pass


def test_a_nested_identity_file_is_unreadable_not_a_crash(tmp_path) -> None:
    from numnet.lab.experiments.store import FOLDER_FILE, claim_folder

    out = tmp_path / "out"
    out.mkdir()
    (out / FOLDER_FILE).write_text("[" * 100_000 + "]" * 100_000)
    with claim_folder(out, "train", {"a": 1}):
        pass
    assert json.loads((out / FOLDER_FILE).read_text())["configuration"] == {"a": 1}


# ------------------------------------------------------------------ weights files


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("w") / "model1.npz"
    serialize.save(path, models.build("model1", seed=0))
    return path


@pytest.fixture(scope="module")
def digit(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "digit.png"
    Image.fromarray(np.round(DATA.test.images[5].reshape(28, 28) * 255).astype(np.uint8)).save(
        path)
    return path


def test_weights_through_a_pipe_are_not_a_regular_file(tmp_path, weights, digit,
                                                        capsys) -> None:
    fifo = tmp_path / "w.npz"
    os.mkfifo(fifo)
    with no_hang(5):
        assert main(["predict", "--weights", str(fifo), str(digit)]) == 2
    one_line_error(capsys, "w.npz", "is not a regular file")
    read, write = os.pipe()
    feeder = threading.Thread(target=lambda: (os.write(write, weights.read_bytes()[:4096]),
                                              os.close(write)))
    feeder.start()
    try:
        with no_hang(5):
            assert main(["predict", "--weights", f"/dev/fd/{read}", str(digit)]) == 2
        line = one_line_error(capsys, f"/dev/fd/{read}", "is not a regular file")
        assert "not found" not in line
    finally:
        feeder.join()
        os.close(read)


def _npz(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _npy_header(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    import io as _io

    buf = _io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False,
                                              "shape": shape})
    return buf.getvalue()


def _header_member(parameters: list[dict], **extra) -> bytes:
    header = {"format": serialize.FORMAT, "version": serialize.VERSION, "config": {},
              "parameters": parameters, "metadata": {}, **extra}
    raw = json.dumps(header).encode()
    return _npy_header((len(raw),), "|u1") + raw


def test_inflate_bombs_are_refused_before_inflating(tmp_path) -> None:
    entry = {"name": "w", "shape": [10], "dtype": "float32", "sha256": "0" * 64}
    # the member's .npy header claims 1 GiB where the JSON header says 10 floats
    lying = _npz(tmp_path / "lying.npz", {
        "__numnet__.npy": _header_member([entry]),
        "w.npy": _npy_header((1 << 28,)) + bytes(64)})
    # 256 MiB of zeros (250 KB compressed), declared as such, where 10 floats are expected
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("__numnet__.npy", _header_member([entry]))
        with zf.open("w.npy", "w", force_zip64=True) as member:
            member.write(_npy_header((10,)))
            block = bytes(1 << 20)
            for _ in range(256):
                member.write(block)
    assert bomb.stat().st_size < 2 << 20
    # the JSON header itself asks for 16 GiB
    huge = _npz(tmp_path / "huge.npz", {
        "__numnet__.npy": _header_member([{**entry, "shape": [1 << 20, 1 << 12]}]),
        "w.npy": _npy_header((1 << 20, 1 << 12))})
    for path, message in ((lying, "has shape (268435456,), the header says (10,)"),
                          (bomb, "declares 268.4 MiB|declares 268435"),
                          (huge, "parameters[0].shape must be the shape of an array")):
        peak, raised = peak_bytes(lambda p=path: serialize.verify(p))
        assert isinstance(raised, WeightsFileError), raised
        assert path.name in str(raised)
        assert any(m in str(raised) for m in message.split("|")), str(raised)
        assert peak < 8 << 20, (path.name, peak)  # nothing inflated


def test_extra_or_missing_members_are_refused(tmp_path, weights) -> None:
    with zipfile.ZipFile(weights) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    extra = _npz(tmp_path / "extra.npz", {**members, "stowaway.npy": _npy_header((1,)) + bytes(4)})
    missing_name = next(n for n in members if n != "__numnet__.npy")
    missing = _npz(tmp_path / "missing.npz",
                   {n: d for n, d in members.items() if n != missing_name})
    not_npy = _npz(tmp_path / "notnpy.npz", {**members, "readme.txt": b"hi"})
    for path, message in ((extra, "do not match the header's list"),
                          (missing, "do not match the header's list"),
                          (not_npy, "is not an array")):
        with pytest.raises(WeightsFileError, match=message):
            serialize.load(path)


def test_weights_header_bombs_are_one_line(tmp_path, digit, capsys) -> None:
    deep = {"format": serialize.FORMAT}
    raw = json.dumps(deep)[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    path = tmp_path / "deep.npz"
    _npz(path, {"__numnet__.npy": _npy_header((len(raw),), "|u1") + raw.encode()})
    assert main(["predict", "--weights", str(path), str(digit)]) == 2
    one_line_error(capsys, "deep.npz", "nests")
    nan = tmp_path / "nan.npz"
    raw = b'{"format": "numnet-weights", "version": 1, "parameters": [], "metadata": {"a": NaN}}'
    _npz(nan, {"__numnet__.npy": _npy_header((len(raw),), "|u1") + raw})
    assert main(["predict", "--weights", str(nan), str(digit)]) == 2
    one_line_error(capsys, "nan.npz", "metadata.a is nan")


def test_zip_directory_of_a_million_members_is_refused_from_its_end_record(tmp_path) -> None:
    path = tmp_path / "many.npz"
    # an end-of-central-directory record announcing 60,000 members (the file holds none)
    path.write_bytes(b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, 60000, 60000, 1 << 21, 0, 0))
    with pytest.raises(WeightsFileError, match="announces 60000 members"):
        serialize.read_header(path)


@SOME
@given(st.data())
def test_damaged_weights_are_a_model_or_one_line(weights, tmp_path_factory, data) -> None:
    raw = bytearray(weights.read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        k = data.draw(st.integers(0, len(raw) - 1))
        raw[k] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    path = tmp_path_factory.mktemp("dmg") / "w.npz"
    path.write_bytes(bytes(raw[:cut]) if data.draw(st.booleans()) else bytes(raw))
    try:
        model = serialize.load(path)
    except WeightsFileError as exc:
        assert "\n" not in str(exc)
    else:  # a flipped bit the CRC and the SHA-256 missed is not possible: the file is intact
        assert dict(model.named_parameters())


# ------------------------------------------------------------------ images


def _vector(path: Path) -> np.ndarray:
    return predict.image_to_vector(path)


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path, weights, digit) -> None:
    eight = np.asarray(Image.open(digit), dtype=np.uint16)
    path = tmp_path / "digit16.png"
    Image.fromarray(eight * 257).save(path)  # 0..255 -> 0..65535, the same brightness
    assert Image.open(path).mode.startswith("I")
    np.testing.assert_array_equal(_vector(path), _vector(digit))
    a, b = predict.predict_files(weights, [path, digit], warn=None)
    assert a.label == b.label and np.allclose(a.probabilities, b.probabilities)


def test_transparent_backgrounds_are_composited_so_the_digit_shows(tmp_path, weights,
                                                                  digit) -> None:
    ink = np.asarray(Image.open(digit), dtype=np.uint8)  # white digit on black
    white_on_clear = tmp_path / "white.png"
    Image.fromarray(np.dstack([np.full_like(ink, 255)] * 3 + [ink]), "RGBA").save(white_on_clear)
    black_on_clear = tmp_path / "black.png"
    Image.fromarray(np.dstack([np.zeros_like(ink)] * 3 + [ink]), "RGBA").save(black_on_clear)
    black_on_white = tmp_path / "black_on_white.png"
    Image.fromarray(255 - ink).save(black_on_white)
    la = tmp_path / "la.png"
    Image.fromarray(np.dstack([np.full_like(ink, 255), ink]), "LA").save(la)
    reference = _vector(digit)
    for path in (white_on_clear, black_on_clear, black_on_white, la):
        np.testing.assert_allclose(_vector(path), reference, atol=1 / 255, err_msg=path.name)
    labels = {p.label for p in predict.predict_files(
        weights, [digit, white_on_clear, black_on_clear, la], warn=None)}
    assert len(labels) == 1


def test_fully_transparent_image_is_said_so(tmp_path, weights, capsys) -> None:
    path = tmp_path / "clear.png"
    Image.new("RGBA", (28, 28), (255, 255, 255, 0)).save(path)
    assert main(["predict", "--weights", str(weights), str(path)]) == 2
    one_line_error(capsys, "clear.png", "fully transparent")


def test_image_through_a_fifo_or_too_large(tmp_path, weights, capsys, monkeypatch) -> None:
    fifo = tmp_path / "digit.png"
    os.mkfifo(fifo)
    with no_hang(5):
        assert main(["predict", "--weights", str(weights), str(fifo)]) == 2
    one_line_error(capsys, "digit.png", "is not a regular file")
    monkeypatch.setattr(predict, "MAX_IMAGE_BYTES", 100)
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(big)
    assert main(["predict", "--weights", str(weights), str(big)]) == 2
    one_line_error(capsys, "big.png", "more than the 100 bytes")


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "I", "F", "I;16", "LA", "RGBA", "CMYK"])
def test_every_common_mode_reads_into_zero_one(tmp_path, digit, mode) -> None:
    img = Image.open(digit)
    if mode == "I;16":
        img = Image.fromarray(np.asarray(img, dtype=np.uint16) * 257)
    elif mode == "F":
        img = Image.fromarray(np.asarray(img, dtype=np.float32) / 255)
    else:
        img = img.convert(mode)
    path = tmp_path / ("d.tiff" if mode in ("F", "CMYK", "I") else "d.png")
    img.save(path)
    gray = predict.load_grayscale(path)
    assert gray.min() >= 0 and gray.max() <= 1 and gray.max() - gray.min() > 0.5


@SOME
@given(st.data())
def test_damaged_images_are_a_prediction_or_one_line(weights, digit, tmp_path_factory,
                                                     data) -> None:
    raw = bytearray(digit.read_bytes())
    for _ in range(data.draw(st.integers(1, 6))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    path = tmp_path_factory.mktemp("imgs") / "x.png"
    path.write_bytes(bytes(raw[:data.draw(st.integers(8, len(raw)))]))
    try:
        (p,) = predict.predict_files(weights, [path], warn=None)
    except DataError as exc:
        assert "\n" not in str(exc) and "x.png" in str(exc)
    else:
        assert 0 <= p.label <= 9 and math.isclose(sum(p.probabilities), 1, rel_tol=1e-6)


# ------------------------------------------------------------------ statistics


def test_two_seeds_give_an_interval_inside_zero_one() -> None:
    d = stats.describe_proportion([0.9712, 0.7])
    low, high = d["ci95"]
    assert 0.0 <= low <= d["mean"] <= high <= 1.0
    raw = stats.describe([0.9712, 0.7])  # the unbounded t-interval leaves [0, 1]
    assert raw["ci95"][1] > 1 and high == 1.0 and low == max(0.0, raw["ci95"][0])
    assert "intersected with [0, 1]" in d["interval"]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=12), st.sampled_from([0.8, 0.9, 0.95]))
def test_proportion_intervals_stay_in_the_domain(values, confidence) -> None:
    d = stats.describe_proportion(values, confidence)
    assert 0.0 <= d["mean"] <= 1.0
    if len(values) >= 2:
        low, high = d["ci95"]
        raw = stats.describe(values, confidence)["ci95"]
        assert 0.0 <= low <= d["mean"] <= high <= 1.0
        assert low == max(0.0, raw[0]) and high == min(1.0, raw[1])


def test_out_of_domain_values_are_a_bug_not_a_statistic() -> None:
    with pytest.raises(ValueError, match="outside"):
        stats.describe_proportion([0.5, 7.5])
    with pytest.raises(ValueError, match="outside"):
        stats.describe_proportion([0.5, float("nan")])
