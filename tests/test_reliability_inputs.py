"""Hostile files given to ``predict`` and ``report``: image bombs, uniform images, diverged or
malformed weights, hand-edited results.json, markup in every field of the report. Each is one
line on stderr and exit 2 (or 1), never a traceback (tiny data, in process)."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from PIL import Image
from test_reliability_cli import one_line_error
from tiny_mnist import TINY_PROTOCOL, tiny_datasets

import numnet.lab.data
from numnet.core import models, serialize
from numnet.core.errors import WeightsFileError
from numnet.lab.cli import main

DATA = tiny_datasets()


@pytest.fixture(autouse=True)
def tiny(monkeypatch):
    monkeypatch.setattr(numnet.lab.data, "load", lambda *a, **k: DATA)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "model1.npz"
    serialize.save(path, models.build("model1", seed=0))
    return path


@pytest.fixture(scope="module")
def digit(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "digit.png"
    Image.fromarray(np.round(DATA.test.images[5].reshape(28, 28) * 255).astype(np.uint8)).save(
        path)
    return path


# ------------------------------------------------------------------ predict


@pytest.mark.parametrize(("side", "message"), [
    (20000, "image is too large to decode"),  # 400 megapixels: PIL's own cap, in the header
    (5000, "image is 5000x5000 pixels"),  # 25 megapixels: numnet's cap, before decoding
])
def test_image_bomb_is_refused_from_its_header(tmp_path, weights, capsys, side,
                                               message) -> None:
    bomb = tmp_path / "bomb.png"
    Image.new("1", (side, side)).save(bomb)  # a few KB on disk
    assert bomb.stat().st_size < 200_000
    assert main(["predict", "--weights", str(weights), str(bomb)]) == 2
    one_line_error(capsys, f"bomb.png: {message}", "scale it down")


@pytest.mark.parametrize("side", [28, 100])
@pytest.mark.parametrize("level", [0, 128, 255])
def test_uniform_images_are_refused_at_every_size(tmp_path, weights, capsys, side,
                                                  level) -> None:
    blank = tmp_path / "blank.png"
    Image.new("L", (side, side), level).save(blank)
    assert main(["predict", "--weights", str(weights), str(blank)]) == 2
    one_line_error(capsys, "blank.png: the image is uniform")


def test_diverged_weights_are_refused_and_json_stays_valid(tmp_path, digit, capsys) -> None:
    model = models.build("model1", seed=0)
    next(iter(model.named_parameters()))[1].value[0, 0] = np.nan
    nan_weights = serialize.save(tmp_path / "nan.npz", model)
    for extra in ([], ["--json"]):
        assert main(["predict", *extra, "--weights", str(nan_weights), str(digit)]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""  # no "probability nan", no NaN in JSON
        assert "holds NaN or infinite values" in captured.err
        assert len(captured.err.strip().splitlines()) == 1


def rewrite_header(src, dst, change) -> None:
    """A copy of the weights file ``src`` whose JSON header went through ``change``."""
    with np.load(src, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(arrays[serialize.HEADER_KEY].tobytes())
    change(header)
    arrays[serialize.HEADER_KEY] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(dst, **arrays)


@pytest.mark.parametrize("change", [
    lambda h: h.__setitem__("parameters", [{"shape": [1]}]),
    lambda h: h.__setitem__("parameters", "all of them"),
    lambda h: h["parameters"][0].__setitem__("shape", "3x3"),
    lambda h: h["parameters"][0].__setitem__("shape", [-1]),
    lambda h: h["parameters"][0].pop("sha256"),
    lambda h: h["parameters"].__setitem__(0, 7),
    lambda h: h.__setitem__("config", [1, 2]),
], ids=["no-name", "not-a-list", "shape-text", "shape-negative", "no-sha", "entry-int",
        "config-list"])
def test_malformed_weights_header_is_a_weights_error(tmp_path, weights, digit, capsys,
                                                     change) -> None:
    bad = tmp_path / "bad.npz"
    rewrite_header(weights, bad, change)
    with pytest.raises(WeightsFileError, match="bad.npz: header"):
        serialize.load(bad)
    assert main(["predict", "--weights", str(bad), str(digit)]) == 2
    one_line_error(capsys, "bad.npz")


def test_truncated_weights_file(tmp_path, weights, capsys, digit) -> None:
    cut = tmp_path / "cut.npz"
    cut.write_bytes(weights.read_bytes()[:300])
    assert main(["predict", "--weights", str(cut), str(digit)]) == 2
    one_line_error(capsys, "cut.npz", "corrupted or truncated")
    assert not zipfile.is_zipfile(cut)


# ------------------------------------------------------------------ report


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A finished quick reproduce (model 2 only) to edit."""
    root = tmp_path_factory.mktemp("r")
    proto = root / "p.toml"
    proto.write_text(TINY_PROTOCOL)
    out = root / "out"
    mp = pytest.MonkeyPatch()
    mp.setattr(numnet.lab.data, "load", lambda *a, **k: DATA)
    try:
        assert main(["reproduce", "--protocol", str(proto), "--quick", "--models", "2,4",
                     "--out", str(out), "--quiet", "--threads", "1"]) == 0
    finally:
        mp.undo()
    return out


def edited(folder, tmp_path, change):
    doc = json.loads((folder / "results.json").read_text())
    change(doc)
    out = tmp_path / "edited"
    out.mkdir()
    (out / "results.json").write_text(json.dumps(doc))
    return out


@pytest.mark.parametrize(("change", "where"), [
    (lambda d: d["runs"].clear(), "runs must be a non-empty list"),
    (lambda d: d["runs"][0].pop("samples"), "runs[0].samples is missing"),
    (lambda d: d["runs"][0]["spec"].__setitem__("batch_size", 0), "runs[0].spec.batch_size"),
    (lambda d: d["runs"][0]["spec"].__setitem__("batch_size", "100"), "runs[0].spec.batch_size"),
    (lambda d: d["runs"][1]["spec"].__setitem__("epochs", 10**9), "runs[1].spec.epochs"),
    (lambda d: d["runs"][0]["test_accuracy"].append(0.5), "runs[0].test_accuracy"),
    (lambda d: d["runs"][0]["train_loss"].__setitem__(0, "low"), "runs[0].train_loss[0]"),
    (lambda d: d["protocol"].pop("seed"), "protocol.seed is missing"),
    (lambda d: d["protocol"].__setitem__("eval_every", "often"), "protocol.eval_every"),
    (lambda d: d.__setitem__("protocol", None), "protocol must be a JSON object"),
    (lambda d: d["runs"][0].__setitem__("status", "fine"), "runs[0].status"),
    (lambda d: d["protocol"].__setitem__("seed", "<script>"), "protocol.seed must be an int"),
    (lambda d: d["runs"][0]["spec"].__setitem__("model", "<script>"), "runs[0].spec.model"),
    (lambda d: d["runs"][0]["spec"].__setitem__("lr", float("inf")), "runs[0].spec.lr"),
    (lambda d: d["runs"][0].pop("final_test_accuracy"), "runs[0].final_test_accuracy is miss"),
    (lambda d: d["runs"][0]["final_weights"].pop("update"), "runs[0].final_weights.update is"),
    # the run id names figures/<run id>.*.png: markup or a path is refused, not escaped
    (lambda d: d["runs"][0].__setitem__("run_id", "<script>"), "runs[0].run_id must be a file"),
    (lambda d: d["runs"][0].__setitem__("run_id", "../../x"), "runs[0].run_id must be a file"),
], ids=["runs-empty", "no-samples", "batch-0", "batch-text", "epochs-1e9", "curve-length",
        "loss-text", "no-seed", "eval-every-text", "protocol-null", "status", "seed-markup",
        "model-markup", "lr-inf", "no-final-accuracy", "no-final-update", "run-id-markup",
        "run-id-traversal"])
def test_report_on_a_hand_edited_results_file(folder, tmp_path, capsys, change, where) -> None:
    out = edited(folder, tmp_path, change)
    assert main(["report", str(out)]) == 2
    one_line_error(capsys, "results.json: " + where)


FIELDS = [
    ("protocol", "name"), ("protocol", "description"), ("protocol", "source"),
    ("protocol", "hash"), ("protocol", "text"), ("protocol", "dtype"), ("device",),
    ("runs", 0, "divergence_reason"), ("runs", 0, "spec", "reduction"),
    ("runs", 0, "spec", "bias_init"), ("runs", 0, "spec", "conv_activation"),
    ("runs", 0, "spec", "weight_init"), ("data", "fingerprint"), ("data", "dataset"),
    ("timing", "started_at"), ("environment", "numnet"), ("environment", "python"),
]


def test_report_escapes_every_field(folder, tmp_path, capsys) -> None:
    script = "<script>alert(1)</script>$x^$"

    def change(doc):
        for path in FIELDS:
            target = doc
            for key in path[:-1]:
                target = target.setdefault(key, {}) if isinstance(key, str) else target[key]
            target[path[-1]] = script

    out = edited(folder, tmp_path, change)
    assert main(["report", str(out)]) == 0, capsys.readouterr().err
    page = (out / "report.html").read_text()
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
