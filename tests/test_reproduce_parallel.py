"""reproduce on worker processes (--jobs) and under shared starts (a run that is a prefix of
another is taken from it): the same numbers as one run after the other, or trained alone;
Ctrl-C and resume with workers (tiny data)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tiny_mnist import TINY_PROTOCOL, tiny_datasets

from numnet.core import serialize
from numnet.core.errors import NumnetError
from numnet.lab import experiments, protocol, training
from numnet.lab.cli import main
from numnet.lab.records import strip_timing

DATA = tiny_datasets()
TESTS_DIR = Path(__file__).parent

#: The tiny protocol under shared starts, with runs that are prefixes of others: model 4's
#: settings 1 and 2 of setting 3 (the same learning rate), model 1's setting 2 of setting 1;
#: model 1's absurd rate diverges at update 2, in settings 3 and 4 alike.
SHARED_PROTOCOL = TINY_PROTOCOL.replace("seed = 7\n",
                                      "seed = 7\n\n[data]\nvalidation_size = 50\n")
SHARED_PROTOCOL = SHARED_PROTOCOL.replace("eval_batch_size = 64\n",
                                          "eval_batch_size = 64\nshared_start = true\n")
SHARED_PROTOCOL = SHARED_PROTOCOL.replace(
    "settings = [{ epochs = 2, lr = 0.001 }, { epochs = 1, lr = 0.01 }, { epochs = 2, lr = 1e38 }]",
    "settings = [{ epochs = 2, lr = 0.001 }, { epochs = 1, lr = 0.001 }, { epochs = 2, lr = 1e38 },"
    " { epochs = 1, lr = 1e38 }]")
SHARED_PROTOCOL = SHARED_PROTOCOL.replace(
    "[models.model4]\nsettings = [{ epochs = 1, lr = 0.001 }]",
    "[models.model4]\nsettings = [{ epochs = 1, lr = 0.003 }, { epochs = 1, lr = 0.003 },"
    " { epochs = 2, lr = 0.003 }]")


def run(proto: Path, out: Path, **kw) -> experiments.ReproduceOutcome:
    return experiments.reproduce(proto, DATA, out, progress="none", log=lambda s: None,
                                 make_report=False, **kw)


def load(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def weights(out: Path, run_id: str) -> list[np.ndarray]:
    return [p.value for p in serialize.load(out / "weights" / f"{run_id}.npz").parameters()]


@pytest.fixture(scope="module")
def protos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("protos")
    (root / "tiny.toml").write_text(TINY_PROTOCOL)
    (root / "shared.toml").write_text(SHARED_PROTOCOL)
    return {"tiny": root / "tiny.toml", "shared": root / "shared.toml"}


@pytest.fixture(scope="module")
def shared(protos, tmp_path_factory) -> experiments.ReproduceOutcome:
    """The shared-start protocol on two worker processes."""
    return run(protos["shared"], tmp_path_factory.mktemp("shared") / "out", jobs=2)


# ----------------------------------------------------------------------------- workers


def test_jobs_1_and_2_give_identical_results(protos, tmp_path) -> None:
    one = run(protos["tiny"], tmp_path / "one", jobs=1)
    two = run(protos["tiny"], tmp_path / "two", jobs=2)
    a, b = load(one.out_dir), load(two.out_dir)
    assert (a["timing"]["jobs"], b["timing"]["jobs"]) == (1, 2)
    assert b["timing"]["threads_per_run"] == experiments.runner.WORKER_THREADS
    assert strip_timing(a) == strip_timing(b)
    assert ((one.out_dir / "results.csv").read_text()
            == (two.out_dir / "results.csv").read_text())
    assert [r.run_id for r in two.results] == [r.run_id for r in one.results]
    for rid in two.trained:
        assert all(np.array_equal(x, y) for x, y in zip(weights(one.out_dir, rid),
                                                        weights(two.out_dir, rid), strict=True))
    assert b["timing"]["cpu_time"] > 0  # the workers' CPU time is counted


def test_thread_counts_do_not_change_the_numbers(tmp_path) -> None:
    """Batches of 100 through 784 -> 32: shapes whose OpenBLAS sums depend on its thread
    count. Every training holds BLAS to one thread, so --threads and --jobs change nothing."""
    path = tmp_path / "wide.toml"
    path.write_text(TINY_PROTOCOL.replace("batch_size = 10\n", "batch_size = 100\n")
                    .replace("[models.model1]\nsettings = [{ epochs = 2, lr = 0.001 }, "
                             "{ epochs = 1, lr = 0.01 }, { epochs = 2, lr = 1e38 }]\n", "")
                    .replace("[models.model4]\nsettings = [{ epochs = 1, lr = 0.001 }]\n", "")
                    .replace("{ epochs = 1, lr = 0.005 }", "{ epochs = 3, lr = 0.0005 }"))
    runs = [load(run(path, tmp_path / f"t{threads}-j{jobs}", jobs=jobs,
                     threads=threads).out_dir)["runs"]
            for threads, jobs in ((1, 1), (2, 1), (None, 2))]
    assert runs[0][0]["updates"] == training.expected_updates(550, 100, 3)  # 17
    assert runs[0][0]["status"] == "ok" and runs[0][0]["evaluations"] == 1
    assert strip_timing(runs[0]) == strip_timing(runs[1]) == strip_timing(runs[2])


def test_more_jobs_than_runs_and_usage_errors(protos, tmp_path, capsys) -> None:
    many = run(protos["tiny"], tmp_path / "many", models=["model2"], jobs=8)
    assert load(many.out_dir)["timing"]["jobs"] == 1  # one run: in this process
    with pytest.raises(NumnetError, match="jobs must be at least 1"):
        run(protos["tiny"], tmp_path / "x", jobs=0)
    assert main(["reproduce", "--protocol", str(protos["tiny"]), "--jobs", "0"]) == 2
    assert "--jobs must be at least 1" in capsys.readouterr().err


def test_a_failing_run_on_a_worker_is_one_error(protos, tmp_path) -> None:
    bad = tiny_datasets(n_train=550, n_test=50)  # fewer test examples than the protocol asks
    with pytest.raises(protocol.ProtocolError, match="eval_test_examples = 200 is larger"):
        experiments.reproduce(protos["tiny"], bad, tmp_path / "bad", progress="none",
                              log=lambda s: None, jobs=2)


# ----------------------------------------------------------------------------- shared starts


def test_shared_start_is_the_assignment_default_and_plans_prefix_groups() -> None:
    for name in ("assignment", "assignment-mean"):
        proto = protocol.load(name)
        assert proto.shared_start and proto.metadata()["shared_start"] is True
        specs = experiments.plan_runs(proto)
        for model in ("model1", "model2", "model3", "model4"):
            seeds = {s.seed for s in specs if s.model == model}
            assert seeds == {experiments.model_seed(0, model)}
        groups = {g.task_id: [s.run_id for s in g.specs] for g in experiments.run_groups(specs)}
        assert groups["model3-setting2"] == ["model3-setting2", "model3-setting1"]
        assert groups["model4-setting3"] == ["model4-setting3", "model4-setting2"]
        assert len(groups) == 10
        # --quick: every setting 1 epoch, so the same pairs are equal runs, made once
        quick = experiments.run_groups(experiments.plan_runs(proto.quick_variant()))
        assert [[s.run_id for s in g.specs] for g in quick if g.shorter] == [
            ["model3-setting1", "model3-setting2"], ["model4-setting2", "model4-setting3"]]
    variant = protocol.load("notebook-variant")
    assert not variant.shared_start
    specs = experiments.plan_runs(variant)
    assert len({s.seed for s in specs}) == 12 and len(experiments.run_groups(specs)) == 12


def test_shared_start_option_is_checked_and_false_keeps_the_hash(tmp_path) -> None:
    plain = protocol.loads(TINY_PROTOCOL)
    off = protocol.loads(TINY_PROTOCOL.replace("eval_batch_size = 64\n",
                                               "eval_batch_size = 64\nshared_start = false\n"))
    on = protocol.loads(TINY_PROTOCOL.replace("eval_batch_size = 64\n",
                                              "eval_batch_size = 64\nshared_start = true\n"))
    assert plain.hash == off.hash != on.hash
    with pytest.raises(protocol.ProtocolError, match="training.shared_start must be true or"):
        protocol.loads(TINY_PROTOCOL.replace("eval_batch_size = 64\n",
                                             "eval_batch_size = 64\nshared_start = 1\n"))


def test_a_run_taken_from_a_longer_one_is_identical_to_it_trained_alone(shared) -> None:
    doc = load(shared.out_dir)
    assert doc["timing"]["shared_runs"] == {"model1-setting2": "model1-setting1",
                                            "model1-setting4": "model1-setting3",
                                            "model4-setting1": "model4-setting3",
                                            "model4-setting2": "model4-setting3"}
    runs = {r["run_id"]: r for r in doc["runs"]}
    assert runs["model4-setting2"]["shared_with"] == "model4-setting3"
    assert runs["model4-setting3"]["shared_with"] is None
    specs = {s.run_id: s for s in experiments.plan_runs(protocol.loads(SHARED_PROTOCOL))}
    for rid in doc["timing"]["shared_runs"]:
        alone = training.train_run(specs[rid], DATA)
        got = runs[rid]
        assert got["spec"] == specs[rid].to_dict()
        for key, mine in (("samples", alone.samples), ("train_accuracy", alone.train_accuracy),
                          ("test_accuracy", alone.test_accuracy),
                          ("train_loss", alone.train_loss), ("test_loss", alone.test_loss)):
            assert np.array_equal(got[key], mine), (rid, key)
        assert (got["status"], got["updates"], got["diverged_at_update"]) == (
            alone.status, alone.updates, alone.diverged_at_update)
        assert all(np.array_equal(x, p.value) for x, p in zip(
            weights(shared.out_dir, rid), alone.model.parameters(), strict=True)), rid
    # the loop's semantics: E epochs are 55 E + 1 updates here, and the diverged pair stops
    # together at update 2
    assert runs["model4-setting1"]["updates"] == 56 and runs["model4-setting3"]["updates"] == 111
    assert runs["model1-setting4"]["diverged_at_update"] == 2


def test_shared_runs_resume_and_match_sequential(shared, protos, tmp_path) -> None:
    one = run(protos["shared"], tmp_path / "one", jobs=1)
    assert strip_timing(load(one.out_dir)) == strip_timing(load(shared.out_dir))
    # the longer run's files gone: it is trained again, the shorter ones are reused
    (one.out_dir / "runs" / "model4-setting3.json").unlink()
    again = run(protos["shared"], one.out_dir, models=["model4"], jobs=2)
    assert again.trained == ["model4-setting3"]
    assert again.reused == ["model4-setting1", "model4-setting2"]
    # a shorter run's files gone: trained alone, from the same seed, to the same numbers
    (one.out_dir / "runs" / "model4-setting2.json").unlink()
    alone = run(protos["shared"], one.out_dir, models=["model4"], jobs=1)
    assert alone.trained == ["model4-setting2"]
    assert strip_timing(load(one.out_dir)["runs"][1]) == strip_timing(
        [r for r in load(shared.out_dir)["runs"] if r["run_id"] == "model4-setting2"][0]
        | {"shared_with": None})


def test_report_says_which_runs_were_shared(shared, tmp_path) -> None:
    from numnet.lab import report

    report.rebuild(shared.out_dir)
    md = (shared.out_dir / "report.md").read_text()
    html = (shared.out_dir / "report.html").read_text()
    for text in (md, html):
        assert "shared start" in text.lower()
        assert "taken from model4-setting3" in text


def test_prefix_must_share_everything_but_the_epochs() -> None:
    spec = experiments.plan_runs(protocol.loads(SHARED_PROTOCOL))[0]
    other = dataclasses.replace(spec, lr=spec.lr * 2, epochs=1)
    with pytest.raises(ValueError, match="is not a prefix"):
        training.train_run(spec, DATA, plugins=[training.ShorterRuns([other], print)])


# ----------------------------------------------------------------------------- Ctrl-C


def _session_processes(sid: int) -> list[int]:
    """The pids of the processes in session ``sid`` (Linux /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                pids.append(int(entry.name))
    return pids


#: ``numnet reproduce`` on the tiny data, in a process of its own (the command line as typed,
#: the data loader replaced by the tiny data set).
CLI_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from tiny_mnist import tiny_datasets
from numnet.lab import data
from numnet.lab.cli import main
data.load = lambda *args, **kwargs: tiny_datasets()
sys.exit(main({argv!r}))
"""


def _start_long_reproduce(tmp_path: Path, runs: int, output: int | None
                          ) -> tuple[subprocess.Popen, Path]:
    """``numnet reproduce --jobs 2`` of a protocol long enough to be stopped in the middle, in a
    session of its own, once ``runs`` run records are saved (``output``: where its stdout and
    stderr go, None for pipes). Returns the process and its output folder (the protocol is
    ``tmp_path / "long.toml"``)."""
    proto = tmp_path / "long.toml"
    proto.write_text(SHARED_PROTOCOL.replace("{ epochs = 2, lr = 0.003 }",
                                             "{ epochs = 40, lr = 0.003 }"))
    out = tmp_path / "out"
    code = CLI_SCRIPT.format(tests=str(TESTS_DIR), argv=[
        "reproduce", "--protocol", str(proto), "--out", str(out), "--jobs", "2", "--quiet"])
    stream = subprocess.PIPE if output is None else output
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=stream, stderr=stream,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while (len(list((out / "runs").glob("*.json"))) < runs and time.monotonic() < deadline
           and proc.poll() is None):
        time.sleep(0.02)
    return proc, out


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_ctrl_c_with_workers_exits_130_leaves_no_process_and_resumes(protos, tmp_path) -> None:
    proc, out = _start_long_reproduce(tmp_path, runs=2, output=None)
    try:
        assert proc.poll() is None, proc.communicate()
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole group
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err.decode()
    assert "runs are saved in" in err.decode(), err.decode()
    deadline = time.monotonic() + 30
    while _session_processes(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _session_processes(proc.pid) == [], err.decode()  # no worker, forkserver, tracker
    done = sorted(p.stem for p in (out / "runs").glob("*.json"))
    assert 2 <= len(done) < 8 and "model4-setting3" not in done, (done, err.decode())
    assert not list(out.rglob(".*.part")), err.decode()  # no half-written file
    for rid in done:
        json.loads((out / "runs" / f"{rid}.json").read_text())
        assert (out / "weights" / f"{rid}.npz").is_file()
    resumed = run(tmp_path / "long.toml", out, jobs=2)
    assert resumed.reused == [r.run_id for r in resumed.results if r.run_id in done]
    assert len(resumed.trained) == 8 - len(done)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_workers_end_when_reproduce_is_killed(protos, tmp_path) -> None:
    """SIGKILL leaves no time for cleanup: the workers notice that their parent is gone, the
    idle ones at once, the busy ones at their next step, and no process is left behind."""
    proc, out = _start_long_reproduce(tmp_path, runs=3, output=subprocess.DEVNULL)
    try:
        assert proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)  # the main process alone
        proc.wait()
        deadline = time.monotonic() + 20
        while _session_processes(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _session_processes(proc.pid) == []
    finally:
        for pid in _session_processes(proc.pid):
            os.kill(pid, signal.SIGKILL)
    for path in (out / "runs").glob("*.json"):  # every visible record is complete
        json.loads(path.read_text())


def test_evidence_figures_drawn_by_the_workers_are_the_reports(protos, tmp_path,
                                                               monkeypatch) -> None:
    """With workers, each worker draws its runs' evidence figures as their group ends (this
    process draws none: here it would fail); the report embeds those bytes. They equal what
    ``numnet report DIR`` draws from results.json alone, and what ``draw_figures`` draws from
    the same results in this process."""
    from numnet.lab.experiments.execute import draw_figures
    from numnet.lab.report import internals_section, rebuild

    def not_here(run):
        raise AssertionError(f"{run['run_id']}: drawn by the reproducing process")

    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        patch.setattr(internals_section, "run_evidence_images", not_here)
        outcome = experiments.reproduce(protos["tiny"], DATA, out, progress="none",
                                        log=lambda s: None, jobs=2)
    figures = sorted((out / "figures").glob("*.png"))
    assert any(p.name.endswith(".internals.png") for p in figures)
    written = {f"figures/{p.name}": p.read_bytes() for p in figures}
    here = draw_figures(outcome.results)
    assert set(here) == {r.run_id for r in outcome.results}
    for rid, images in here.items():
        assert all(name.startswith(f"figures/{rid}.") for name in images)
        for name, data in images.items():
            assert written[name] == data
    rebuilt = rebuild(out)  # from results.json, nothing drawn before
    for name, data in written.items():
        assert rebuilt[name].read_bytes() == data
