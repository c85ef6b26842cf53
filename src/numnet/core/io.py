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
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from numnet.core import documents
from numnet.core.errors import FolderError, NumnetError, OutputError, UnsafeNameError

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


#: The folders a run's outputs go into inside ``--out`` (records, weights, figures): a file in
#: the way of one of them is found before any work, not after the training.
OUTPUT_SUBDIRS = ("runs", "weights", "figures")


def check_output_dir(path: str | os.PathLike[str],
                     subdirs: tuple[str, ...] = OUTPUT_SUBDIRS) -> Path:
    """Make sure numnet can write into the folder ``path`` before any work is done: it is
    created if needed, and a probe file is written and removed. An empty path is refused (it
    would mean the working directory). Each of ``subdirs`` that exists must be a folder numnet
    can write into too (``OUT/weights`` being a file would otherwise be found after the
    training, when the weights are saved). Raises OutputError naming the folder."""
    if not os.fspath(path):  # bad usage, not a failed write
        raise NumnetError("the output folder is empty (''); give a folder name, e.g. --out "
                          "runs/mine")
    path = make_dir(path)
    for folder in (path, *(child_path(path, name) for name in subdirs)):
        if folder != path and not os.path.lexists(folder):
            continue  # created when first written into
        if folder != path and not folder.is_dir():
            raise output_error(folder, OSError(_errno.ENOTDIR, os.strerror(_errno.ENOTDIR)))
        try:
            fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-probe.",
                                         suffix=PART_SUFFIX)
            try:
                os.write(fd, b"numnet")
                os.fsync(fd)
            finally:
                os.close(fd)
                os.unlink(probe)
        except OSError as exc:
            raise output_error(folder, exc) from None
    return path


# ------------------------------------------------------------------------------ safe names

#: A name numnet makes a file name of: letters, digits and ``. _ - +`` (``+``: a run id holds
#: the learning rate as ``%g``, e.g. ``lr1e+06``), starting with a letter or a digit (not a
#: hidden file, not an option), at most 100 characters.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")
MAX_NAME_LENGTH = 100


def check_safe_name(name: object, what: str = "name") -> str:
    """``name`` if it can be used as one file name inside a folder; else an UnsafeNameError
    naming the value: not a string, empty, longer than 100 characters, holding anything but
    letters, digits and ``. _ - +`` (so no ``/``, ``\\``, NUL, control characters, bytes that
    are not UTF-8), starting with ``.``/``-``/``_``/``+``, or holding ``..``."""
    if not isinstance(name, str):
        raise UnsafeNameError(f"{what} {name!r} is not a name (a string expected)")
    shown = repr(name)  # escapes control characters and undecodable bytes: one line
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    if not SAFE_NAME.fullmatch(name) or ".." in name:
        raise UnsafeNameError(
            f"{what} {shown} cannot name a file: use 1 to {MAX_NAME_LENGTH} letters, digits, "
            "'.', '_', '-' or '+', starting with a letter or a digit, without '..' (no path "
            "separators, no control characters)")
    return name


def child_path(folder: str | os.PathLike[str], name: str, suffix: str = "",
               what: str = "name") -> Path:
    """The path of the file ``name + suffix`` directly inside ``folder``: the one way numnet
    makes a path from a name taken from a document or an option (run ids, model and protocol
    names, figure names). ``name`` must pass :func:`check_safe_name` and the result must stay
    inside ``folder`` once made absolute (checked again, so no later change to the rules can
    let a name escape); an UnsafeNameError naming the value otherwise."""
    check_safe_name(name, what)
    if suffix and (not re.fullmatch(r"[A-Za-z0-9._+-]{1,40}", suffix) or ".." in suffix):
        raise UnsafeNameError(f"suffix {suffix!r} of {what} {name!r} cannot be part of a file "
                              "name")
    base = Path(os.path.abspath(folder))
    path = Path(os.path.abspath(base / f"{name}{suffix}"))
    if path.parent != base:
        raise UnsafeNameError(f"{what} {name!r} would leave the folder {base}")
    return Path(folder) / f"{name}{suffix}"


def relative_child(folder: str | os.PathLike[str], relative: str, what: str = "file") -> Path:
    """``folder / relative`` for a relative path of safe names (``figures/<run>.cnn.png``):
    each part must pass :func:`check_safe_name`, so the result stays inside ``folder``."""
    parts = relative.split("/")
    path = Path(folder)
    for part in parts:
        path = child_path(path, part, what=what)
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


def read_json(path: str | os.PathLike[str], what: str = "JSON file") -> Any:
    """Load a JSON file through :func:`numnet.core.documents.read_json` (a regular file, at
    most 64 MiB, nested at most 32 deep, finite numbers only); a missing, malformed or
    out-of-bounds file is a NumnetError naming it."""
    return documents.read_json(path, what)


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
            # O_NOFOLLOW: a link planted in the folder must not make us create or truncate a
            # file elsewhere; O_NONBLOCK: a FIFO planted there must not block the open.
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                         | os.O_CLOEXEC, _FILE_MODE)
        except OSError as exc:
            if exc.errno == _errno.ELOOP:
                raise FolderError(f"{lock_path} is a symbolic link, not numnet's lock file; "
                                  "remove it") from None
            raise output_error(lock_path, exc) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise FolderError(f"{lock_path} is not a regular file (a pipe, a device or a "
                              "socket), so it is not numnet's lock file; remove it")
        os.set_blocking(fd, True)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # at most 64 bytes of a file anyone may have written: only a pid is shown
            holder = (os.pread(fd, 64, 0).decode("ascii", "replace").split() or ["unknown"])[0]
            holder = holder if holder.isdigit() else "unknown"
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
