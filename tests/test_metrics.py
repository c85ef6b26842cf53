"""Per-run metrics CSV (train, reproduce, sweep) and ``numnet report DIR`` on any folder of runs
(tiny synthetic data, in process)."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
from tiny_mnist import TINY_PROTOCOL, tiny_datasets, write_tiny_idx

import numnet.lab.data
from numnet.lab import protocol as protocol_mod
from numnet.lab import sweep
from numnet.lab.cli import main
from numnet.lab.metrics import METRICS_COLUMNS, metrics_csv, metrics_rows
from numnet.lab.training import RunSpec, train_run

DATA = tiny_datasets()
TRAIN = ["train", "--model", "1", "--epochs", "2", "--lr", "0.01", "--batch-size", "10",
         "--eval-every", "10", "--eval-train-examples", "110", "--eval-test-examples", "200",
         "--quiet"]


@pytest.fixture(autouse=True)
def tiny_data(monkeypatch):
    monkeypatch.setattr(numnet.lab.data, "load", lambda *a, **k: DATA)


def read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


def check_metrics_match(path, run, train_examples):
    """The CSV at ``path`` holds exactly the record's evaluations, two rows each."""
    header, rows = read_csv(path)
    assert tuple(header[:len(METRICS_COLUMNS)]) == METRICS_COLUMNS  # then the internals
    curve = [r for r in rows if r["point"] == "curve"]
    assert len(curve) == 2 * run["evaluations"]
    for k, samples in enumerate(run["samples"]):
        for split, row in zip(("train", "test"), curve[2 * k : 2 * k + 2], strict=True):
            assert row["split"] == split
            assert int(row["samples_seen"]) == samples
            assert int(row["update"]) * run["spec"]["batch_size"] == samples
            assert float(row["epoch"]) == pytest.approx(samples / train_examples, abs=1e-6)
            assert float(row["accuracy"]) == run[f"{split}_accuracy"][k]
            assert float(row["loss"]) == run[f"{split}_loss"][k]
    times = [float(r["wall_time"]) for r in curve[::2]]
    assert times == sorted(times) and all(t > 0 for t in times)
    assert not times or times[-1] <= run["wall_time"]
    final = [r for r in rows if r["point"] == "final"]
    if run.get("final_weights"):
        assert [r["split"] for r in final] == ["train", "test"]
        assert int(final[0]["update"]) == run["final_weights"]["update"]
    else:
        assert final == []
    return rows


def test_train_writes_a_metrics_csv_next_to_its_record(tmp_path, capsys) -> None:
    out = tmp_path / "t"
    assert main([*TRAIN, "--out", str(out)]) == 0
    record = json.loads((out / "runs" / "model1-e2-lr0.01.json").read_text())
    run = record["result"]
    rows = check_metrics_match(out / "runs" / "model1-e2-lr0.01.metrics.csv", run,
                               DATA.train.num_examples)
    assert len([r for r in rows if r["point"] == "curve"]) == 22  # 11 evaluations x 2 splits


def test_reproduce_writes_one_metrics_csv_per_run(tmp_path, capsys) -> None:
    proto = tmp_path / "tiny.toml"
    proto.write_text(TINY_PROTOCOL)
    out = tmp_path / "r"
    assert main(["reproduce", "--protocol", str(proto), "--out", str(out), "--models", "1,2",
                 "--quiet"]) == 0
    doc = json.loads((out / "results.json").read_text())
    for run in doc["runs"]:
        check_metrics_match(out / "runs" / f"{run['run_id']}.metrics.csv", run,
                            DATA.train.num_examples)


def test_metrics_rows_include_the_final_weights_when_the_record_has_them() -> None:
    run = {"spec": {"batch_size": 10}, "samples": [100, 200], "train_accuracy": [0.5, 0.6],
           "test_accuracy": [0.4, 0.5], "train_loss": [1.0, 0.9], "test_loss": [1.1, 1.0],
           "wall_time": 3.0}
    assert len(metrics_rows(run, 1000, [1.0, 2.0])) == 4
    assert metrics_rows(run)[0] == [10, "", 100, "train", "1.0", "0.5", "", "curve"]
    run["final_weights"] = {"update": 21, "train_accuracy": 0.7, "test_accuracy": 0.55,
                            "train_loss": 0.8, "test_loss": 0.95}
    rows = metrics_rows(run, 1000, [1.0, 2.0])
    assert rows[-2:] == [[21, "0.21", 210, "train", "0.8", "0.7", "3.0", "final"],
                         [21, "0.21", 210, "test", "0.95", "0.55", "3.0", "final"]]
    assert metrics_csv(run).splitlines()[0] == ",".join(METRICS_COLUMNS)


def test_a_run_notes_the_time_of_each_evaluation() -> None:
    result = train_run(RunSpec(model="model1", epochs=1, lr=0.1, batch_size=10, eval_every=10,
                               eval_train_examples=100, eval_test_examples=100), tiny_datasets())
    times = result.evaluation_times
    assert len(times) == result.evaluations > 1
    assert times == sorted(times) and 0 < times[-1] <= result.wall_time


def test_sweep_writes_a_metrics_csv_per_run(tmp_path) -> None:
    data_dir = write_tiny_idx(tmp_path / "data")
    proto = tmp_path / "tiny.toml"
    proto.write_text(TINY_PROTOCOL.replace("[training]", "[data]\nvalidation_size = 50\n"
                                           "[training]"))
    ref = sweep.DataRef("mnist", str(data_dir), str(tmp_path / "cache"),
                        validation_size=50, verify=False)
    runs = sweep.expand(protocol_mod.load(proto), 1).runs[:2]
    out = tmp_path / "s"
    outcome = sweep.run_sweep(runs, out, ref, jobs=1, log=lambda text: None)
    assert not outcome.failures and len(outcome.records) == 2
    for run_id, record in outcome.records.items():
        check_metrics_match(out / "runs" / f"{run_id}.metrics.csv", record["result"], 550)


def test_report_of_a_train_folder_and_of_a_folder_of_records(tmp_path, capsys) -> None:
    out = tmp_path / "t"
    assert main([*TRAIN, "--out", str(out)]) == 0
    assert main([*TRAIN, "--out", str(out), "--epochs", "1"]) == 0
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in ("report.html", "report.md", "learning_curves.png", "summary_table.png"):
        assert (out / name).is_file() and str(out / name) in printed
    md = (out / "report.md").read_text()
    assert "| Model 1 |" in md and "Setting 2" in md  # two ad hoc runs side by side
    # the records alone (runs/ itself, no weights, no protocol)
    records = tmp_path / "records"
    shutil.copytree(out / "runs", records)
    assert main(["report", str(records)]) == 0
    assert (records / "report.html").is_file()


def test_report_of_an_interrupted_reproduce_uses_its_protocol(tmp_path, capsys) -> None:
    proto = tmp_path / "tiny.toml"
    proto.write_text(TINY_PROTOCOL)
    out = tmp_path / "r"
    assert main(["reproduce", "--protocol", str(proto), "--out", str(out), "--models", "2",
                 "--quiet", "--quick"]) == 0
    (out / "results.json").unlink()  # as if interrupted before the end
    (out / "report.md").unlink()
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "tiny" in md and "QUICK" in md  # the folder's protocol.toml, its quick variant


def test_report_of_a_folder_without_runs(tmp_path, capsys) -> None:
    (tmp_path / "other.json").write_text('{"format": "something else"}')
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no results.json and no run records" in err and err.count("\n") == 1


def test_a_reused_run_without_metrics_gets_them(tmp_path, capsys) -> None:
    """A run saved before runs kept metrics is given its CSV on resume (no wall times)."""
    proto = tmp_path / "tiny.toml"
    proto.write_text(TINY_PROTOCOL)
    out = tmp_path / "r"
    argv = ["reproduce", "--protocol", str(proto), "--out", str(out), "--models", "2", "--quiet"]
    assert main(argv) == 0
    path = out / "runs" / "model2-setting1.metrics.csv"
    path.unlink()
    assert main(argv) == 0
    assert "(0 trained, 1 reused)" in capsys.readouterr().err
    _, rows = read_csv(path)
    run = json.loads((out / "runs" / "model2-setting1.json").read_text())["result"]
    assert len([r for r in rows if r["point"] == "curve"]) == 2 * run["evaluations"]
    assert {r["wall_time"] for r in rows if r["point"] == "curve"} == {""}
