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
import errno as _errno
import fcntl
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from numnet.core.errors import FolderError, NumnetError, OutputError

PART_SUFFIX = ".part"
LOCK_NAME = ".numnet.lock"

_WHAT_TO_DO = {
    _errno.ENOSPC: "free some space or choose another output folder",
    _errno.EDQUOT: "free some space or choose another output folder",
    _errno.EROFS: "the file system is read-only; choose another output folder",
    _errno.EACCES: "no permission; choose a folder you can write to",
    _errno.EPERM: "no permission; choose a folder you can write to",
    _errno.ENOTDIR: "a file is in the way (a folder was expected); choose another path",
    _errno.EEXIST: "a file is in the way (a folder was expected); choose another path",
    _errno.EISDIR: "a folder is in the way (a file was expected); choose another path",
}


def output_error(path: str | os.PathLike[str], exc: OSError) -> OutputError:
    """The one-line :class:`OutputError` for an OSError met while writing ``path``: the path,
    the system's reason and what to do."""
    if isinstance(exc, OutputError):
        return exc
    reason = exc.strerror or str(exc)
    hint = _WHAT_TO_DO.get(exc.errno or 0, "check the path and the disk")
    return OutputError(f"cannot write {os.fsdecode(path)!s} ({reason}); {hint}",
                       exc.errno, exc.strerror, os.fsdecode(path))


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

    A failure of the file system (no space, read-only, permission, a file in the way) is an
    :class:`~numnet.core.errors.OutputError` naming ``path``; no temporary file is left.
    """
    path = Path(path)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                        suffix=PART_SUFFIX)
    except OSError as exc:
        raise output_error(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), _FILE_MODE)
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        # A file-system failure (not, say, a network error of the caller's block) is ours.
        if (isinstance(exc, OSError) and not isinstance(exc, OutputError)
                and exc.errno in _WHAT_TO_DO):
            raise output_error(path, exc) from None
        raise
    _fsync_dir(path.parent)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, creating the parent folders; return the path."""
    path = Path(path)
    make_dir(path.parent)
    with atomic_writer(path) as f:
        f.write(data)
    return path


def make_dir(path: str | os.PathLike[str]) -> Path:
    """Create the folder ``path`` (and its parents) if needed; an OutputError naming it when
    that is impossible (a file in the way, read-only, no permission)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(path, exc) from None
    if not path.is_dir():  # mkdir(exist_ok=True) accepts a symlink to a file on some systems
        raise output_error(path, OSError(_errno.ENOTDIR, os.strerror(_errno.ENOTDIR)))
    return path


def check_output_dir(path: str | os.PathLike[str]) -> Path:
    """Make sure numnet can write into the folder ``path`` before any work is done: it is
    created if needed, and a probe file is written and removed. An empty path is refused (it
    would mean the working directory). Raises OutputError naming the folder."""
    if not os.fspath(path):  # bad usage, not a failed write
        raise NumnetError("the output folder is empty (''); give a folder name, e.g. --out "
                          "runs/mine")
    path = make_dir(path)
    try:
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-probe.", suffix=PART_SUFFIX)
        try:
            os.write(fd, b"numnet")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise output_error(path, exc) from None
    return path


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically (see :func:`write_bytes`)."""
    return write_bytes(path, text.encode("utf-8"))


def dumps_json(obj: Any) -> str:
    """numnet's JSON text: indented by one space, strict, with a final newline. A NaN or an
    infinity is never written: it is a NumnetError naming its key path (``runs[3].lr``)."""
    try:
        return json.dumps(obj, indent=1, allow_nan=False) + "\n"
    except ValueError:
        where = non_finite_path(obj)
        if where is None:
            raise
        raise NumnetError(f"{where} is not a finite number; numnet does not write NaN or "
                          "infinity into JSON (this is a bug: please report it)") from None


def non_finite_path(obj: Any, path: str = "") -> str | None:
    """The key path of the first NaN or infinity inside a JSON-like value, or None."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else (path or "the value")
    if isinstance(obj, dict):
        items: Any = ((f"{path}.{k}" if path else str(k), v) for k, v in obj.items())
    elif isinstance(obj, list | tuple):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(obj))
    else:
        return None
    for key, value in items:
        found = non_finite_path(value, key)
        if found is not None:
            return found
    return None


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


@contextlib.contextmanager
def folder_lock(directory: str | os.PathLike[str], what: str = "numnet") -> Iterator[Path]:
    """Hold an exclusive lock on the folder ``directory`` while the block runs.

    The lock is ``fcntl.flock`` on ``directory/.numnet.lock`` (which holds the holder's pid):
    the kernel releases it when the process exits, killed or not, so a crash leaves no stale
    lock. A second process gets a :class:`~numnet.core.errors.FolderError` naming the holder's
    pid at once (it does not wait). The lock file is removed on release. Yields the folder.
    """
    directory = make_dir(directory)
    lock_path = directory / LOCK_NAME
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, _FILE_MODE)
        except OSError as exc:
            raise output_error(lock_path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = (os.pread(fd, 64, 0).decode("ascii", "replace").split() or ["unknown"])[0]
            os.close(fd)
            raise FolderError(
                f"{directory} is in use by another numnet process (pid {holder}); wait for it "
                "to finish, stop it, or choose another --out") from None
        # The holder before us may have removed the file after we opened it: then our lock is
        # on a file nobody else will see; open the current one again.
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {what}\n".encode(), 0)
        yield directory
    finally:
        # Removed while still held, so no one can lock the old file after us; a killed process
        # leaves the file, and its lock dies with it.
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        os.close(fd)


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
