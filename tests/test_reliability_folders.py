"""Output folders under hostile conditions: a killed process's leftovers, a second process, a
rerun with another configuration, a damaged weights file (tiny data, in process)."""

from __future__ import annotations

import json
import os

import pytest
from folder_support import held_by_another_process
from test_reliability_cli import TRAIN, one_line_error
from tiny_mnist import TINY_PROTOCOL, tiny_datasets

import numnet.lab.data
from numnet.core import serialize
from numnet.core.errors import FolderError
from numnet.core.io import LOCK_NAME, folder_lock
from numnet.lab.cli import main

DATA = tiny_datasets()


@pytest.fixture(autouse=True)
def tiny(monkeypatch):
    monkeypatch.setattr(numnet.lab.data, "load", lambda *a, **k: DATA)


@pytest.fixture
def proto(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_PROTOCOL)
    return path


def reproduce(proto, out, *extra: str) -> int:
    return main(["reproduce", "--protocol", str(proto), "--quick", "--models", "2",
                 "--out", str(out), "--quiet", "--threads", "1", *extra])


def test_stale_parts_of_a_killed_process_are_removed(proto, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    (out / "weights").mkdir(parents=True)
    stale = [out / ".results.json.abc.part", out / "weights" / ".model2-setting1.npz.x.part"]
    for path in stale:
        path.write_bytes(b"half")
    assert reproduce(proto, out) == 0
    assert not any(p.exists() for p in stale)
    assert not list(out.rglob("*.part")) and not (out / LOCK_NAME).exists()


def test_a_second_process_is_refused_with_the_holder_pid(proto, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with held_by_another_process(out) as holder:
        assert reproduce(proto, out) == 2
        one_line_error(capsys, f"in use by another numnet process (pid {holder.pid})")
        assert main([*TRAIN, "--lr", "0.01", "--out", str(out)]) == 2
        one_line_error(capsys, f"pid {holder.pid}")
    # the kernel released the lock of the killed holder: the folder is usable again
    assert reproduce(proto, out) == 0


def test_lock_is_exclusive_within_a_process_too(tmp_path) -> None:
    with folder_lock(tmp_path), pytest.raises(FolderError, match=f"pid {os.getpid()}"):
        with folder_lock(tmp_path):
            pass
    with folder_lock(tmp_path):  # released
        pass


def test_another_seed_into_the_same_folder_is_refused(proto, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert reproduce(proto, out) == 0
    before = (out / "results.json").read_bytes()
    capsys.readouterr()
    assert reproduce(proto, out, "--seed", "3") == 2
    one_line_error(capsys, "holds the outputs of another configuration", "seed: 7 there, 3 now",
                   "--force")
    assert (out / "results.json").read_bytes() == before  # nothing replaced
    assert reproduce(proto, out, "--seed", "3", "--force") == 0
    assert json.loads((out / "results.json").read_text())["protocol"]["seed"] == 3


def test_another_protocol_into_the_same_folder_is_refused(proto, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert reproduce(proto, out) == 0
    other = tmp_path / "other.toml"
    other.write_text(TINY_PROTOCOL.replace("batch_size = 10", "batch_size = 11"))
    capsys.readouterr()
    assert reproduce(other, out) == 2
    one_line_error(capsys, "batch_size: 10 there, 11 now")
    # train into a reproduce folder: another kind of output
    assert main([*TRAIN, "--lr", "0.01", "--out", str(out)]) == 2
    one_line_error(capsys, "written by numnet reproduce, not train")


def test_train_resumes_or_refuses_as_reproduce_does(tmp_path, capsys) -> None:
    out = tmp_path / "t"
    assert main([*TRAIN, "--lr", "0.01", "--out", str(out)]) == 0
    weights = out / "weights" / "model1-e1-lr0.01.npz"
    stamp = weights.stat().st_mtime_ns
    capsys.readouterr()
    assert main([*TRAIN, "--lr", "0.01", "--out", str(out)]) == 0
    assert "already finished" in capsys.readouterr().err
    assert weights.stat().st_mtime_ns == stamp  # reused, not retrained
    # the same run made another way would replace it: refused
    assert main([*TRAIN, "--lr", "0.01", "--out", str(out), "--seed", "5"]) == 2
    one_line_error(capsys, "seed: 0 there, 5 now")
    assert main([*TRAIN, "--lr", "0.01", "--out", str(out), "--seed", "5", "--force"]) == 0
    # another run sits beside it (numnet report DIR shows them side by side)
    assert main([*TRAIN, "--lr", "0.02", "--out", str(out)]) == 0
    assert main([*TRAIN, "--lr", "0.01", "--out", str(out), "--seed", "5"]) == 0  # reused
    assert "already finished" in capsys.readouterr().err


def test_truncated_weights_are_not_trusted_on_resume(proto, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert reproduce(proto, out) == 0
    weights = out / "weights" / "model2-setting1.npz"
    weights.write_bytes(weights.read_bytes()[:200])  # truncated (e.g. copied off a full disk)
    capsys.readouterr()
    assert reproduce(proto, out) == 0
    assert "(1 trained, 0 reused)" in capsys.readouterr().err
    serialize.verify(weights)  # a whole file again
