"""IDX files (the MNIST format), gzipped or raw, read and written with exact validation.

Layout (big-endian): two zero bytes, a type code, the number of dimensions ``ndim``, then
``ndim`` uint32 sizes, then the values in C order. MNIST images are ``idx3`` uint8
``(n, 28, 28)``; labels are ``idx1`` uint8 ``(n,)``.

Compression is detected from the content (the gzip magic ``1f 8b``), never from the file name.
Every failure raises ``DataError`` with one sentence naming the file and what
is wrong, e.g. ``train-images-idx3-ubyte.gz: truncated: header says 60000 images of 28x28, file
holds 59999.3``. Checksums are SHA-256 of the *decompressed* content (header + values).

Memory is bounded by what the header announces, and the header is checked *before* anything is
allocated: against the caller's expectations (``item_shape``, ``count``, ``dtype``) and against
``max_bytes``. A gzip stream is decompressed straight into the result array, never past the
size the header implies (plus a small probe that detects trailing data), so a small file that
inflates to gigabytes (a "gzip bomb") costs no more than the array it claims to hold.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import math
import os
import stat
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
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

#: Default limit on the values an IDX header may announce (MNIST's largest file is 47 MB), so a
#: forged header cannot make the reader allocate gigabytes.
MAX_PAYLOAD_BYTES = 1 << 30
#: NumPy 1.x supports 32 dimensions (2.x: 64); an IDX header may claim up to 255.
MAX_NDIM = 32
_CHUNK = 1 << 20
#: After the announced values, at most this many more decompressed bytes are read to report how
#: long a too-long file is; past it the message says "at least".
_TRAILING_PROBE = 1 << 16


def read_idx(
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    item_shape: Sequence[int] | None = None,
    count: int | None = None,
    dtype: np.dtype | str | type | None = None,
    max_bytes: int = MAX_PAYLOAD_BYTES,
) -> np.ndarray:
    """Read an IDX file (gzipped or raw) into a native-endian array of the header's shape.

    The optional expectations are checked against the header before anything is allocated:
    ``item_shape`` is the shape of one item (``(28, 28)`` for MNIST images, ``()`` for labels),
    ``count`` the number of items (the first dimension), ``dtype`` the value type. A header
    announcing more than ``max_bytes`` of values is refused. See :func:`read_idx_hashed`.
    """
    return read_idx_hashed(
        path, name=name, item_shape=item_shape, count=count, dtype=dtype, max_bytes=max_bytes
    )[0]


def read_idx_hashed(
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    item_shape: Sequence[int] | None = None,
    count: int | None = None,
    dtype: np.dtype | str | type | None = None,
    max_bytes: int = MAX_PAYLOAD_BYTES,
) -> tuple[np.ndarray, str]:
    """Read an IDX file; return ``(array, sha256 hex of the decompressed content)``.

    One pass: the values are decompressed straight into the result array and hashed there.
    ``name`` is what error messages call the file (default: its base name). ``item_shape``,
    ``count``, ``dtype`` and ``max_bytes`` as in :func:`read_idx`. Anything that is not a
    regular file (a directory, a FIFO, a device) is refused without being read.
    """
    path = Path(path)
    name = name or path.name
    expect = _Expect(
        None if item_shape is None else tuple(int(d) for d in item_shape),
        count,
        None if dtype is None else np.dtype(dtype),
        max_bytes,
    )
    raw = _open(path, name)
    with raw:
        try:
            compressed = raw.read(2) == GZIP_MAGIC
            raw.seek(0)
        except OSError as exc:
            raise DataError(f"{name}: read error: {exc.strerror or exc}") from None
        if compressed:
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                return _read_stream(stream, name, expect, file_size=None)
        return _read_stream(raw, name, expect, file_size=os.fstat(raw.fileno()).st_size)


class IdxHeaderMismatch(DataError):
    """The header disagrees with what the caller expected; ``field`` says which expectation:
    ``"dtype"``, ``"item_shape"`` or ``"count"``. Raised before anything is allocated."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class _Expect:
    """What the caller expects of the header (None: anything)."""

    item_shape: tuple[int, ...] | None
    count: int | None
    dtype: np.dtype | None
    max_bytes: int


def _open(path: Path, name: str) -> BinaryIO:
    """Open ``path`` for reading, refusing non-regular files before any read could block.

    O_NONBLOCK makes opening a FIFO return at once (a plain open would wait for a writer).
    """
    where = "" if name == str(path) else f" ({path})"
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        if os.path.islink(path):
            raise DataError(
                f"{name}: broken symbolic link{where}: it points to {os.readlink(path)}, which "
                "does not exist"
            ) from None
        raise DataError(f"{name}: file not found ({path})") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DataError(
                f"{name}: symbolic link loop{where}; replace the link with the file"
            ) from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise DataError(
                f"{name}: cannot open {path}: permission denied; make it readable "
                "(chmod u+r) or use a copy you can read"
            ) from None
        raise DataError(f"{name}: cannot open {path}: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file (FIFO or device)"
            raise DataError(f"{name}: is {kind}{where}, where an IDX file was expected")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _read_stream(
    stream: BinaryIO, name: str, expect: _Expect, *, file_size: int | None
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
    if ndim > MAX_NDIM:
        raise DataError(
            f"{name}: the IDX header declares {ndim} dimensions, more than the {MAX_NDIM} "
            "numnet reads (a damaged header?)"
        )
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
    describe = _describe(shape)
    _check_header(name, code, shape, describe, expect)
    item_bytes = disk_dtype.itemsize * math.prod(shape[1:])
    payload = item_bytes * shape[0]
    if file_size is not None and file_size - 4 - 4 * ndim != payload:
        held = file_size - 4 - 4 * ndim
        problem = "truncated" if held < payload else "too long"
        raise DataError(
            f"{name}: {problem}: header says {describe}, file holds {_count(held, item_bytes)}"
        )

    try:
        values = np.empty(shape, dtype=disk_dtype)
    except (MemoryError, ValueError) as exc:
        raise DataError(f"{name}: cannot allocate {payload} bytes for {describe}: {exc}") from None
    view = memoryview(values.reshape(-1).view(np.uint8))
    got = extra = 0
    try:
        # readinto never writes past the view: the decompression stops at the announced size
        while got < payload:
            n = stream.readinto(view[got : got + _CHUNK])
            if not n:
                break
            got += n
        # A short probe for trailing data; reading to the end also makes gzip check its CRC.
        while got == payload and extra <= _TRAILING_PROBE:
            chunk = stream.read(_TRAILING_PROBE + 1 - extra)
            if not chunk:
                break
            extra += len(chunk)
    except EOFError:
        raise DataError(
            f"{name}: truncated: header says {describe}, the gzip stream is cut short after "
            f"{_count(got, item_bytes)}"
        ) from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{name}: corrupt gzip data: {exc}") from None
    except OSError as exc:
        raise DataError(f"{name}: read error: {exc.strerror or exc}") from None
    if got < payload:
        raise DataError(
            f"{name}: truncated: header says {describe}, file holds {_count(got, item_bytes)}"
        )
    if extra > _TRAILING_PROBE:
        raise DataError(
            f"{name}: too long: header says {describe}, file holds more than "
            f"{_count(payload + _TRAILING_PROBE, item_bytes)} (not read further)"
        )
    if extra:
        raise DataError(
            f"{name}: too long: header says {describe}, file holds "
            f"{_count(payload + extra, item_bytes)}"
        )
    hasher.update(view)
    del view
    if not disk_dtype.isnative and disk_dtype.itemsize > 1:
        values = values.byteswap(inplace=True).view(disk_dtype.newbyteorder("="))
    return values, hasher.hexdigest()


def _check_header(
    name: str, code: int, shape: tuple[int, ...], describe: str, expect: _Expect
) -> None:
    """The header against the caller's expectations and the size limit, before allocating."""
    disk_dtype = IDX_DTYPES[code]
    if expect.dtype is not None and (disk_dtype.kind, disk_dtype.itemsize) != (
        expect.dtype.kind,
        expect.dtype.itemsize,
    ):
        raise IdxHeaderMismatch(
            f"{name}: header says {describe} of type 0x{code:02X} "
            f"({disk_dtype.newbyteorder('=').name}), expected {expect.dtype.name} values",
            "dtype",
        )
    if expect.item_shape is not None and shape[1:] != expect.item_shape:
        raise IdxHeaderMismatch(
            f"{name}: header says {describe}, expected {_items(expect.item_shape)}", "item_shape"
        )
    if expect.count is not None and shape[0] != expect.count:
        raise IdxHeaderMismatch(
            f"{name}: header says {describe}, expected {expect.count} {_noun(shape)}", "count"
        )
    # NumPy refuses shapes whose nonzero dimensions multiply past its limit, even when one
    # dimension is 0; bounding that product bounds both the allocation and NumPy's check.
    size = disk_dtype.itemsize * math.prod(d for d in shape if d)
    if size > expect.max_bytes:
        raise DataError(
            f"{name}: header says {describe} ({size} bytes), more than the {expect.max_bytes} "
            "bytes numnet reads from one IDX file (a damaged header?)"
        )


def _read_exact(stream: BinaryIO, n: int, name: str) -> bytes:
    """Read up to ``n`` bytes (fewer only at end of file), mapping read errors to DataError."""
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
    except OSError as exc:
        raise DataError(f"{name}: read error: {exc.strerror or exc}") from None
    return b"".join(parts)


def _noun(shape: tuple[int, ...]) -> str:
    return {1: "labels", 2: "rows", 3: "images"}.get(len(shape), "items")


def _describe(shape: tuple[int, ...]) -> str:
    text = f"{shape[0]} {_noun(shape)}"
    if len(shape) > 1:
        text += " of " + "x".join(str(d) for d in shape[1:])
    return text


def _items(item_shape: tuple[int, ...]) -> str:
    """'labels (one dimension)', 'images of 28x28', ... for an expected per-item shape."""
    noun = _noun((0, *item_shape))
    if not item_shape:
        return f"{noun} (one dimension)"
    return f"{noun} of " + "x".join(str(d) for d in item_shape)
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
