"""Local sources: a directory the user names (``--data-dir`` / ``NUMNET_DATA_DIR``) and the
directories where a system package installs the files (Debian's ``dataset-fashion-mnist``).

The user's directory is used in place, never copied, and every failure there is a DataError
naming the path: the user meant these files, so numnet does not fall through to another source.
A system directory is only a candidate: a problem there is noted and the next source tried.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from numnet.core.errors import DataError
from numnet.lab.data.cache import store
from numnet.lab.data.checks import Found, NotPinned, is_dir, note, read_checked
from numnet.lab.data.registry import DatasetSpec

ENV_DATA_DIR = "NUMNET_DATA_DIR"


def check_data_dir(directory: Path, from_env: bool) -> str:
    """Raise a DataError unless ``directory`` is a directory; return how messages name it."""
    label = f"data dir {directory}" + (f" (from {ENV_DATA_DIR})" if from_env else "")
    if from_env:
        hint = f"set {ENV_DATA_DIR} to the directory holding the four IDX files, or unset it"
    else:
        hint = "pass the directory holding the four IDX files"
    try:
        mode = os.stat(directory).st_mode
    except FileNotFoundError:
        raise DataError(f"{label}: not a directory (nothing is there); {hint}") from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise DataError(f"{label}: not a directory it can read ({reason}); {hint}") from None
    if not stat.S_ISDIR(mode):
        raise DataError(f"{label}: not a directory (it is a file); {hint}")
    return label


def from_data_dir(spec: DatasetSpec, directory: Path, verify: bool, from_env: bool) -> Found:
    """The four files from the user's directory. ``verify=False`` accepts checksums that differ
    from the pins (another data set, on purpose); the shape checks hold regardless."""
    label = check_data_dir(directory, from_env)
    found = Found()
    for f in spec.files:
        path = find_in_dir(directory, f.name)
        if path is None:
            names = ", ".join(g.name + "[.gz]" for g in spec.files)
            raise DataError(
                f"{label}: {f.name}.gz (or {f.name}) not found; it must hold the "
                f"four {spec.title} IDX files ({names})"
            )
        try:
            array, sha = read_checked(spec, f, path, str(path), pinned=verify, found=found)
        except NotPinned as exc:
            raise DataError(f"{exc}; pass --no-verify (verify=False) to use it anyway") from None
        found.add(f.name, array, sha, path, f"data dir {directory}")
    return found


def from_system_dir(
    spec: DatasetSpec, directory: Path, cache: Path, found: Found, progress: bool
) -> None:
    """Files a system package installed: verified, then copied into the cache."""
    if not is_dir(directory):
        found.notes.append(f"system dir {directory}: not present")
        return
    origin = f"system dir {directory}"
    for f in found.missing(spec):
        try:
            path = find_in_dir(directory, f.name)
            if path is None:
                found.notes.append(f"{origin}: {f.name}[.gz] not found")
                continue
            array, sha = read_checked(spec, f, path, str(path), pinned=True, found=found)
        except DataError as exc:
            note(found, progress, f"{exc}; trying the next source")
            continue
        found.add(f.name, array, sha, store(cache, f, array), origin)


def find_in_dir(directory: Path, name: str) -> Path | None:
    """The regular file holding ``name`` in ``directory`` (``name.gz``, ``name`` or LeCun's
    dotted spelling), None when there is none. A candidate that exists but cannot be used (a
    directory, a broken link, a link loop, no permission) is a DataError naming it, unless a
    usable candidate exists too."""
    # TF wrote "<name>.gz"; some copies are decompressed or use LeCun's "train-images.idx3-ubyte".
    dotted = name.replace("-idx", ".idx")
    problem: str | None = None
    for candidate in (f"{name}.gz", name, f"{dotted}.gz", dotted):
        path = directory / candidate
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            if os.path.islink(path) and problem is None:
                problem = f"{path}: broken symbolic link (to {os.readlink(path)}); fix or remove it"
            continue
        except OSError as exc:
            problem = problem or f"{path}: cannot be read ({exc.strerror or exc}); fix or remove it"
            continue
        if stat.S_ISREG(mode):
            return path
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        problem = problem or f"{path}: is {kind}, where an IDX file was expected; remove it"
    if problem is not None:
        raise DataError(problem)
    return None
