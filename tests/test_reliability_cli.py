"""Hostile input at the command line's boundary and failed writes: every failure is one line on
stderr (``numnet: error: ...``) with exit 2 (bad usage or input) or 1 (a write failed), found
before any training, and nothing half-written is left (tiny data, in process)."""

from __future__ import annotations

import errno
import os
import signal
import threading
import time
import warnings

import numpy as np
import pytest
from tiny_mnist import TINY_PROTOCOL, tiny_datasets

import numnet.core.io
import numnet.lab.data
from numnet.core import runtime
from numnet.core.errors import NumnetError
from numnet.core.io import write_json
from numnet.lab import experiments, protocol
from numnet.lab.cli import main

DATA = tiny_datasets()
TRAIN = ["train", "--model", "1", "--epochs", "1", "--batch-size", "10", "--eval-every", "20",
         "--eval-train-examples", "100", "--eval-test-examples", "100", "--quiet",
         "--threads", "1"]


@pytest.fixture(autouse=True)
def loads(monkeypatch):
    """The tiny digits instead of MNIST; the list records every load (none: refused first)."""
    calls: list[int] = []

    def load(*args, **kwargs):
        calls.append(1)
        return DATA

    monkeypatch.setattr(numnet.lab.data, "load", load)
    return calls


def one_line_error(capsys, *fragments: str) -> str:
    """The stderr of a failed command: one error line, ``numnet: error: ...``, holding each
    fragment, and no traceback (progress lines of the work done before may precede it)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("numnet: error")]
    assert len(lines) == 1 and err.rstrip("\n").endswith(lines[0]), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def write_protocol(path, text: str = TINY_PROTOCOL):
    path.write_text(text)
    return path


# ------------------------------------------------------------------ crashes after the work


def test_a_run_without_curve_points_is_reported(tmp_path, capsys) -> None:
    # [quick] eval_every far beyond the 56 updates: no point on the learning curves, the run is
    # still a result with its report (was: TypeError formatting None, no report)
    proto = write_protocol(tmp_path / "p.toml", TINY_PROTOCOL.replace(
        "eval_every = 5", "eval_every = 100000"))
    out = tmp_path / "out"
    assert main(["reproduce", "--protocol", str(proto), "--quick", "--models", "2",
                 "--out", str(out), "--quiet", "--threads", "1"]) == 0
    assert "Model 2" in capsys.readouterr().out
    assert (out / "report.html").is_file() and (out / "summary_table.png").is_file()
    assert main(["report", str(out)]) == 0


def test_out_that_is_a_file_is_refused_before_training(tmp_path, capsys, loads) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (blocker, blocker / "under"):
        assert main([*TRAIN, "--lr", "0.01", "--out", str(out)]) == 1
        one_line_error(capsys, str(out), "a file is in the way")
    assert loads == []  # no data loaded, nothing trained


def test_out_under_proc_and_empty_out(tmp_path, capsys, loads) -> None:
    assert main([*TRAIN, "--lr", "0.01", "--out", "/proc/numnet-test"]) == 1
    one_line_error(capsys, "cannot write /proc/numnet-test")
    assert main([*TRAIN, "--lr", "0.01", "--out", ""]) == 2
    one_line_error(capsys, "the output folder is empty")
    assert main(["reproduce", "--out", "", "--quiet"]) == 2
    one_line_error(capsys, "the output folder is empty")
    assert loads == []


def test_read_only_out_is_refused_before_training(tmp_path, capsys, loads, monkeypatch) -> None:
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(numnet.core.io.tempfile, "mkstemp", read_only)
    assert main([*TRAIN, "--lr", "0.01", "--out", str(tmp_path / "ro")]) == 1
    one_line_error(capsys, "Read-only file system", "choose another output folder")
    assert loads == []


def fail_fsync_for(monkeypatch, name: str, code: int) -> None:
    """os.fsync fails with ``code`` for the temporary file of ``name`` (a full disk, ...)."""
    real = os.fsync

    def fsync(fd: int) -> None:
        if name in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(code, os.strerror(code))
        real(fd)

    monkeypatch.setattr(numnet.core.io.os, "fsync", fsync)


def test_disk_full_while_writing_the_figure(tmp_path, capsys, monkeypatch) -> None:
    proto = write_protocol(tmp_path / "p.toml")
    out = tmp_path / "out"
    fail_fsync_for(monkeypatch, "learning_curves.png", errno.ENOSPC)
    assert main(["reproduce", "--protocol", str(proto), "--quick", "--models", "2",
                 "--out", str(out), "--quiet", "--threads", "1"]) == 1
    one_line_error(capsys, "learning_curves.png", "No space left on device", "free some space")
    assert not (out / "learning_curves.png").exists()
    assert not list(out.rglob("*.part"))  # no half-written file
    assert (out / "results.json").is_file()  # what was written before stays whole


def test_disk_full_while_saving_weights(tmp_path, capsys, monkeypatch) -> None:
    fail_fsync_for(monkeypatch, ".npz", errno.ENOSPC)
    out = tmp_path / "t"
    assert main([*TRAIN, "--lr", "0.01", "--out", str(out)]) == 1
    one_line_error(capsys, ".npz", "No space left on device")
    assert not list(out.rglob("*.part")) and not list(out.rglob("*.npz"))


def test_protocol_path_that_is_not_utf8(tmp_path, capsys) -> None:
    raw = os.path.join(os.fsencode(tmp_path), b"proto-\xff.toml")
    with open(raw, "w") as f:
        f.write(TINY_PROTOCOL)
    out = tmp_path / "out"
    assert main(["reproduce", "--protocol", os.fsdecode(raw), "--quick", "--models", "2",
                 "--out", str(out), "--quiet", "--threads", "1"]) == 0
    capsys.readouterr()
    assert "proto-\ufffd.toml" in (out / "report.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("lr", ["inf", "1e309", "nan", "-inf"])
def test_non_finite_learning_rate_is_refused_up_front(lr, capsys, loads) -> None:
    assert main([*TRAIN, f"--lr={lr}"]) == 2
    one_line_error(capsys, "--lr must be positive and finite")
    assert loads == []


@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_non_finite_learning_rate_in_a_protocol(tmp_path, value) -> None:
    proto = write_protocol(tmp_path / "p.toml",
                           TINY_PROTOCOL.replace("lr = 0.005", f"lr = {value}"))
    with pytest.raises(NumnetError, match=r"models.model2.settings\[0\].lr must be a positive "
                                          "finite number"):
        protocol.load(proto)


def test_no_json_file_ever_holds_nan(tmp_path) -> None:
    with pytest.raises(NumnetError, match=r"runs\[0\].loss\[1\] is not a finite number"):
        write_json(tmp_path / "r.json", {"runs": [{"loss": [0.5, float("nan")]}]})
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ bad input at the boundary


@pytest.mark.parametrize("value", ["abc", "", "0", "-2"])
def test_bad_numnet_threads_is_one_line(value, monkeypatch, capsys, loads) -> None:
    monkeypatch.setenv("NUMNET_THREADS", value)
    assert main([*TRAIN, "--lr", "0.01"]) == 2
    one_line_error(capsys, f"NUMNET_THREADS must be a positive integer, got {value!r}")
    assert loads == []


def test_negative_seed_is_refused_before_the_data(capsys, loads) -> None:
    assert main([*TRAIN, "--lr", "0.01", "--seed", "-1"]) == 2
    one_line_error(capsys, "--seed must be an integer from 0")
    assert main(["reproduce", "--seed", "-1", "--quiet"]) == 2
    one_line_error(capsys, "--seed must be an integer from 0")
    assert loads == []


def test_absurd_plans_are_refused_at_once(tmp_path, capsys, loads) -> None:
    started = time.perf_counter()
    assert main([*TRAIN, "--lr", "0.01", "--epochs", "100000000"]) == 2
    one_line_error(capsys, "--epochs 100000000 plans", "updates", "use fewer epochs")
    proto = write_protocol(tmp_path / "p.toml",
                           TINY_PROTOCOL.replace("epochs = 1, lr = 0.005",
                                                 "epochs = 100000000, lr = 0.005"))
    assert main(["reproduce", "--protocol", str(proto), "--quiet"]) == 2
    one_line_error(capsys, "models.model2.settings[0].epochs = 100000000 plans")
    assert time.perf_counter() - started < 2 and loads == []


# ------------------------------------------------------------------ misleading messages


def test_protocol_path_that_is_a_directory_or_a_device(tmp_path, capsys) -> None:
    assert main(["reproduce", "--protocol", str(tmp_path), "--quiet"]) == 2
    one_line_error(capsys, "is a directory, not a protocol file")
    assert main(["reproduce", "--protocol", "/dev/null", "--quiet"]) == 2
    one_line_error(capsys, "/dev/null is not a regular file")


def test_protocol_with_a_byte_order_mark_is_read(tmp_path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + TINY_PROTOCOL.encode())
    assert protocol.load(path).name == "tiny"


@pytest.mark.parametrize("name", ["/tmp/evil", "../up", "a/b", ".hidden", "", "x" * 101,
                                  "a b", "..", "<script>"])
def test_protocol_name_cannot_leave_runs(tmp_path, name) -> None:
    text = TINY_PROTOCOL.replace('name = "tiny"', f"name = {name!r}".replace("'", '"'))
    with pytest.raises(NumnetError, match="names the output folder"):
        protocol.loads(text, source="p.toml")


def test_file_name_gives_a_safe_default_name(tmp_path) -> None:
    path = write_protocol(tmp_path / "my run.toml", TINY_PROTOCOL.replace('name = "tiny"\n', ""))
    assert protocol.load(path).name == "my-run"


# ------------------------------------------------------------------ signals


def test_sigterm_is_handled_like_ctrl_c(monkeypatch, capsys) -> None:
    def killed(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts this
        raise AssertionError("SIGTERM did not interrupt")

    monkeypatch.setattr(experiments, "reproduce", killed)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["reproduce", "--quiet"]) == 143
    assert capsys.readouterr().err.strip() == "numnet: terminated (SIGTERM)"
    assert signal.getsignal(signal.SIGTERM) is before  # main gives the handler back


def test_helper_threads_keep_the_callers_errstate() -> None:
    big = np.full(8, 3e38, dtype=np.float32)

    lanes: set[str] = set()

    def part(k: int) -> None:
        big * np.float32(10)  # overflows: inf, and a RuntimeWarning unless ignored
        lanes.add(threading.current_thread().name)
        time.sleep(0.02)  # long enough for the helper lane to take chunks too

    with runtime.threads(2):
        if not runtime.RUNTIME.blas_controllers():
            pytest.skip("helper threads need threadpoolctl")
        with warnings.catch_warnings(record=True) as caught, np.errstate(over="ignore"):
            warnings.simplefilter("always")
            runtime.run_lanes(part, 4)
    assert len(lanes) == 2  # the caller and a helper ran chunks
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
