"""IDX reader and writer: round trips, exact bytes, and one precise error per corruption."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from numnet.core.errors import DataError
from numnet.core.idx import (
    idx_header,
    idx_sha256,
    read_idx,
    read_idx_hashed,
    write_idx,
)

CASES = [
    ("uint8", (3, 4, 5)),
    ("uint8", (7,)),
    ("int8", (2, 3)),
    ("int16", (4, 2, 2)),
    ("int32", (2, 1, 3, 2)),
    ("float32", (5, 3)),
    ("float64", (6,)),
    ("uint8", (0, 28, 28)),
]


def _values(dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(1)
    if np.dtype(dtype).kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(("dtype", "shape"), CASES)
def test_round_trip(tmp_path: Path, dtype: str, shape: tuple[int, ...], compress: bool) -> None:
    array = _values(dtype, shape)
    path = tmp_path / "x.idx"
    sha = write_idx(path, array, compress=compress)
    back, sha_read = read_idx_hashed(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    assert back.shape == shape
    np.testing.assert_array_equal(back, array)
    content = gzip.decompress(path.read_bytes()) if compress else path.read_bytes()
    assert sha == sha_read == idx_sha256(array) == hashlib.sha256(content).hexdigest()
    assert back.flags.writeable


def test_exact_bytes_big_endian() -> None:
    # Worked by hand: magic 00 00 0B (int16) 01 (1 dim), size 2, values 0x0102 and -2.
    header = idx_header(np.int16, (2,))
    assert header == bytes.fromhex("0000 0b01 00000002")


def test_writer_bytes_and_deterministic_gzip(tmp_path: Path) -> None:
    array = np.array([258, -2], dtype=np.int16)
    write_idx(tmp_path / "a", array)
    assert (tmp_path / "a").read_bytes() == bytes.fromhex("0000 0b01 00000002 0102 fffe")
    write_idx(tmp_path / "b.gz", array)
    first = (tmp_path / "b.gz").read_bytes()
    write_idx(tmp_path / "b.gz", array)
    assert (tmp_path / "b.gz").read_bytes() == first  # no time stamp in the gzip header
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b.gz"]  # no temporary files


def test_compression_detected_by_content_not_name(tmp_path: Path) -> None:
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "gz-but-named-raw", array, compress=True)
    write_idx(tmp_path / "raw-but-named.gz", array, compress=False)
    np.testing.assert_array_equal(read_idx(tmp_path / "gz-but-named-raw"), array)
    np.testing.assert_array_equal(read_idx(tmp_path / "raw-but-named.gz"), array)


def test_writer_refuses_types_idx_cannot_hold(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="int64"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------- errors


def _write(path: Path, data: bytes, compress: bool = False) -> Path:
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    return path


def _images(n: int = 3) -> bytes:
    return idx_header(np.uint8, (n, 4, 5)) + bytes(i % 251 for i in range(n * 20))


def _error(path: Path) -> str:
    with pytest.raises(DataError) as info:
        read_idx(path)
    return str(info.value)


def test_truncated_message_as_in_the_issue(tmp_path: Path) -> None:
    # 60000 images announced, 59999.3 present; a sparse file, so no 47 MB written.
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with open(path, "wb") as f:
        f.write(idx_header(np.uint8, (60000, 28, 28)))
        f.truncate(16 + 59999 * 784 + 236)
    assert _error(path) == (
        "train-images-idx3-ubyte.gz: truncated: header says 60000 images of 28x28, "
        "file holds 59999.3"
    )


@pytest.mark.parametrize("compress", [False, True])
def test_truncated_content(tmp_path: Path, compress: bool) -> None:
    path = _write(tmp_path / "t.idx", _images()[:-10], compress)
    assert _error(path) == "t.idx: truncated: header says 3 images of 4x5, file holds 2.5"


@pytest.mark.parametrize("compress", [False, True])
def test_trailing_data(tmp_path: Path, compress: bool) -> None:
    path = _write(tmp_path / "t.idx", _images() + b"\x00" * 30, compress)
    assert _error(path) == "t.idx: too long: header says 3 images of 4x5, file holds 4.5"


def test_whole_number_counts_are_not_rounded(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.idx", _images()[:-1])
    assert _error(path).endswith("header says 3 images of 4x5, file holds 2 and 19 bytes")


def test_label_file_counts(tmp_path: Path) -> None:
    path = _write(tmp_path / "l", idx_header(np.uint8, (10,)) + bytes(7))
    assert _error(path) == "l: truncated: header says 10 labels, file holds 7"


def test_cut_gzip_stream(tmp_path: Path) -> None:
    data = gzip.compress(_images(50), mtime=0)
    path = tmp_path / "cut.gz"
    path.write_bytes(data[: len(data) // 2])
    message = _error(path)
    assert message.startswith("cut.gz: truncated: header says 50 images of 4x5")
    assert "gzip stream is cut short" in message


def test_corrupt_gzip_crc(tmp_path: Path) -> None:
    data = bytearray(gzip.compress(_images(), mtime=0))
    data[-8] ^= 0xFF  # the CRC-32 in the gzip trailer
    path = tmp_path / "crc.gz"
    path.write_bytes(bytes(data))
    assert _error(path).startswith("crc.gz: corrupt gzip data: CRC check failed")


def test_corrupt_deflate_data(tmp_path: Path) -> None:
    # gzip header, then a deflate block of the reserved type 3 (bits BFINAL=1, BTYPE=11)
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(b"", mtime=0)[:10] + b"\x07" + bytes(20))
    assert _error(path) == (
        "bad.gz: corrupt gzip data: Error -3 while decompressing data: invalid block type"
    )


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "x: empty file (an IDX file starts with a 4-byte magic number)"),
        (b"\x00\x00", "x: not an IDX file: it starts with 00 00 where an IDX file starts"),
        (b"PK\x03\x04rest", "x: not an IDX file: it starts with 50 4b 03 04 where"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "x: unknown IDX type code 0x07 (known: 0x08"),
        (b"\x00\x00\x08\x00", "x: the IDX header declares 0 dimensions"),
        (
            b"\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00",
            "x: truncated header: 3 dimension sizes announced, file holds 1",
        ),
        (
            b"\x00\x00\x0d\x02\xff\xff\xff\xff\xff\xff\xff\xff",
            "x: header says 4294967295 rows of 4294967295 (",
        ),
    ],
)
def test_header_errors(tmp_path: Path, data: bytes, expected: str) -> None:
    path = _write(tmp_path / "x", data)
    assert _error(path).startswith(expected)


def test_missing_file(tmp_path: Path) -> None:
    assert _error(tmp_path / "nope").startswith("nope: file not found")
