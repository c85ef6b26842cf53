"""numnet's one file-I/O module: atomic writes, strict JSON, text. Standard library only.

Every file numnet writes (weights, results, records, reports, figures, data-cache files) goes
through :func:`atomic_writer`, so a reader sees either the old file or the complete new one,
never a part: the content goes to a hidden temporary file in the destination's directory (same
filesystem, so the final ``os.replace`` is atomic), is flushed and fsync'ed, then renamed over
the destination. On any error the temporary file is removed.

:func:`write_json` writes strict JSON (``allow_nan=False``: a NaN or an infinity is an error,
never silently written); :func:`read_json` turns a missing or malformed file into one
:class:`numnet.core.errors.NumnetError` that names the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from numnet.core.errors import NumnetError

PART_SUFFIX = ".part"


def _read_umask() -> int:
    # os.umask can only be read by setting it; done once, at import (before any threads).
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates files 0600; a kept file gets the mode open() would have given it.
_FILE_MODE = 0o666 & ~_read_umask()


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Open a temporary file for writing ``path``; on a clean exit it replaces ``path``.

    ``with atomic_writer("out.bin") as f: f.write(data)`` - "out.bin" appears (or changes)
    only once the block has succeeded.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=PART_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), _FILE_MODE)
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, creating the parent folders; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path) as f:
        f.write(data)
    return path


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically (see :func:`write_bytes`)."""
    return write_bytes(path, text.encode("utf-8"))


def dumps_json(obj: Any) -> str:
    """numnet's JSON text: indented by one space, strict (NaN and infinities raise
    ``ValueError``), with a final newline."""
    return json.dumps(obj, indent=1, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as strict JSON (:func:`dumps_json`) to ``path`` atomically."""
    return write_text(path, dumps_json(obj))


def read_json(path: str | os.PathLike[str]) -> Any:
    """Load a JSON file; a missing or malformed file is a NumnetError naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NumnetError(f"{path} does not exist") from None
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError included
        raise NumnetError(f"{path} is not a readable numnet JSON file: {exc}") from None


@contextlib.contextmanager
def temporary_path(directory: str | os.PathLike[str], name: str) -> Iterator[Path]:
    """A hidden ``.part`` path in ``directory`` that is removed when the block exits."""
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=PART_SUFFIX)
    os.close(fd)
    try:
        yield Path(tmp_name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)


def remove_stale_parts(directory: str | os.PathLike[str], older_than_s: float = 3600.0) -> int:
    """Delete ``.*.part`` files and directories left in ``directory`` by a killed process.

    Only entries older than ``older_than_s`` go, so a download running in another process now
    keeps its temporary file. Returns how many entries were removed.
    """
    removed = 0
    cutoff = time.time() - older_than_s
    with contextlib.suppress(FileNotFoundError):
        for entry in Path(directory).glob(f".*{PART_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                if entry.lstat().st_mtime >= cutoff:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink()
                removed += 1
    return removed


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not possible on every platform/filesystem.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
