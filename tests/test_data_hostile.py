"""The data layer as a hostile user meets it, file by file: every failure is one DataError
line naming the file and what to do -- no traceback, no hang, no memory blow-up.

Memory is measured with ``tracemalloc`` (NumPy reports its array buffers to it), so "never
allocates the 4 GiB the header claims" is an assertion, not a hope. The cache, its location
and the downloads: ``test_data_hostile_cache.py``.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
from pathlib import Path

import numpy as np
import pytest
from hostile_support import (
    PERMISSIONS_IGNORED,
    MiB,
    gzip_with_zeros,
    one_line_error,
    peak_bytes,
    registered_fake,
)
from test_data_support import FakeMnist, make_fake_mnist

from numnet.core.errors import DataError
from numnet.core.idx import idx_header, read_idx, write_idx
from numnet.lab.data import fetch, load


@pytest.fixture(scope="module")
def fake_once(tmp_path_factory: pytest.TempPathFactory) -> FakeMnist:
    return make_fake_mnist(tmp_path_factory.mktemp("fake"))


@pytest.fixture
def fake(fake_once: FakeMnist, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeMnist:
    return registered_fake(fake_once, tmp_path, monkeypatch)


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
