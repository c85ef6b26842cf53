"""``numnet compare`` on a tiny protocol and tiny synthetic digits: the float64 agreement, the
fields of compare.json, the figure and the Q2 report section; failing loudly on a real
disagreement; the one-line error without PyTorch."""

from __future__ import annotations

import builtins
import json
import struct
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from folder_support import held_by_another_process
from tiny_mnist import tiny_datasets

import numnet
import numnet.lab.data
import numnet.lab.report
from numnet.lab.cli import main

# model1: a plain run; model2 at lr 2 (summed loss): a run that amplifies rounding (a 1e-16
# difference passes 1e-12 after ~20 updates), so the control + lockstep path is exercised;
# model4 (mean loss): the CNN, with the channels_last timing run.
TINY_PROTOCOL = """
name = "tiny"
seed = 5
[training]
batch_size = 50
eval_every = 4
eval_train_examples = 110
eval_test_examples = 200
eval_batch_size = 100
[models.model1]
settings = [ { epochs = 2, lr = 0.05 } ]
[models.model2]
settings = [ { epochs = 4, lr = 2.0 } ]
[models.model4]
reduction = "mean"
settings = [ { epochs = 1, lr = 0.1 } ]
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One `numnet compare` through the CLI on tiny data; its output folder and stdout."""
    pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("compare")
    protocol = root / "tiny.toml"
    protocol.write_text(TINY_PROTOCOL)
    data = tiny_datasets(n_train=550, n_validation=50, n_test=200)
    out = root / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(numnet.lab.data, "load", lambda *a, **k: data)
        code = main(["compare", "--protocol", str(protocol), "--out", str(out), "--quiet"])
    return {"code": code, "out": out, "data": data, "protocol": protocol}


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_float64_agreement_and_json_fields(tiny: dict[str, Any]) -> None:
    from numnet.lab import compare
    from numnet.lab.training import child_seeds, expected_updates

    assert tiny["code"] == 0
    doc = compare.load_compare(tiny["out"])
    assert doc["complete"] is True
    assert [r["run_id"] for r in doc["runs"]] == [
        "model1-setting1", "model2-setting1", "model4-setting1"]
    assert doc["environment"]["torch"]["version"]
    assert doc["summary"]["agreement_passed"] is True
    n_train = tiny["data"].train.num_examples
    for r in doc["runs"]:
        ag = r["agreement"]
        assert ag["dtype"] == "float64" and ag["passed"] is True
        assert ag["updates"] == min(200, expected_updates(n_train, 50, r["epochs"]))
        assert ag["compared_updates"] == ag["updates"]
        n, t = r["runs"]["numnet"], r["runs"]["pytorch"]
        # Same initial weights and batch order: the same seeds, and float64 losses that agree.
        assert (r["init_seed"], r["shuffle_seed"]) == child_seeds(r["seed"])
        assert n["init_seed"] == t["init_seed"] and n["shuffle_seed"] == t["shuffle_seed"]
        assert n["updates"] == t["updates"] == expected_updates(n_train, 50, r["epochs"])
        acc = r["accuracy"]
        assert acc["numnet_final_test"] == n["test_accuracy"][-1]
        assert acc["pytorch_final_test"] == t["test_accuracy"][-1]
        assert acc["numnet_best_test"] == max(n["test_accuracy"])
        assert acc["max_gap_test"] == max(
            abs(a - b) for a, b in zip(n["test_accuracy"], t["test_accuracy"], strict=True))
        tm = r["time"]
        assert tm["ratio_pytorch_over_numnet"] == pytest.approx(tm["pytorch_s"] / tm["numnet_s"])
        assert (tm["pytorch_channels_last_s"] is not None) == (r["model"] == "model4")
        assert r["stability"]["numnet"]["status"] == n["status"]
        assert r["diagnosis"]["numnet"]["verdict"] in numnet.lab.report.VERDICT_ORDER

    plain, chaotic, cnn = doc["runs"]
    # A plain run agrees to rounding over every update (no control needed).
    assert plain["agreement"]["max_rel_loss_diff"] < 1e-9
    assert "lockstep_max_rel_loss_diff" not in plain["agreement"]
    assert cnn["agreement"]["max_rel_loss_diff"] < 1e-9
    assert cnn["runs"]["pytorch_channels_last"]["test_accuracy"]
    # model2 at lr 2 amplifies rounding: numnet drifts from itself (rows reversed) as far as
    # from PyTorch, while before the horizon and in lockstep the two agree to rounding.
    ch = chaotic["agreement"]
    assert ch["max_rel_loss_diff"] > 1e-9
    assert ch["control_max_rel_loss_diff"] > 1e-9
    assert 5 < ch["horizon"] < ch["compared_updates"]
    assert ch["max_rel_loss_diff_within_horizon"] < 1e-9
    assert ch["lockstep_max_rel_loss_diff"] < 1e-12
    assert ch["lockstep_max_rel_param_diff"] < 1e-12


def test_outputs_figure_and_q2_section(tiny: dict[str, Any]) -> None:
    from numnet.lab import compare

    out = tiny["out"]
    assert _png_size(out / "compare_curves.png") == (2200, 1200)  # the protocol's 22 x 12 in
    text = (out / "compare.html").read_text()

    class Collect(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tags: list[str] = []
            self.imgs: list[str] = []
            self.h3: list[str] = []
            self._in_h3 = False

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.tags.append(tag)
            self._in_h3 = tag == "h3"
            if tag == "img":
                self.imgs.append(dict(attrs)["src"] or "")

        def handle_data(self, data: str) -> None:
            if self._in_h3:
                self.h3.append(data)
                self._in_h3 = False

    parsed = Collect()
    parsed.feed(text)
    assert "section" in parsed.tags and "table" in parsed.tags
    assert parsed.imgs and all(s.startswith("data:image/png;base64,") for s in parsed.imgs)
    for title in ("Runtime", "Final performance", "Stability of training",
                  "Which runs under-fit, which over-fit"):
        assert title in parsed.h3
    doc = compare.load_compare(out)
    for r in doc["runs"]:
        assert r["run_id"] in text
    # Statements carry their numbers: the totals and the chaotic run's control figure.
    s = doc["summary"]
    assert f"numnet {s['numnet_s']:.1f} s, PyTorch {s['pytorch_s']:.1f} s" in text
    assert f"{doc['runs'][1]['agreement']['control_max_rel_loss_diff']:.1e}" in text
    answers = compare.q2_answers(doc)
    assert all(answers[k] for k in ("runtime", "performance", "stability", "fit", "agreement"))
    assert any("Rule" in a for a in answers["fit"])
    # The fragment embeds elsewhere; the Markdown twin holds the same table.
    assert compare.q2_section_html(doc).startswith('<section class="q2"')
    md = (out / "compare.md").read_text()
    assert "| model4-setting1 |" in md and "compare_curves.png" in md
    # The terminal table printed by the CLI: a header and one line per run, then its legend,
    # all within 100 columns, even with the widest cells (a long run, both ratios, FAIL).
    lines = compare.format_table(doc).splitlines()
    assert [line.split()[0] for line in lines[1:len(doc["runs"]) + 1]] == [
        r["run_id"].replace("-setting", "-s") for r in doc["runs"]]
    assert "compare.md" in lines[-1] and max(map(len, lines)) <= 100
    wide = {**doc, "runs": [{**r, "epochs": 40, "lr": 0.00012345,
                             "time": {**r["time"], "numnet_s": 12345.6, "pytorch_s": 9876.5,
                                      "ratio_channels_last_over_numnet": 12.34},
                             "agreement": {"max_rel_loss_diff": 1e-300, "passed": False},
                             "stability": {"numnet": {"status": "diverged",
                                                      "diverged_at_update": 21001},
                                           "pytorch": {"status": "diverged",
                                                       "diverged_at_update": 21001}}}
                            for r in doc["runs"]]}
    assert max(map(len, compare.format_table(wide).splitlines())) <= 100


def test_a_real_disagreement_fails_loudly(
    tiny: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    torch = pytest.importorskip("torch")
    from numnet.core import runtime
    from numnet.lab import compare, reference_torch
    from numnet.lab.training import RunSpec

    # A subtle bug in the reference: label smoothing of 1e-7 changes the loss by ~1e-7.
    monkeypatch.setattr(
        reference_torch, "loss_function",
        lambda reduction: torch.nn.CrossEntropyLoss(reduction=reduction, label_smoothing=1e-7))
    data = tiny["data"]
    with runtime.threads(1):
        # Caught at once in a plain run, and in the rounding-amplifying one despite its control.
        for lr, model in ((0.05, "model1"), (2.0, "model2")):
            spec = RunSpec(model=model, epochs=4, lr=lr, batch_size=50, seed=2)
            ag = compare.float64_agreement(spec, data.train, 40)
            assert not ag["passed"]
            assert ag["max_rel_loss_diff"] > 1e-9
    monkeypatch.setattr(numnet.lab.data, "load", lambda *a, **k: data)
    out = tiny["out"].parent / "broken"
    code = main(["compare", "--protocol", str(tiny["protocol"]), "--models", "1",
                 "--out", str(out), "--quiet", "--agreement-updates", "10"])
    err = capsys.readouterr().err
    assert code == 1
    assert "disagree in float64" in err and "model1-setting1" in err
    doc = json.loads((out / "compare.json").read_text())  # the evidence is still written
    assert doc["summary"]["agreement_failed_runs"] == ["model1-setting1"]


def test_missing_torch_is_one_line_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_import = builtins.__import__

    def no_torch(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    assert main(["compare", "--quick"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith("numnet: error:") and 'pip install "numnet[reference]"' in err


def test_numnet_imports_without_torch() -> None:
    # compare and reference_torch import torch only inside functions.
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None; import numnet.lab.compare, "
            "numnet.lab.reference_torch, numnet.lab.cli.compare; "
            "from numnet.lab.cli import build_parser; build_parser(); print('ok')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_a_folder_in_use_is_refused_before_anything_is_written(
    tiny: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two compares into one folder never mix: the second is one line naming the holder's
    pid, exit 2, and nothing of it lands in the folder (not even its protocol.toml)."""
    out = tmp_path / "held"
    out.mkdir()
    with held_by_another_process(out) as holder:
        capsys.readouterr()
        code = main(["compare", "--protocol", str(tiny["protocol"]), "--models", "1",
                     "--out", str(out), "--quiet"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and "\n" not in err
        assert f"in use by another numnet process (pid {holder.pid})" in err
        assert sorted(p.name for p in out.iterdir()) == [".numnet.lock"]
