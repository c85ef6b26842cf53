"""``numnet sweep`` under hostile conditions: a driver terminated (SIGTERM) or killed (SIGKILL)
leaves no worker running, a bad scheduler address is refused at once, an absurd plan is refused
before anything starts. Worker functions live in this module (workers import it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_reliability_cli import one_line_error
from tiny_mnist import TINY_PROTOCOL

from numnet.lab import executor, protocol, sweep
from numnet.lab.cli import main
from numnet.lab.experiments import run_groups
from numnet.lab.experiments.execute import WorkContext, work_group


def hang(group, ctx, *, marker):
    """A group that never ends: it writes its worker's pid and parent's pid, then sleeps."""
    Path(marker).write_text(f"{os.getpid()} {os.getppid()}")
    time.sleep(300)


DRIVER = """
import functools, sys
import test_reliability_sweep as here
from numnet.lab import executor, protocol, sweep
from numnet.lab.cli import Terminated, sigterm_as_interrupt
from numnet.lab.experiments import run_groups
from numnet.lab.experiments.execute import WorkContext
groups = run_groups(list(sweep.expand(protocol.loads(here.TINY_PROTOCOL), 1).runs[:1]))
fn = functools.partial(here.hang, marker=sys.argv[1])
try:
    with sigterm_as_interrupt():
        for _ in executor.iter_local(groups, fn, (WorkContext(),), jobs=1):
            pass
except Terminated:
    print("terminated", flush=True)
    sys.exit(143)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def start_driver(tmp_path):
    marker = tmp_path / "worker"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent),
                                                         *sys.path])}
    # output to a file: a pipe would stay open as long as any child lives
    with open(tmp_path / "driver.out", "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(marker)], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    for _ in range(600):
        if marker.exists() and marker.read_text():
            break
        assert proc.poll() is None, (tmp_path / "driver.out").read_text()
        time.sleep(0.1)
    worker, forkserver = (int(v) for v in marker.read_text().split())
    return proc, worker, forkserver


def gone_within(pids, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
def test_no_worker_outlives_its_driver(tmp_path, sig) -> None:
    proc, worker, forkserver = start_driver(tmp_path)
    try:
        proc.send_signal(sig)
        proc.wait(timeout=30)
        if sig == signal.SIGTERM:
            assert proc.returncode == 143
            assert (tmp_path / "driver.out").read_text().strip() == "terminated"
        assert gone_within([worker, forkserver], 10), "a worker or the forkserver lives on"
    finally:
        proc.kill()
        for pid in (worker, forkserver):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize(("url", "words"), [
    ("notaurl", "is not a scheduler address tcp://HOST:PORT"),
    ("tcp://127.0.0.1", "is not a scheduler address"),
    ("tcp://127.0.0.1:99999", "the port must be a number from 1 to 65535"),
    ("tcp://127.0.0.1:0", "the port must be a number from 1 to 65535"),
    ("http://127.0.0.1:8786", "is not a scheduler address"),
])
def test_bad_scheduler_address_is_refused_at_once(tmp_path, capsys, url, words) -> None:
    proto = tmp_path / "p.toml"
    proto.write_text(TINY_PROTOCOL)
    started = time.perf_counter()
    assert main(["sweep", "--protocol", str(proto), "--scheduler", url,
                 "--out", str(tmp_path / "o"), "--quiet"]) == 2
    one_line_error(capsys, words)
    assert time.perf_counter() - started < 2


def test_refused_port_fails_fast(tmp_path) -> None:
    pytest.importorskip("dask.distributed")
    groups = run_groups(list(sweep.expand(protocol.loads(TINY_PROTOCOL), 1).runs[:1]))
    ctx = WorkContext(data=sweep.DataRef("mnist", None, None))
    started = time.perf_counter()
    with pytest.raises(Exception, match="cannot connect to a Dask scheduler"):
        list(executor.iter_dask(groups, work_group, (ctx,), scheduler="tcp://127.0.0.1:1"))
    assert time.perf_counter() - started < executor.CONNECT_TIMEOUT_S + 5


def test_absurd_number_of_runs_is_refused_at_once(tmp_path, capsys) -> None:
    proto = tmp_path / "p.toml"
    proto.write_text(TINY_PROTOCOL)
    started = time.perf_counter()
    assert main(["sweep", "--protocol", str(proto), "--seeds", "100000000",
                 "--out", str(tmp_path / "o"), "--quiet"]) == 2
    one_line_error(capsys, "--seeds 100000000 x 5 settings plans 500000000 runs")
    assert time.perf_counter() - started < 2
