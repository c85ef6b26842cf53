"""numnet.lab.sweep: run expansion and seeds, aggregation, local and Dask execution with faults.

The executions run on tiny synthetic IDX files written here (a 2-model protocol, 8 runs of a
few milliseconds each); one Dask LocalCluster (a real scheduler and two worker processes on
127.0.0.1) is shared by the module. Fault injection wraps the one worker function,
:func:`numnet.lab.experiments.execute.work_group`, in functions defined in this module (workers
import it: multiprocessing passes sys.path on).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_mnist import write_tiny_idx

from numnet.core.errors import NumnetError
from numnet.lab import executor, sweep
from numnet.lab import protocol as protocol_mod
from numnet.lab.cli import main
from numnet.lab.experiments import plan_runs, run_groups
from numnet.lab.experiments.execute import WorkContext, load_data, work_group
from numnet.lab.records import strip_timing
from numnet.lab.training import train_run

TINY_PROTOCOL = """
name = "tiny"
seed = 7
[data]
validation_size = 50
[training]
batch_size = 50
eval_every = 4
eval_train_examples = 200
eval_test_examples = 200
eval_batch_size = 100
[defaults]
reduction = "mean"
[models.model1]
settings = [ { epochs = 2, lr = 0.5 }, { epochs = 1, lr = 0.05 } ]
[models.model2]
reduction = "sum"
settings = [ { epochs = 2, lr = 0.01 }, { epochs = 1, lr = 1e20 } ]
"""
SEEDS = 2
VICTIM = "model2-setting1-seed1"


# ------------------------------------------------------------------------------ fault injection


def kill_once(group, ctx, *, victim, marker):
    """Train the group, except that the first attempt of ``victim`` kills its own worker
    process (after recording its pid in ``marker``; O_EXCL makes "first" hold across
    processes)."""
    if group.task_id == victim:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pass
        else:
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            os._exit(17)
    return work_group(group, ctx)


def fail_for(group, ctx, *, victim):
    if group.task_id == victim:
        raise ValueError(f"injected failure in {group.task_id}")
    return work_group(group, ctx)


def chaos(group, ctx, *, kill, marker, fail):
    if group.task_id == fail:
        return fail_for(group, ctx, victim=fail)
    return kill_once(group, ctx, victim=kill, marker=marker)


def sleepy(group, ctx, *, victim):
    if group.task_id == victim:
        time.sleep(300)  # "a long run", interrupted by the test
    return work_group(group, ctx)


def must_not_run(group, ctx):
    raise AssertionError(f"{group.task_id} should have been reused")


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A data dir with four tiny IDX files, its DataRef and the tiny protocol file."""
    root = tmp_path_factory.mktemp("tiny")
    data_dir = write_tiny_idx(root / "data")
    path = root / "tiny.toml"
    path.write_text(TINY_PROTOCOL)
    ref = sweep.DataRef("mnist", str(data_dir), str(root / "cache"), validation_size=50,
                        verify=False)
    return {"root": root, "data_dir": data_dir, "protocol": path, "ref": ref,
            "plan": sweep.expand(protocol_mod.load(path), SEEDS)}


def run(tiny, out, **kw):
    """The tiny sweep's runs executed into ``out`` (``sweep.run_sweep``), quietly."""
    return sweep.run_sweep(tiny["plan"].runs, out, tiny["ref"], log=_quiet,
                           protocol_hash=tiny["plan"].protocol.hash, **kw)


@pytest.fixture(scope="module")
def reference(tiny, tmp_path_factory):
    """The tiny sweep run locally on two processes, no faults: ``{run_id: record}``."""
    outcome = run(tiny, tmp_path_factory.mktemp("reference"), jobs=2)
    assert not outcome.failures
    return outcome.records


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  host="127.0.0.1", dashboard_address=None,
                                  silence_logs=logging.CRITICAL) as c:
        yield c.scheduler_address


def _quiet(text: str) -> None:
    pass


def _same(records_a, records_b):
    assert set(records_a) == set(records_b)
    for run_id in records_a:
        assert strip_timing(records_a[run_id]) == strip_timing(records_b[run_id]), run_id


def _run_files(out: Path) -> list[str]:
    return sorted(p.stem for p in (out / "runs").glob("*.json"))


# ------------------------------------------------------------------------------ plan and seeds


def test_parse_grid_values_and_errors():
    assert sweep.parse_grid(["lr=0.1,0.01,0.1", "epochs=5,10", "reduction=sum"]) == {
        "lr": [0.1, 0.01], "epochs": [5, 10], "reduction": ["sum"]}
    assert sweep.parse_grid(None) == {}
    for bad, words in ((["lr"], "KEY=V1"), (["momentum=0.9"], "unknown key"),
                       (["lr=-1"], "positive"), (["epochs=2.5"], "epochs"),
                       (["lr=0.1", "lr=0.2"], "twice"), (["lr=,"], "no value"),
                       (["reduction=median"], "sum, mean")):
        with pytest.raises(NumnetError, match=words):
            sweep.parse_grid(bad)


def test_replicate_r_is_the_protocol_run_with_seed_s_plus_r(tiny):
    proto = protocol_mod.load(tiny["protocol"])
    plan = tiny["plan"]
    assert len(plan.cells) == 4 and len(plan.runs) == 4 * SEEDS
    for r in range(SEEDS):
        expected = plan_runs(proto.with_seed(proto.seed + r))
        got = [s for s in plan.runs if s.replicate == r]
        assert [dataclasses.replace(s, replicate=None) for s in got] == expected
        # the replicate is a label: the run id says it, the record's spec too
        assert [s.run_id for s in got] == [f"{e.run_id}-seed{r}" for e in expected]
        assert all(s.to_dict()["replicate"] == r for s in got)
    assert "replicate" not in expected[0].to_dict()  # reproduce's records unchanged
    # replicates differ in the seed only, and every seed is distinct
    assert len({s.seed for s in plan.runs}) == len(plan.runs)
    # --models restricts without changing the seeds of the runs kept
    sub = sweep.expand(proto, SEEDS, models=["model2"])
    assert list(sub.runs) == [s for s in plan.runs if s.model == "model2"]


def test_grid_settings_and_content_keyed_seeds(tiny):
    proto = protocol_mod.load(tiny["protocol"])
    plan = sweep.expand(proto, 3, {"lr": [0.3, 0.03]}, ["model1"])
    # model1's settings (2, 0.5), (1, 0.05) x lr -> (2, 0.3), (2, 0.03), (1, 0.3), (1, 0.03)
    assert [(c.spec.epochs, c.spec.lr) for c in plan.cells] == [
        (2, 0.3), (2, 0.03), (1, 0.3), (1, 0.03)]
    assert [c.cell_id for c in plan.cells] == [f"model1-setting{k}" for k in range(1, 5)]
    # duplicates merge: a grid on epochs alone gives two settings, not four
    assert len(sweep.expand(proto, 1, {"epochs": [3]}, ["model1"]).cells) == 2
    # a setting's seeds do not depend on the other grid values or their order
    bigger = sweep.expand(proto, 3, {"lr": [0.001, 0.03, 0.3]}, ["model1"])
    seeds = {(s.epochs, s.lr, s.replicate): s.seed for s in plan.runs}
    for s in bigger.runs:
        if s.lr != 0.001:
            assert seeds[(s.epochs, s.lr, s.replicate)] == s.seed
    key = sweep.setting_key(plan.cells[0].spec, ["lr"])
    assert key == "epochs=2;lr=0.3"
    assert plan.runs[0].seed == sweep.grid_seed(proto.seed, "model1", key)
    assert plan.runs[0].run_id == "model1-setting1-seed0"


# ------------------------------------------------------------------------------ aggregation


def test_aggregate_counts_and_curve_bands(tiny):
    plan = tiny["plan"]
    cell = plan.cells[0]
    runs = [s for s in plan.runs if sweep.cell_id(s) == cell.cell_id]

    def record(acc, status="ok"):
        return {"result": {"status": status, "final_test_accuracy": acc[-1],
                           "final_train_accuracy": acc[-1], "samples": [200, 400, 600][:len(acc)],
                           "train_accuracy": acc, "test_accuracy": acc}}

    records = {runs[0].run_id: record([0.5, 0.7, 0.8]), runs[1].run_id: record([0.6, 0.8])}
    first = sweep.aggregate(plan, records)[0]
    assert (first["n_ok"], first["n_diverged"], first["n_tasks"]) == (2, 0, 2)
    assert first["final_test_accuracy"]["mean"] == pytest.approx(0.8)
    bands = first["curves"]["test_accuracy"]
    assert bands["n"] == [2, 2, 1]
    assert bands["mean"] == pytest.approx([0.55, 0.75, 0.8])
    assert bands["std"][:2] == pytest.approx([math.sqrt(0.005)] * 2) and bands["std"][2] is None
    assert first["curves"]["samples"] == [200, 400, 600]
    # a diverged run is counted, not averaged; a failed run is counted as failed
    records[runs[1].run_id] = record([0.1], status="diverged")
    failures = {runs[1].run_id: executor.TaskFailure(runs[1].run_id, "x")}
    first = sweep.aggregate(plan, {runs[0].run_id: records[runs[0].run_id]}, failures)[0]
    assert (first["n_ok"], first["n_error"], first["n_missing"]) == (1, 1, 0)
    first = sweep.aggregate(plan, records)[0]
    assert (first["n_ok"], first["n_diverged"]) == (1, 1)
    assert first["final_test_accuracy"]["mean"] == pytest.approx(0.8)


# ------------------------------------------------------------------------------ local execution


def test_local_sweep_outputs_resume_and_determinism(tiny, reference, tmp_path):
    out = tmp_path / "sweep"
    rc = main(["sweep", "--protocol", str(tiny["protocol"]), "--seeds", str(SEEDS),
               "--data-dir", str(tiny["data_dir"]), "--no-verify", "--jobs", "2",
               "--out", str(out), "--quiet"])
    assert rc == 0
    assert _run_files(out) == sorted(reference)
    records = {p.stem: json.loads(p.read_text()) for p in (out / "runs").glob("*.json")}
    _same(records, reference)  # same runs, other processes, other order: same results
    # the records reproduce writes, weights too
    assert all(r["format"] == "numnet.run/1" for r in records.values())
    assert sorted(p.stem for p in (out / "weights").glob("*.npz")) == sorted(reference)
    assert sorted(p.name for p in (out / "runs").glob("*.metrics.csv")) == sorted(
        f"{rid}.metrics.csv" for rid in reference)
    assert all(r["worker"]["blas_threads"] == [1] and r["worker"]["numnet_threads"] == 1
               for r in records.values())  # pinned
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"]["consistent"]
    cells = {c["cell_id"]: c for c in summary["cells"]}
    # the absurd learning rate diverges in every seed: counted, not averaged
    assert cells["model2-setting2"]["n_diverged"] == SEEDS
    assert cells["model2-setting2"]["final_test_accuracy"]["n"] == 0
    accs = [records[f"model1-setting1-seed{r}"]["result"]["final_test_accuracy"]
            for r in range(SEEDS)]
    assert cells["model1-setting1"]["final_test_accuracy"]["mean"] == pytest.approx(
        sum(accs) / SEEDS)
    assert "| Model 1 |" in (out / "summary.md").read_text()
    assert (out / "summary.csv").read_text().count("\n") == 1 + len(cells)
    for name, size in (("learning_curves.png", (2200, 1200)), ("summary_table.png", None)):
        head = (out / name).read_bytes()[:24]
        assert head[:8] == b"\x89PNG\r\n\x1a\n"
        if size:
            assert struct.unpack(">II", head[16:24]) == size

    # Rerun: every run is reused (a worker function that raises is never called).
    outcome = run(tiny, out, jobs=2, fn=must_not_run)
    assert sorted(outcome.reused) == sorted(reference) and not outcome.failures
    # the folder is taken as reproduce takes its own: another command's is refused
    assert main(["reproduce", "--protocol", str(tiny["protocol"]), "--out", str(out),
                 "--data-dir", str(tiny["data_dir"]), "--no-verify", "--quiet"]) == 2


def test_threads_option_pins_every_worker(tiny, tmp_path):
    """--threads N reaches each worker process through numnet.core.runtime.threads."""
    out = tmp_path / "threads"
    assert main(["sweep", "--protocol", str(tiny["protocol"]), "--seeds", "1", "--models", "1",
                 "--data-dir", str(tiny["data_dir"]), "--no-verify", "--jobs", "1",
                 "--threads", "2", "--out", str(out), "--quiet"]) == 0
    workers = [json.loads(p.read_text())["worker"] for p in (out / "runs").glob("*.json")]
    assert len(workers) == 2
    assert all(w["blas_threads"] == [2] and w["numnet_threads"] == 2 for w in workers)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["environment"]["threads_setting"] == 2


def test_local_faults_killed_worker_and_failing_run(tiny, reference, tmp_path):
    """One worker dies during a run (resubmitted: every result exactly once), another run
    raises (reported, the others go on); the rerun redoes only the failed run."""
    out = tmp_path / "out"
    failing = "model1-setting2-seed0"
    marker = tmp_path / "killed"
    fn = functools.partial(chaos, kill=VICTIM, marker=str(marker), fail=failing)
    logs: list[str] = []
    result = sweep.sweep(tiny["protocol"], SEEDS, out_dir=out, jobs=2, data=tiny["ref"],
                         retries=0, fn=fn, log=logs.append, make_figures=False)
    assert marker.exists(), "the victim never ran"
    assert any(f"worker died while running {VICTIM}" in line for line in logs)
    assert outcome_pid(result.outcome, VICTIM) != int(marker.read_text())
    assert not result.ok and list(result.outcome.failures) == [failing]
    error = json.loads((out / "errors" / f"{failing}.json").read_text())
    assert error["error"] == f"ValueError: injected failure in {failing}"
    assert "Traceback" in error["traceback"]
    assert _run_files(out) == sorted(set(reference) - {failing})  # each once, no leftovers
    _same(result.outcome.records, {k: v for k, v in reference.items() if k != failing})
    cell = next(c for c in result.summary["cells"] if failing.startswith(c["cell_id"]))
    assert cell["n_error"] == 1 and cell["final_test_accuracy"]["n"] == SEEDS - 1
    # rerunning the same sweep redoes only the failed run, and clears its error file
    again = run(tiny, out, jobs=1)
    assert len(again.reused) == len(reference) - 1 and not again.failures
    assert not (out / "errors" / f"{failing}.json").exists()
    _same(again.records, reference)


def outcome_pid(outcome, run_id):
    return outcome.records[run_id]["worker"]["pid"]


INTERRUPTED_SWEEP = """
import functools, sys
import test_sweep
from numnet.lab import protocol, sweep
plan = sweep.expand(protocol.load(sys.argv[1]), test_sweep.SEEDS)
ref = sweep.DataRef("mnist", sys.argv[2], None, validation_size=50, verify=False)
fn = functools.partial(test_sweep.sleepy, victim=test_sweep.VICTIM)
sweep.run_sweep(plan.runs, sys.argv[3], ref, jobs=2, fn=fn, protocol_hash=plan.protocol.hash)
"""


def test_interrupt_stops_workers_keeps_finished_runs_and_resumes(tiny, reference, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent),
                                                         *sys.path])}
    proc = subprocess.Popen([sys.executable, "-c", INTERRUPTED_SWEEP, str(tiny["protocol"]),
                             str(tiny["data_dir"]), str(out)], env=env,
                            stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):  # every run but the sleeping victim finishes
            if len(list((out / "runs").glob("*.json"))) == len(reference) - 1:
                break
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)  # to the driver only, as `kill -INT` would
        _, err = proc.communicate(timeout=60)  # would hang if it waited for the victim
    finally:
        proc.kill()
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    assert f"of {len(reference)} runs are saved" in err and "Rerun the same command" in err
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(
        f"{t}{suffix}" for t in reference if t != VICTIM
        for suffix in (".json", ".metrics.csv"))  # complete files, no leftovers
    outcome = run(tiny, out, jobs=1)
    assert len(outcome.reused) == len(reference) - 1 and not outcome.failures
    _same(outcome.records, reference)


def test_shared_start_sweep_takes_shorter_runs_from_longer_ones(tiny, tmp_path):
    """A sweep is a reproduce over seeds: under shared starts, a replicate's run that is a
    prefix of another of the same replicate is taken from it (fewer trainings), with the
    numbers it has trained alone."""
    proto = protocol_mod.loads(TINY_PROTOCOL.replace(
        "[defaults]", "shared_start = true\n[defaults]").replace(
        "{ epochs = 1, lr = 0.05 }", "{ epochs = 1, lr = 0.5 }"))
    plan = sweep.expand(proto, SEEDS, models=["model1"])
    outcome = sweep.run_sweep(plan.runs, tmp_path / "out", tiny["ref"], jobs=2, log=_quiet,
                              protocol_hash=proto.hash)
    assert not outcome.failures
    data, _ = load_data(tiny["ref"])
    for r in range(SEEDS):
        got = outcome.records[f"model1-setting2-seed{r}"]["result"]
        assert got["shared_with"] == f"model1-setting1-seed{r}"
        alone = train_run(next(s for s in plan.runs if s.run_id == got["run_id"]), data)
        assert strip_timing(got) == strip_timing({**alone.to_dict(), "shared_with":
                                                  got["shared_with"]})


def test_cli_usage_errors(tiny, tmp_path, capsys):
    base = ["sweep", "--protocol", str(tiny["protocol"]), "--out", str(tmp_path / "o")]
    for extra, words in ((["--grid", "momentum=0.9"], "unknown key"),
                         (["--seeds", "0"], "--seeds"),
                         (["--models", "7"], "--models"),
                         (["--jobs", "2", "--scheduler", "tcp://127.0.0.1:1"], "exclude"),
                         (["--device", "cuda"], "cuda"),
                         (["--data-dir", str(tmp_path / "none")], "not a directory")):
        if extra[0] == "--device":
            from numnet.core import backend
            if backend.cuda_available():
                continue
        assert main(base + extra) == 2
        assert words in capsys.readouterr().err


# ------------------------------------------------------------------------------ Dask


def test_dask_worker_killed_results_identical_to_local(tiny, reference, cluster, tmp_path):
    marker = tmp_path / "killed"
    fn = functools.partial(kill_once, victim=VICTIM, marker=str(marker))
    out = tmp_path / "dask"
    outcome = run(tiny, out, scheduler=cluster, fn=fn)
    assert marker.exists(), "the victim never ran"
    assert not outcome.failures
    assert _run_files(out) == sorted(reference)  # every run's result, exactly once
    _same(outcome.records, reference)  # bit-identical accuracy lists (and everything else)
    assert outcome.records[VICTIM]["worker"]["pid"] != int(marker.read_text())
    pids = {r["worker"]["pid"] for r in outcome.records.values()}
    assert os.getpid() not in pids
    assert all(r["worker"]["blas_threads"] == [1] and r["worker"]["numnet_threads"] == 1
               for r in outcome.records.values())


def test_dask_failing_run_reported_others_go_on(tiny, reference, cluster, tmp_path):
    fn = functools.partial(fail_for, victim=VICTIM)
    outcome = run(tiny, tmp_path / "out", scheduler=cluster, retries=1, fn=fn)
    assert list(outcome.failures) == [VICTIM]
    failure = outcome.failures[VICTIM]
    assert failure.error == f"ValueError: injected failure in {VICTIM}"
    assert failure.attempts == 2
    _same(outcome.records, {k: v for k, v in reference.items() if k != VICTIM})


def test_dask_unreachable_scheduler_is_a_clear_error(tiny, tmp_path):
    pytest.importorskip("dask.distributed")
    groups = run_groups(list(tiny["plan"].runs[:1]))
    with pytest.raises(NumnetError, match="cannot connect"):
        list(executor.iter_dask(groups, work_group, (WorkContext(data=tiny["ref"]),),
                                scheduler="tcp://127.0.0.1:9", timeout=1))
