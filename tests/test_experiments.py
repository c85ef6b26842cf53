"""reproduce: every run of a protocol, outputs, resume after a kill, determinism (tiny data)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tiny_mnist import TINY_PROTOCOL, tiny_datasets

from numnet.core.errors import NumnetError
from numnet.lab import experiments, protocol, training
from numnet.lab.experiments import execute as execute_mod
from numnet.lab.records import strip_timing

TESTS_DIR = Path(__file__).parent
DATA = tiny_datasets()
RUN_IDS = ["model1-setting1", "model1-setting2", "model1-setting3", "model2-setting1",
           "model4-setting1"]


def reproduce(proto_path: Path, out: Path, report: bool = False,
              **kw) -> experiments.ReproduceOutcome:
    """reproduce() on the tiny data; figures and report only when asked (drawing is slow)."""
    return experiments.reproduce(proto_path, DATA, out, progress="none", log=lambda s: None,
                                 make_report=report, **kw)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def proto_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("proto") / "tiny.toml"
    path.write_text(TINY_PROTOCOL)
    return path


@pytest.fixture(scope="module")
def full(tmp_path_factory, proto_path) -> experiments.ReproduceOutcome:
    """One reproduce of the tiny protocol shared by the tests that only read its outputs."""
    return reproduce(proto_path, tmp_path_factory.mktemp("full") / "out", report=True)


def load(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


# ----------------------------------------------------------------------------- planning


def test_plan_of_assignment_follows_spec() -> None:
    specs = experiments.plan_runs(protocol.load("assignment"))
    assert [s.run_id for s in specs][:4] == ["model1-setting1", "model1-setting2",
                                             "model1-setting3", "model2-setting1"]
    assert len(specs) == 12 and len({s.seed for s in specs}) == 4  # shared starts: per model
    m4 = [s for s in specs if s.model == "model4"]
    assert [(s.epochs, s.lr) for s in m4] == [(5, 0.01), (10, 0.001), (20, 0.001)]
    assert {(s.batch_size, s.eval_every, s.eval_train_examples, s.reduction)
            for s in specs} == {(100, 200, 11000, "sum")}
    # a run's seed depends on (protocol seed, model[, setting]) only
    subset = experiments.plan_runs(protocol.load("assignment"), ["model4"])
    assert subset == m4
    assert {s.seed for s in m4} == {experiments.model_seed(0, "model4")}
    variant = experiments.plan_runs(protocol.load("notebook-variant"), ["model4"])
    assert variant[0].seed == experiments.run_seed(0, "model4", 0)
    assert experiments.run_seed(1, "model4", 0) != variant[0].seed
    assert experiments.run_seed(0, "model3", 0) != variant[0].seed


def test_parse_models() -> None:
    assert experiments.parse_model("Model 3") == experiments.parse_model("3") == "model3"
    assert experiments.parse_models("1,4") == ["model1", "model4"]
    assert experiments.parse_models("model2, 2") == ["model2"]
    assert experiments.parse_models(None) is None
    with pytest.raises(NumnetError, match="unknown model '9'"):
        experiments.parse_models("1,9")


# ----------------------------------------------------------------------------- outputs


def test_outputs_exist_and_results_hold_spec_tuples(full, proto_path) -> None:
    out = full.out_dir
    for name in ("results.json", "results.csv", "learning_curves.png", "summary_table.png",
                 "report.html", "report.md", "protocol.toml"):
        assert (out / name).is_file(), name
    assert sorted(p.stem for p in (out / "runs").glob("*.json")) == RUN_IDS
    assert sorted(p.stem for p in (out / "weights").glob("*.npz")) == RUN_IDS
    # no temporary files nor the lock left; the folder's identity stays (the next run reads it)
    assert [p.name for p in out.rglob(".*")] == [".numnet-folder.json"]
    doc = load(out)
    assert doc["format"] == "numnet.results/1" and doc["label"] is None
    # The protocol (docs/protocol.md §7): per model, a list of
    # ((num_epochs, lr), train_acc_list, test_acc_list)
    m1 = doc["results"]["model1"]
    assert [tuple(t[0]) for t in m1] == [(2, 0.001), (1, 0.01), (2, 1e38)]
    runs = {r["run_id"]: r for r in doc["runs"]}
    assert m1[0][1] == runs["model1-setting1"]["train_accuracy"]
    assert m1[0][2] == runs["model1-setting1"]["test_accuracy"]
    assert set(doc["results"]) == {"model1", "model2", "model4"}
    p = doc["protocol"]
    assert p["text"] == TINY_PROTOCOL == (out / "protocol.toml").read_text()
    assert p["hash"] == protocol.load(proto_path).hash and p["quick"] is False
    env = doc["environment"]
    assert env["numpy"] == np.__version__ and env["numnet"]
    assert "blas" in env and env["machine"]["cpu_count"]
    assert doc["data"]["train_examples"] == 550 and len(doc["data"]["fingerprint"]) == 32
    # every run: status, counts, seeds, losses
    for run in doc["runs"]:
        assert set(run) >= {"status", "updates", "evaluations", "wall_time", "train_loss",
                            "test_loss", "init_seed", "shuffle_seed", "spec"}


def test_each_run_follows_the_loop_and_absurd_lr_diverges(full) -> None:
    runs = {r["run_id"]: r for r in load(full.out_dir)["runs"]}
    bad = runs.pop("model1-setting3")
    assert (bad["status"], bad["diverged_at_update"], bad["evaluations"]) == ("diverged", 2, 0)
    for run in runs.values():
        epochs = run["spec"]["epochs"]
        assert run["status"] == "ok"
        assert run["updates"] == 55 * epochs + 1
        assert run["evaluations"] == (55 * epochs + 1) // 10
        assert len(run["test_loss"]) == run["evaluations"]


def test_csv_is_flat(full) -> None:
    doc = load(full.out_dir)
    with open(full.out_dir / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == sum(max(1, r["evaluations"]) for r in doc["runs"])
    first = [r for r in rows if r["run_id"] == "model1-setting1"]
    assert [float(r["test_accuracy"]) for r in first] == doc["runs"][0]["test_accuracy"]
    assert [r for r in rows if r["run_id"] == "model1-setting3"][0]["status"] == "diverged"


def test_figures_are_pngs_of_the_expected_size(full) -> None:
    assert png_size(full.out_dir / "learning_curves.png") == (2200, 1200)
    assert png_size(full.out_dir / "summary_table.png") == (900, 320)
    import matplotlib.image

    img = matplotlib.image.imread(full.out_dir / "learning_curves.png")
    assert img.shape[:2] == (1200, 2200) and img.std() > 0.05  # decodes, not blank


def test_weights_reload_and_give_the_recorded_accuracy(full) -> None:
    from numnet.core import serialize

    model = serialize.load(full.out_dir / "weights" / "model2-setting1.npz")
    run = next(r for r in load(full.out_dir)["runs"] if r["run_id"] == "model2-setting1")
    assert model.config["name"] == "model2" and model.config["seed"] == run["init_seed"]
    acc, _ = training.evaluate(model, DATA.test.images, DATA.test.labels)
    # the last evaluation was at update 50; the weights are after update 56
    assert abs(acc - run["final_test_accuracy"]) < 0.1


# ----------------------------------------------------------------------------- determinism


def test_same_seed_identical_results_except_timing(full, proto_path, tmp_path) -> None:
    again = reproduce(proto_path, tmp_path / "again")
    a, b = load(full.out_dir), load(again.out_dir)
    assert strip_timing(a) == strip_timing(b)
    assert (full.out_dir / "results.csv").read_text() == (again.out_dir / "results.csv").read_text()


def test_model_subset_gives_the_same_runs(full, proto_path, tmp_path) -> None:
    sub = reproduce(proto_path, tmp_path / "sub", models=["model2"])
    assert [r.run_id for r in sub.results] == ["model2-setting1"]
    whole = next(r for r in load(full.out_dir)["runs"] if r["run_id"] == "model2-setting1")
    assert strip_timing(load(sub.out_dir)["runs"][0]) == strip_timing(whole)


def test_other_seed_other_results(proto_path, tmp_path, full) -> None:
    other = reproduce(proto_path, tmp_path / "seed", models=["model1"], seed=8)
    assert load(other.out_dir)["protocol"]["seed"] == 8
    a = load(full.out_dir)["runs"][0]
    assert load(other.out_dir)["runs"][0]["test_loss"] != a["test_loss"]


# ----------------------------------------------------------------------------- resume


def test_rerun_reuses_everything_and_force_redoes(full, proto_path, tmp_path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(full.out_dir, out)
    records = {p.name: p.read_bytes() for p in (out / "runs").glob("*.json")}
    again = reproduce(proto_path, out)
    assert again.reused == RUN_IDS and again.trained == []
    assert {p.name: p.read_bytes() for p in (out / "runs").glob("*.json")} == records
    assert strip_timing(load(out)) == strip_timing(load(full.out_dir))
    forced = reproduce(proto_path, out, models=["model1"], force=True)
    assert forced.reused == [] and forced.trained == RUN_IDS[:3]


def test_stale_or_incomplete_runs_are_redone(full, proto_path, tmp_path) -> None:
    out = tmp_path / "stale"
    shutil.copytree(full.out_dir, out)
    record = out / "runs" / "model1-setting1.json"
    doc = json.loads(record.read_text())
    doc["protocol_hash"] = "0" * 16  # made by another protocol
    record.write_text(json.dumps(doc))
    (out / "weights" / "model1-setting2.npz").unlink()  # killed between weights and record
    (out / "runs" / "model2-setting1.json").write_text("{truncated")  # unreadable
    again = reproduce(proto_path, out)
    assert again.trained == ["model1-setting1", "model1-setting2", "model2-setting1"]
    assert again.reused == ["model1-setting3", "model4-setting1"]
    assert strip_timing(load(out)) == strip_timing(load(full.out_dir))


def test_other_kernels_are_other_runs(full, proto_path, tmp_path) -> None:
    """The kernels are part of a run's spec (recorded only when not the default): runs made
    with the default kernels are not reused for --kernels plain."""
    specs = experiments.plan_runs(protocol.load(proto_path), ["model1"], kernels="plain")
    assert {s.kernels for s in specs} == {"plain"}
    assert all(s.to_dict()["kernels"] == "plain" for s in specs)
    assert "kernels" not in experiments.plan_runs(protocol.load(proto_path))[0].to_dict()
    out = tmp_path / "plain"
    shutil.copytree(full.out_dir, out)
    plain = reproduce(proto_path, out, models=["model1"], kernels="plain")
    assert plain.reused == [] and plain.trained == RUN_IDS[:3]
    assert [r["spec"]["kernels"] for r in load(out)["runs"]] == ["plain"] * 3
    with pytest.raises(NumnetError, match="kernels must be one of"):
        reproduce(proto_path, out, kernels="quick")


def test_keyboard_interrupt_keeps_finished_runs(proto_path, tmp_path, monkeypatch) -> None:
    calls = []
    real = execute_mod.train_run

    def interrupted(spec, *args, **kwargs):
        calls.append(spec.run_id)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(spec, *args, **kwargs)

    monkeypatch.setattr(execute_mod, "train_run", interrupted)
    lines: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        experiments.reproduce(proto_path, DATA, tmp_path / "int", progress="none",
                              log=lines.append, jobs=1)
    assert sorted(p.stem for p in (tmp_path / "int" / "runs").glob("*.json")) == RUN_IDS[:2]
    assert not (tmp_path / "int" / "results.json").exists()
    assert "interrupted" in lines[-1] and "2 of 5 runs are saved" in lines[-1]


SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from tiny_mnist import tiny_datasets
from numnet.lab import experiments
experiments.reproduce({proto!r}, tiny_datasets(), {out!r}, progress="none", log=print)
"""


def test_resume_after_the_process_is_killed(full, proto_path, tmp_path) -> None:
    out = tmp_path / "killed"
    code = SCRIPT.format(tests=str(TESTS_DIR), proto=str(proto_path), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list((out / "runs").glob("*.json")) and time.monotonic() < deadline:
            assert proc.poll() is None, "the process ended before it could be killed"
            time.sleep(0.02)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    done_before = sorted(p.stem for p in (out / "runs").glob("*.json"))
    assert done_before and len(done_before) < len(RUN_IDS)
    assert not (out / "results.json").exists()
    for p in (out / "runs").glob("*.json"):  # every visible file is complete
        json.loads(p.read_text())
    resumed = reproduce(proto_path, out)
    assert resumed.reused == done_before
    assert resumed.trained == [r for r in RUN_IDS if r not in done_before]
    assert strip_timing(load(out)) == strip_timing(load(full.out_dir))


# ----------------------------------------------------------------------------- quick, errors


def test_quick_is_labelled_everywhere(proto_path, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    q = experiments.reproduce(proto_path, DATA, None, models=["model1"], quick=True,
                              progress="none", log=lambda s: None)
    assert q.out_dir.parent == Path("runs") and q.out_dir.name.startswith("tiny-quick-")
    doc = load(q.out_dir)
    assert doc["label"] == "QUICK" and doc["protocol"]["quick"] is True
    assert doc["protocol"]["quick_options"]["epochs"] == 1
    assert all(r["spec"]["epochs"] == 1 and r["spec"]["eval_every"] == 5 for r in doc["runs"])
    assert "QUICK" in (q.out_dir / "report.html").read_text()
    assert "QUICK" in (q.out_dir / "report.md").read_text()
    assert "True" in (q.out_dir / "results.csv").read_text().splitlines()[1]


def test_data_too_small_for_protocol(tmp_path) -> None:
    path = tmp_path / "big.toml"
    path.write_text(TINY_PROTOCOL.replace("eval_train_examples = 110",
                                          "eval_train_examples = 1000"))
    with pytest.raises(protocol.ProtocolError, match="eval_train_examples = 1000 is larger"):
        reproduce(path, tmp_path / "x")


def test_file_format_names_are_those_older_outputs_carry() -> None:
    """Resume and the readers check these names: a rename would orphan existing outputs."""
    from numnet.lab import compare, results, sweep

    assert (results.RESULTS_FORMAT, experiments.RUN_FORMAT) == ("numnet.results/1",
                                                                "numnet.run/1")
    assert compare.COMPARE_FORMAT == "numnet.compare/1"
    # a sweep's runs are recorded as reproduce's (numnet.run/1): no format of their own
    assert (sweep.SWEEP_FORMAT, sweep.SUMMARY_FORMAT) == ("numnet.sweep/1",
                                                          "numnet.sweep-summary/1")


# ----------------------------------------------------------------------------- real MNIST


@pytest.mark.slow
def test_full_assignment_on_real_mnist(tmp_path) -> None:
    """The whole `assignment` protocol on real MNIST (minutes): its counts, sane results."""
    outcome = experiments.reproduce("assignment", None, tmp_path / "assignment",
                                    progress="log", log=print)
    doc = load(outcome.out_dir)
    assert len(doc["runs"]) == 12 and doc["data"]["train_examples"] == 55000
    for run in doc["runs"]:
        e = run["spec"]["epochs"]
        if run["status"] == "ok":
            assert run["updates"] == 550 * e + 1
            assert run["evaluations"] == (550 * e + 1) // 200
        else:  # stopped by a non-finite loss (update not applied) or parameters
            assert run["diverged_at_update"] - run["updates"] in (0, 1)
            assert run["evaluations"] == (run["diverged_at_update"] - 1) // 200
    finals = {r["run_id"]: r["final_test_accuracy"] for r in doc["runs"]}
    assert finals["model1-setting2"] > 0.85  # a linear model at a sane rate
    assert finals["model4-setting3"] > 0.95  # the CNN, 20 epochs at lr 0.001 (summed loss)
    assert png_size(outcome.out_dir / "learning_curves.png") == (2200, 1200)
