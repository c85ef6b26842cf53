"""Outputs that tell the truth at a glance: the final weights are evaluated, the training loss
shows in the progress, verdicts appear in the end-of-run line, the terminal table, results.json
and results.csv, the figures mark failed runs on a shared scale, predict warns about weights of
a failed run."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from test_report import run_dict, synthetic_doc
from tiny_mnist import TINY_PROTOCOL, tiny_datasets

from numnet.core import serialize
from numnet.core.errors import WeightsFileError
from numnet.lab import experiments, plots, predict, report, training
from numnet.lab.progress import InFlight, ProgressDisplay, describe_run
from numnet.lab.results import CSV_COLUMNS, results_csv
from numnet.lab.training import Reporter, RunResult, RunSpec, train_run

DATA = tiny_datasets()  # 550 train, 200 test


def tiny_spec(**kw) -> RunSpec:
    base = dict(model="model1", epochs=2, lr=0.01, batch_size=10, eval_every=10,
                eval_train_examples=110, eval_test_examples=200, eval_batch_size=64, seed=3)
    return RunSpec(**{**base, **kw})


# ----------------------------------------------------------------------------- final weights


def test_final_weights_are_those_saved_and_evaluated_after_the_last_update(tmp_path) -> None:
    result = train_run(tiny_spec(), DATA)  # 111 updates, curve points every 10: last at 110
    fw = result.final_weights
    assert result.updates == 111 and fw["update"] == 111
    assert result.samples[-1] == 110 * 10  # the protocol's curve is unchanged
    path = tmp_path / "w.npz"
    serialize.save(path, result.model)
    saved = serialize.load(path)
    tr_acc, tr_loss = training.evaluate(saved, DATA.train.images[:110], DATA.train.labels[:110],
                                        64)
    te_acc, te_loss = training.evaluate(saved, DATA.test.images, DATA.test.labels, 64)
    assert (fw["train_accuracy"], fw["test_accuracy"]) == (tr_acc, te_acc)
    assert fw["train_loss"] == pytest.approx(tr_loss, rel=1e-6)
    assert fw["test_loss"] == pytest.approx(te_loss, rel=1e-6)
    # the last curve point is another measurement (one update earlier), kept under its name
    assert result.to_dict()["final_test_accuracy"] == result.test_accuracy[-1]
    assert result.to_dict()["final_weights"] == fw
    assert RunResult.from_dict(result.to_dict()).final_weights == fw


def test_final_weights_reuse_the_last_point_when_it_is_the_last_update() -> None:
    result = train_run(tiny_spec(epochs=1, eval_every=8), DATA)  # 56 updates, 56 % 8 == 0
    fw = result.final_weights
    assert fw["update"] == 56 and result.samples[-1] == 560
    assert fw["test_accuracy"] == result.test_accuracy[-1]
    assert fw["train_loss"] == result.train_loss[-1]


def test_a_diverged_run_has_no_final_weights_evaluation() -> None:
    result = train_run(tiny_spec(lr=1e38), DATA)
    assert result.diverged and result.final_weights is None


# ----------------------------------------------------------------------------- progress


def test_progress_reports_the_training_loss_per_example() -> None:
    """The first report covers the first batch only: its loss per example is the same for a
    summed and a mean loss (same weights, same batch), close to ln 10 at initialisation."""
    first = {}
    for reduction in ("sum", "mean"):
        seen = []
        train_run(tiny_spec(reduction=reduction, epochs=1), DATA,
                  plugins=[Reporter(seen.append, every=1)])
        assert seen[0].update == 1 and seen[-1].done
        first[reduction] = seen[0].train_loss
    assert first["sum"] == pytest.approx(first["mean"], rel=1e-5)
    assert abs(first["sum"] - math.log(10)) < 1.0


def test_log_lines_show_the_loss_and_the_end_line_the_verdict() -> None:
    lines: list[str] = []
    display = ProgressDisplay("log", lines.append, total_updates=111, log_every_s=0.0)
    spec = tiny_spec()
    display.start_run("[1/1]", spec, 111)
    result = train_run(spec, DATA, plugins=[Reporter(display.update)])
    display.end_run("[1/1]", result, 111)
    assert any("loss/example " in line for line in lines[1:-1])
    end = lines[-1]
    verdict = report.diagnose(result.to_dict())
    assert end.startswith(f"[1/1] {spec.run_id}: {verdict.summary()};")
    fw = result.final_weights
    assert f"final weights (update 111): train {fw['train_accuracy']:.4f}" in end
    assert verdict.reasons[verdict.verdict] in end


def test_end_line_of_a_run_at_chance_says_not_learning() -> None:
    chance = [0.1 + (0.01 if k % 2 else -0.01) for k in range(20)]
    record = run_dict(chance, chance)
    line = describe_run(RunResult.from_dict(record))
    assert line.startswith("NOT LEARNING;") and "ln 10 = 2.3026" in line
    assert "final weights (update 4001): train 0.1110" in line
    record["final_weights"] = None  # a record made before the final-weights evaluation
    assert "last curve point: train 0.1100" in describe_run(RunResult.from_dict(record))


def test_a_run_in_flight_says_where_it_is() -> None:
    running = InFlight("model4-setting3", 4125, 16501, 0.9812, 25.0, 1)
    assert running.describe() == ("model4-setting3 4125/16501 (165 upd/s, 1 thread, "
                                  "test 0.9812)")
    assert running.short() == "model4-setting3 25%"
    one = InFlight("model2-setting1", 100, 1101, None, 0.5, 2)
    assert one.describe() == "model2-setting1 100/1101 (200 upd/s, 2 threads)"
    assert InFlight("model1-setting1", 0, 1101, None, 0.0, 1).short() == "model1-setting1 0%"


# ----------------------------------------------------------------------------- a reproduce


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    proto = tmp_path_factory.mktemp("proto") / "tiny.toml"
    proto.write_text(TINY_PROTOCOL)
    where = tmp_path_factory.mktemp("outputs") / "out"
    experiments.reproduce(proto, DATA, where, models=["model1"], progress="none",
                          log=lambda s: None)
    return where


def test_results_json_has_a_diagnosis_and_final_weights_per_run(out) -> None:
    doc = json.loads((out / "results.json").read_text())
    expected = report.diagnose_all(doc["runs"])
    for run in doc["runs"]:
        d = run["diagnosis"]
        assert d["labels"] == expected[run["run_id"]].labels
        assert len(d["reasons"]) == len(d["labels"]) and all(d["reasons"])
        assert "final_test_accuracy" in run and "test_accuracy" in run  # existing keys kept
    diverged = next(r for r in doc["runs"] if r["run_id"] == "model1-setting3")
    assert diverged["diagnosis"]["verdict"] == "diverged" and diverged["final_weights"] is None
    ok = next(r for r in doc["runs"] if r["run_id"] == "model1-setting1")
    assert ok["final_weights"]["update"] == ok["updates"] == 111


def test_results_csv_carries_diagnosis_and_final_weights_columns(out) -> None:
    doc = json.loads((out / "results.json").read_text())
    rows = list(csv.DictReader(io.StringIO((out / "results.csv").read_text())))
    assert tuple(rows[0]) == CSV_COLUMNS
    run = next(r for r in doc["runs"] if r["run_id"] == "model1-setting1")
    mine = [r for r in rows if r["run_id"] == "model1-setting1"]
    assert len(mine) == run["evaluations"]
    assert {r["diagnosis"] for r in mine} == {"; ".join(run["diagnosis"]["labels"])}
    assert float(mine[0]["final_weights_test_accuracy"]) == run["final_weights"]["test_accuracy"]
    assert mine[0]["final_weights_update"] == "111"
    assert [r["diagnosis"] for r in rows if r["run_id"] == "model1-setting3"][0] == "diverged"
    assert results_csv(doc) == (out / "results.csv").read_text()


def test_report_and_terminal_table_name_the_final_weights(out) -> None:
    html = (out / "report.html").read_text()
    assert "final weights" in html and "Last curve point (update" in html
    assert "docs/protocol.md in the numnet repository" in html
    assert 'class="zoom"' in html  # the figures open full size on click
    md = (out / "report.md").read_text()
    assert "Final weights (after update 111)" in md and "Last curve point (update 110)" in md
    text = report.format_summary(json.loads((out / "results.json").read_text()))
    assert "diverged@" in text and text.endswith("of the final weights (after the last update)")


def test_weights_header_has_status_and_diagnosis_and_predict_warns(out, tmp_path) -> None:
    doc = json.loads((out / "results.json").read_text())
    for run in doc["runs"]:
        meta = serialize.read_header(out / "weights" / f"{run['run_id']}.npz")["metadata"]
        assert meta["status"] == run["status"]
        assert meta["diagnosis"] == report.diagnose(run).labels
    assert predict.weights_warning(out / "weights" / "model1-setting1.npz") is None
    line = predict.weights_warning(out / "weights" / "model1-setting3.npz")
    assert line is not None and "\n" not in line and "diverged" in line
    warned: list[str] = []
    png = tmp_path / "digit.png"
    from PIL import Image

    Image.fromarray((DATA.test.images[0].reshape(28, 28) * 255).astype(np.uint8)).save(png)
    # the warning comes first; then its outputs, not finite, are refused (never "nan" printed)
    with pytest.raises(WeightsFileError, match="outputs are not finite"):
        predict.predict_files(out / "weights" / "model1-setting3.npz", [png],
                              warn=warned.append)
    assert warned == [line]


def test_predict_reads_the_run_record_when_the_header_has_no_diagnosis(out, tmp_path) -> None:
    """An older weights file (no diagnosis in its header) beside a run record at chance."""
    (tmp_path / "weights").mkdir()
    (tmp_path / "runs").mkdir()
    model = serialize.load(out / "weights" / "model1-setting1.npz")
    serialize.save(tmp_path / "weights" / "old.npz", model, metadata={"status": "ok"})
    assert predict.weights_warning(tmp_path / "weights" / "old.npz") is None
    chance = [0.1 + (0.01 if k % 2 else -0.01) for k in range(20)]
    (tmp_path / "runs" / "old.json").write_text(json.dumps({"result": run_dict(chance, chance)}))
    line = predict.weights_warning(tmp_path / "weights" / "old.npz")
    assert line is not None and "did not learn" in line


# ----------------------------------------------------------------------------- figures


def figure_doc() -> dict:
    doc = synthetic_doc()
    chance = [0.1 + (0.01 if k % 2 else -0.01) for k in range(20)]
    doc["runs"][0] = run_dict(chance, chance, model="model1", setting=1, epochs=5, lr=0.0001)
    return doc


def test_learning_curves_share_the_scale_and_mark_failed_panels() -> None:
    doc = figure_doc()
    labels = {rid: d.labels for rid, d in report.diagnose_all(doc["runs"]).items()}
    fig = plots.learning_curves_figure(doc, labels)
    axes = np.array(fig.axes).reshape(3, 4)
    assert fig.get_size_inches().tolist() == [22, 12]
    assert fig._suptitle.get_text() == plots.LEARNING_CURVES_TITLE
    runs = {(r["spec"]["model"], r["spec"]["setting"]): r for r in doc["runs"]}
    for col in range(4):
        for row in range(3):
            ax, run = axes[row][col], runs[(f"model{col + 1}", row + 1)]
            spec = run["spec"]
            assert ax.get_title() == f"Model {col + 1}"
            assert ax.get_ylim() == (0.0, 1.0)
            assert ax.get_xlabel() == "Number of samples processed"
            chance = [ln for ln in ax.lines if ln.get_gid() == "chance"]
            assert len(chance) == 1 and list(chance[0].get_ydata()) == [0.1, 0.1]
            assert chance[0].get_linestyle() == "--"
            epochs = [ln.get_xdata()[0] for ln in ax.lines if ln.get_gid() == "epoch"]
            assert epochs == [55000 * k for k in range(1, spec["epochs"] + 1)]
            texts = {t.get_gid(): t.get_text() for t in ax.texts}
            assert texts["setting"].startswith(f"({spec['epochs']}, {spec['lr']:g})")
            assert ", ".join(labels[run["run_id"]]) in texts["setting"]
            failed = "failure" in texts
            assert failed == (run["status"] == "diverged" or run["run_id"] == "model1-setting1")
    nl = axes[0][0]
    assert "NOT LEARNING" in {t.get_gid(): t.get_text() for t in nl.texts}["failure"]
    assert nl.get_facecolor()[:3] == pytest.approx(
        tuple(int(plots.NOT_LEARNING_FILL[k:k + 2], 16) / 255 for k in (1, 3, 5)))
    dv = axes[2][1]  # model2 setting 3 diverged
    assert "DIVERGED" in {t.get_gid(): t.get_text() for t in dv.texts}["failure"]
    ok = axes[0][3]
    assert ok.get_facecolor()[:3] == (1.0, 1.0, 1.0)


def test_summary_table_figure_shows_setting_and_marks_failed_cells() -> None:
    doc = figure_doc()
    labels = {rid: d.labels for rid, d in report.diagnose_all(doc["runs"]).items()}
    fig = plots.summary_table_figure(doc, labels)
    ax = fig.axes[0]
    assert ax.get_title() == plots.SUMMARY_TITLE
    cells = ax.tables[0].get_celld()
    nl = cells[(1, 1)]  # Model 1, setting 1: at chance
    assert nl.get_text().get_text().startswith("NOT LEARNING")
    assert "(5, 0.0001)" in nl.get_text().get_text()
    assert nl.get_facecolor()[:3] == pytest.approx(
        tuple(int(plots.NOT_LEARNING_FILL[k:k + 2], 16) / 255 for k in (1, 3, 5)))
    assert cells[(2, 3)].get_text().get_text().startswith("DIVERGED @ 3")
    run = next(r for r in doc["runs"] if r["run_id"] == "model4-setting2")
    assert cells[(4, 2)].get_text().get_text() == (
        f"{run['final_weights']['test_accuracy']:.4f}\n(10, 0.001)")
