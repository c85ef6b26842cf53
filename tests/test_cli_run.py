"""numnet train / reproduce / report / predict from the command line (tiny data, in process)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import TINY_DATA as DATA
from PIL import Image
from tiny_mnist import TINY_PROTOCOL

from numnet.core import backend, runtime
from numnet.lab import experiments
from numnet.lab.cli import build_parser, common, main

pytestmark = pytest.mark.usefixtures("tiny_data")  # conftest: tiny digits, not MNIST


def test_help_lists_the_commands(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("reproduce", "train", "report", "predict"):
        assert command in out
    assert "docs/protocol.md" in out  # the epilog says where the protocol is written down


def test_reproduce_help_points_to_the_protocol_document(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["reproduce", "--help"])
    assert "docs/protocol.md" in " ".join(capsys.readouterr().out.split())


def test_reproduce_report_and_resume(proto, tmp_path, capsys, tiny_data) -> None:
    out = tmp_path / "out"
    argv = ["reproduce", "--protocol", str(proto), "--out", str(out), "--models", "1",
            "--quiet", "--data-dir", str(tmp_path), "--threads", "1"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "Final test accuracy, protocol tiny:" in captured.out
    assert "Model 1" in captured.out and "diverged@2" in captured.out
    # log lines, one per finished run ([k/3]: the k-th to finish, on worker processes)
    assert re.search(r"\[\d/3\] model1-setting3: DIVERGED at update 2", captured.err)
    assert tiny_data[-1][1]["data_dir"] == str(tmp_path)
    for name in ("results.json", "report.html", "learning_curves.png", "summary_table.png"):
        assert (out / name).is_file()
    env = json.loads((out / "results.json").read_text())["environment"]
    pools = env["blas"]["threadpools"]
    assert pools and {p["num_threads"] for p in pools} == {1}  # --threads 1: BLAS too
    assert env["threads_setting"] == 1 and env["numnet_threads"] == 1
    # again: everything reused
    assert main(argv) == 0
    assert "(0 trained, 3 reused)" in capsys.readouterr().err
    # report rebuilds from results.json
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0
    assert str(out / "report.html") in capsys.readouterr().out
    assert (out / "report.html").is_file()


def test_reproduce_quick_is_labelled(proto, tmp_path, capsys) -> None:
    out = tmp_path / "q"
    before = runtime.get_threads()
    assert main(["reproduce", "--protocol", str(proto), "--out", str(out), "--models", "2",
                 "--quick", "--quiet"]) == 0
    assert "Final test accuracy (QUICK)" in capsys.readouterr().out
    doc = json.loads((out / "results.json").read_text())
    assert doc["label"] == "QUICK"
    # no --threads: the thread counts are left as they are, and recorded as such
    assert doc["environment"]["threads_setting"] is None
    assert doc["environment"]["numnet_threads"] == before == runtime.get_threads()


@pytest.mark.parametrize("command", [
    ["reproduce"], ["train", "--model", "1", "--epochs", "1", "--lr", "0.1"], ["compare"],
    ["sweep"]])
def test_one_threads_option_in_every_command(command, monkeypatch, capsys) -> None:
    """--threads N is parsed by reproduce, train, compare and sweep alike; --blas-threads is
    gone; a negative count is a one-line usage error before any work."""
    args = build_parser().parse_args([*command, "--threads", "3"])
    assert args.threads == 3 and common.threads(args) == 3
    assert common.threads(build_parser().parse_args([*command, "--threads", "0"])) is None
    with pytest.raises(SystemExit):
        build_parser().parse_args([*command, "--blas-threads", "1"])
    capsys.readouterr()
    monkeypatch.setattr(experiments, "reproduce", _must_not_run)
    monkeypatch.setattr(experiments, "train_one", _must_not_run)
    if command[0] == "compare":
        pytest.importorskip("torch")
    assert main([*command, "--threads", "-1"]) == 2
    assert "--threads must be >= 0, got -1" in capsys.readouterr().err


def _must_not_run(*args, **kwargs):
    raise AssertionError("ran despite a bad --threads")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["reproduce", "--models", "7"], "--models: unknown model '7'"),
        (["reproduce", "--protocol", "nonesuch"], "unknown protocol 'nonesuch'"),
        (["report", "/nonexistent/dir"], "is not a directory"),
        (["train", "--model", "9", "--epochs", "1", "--lr", "0.1"], "unknown model '9'"),
        (["train", "--model", "1", "--epochs", "0", "--lr", "0.1"], "--epochs must be positive"),
        (["train", "--model", "1", "--epochs", "1", "--lr", "-1"], "--lr must be positive"),
    ],
)
def test_usage_errors_exit_2_with_one_line(argv, message, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("numnet: error: ") and message in err
    assert err.count("\n") == 1


def test_bad_protocol_file_names_the_key(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY_PROTOCOL.replace("lr = 0.005", "lr = -0.005"))
    assert main(["reproduce", "--protocol", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: models.model2.settings[0].lr must be a positive" in err


def test_report_of_a_folder_without_results(tmp_path, capsys) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "no results.json and no run records" in capsys.readouterr().err


@pytest.mark.skipif(backend.cuda_available(), reason="CUDA is available here")
def test_cuda_unavailable_is_a_usage_error(capsys) -> None:
    assert main(["reproduce", "--device", "cuda"]) == 2
    assert "device 'cuda' requested but CuPy" in capsys.readouterr().err


def test_interrupt_exits_130(monkeypatch, capsys) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiments, "reproduce", interrupted)
    assert main(["reproduce"]) == 130
    assert "interrupted" in capsys.readouterr().err


TRAIN = ["train", "--model", "1", "--epochs", "2", "--batch-size", "10", "--eval-every", "10",
         "--eval-train-examples", "110", "--eval-test-examples", "200", "--quiet"]


def test_train_then_predict(tmp_path, capsys) -> None:
    out = tmp_path / "t"
    assert main([*TRAIN, "--lr", "0.01", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    weights = out / "weights" / "model1-e2-lr0.01.npz"
    assert weights.is_file() and f"weights: {weights}" in text
    record = json.loads((out / "runs" / "model1-e2-lr0.01.json").read_text())
    assert record["result"]["updates"] == 111 and record["result"]["evaluations"] == 11
    # predict a test sample rendered as a PNG
    x, label = DATA.test.images[5], int(DATA.test.labels[5].argmax())
    png = tmp_path / "digit.png"
    Image.fromarray(np.round(x.reshape(28, 28) * 255).astype(np.uint8)).save(png)
    assert main(["predict", "--weights", str(weights), str(png)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{png}: {label}  (probability ")
    assert len(lines[1].split()) == 20  # "0: p0 1: p1 ..."
    assert main(["predict", "--json", "--weights", str(weights), str(png), str(png)]) == 0
    objs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["class"] for o in objs] == [label, label]
    assert sum(objs[0]["probabilities"]) == pytest.approx(1.0)


def test_train_kernels_are_recorded_only_when_not_the_default(tmp_path, capsys) -> None:
    assert main([*TRAIN, "--lr", "0.01", "--out", str(tmp_path / "f")]) == 0
    assert main([*TRAIN, "--lr", "0.01", "--out", str(tmp_path / "p"), "--kernels", "plain"]) == 0
    capsys.readouterr()
    fast, plain = (json.loads((tmp_path / d / "runs" / "model1-e2-lr0.01.json").read_text())
                   for d in ("f", "p"))
    assert "kernels" not in fast["result"]["spec"]  # the records of default runs are unchanged
    assert plain["result"]["spec"]["kernels"] == "plain"
    assert plain["result"]["status"] == "ok" and plain["result"]["evaluations"] == 11
    with pytest.raises(SystemExit):  # argparse: not one of names.KERNELS
        main([*TRAIN, "--lr", "0.01", "--kernels", "quick"])
    assert "invalid choice: 'quick'" in capsys.readouterr().err


def test_train_divergence_exits_1(tmp_path, capsys) -> None:
    assert main([*TRAIN, "--lr", "1e38", "--out", str(tmp_path / "d")]) == 1
    assert "DIVERGED at update 2" in capsys.readouterr().out


def test_predict_bad_inputs(tmp_path, capsys) -> None:
    junk = tmp_path / "w.npz"
    junk.write_bytes(b"not a zip")
    png = tmp_path / "p.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(png)
    assert main(["predict", "--weights", str(junk), str(png)]) == 2
    assert str(junk) in capsys.readouterr().err
