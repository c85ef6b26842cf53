"""IDX files (the MNIST format), gzipped or raw, read and written with exact validation.

Layout (big-endian): two zero bytes, a type code, the number of dimensions ``ndim``, then
``ndim`` uint32 sizes, then the values in C order. MNIST images are ``idx3`` uint8
``(n, 28, 28)``; labels are ``idx1`` uint8 ``(n,)``.

Compression is detected from the content (the gzip magic ``1f 8b``), never from the file name.
Every failure raises ``DataError`` with one sentence naming the file and what
is wrong, e.g. ``train-images-idx3-ubyte.gz: truncated: header says 60000 images of 28x28, file
holds 59999.3``. Checksums are SHA-256 of the *decompressed* content (header + values).
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from numnet.core.errors import DataError
from numnet.core.io import atomic_writer

GZIP_MAGIC = b"\x1f\x8b"

# IDX type code -> on-disk dtype (all multi-byte types are big-endian).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_TYPE_CODES = {(dt.kind, dt.itemsize): code for code, dt in IDX_DTYPES.items()}

# Refuse headers that announce absurd sizes before allocating for them (MNIST is 47 MB).
MAX_PAYLOAD_BYTES = 1 << 32
_CHUNK = 1 << 20


def read_idx(path: str | os.PathLike[str], *, name: str | None = None) -> np.ndarray:
    """Read an IDX file (gzipped or raw) into a native-endian array of the header's shape."""
    return read_idx_hashed(path, name=name)[0]


def read_idx_hashed(
    path: str | os.PathLike[str], *, name: str | None = None
) -> tuple[np.ndarray, str]:
    """Read an IDX file; return ``(array, sha256 hex of the decompressed content)``.

    One pass: the values are decompressed straight into the result array and hashed there.
    ``name`` is what error messages call the file (default: its base name).
    """
    path = Path(path)
    name = name or path.name
    try:
        raw = open(path, "rb")  # closed by the with-block below
    except FileNotFoundError:
        raise DataError(f"{name}: file not found ({path})") from None
    except OSError as exc:
        raise DataError(f"{name}: cannot open {path}: {exc.strerror or exc}") from None
    with raw:
        compressed = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        if compressed:
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                return _read_stream(stream, name, compressed=True, file_size=None)
        return _read_stream(raw, name, compressed=False, file_size=os.fstat(raw.fileno()).st_size)


def _read_stream(
    stream: BinaryIO, name: str, *, compressed: bool, file_size: int | None
) -> tuple[np.ndarray, str]:
    hasher = hashlib.sha256()
    magic = _read_exact(stream, 4, name)
    if len(magic) == 0:
        raise DataError(f"{name}: empty file (an IDX file starts with a 4-byte magic number)")
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0:
        raise DataError(
            f"{name}: not an IDX file: it starts with {magic.hex(' ')} where an IDX file starts "
            "with two zero bytes, a type code and the number of dimensions"
        )
    code, ndim = magic[2], magic[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X} {dt.name}" for c, dt in IDX_DTYPES.items())
        raise DataError(f"{name}: unknown IDX type code 0x{code:02X} (known: {known})")
    if ndim == 0:
        raise DataError(f"{name}: the IDX header declares 0 dimensions")
    dims_bytes = _read_exact(stream, 4 * ndim, name)
    if len(dims_bytes) < 4 * ndim:
        raise DataError(
            f"{name}: truncated header: {ndim} dimension sizes announced, "
            f"file holds {len(dims_bytes) // 4}"
        )
    shape = tuple(int(d) for d in np.frombuffer(dims_bytes, dtype=">u4"))
    hasher.update(magic)
    hasher.update(dims_bytes)

    disk_dtype = IDX_DTYPES[code]
    item_bytes = disk_dtype.itemsize * math.prod(shape[1:])
    payload = item_bytes * shape[0]
    describe = _describe(shape)
    if payload > MAX_PAYLOAD_BYTES:
        raise DataError(f"{name}: header says {describe} ({payload} bytes), implausibly large")
    if file_size is not None and file_size - 4 - 4 * ndim != payload:
        held = file_size - 4 - 4 * ndim
        problem = "truncated" if held < payload else "too long"
        raise DataError(
            f"{name}: {problem}: header says {describe}, file holds {_count(held, item_bytes)}"
        )

    values = np.empty(shape, dtype=disk_dtype)
    view = memoryview(values.reshape(-1).view(np.uint8))
    got = 0
    try:
        while got < payload:
            n = stream.readinto(view[got : got + _CHUNK])
            if not n:
                break
            got += n
        extra = 0
        if got == payload:  # read to the end: counts trailing bytes, makes gzip check its CRC
            while chunk := stream.read(_CHUNK):
                extra += len(chunk)
    except EOFError:
        raise DataError(
            f"{name}: truncated: header says {describe}, the gzip stream is cut short after "
            f"{_count(got, item_bytes)}"
        ) from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{name}: corrupt gzip data: {exc}") from None
    except OSError as exc:
        raise DataError(f"{name}: read error: {exc}") from None
    if got < payload:
        raise DataError(
            f"{name}: truncated: header says {describe}, file holds {_count(got, item_bytes)}"
        )
    if extra:
        raise DataError(
            f"{name}: too long: header says {describe}, file holds "
            f"{_count(payload + extra, item_bytes)}"
        )
    hasher.update(view)
    del view
    if not disk_dtype.isnative and disk_dtype.itemsize > 1:
        values = values.astype(disk_dtype.newbyteorder("="))
    return values, hasher.hexdigest()


def _read_exact(stream: BinaryIO, n: int, name: str) -> bytes:
    """Read up to ``n`` bytes (fewer only at end of file), mapping gzip errors to DataError."""
    parts = []
    need = n
    try:
        while need:
            chunk = stream.read(need)
            if not chunk:
                break
            parts.append(chunk)
            need -= len(chunk)
    except EOFError:
        raise DataError(f"{name}: truncated: the gzip stream ends inside the IDX header") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{name}: corrupt gzip data: {exc}") from None
    return b"".join(parts)


def _noun(shape: tuple[int, ...]) -> str:
    return {1: "labels", 2: "rows", 3: "images"}.get(len(shape), "items")


def _describe(shape: tuple[int, ...]) -> str:
    text = f"{shape[0]} {_noun(shape)}"
    if len(shape) > 1:
        text += " of " + "x".join(str(d) for d in shape[1:])
    return text


def _count(nbytes: int, item_bytes: int) -> str:
    """How many items ``nbytes`` hold, as '59999.3' or '59999 and 12 bytes'."""
    if item_bytes == 0:
        return f"{nbytes} bytes of values"
    whole, rest = divmod(nbytes, item_bytes)
    if rest == 0:
        return str(whole)
    text = f"{nbytes / item_bytes:.1f}"
    if not whole < float(text) < whole + 1:  # one decimal would print a whole number
        return f"{whole} and {rest} bytes"
    return text


def idx_header(dtype: np.dtype | str, shape: tuple[int, ...]) -> bytes:
    """The IDX header for an array of ``dtype`` and ``shape``."""
    dtype = np.dtype(dtype)
    code = _TYPE_CODES.get((dtype.kind, dtype.itemsize))
    if code is None:
        known = ", ".join(dt.name for dt in IDX_DTYPES.values())
        raise ValueError(f"IDX cannot store dtype {dtype} (it stores {known})")
    if not 1 <= len(shape) <= 255 or any(not 0 <= d < 2**32 for d in shape):
        raise ValueError(f"IDX cannot store shape {shape}")
    return bytes([0, 0, code, len(shape)]) + np.asarray(shape, dtype=">u4").tobytes()


def idx_content(array: np.ndarray) -> tuple[bytes, np.ndarray]:
    """``(header, values)`` of ``array`` as IDX: values big-endian C-contiguous (a view if
    ``array`` already is)."""
    array = np.asarray(array)
    header = idx_header(array.dtype, array.shape)
    disk_dtype = IDX_DTYPES[header[2]]
    return header, np.ascontiguousarray(array, dtype=disk_dtype)


def idx_sha256(array: np.ndarray) -> str:
    """SHA-256 of the uncompressed IDX content that :func:`write_idx` would write for ``array``."""
    header, values = idx_content(array)
    hasher = hashlib.sha256(header)
    hasher.update(memoryview(values.reshape(-1).view(np.uint8)))
    return hasher.hexdigest()


def write_idx(
    path: str | os.PathLike[str], array: np.ndarray, *, compress: bool | None = None
) -> str:
    """Write ``array`` as an IDX file, atomically; return the SHA-256 of the uncompressed content.

    ``compress=None`` gzips when ``path`` ends in ``.gz``. The gzip stream is deterministic
    (no time stamp, no embedded name), so equal arrays give equal files.
    """
    path = Path(path)
    if compress is None:
        compress = path.suffix == ".gz"
    header, values = idx_content(array)
    data = memoryview(values.reshape(-1).view(np.uint8))
    hasher = hashlib.sha256(header)
    hasher.update(data)
    with atomic_writer(path) as f:
        if compress:
            with gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as gz:
                gz.write(header)
                gz.write(data)
        else:
            f.write(header)
            f.write(data)
    return hasher.hexdigest()


def check_labels(labels: np.ndarray, name: str, num_classes: int = 10) -> None:
    """Labels must be a 1-d integer IDX array with every value in ``0..num_classes-1``."""
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(
            f"{name}: expected a label file (integer IDX with 1 dimension), found "
            f"{labels.dtype.name} with shape {labels.shape}"
        )
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{name}: label {int(labels[i])} at index {i} is outside 0-{num_classes - 1} "
            f"({bad.size} such labels)"
        )


def check_images(images: np.ndarray, name: str, image_shape: tuple[int, int] | None) -> None:
    """Images must be uint8 ``(n, h, w)``; with ``image_shape``, ``(h, w)`` must equal it."""
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DataError(
            f"{name}: expected uint8 images of shape (n, height, width), found "
            f"{images.dtype.name} with shape {images.shape}"
        )
    if image_shape is not None and images.shape[1:] != tuple(image_shape):
        h, w = image_shape
        raise DataError(
            f"{name}: expected {h}x{w} images, found {images.shape[1]}x{images.shape[2]}"
        )


def check_pair(images: np.ndarray, labels: np.ndarray, images_name: str, labels_name: str) -> None:
    """An image file and its label file must hold the same number of examples."""
    if len(images) != len(labels):
        raise DataError(
            f"{images_name} holds {len(images)} images but {labels_name} holds "
            f"{len(labels)} labels; the two files must come from the same data set"
        )
