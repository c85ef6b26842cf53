"""Property: on any bytes at all, ``read_idx`` returns an array that is exactly what the header
says and the file holds, or raises DataError -- never another exception, and it never
allocates much more than its ``max_bytes`` cap, whatever the header claims.

The generator builds IDX files from random type codes (valid and not), dimension counts (up to
255), dimensions (small, 28, huge), payloads one byte short or long or right, then damages some
(truncation, a flipped byte) and gzips some (damage before or after compression).
"""

from __future__ import annotations

import gzip
import hashlib
import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from numnet.core.errors import DataError
from numnet.core.idx import IDX_DTYPES, read_idx_hashed

CAP = 1 << 16  # what the reader may be asked to hold
SLACK = 1 << 21  # gzip's and the reader's buffers (1 MiB chunks), the header, Python objects
MAX_REAL_PAYLOAD = 1 << 12  # payloads the generator actually writes

HUGE = [28, 255, 65535, 2**24, 2**31, 2**32 - 1]


def sometimes(draw: st.DrawFn, one_in: int) -> bool:
    """True about once in ``one_in`` draws (shrinking towards False: the undamaged case)."""
    return draw(st.sampled_from([False] * (one_in - 1) + [True]))


@st.composite
def idx_files(draw: st.DrawFn) -> tuple[bytes, bytes, dict]:
    """``(file bytes, the decompressed content they stand for, read options)``."""
    valid = list(IDX_DTYPES)
    code = draw(st.sampled_from([0x00, 0x07, 0x0A, 0xFF] if sometimes(draw, 8) else valid))
    ndim = draw(st.sampled_from([0, 5, 33, 64, 65, 255])) if sometimes(draw, 5) else draw(
        st.integers(1, 4)
    )
    dims = [
        draw(st.sampled_from(HUGE)) if sometimes(draw, 4) else draw(st.integers(0, 7))
        for _ in range(min(ndim, 6))
    ]
    dims += [1] * (ndim - len(dims))  # many dimensions: mostly ones
    header = bytes([0, 0, code, ndim]) + np.asarray(dims, dtype=">u4").tobytes()
    itemsize = IDX_DTYPES[code].itemsize if code in IDX_DTYPES else 1
    exact = itemsize * math.prod(dims) if dims else 0
    size = exact if exact <= MAX_REAL_PAYLOAD else draw(st.integers(0, MAX_REAL_PAYLOAD))
    if sometimes(draw, 3):
        size = max(0, size + draw(st.sampled_from([-1, 1, -itemsize, 7, 4096])))
    seed = draw(st.integers(0, 2**16))
    content = header + np.random.default_rng(seed).bytes(size)
    if sometimes(draw, 6):  # cut short anywhere, the header included
        content = content[: draw(st.integers(0, len(content)))]

    def damage(data: bytes) -> bytes:
        if data and sometimes(draw, 6):
            i = draw(st.integers(0, len(data) - 1))
            data = data[:i] + bytes([data[i] ^ (1 << draw(st.integers(0, 7)))]) + data[i + 1 :]
        return data

    content = damage(content)
    on_disk = content
    if draw(st.booleans()):
        on_disk = damage(gzip.compress(content, compresslevel=1, mtime=0))
        if sometimes(draw, 6):
            on_disk = on_disk[: draw(st.integers(0, len(on_disk)))]
    options: dict = {}
    if sometimes(draw, 3):
        options["item_shape"] = draw(st.sampled_from([(), (28, 28), tuple(dims[1:])]))
    if sometimes(draw, 3):
        options["count"] = draw(st.sampled_from([0, 3, dims[0] if dims else 0]))
    return on_disk, content, options


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "f.idx"


@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=idx_files())
def test_read_idx_returns_the_header_s_array_or_a_data_error(
    scratch: Path, case: tuple[bytes, bytes, dict]
) -> None:
    on_disk, content, options = case
    scratch.write_bytes(on_disk)
    tracemalloc.start()
    try:
        array, sha = read_idx_hashed(scratch, max_bytes=CAP, **options)
    except DataError as exc:
        message = str(exc)
        assert message.startswith("f.idx: ") and "\n" not in message
        event("DataError: " + " ".join(message.split(": ")[1].split()[:3]))
        return
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < CAP + SLACK, f"peak {peak} bytes"
    # It read something: then the content it decompressed is exactly a valid IDX file.
    event(f"read, {'empty' if array.size == 0 else 'values'}")
    code, ndim = content[2], content[3]
    shape = tuple(int(d) for d in np.frombuffer(content[4 : 4 + 4 * ndim], dtype=">u4"))
    assert content[:2] == b"\0\0" and array.shape == shape
    assert array.dtype == IDX_DTYPES[code].newbyteorder("=") and array.dtype.isnative
    assert array.astype(IDX_DTYPES[code]).tobytes() == content[4 + 4 * ndim :]
    assert array.nbytes <= CAP
    assert "item_shape" not in options or shape[1:] == options["item_shape"]
    assert "count" not in options or shape[0] == options["count"]
    assert sha == hashlib.sha256(content).hexdigest()
