"""numnet's cache: one sub-directory per data set holding the raw (decompressed) IDX files,
at :func:`default_cache_dir` unless a cache root is given.

numnet owns the cache: a file there that fails its checks is deleted and fetched again (a
directory in its place is left alone and named). Only verified files are written, atomically
(temporary ``.*.part`` file, fsync, rename); the temporary files a killed process left behind
are removed on the next fetch.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

try:  # POSIX only: the password database, for a home directory when $HOME is unusable
    import pwd
except ImportError:  # Windows
    pwd = None

import numpy as np

from numnet.core.errors import DataError
from numnet.core.idx import write_idx
from numnet.core.io import remove_stale_parts
from numnet.lab.data.checks import Found, is_dir, read_checked
from numnet.lab.data.registry import DatasetSpec, IdxFileSpec, get_spec

ENV_CACHE_DIR = "NUMNET_CACHE_DIR"

log = logging.getLogger("numnet.lab.data")


def default_cache_dir() -> Path:
    """``$NUMNET_CACHE_DIR``, else ``$XDG_CACHE_HOME/numnet``, else ``~/.cache/numnet``.

    Empty variables count as unset (``HOME=""`` must not put the cache at ``/.cache``);
    ``XDG_CACHE_HOME`` must be absolute (the XDG rule). Raises a DataError saying to set
    ``NUMNET_CACHE_DIR`` when none of them gives a location.
    """
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "numnet"
    home = _home()
    if home is None:
        raise DataError(
            "no cache directory: HOME and XDG_CACHE_HOME are unset or empty and the user has no "
            f"home directory; set {ENV_CACHE_DIR} to a writable directory (or pass --cache-dir)"
        )
    return home / ".cache" / "numnet"


def _home() -> Path | None:
    """$HOME, else the password database's entry; an empty, relative or "/" home is none."""

    def usable(home: str | None) -> bool:
        # "/" is nobody's cache: /.cache/numnet would be a surprise (HOME="" expands to "/")
        return bool(home) and os.path.isabs(home) and Path(home) != Path("/")

    home = os.environ.get("HOME")
    if usable(home):
        return Path(home)
    if pwd is None:
        return None
    try:
        home = pwd.getpwuid(os.getuid()).pw_dir
    except (KeyError, OSError):
        return None
    return Path(home) if usable(home) else None


def dataset_cache_dir(dataset: str | DatasetSpec, cache_dir: str | os.PathLike[str] | None) -> Path:
    """The directory holding one data set's cached files: ``<cache root>/<data set name>``."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / get_spec(dataset).name


def prepare_cache(spec: DatasetSpec, cache_dir: str | os.PathLike[str] | None) -> Path:
    """Create the data set's cache directory and remove stale temporary files; return it."""
    cache = dataset_cache_dir(spec, cache_dir)
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = "a file is in the way" if isinstance(exc, FileExistsError) else exc.strerror
        raise DataError(
            f"cache dir {cache}: cannot create it ({reason or exc}); set {ENV_CACHE_DIR} "
            "to a writable directory"
        ) from None
    # A read-only cache keeps its leftovers: harmless, and not a reason to stop a load.
    with contextlib.suppress(OSError):
        remove_stale_parts(cache)
    return cache


def from_cache(spec: DatasetSpec, cache: Path, found: Found) -> None:
    """Take the cached files that pass their checks; delete those that fail."""
    for f in spec.files:
        path = cache / f.name
        if not os.path.lexists(path):
            continue
        try:
            array, sha = read_checked(spec, f, path, str(path), pinned=True, found=found)
        except DataError as exc:
            _discard(path, exc, found)
            continue
        found.add(f.name, array, sha, path, "cache")


def _discard(path: Path, exc: DataError, found: Found) -> None:
    """Delete a bad cached file (it is fetched again), or say once why that is not possible."""
    fix = f"delete it yourself, or set {ENV_CACHE_DIR} to another directory"
    if is_dir(path) and not os.path.islink(path):  # never delete a directory numnet did not make
        raise DataError(f"{exc}; it is in numnet's cache, where only IDX files belong: {fix}")
    try:
        path.unlink()
    except OSError as unlink_exc:
        raise DataError(
            f"{exc}; numnet cannot remove this bad file from its cache "
            f"({unlink_exc.strerror or unlink_exc}): {fix}"
        ) from None
    text = f"cache: {exc}; removed it"
    found.notes.append(text)
    log.warning("numnet: %s", text)


def store(cache: Path, f: IdxFileSpec, array: np.ndarray) -> Path:
    """Write a verified array into the cache as raw IDX (atomically)."""
    path = cache / f.name
    write_idx(path, array, compress=False)
    return path


@dataclass(frozen=True)
class CachedFile:
    """State of one cached file: ``status`` is "verified", "missing", "mismatch" or "invalid"."""

    name: str
    path: Path
    status: str
    size: int | None = None
    shape: tuple[int, ...] | None = None
    sha256: str | None = None
    detail: str = ""


def cache_info(
    dataset: str | DatasetSpec = "mnist", cache_dir: str | os.PathLike[str] | None = None
) -> list[CachedFile]:
    """Check each of the data set's cached files against its pin (reads and hashes them)."""
    spec = get_spec(dataset)
    cache = dataset_cache_dir(spec, cache_dir)
    out = []
    for f in spec.files:
        path = cache / f.name
        if not os.path.lexists(path):
            out.append(CachedFile(f.name, path, "missing"))
            continue
        try:
            size: int | None = path.stat().st_size
        except OSError:
            size = None
        try:
            array, sha = read_checked(spec, f, path, f.name, pinned=False)
        except DataError as exc:
            out.append(CachedFile(f.name, path, "invalid", size, detail=str(exc)))
            continue
        status = "verified" if sha == f.sha256 else "mismatch"
        out.append(CachedFile(f.name, path, status, size, array.shape, sha))
    return out
