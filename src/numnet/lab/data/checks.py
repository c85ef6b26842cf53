"""What every source shares: reading a file with its expectations checked before anything is
allocated (:func:`read_checked`), and the record of what the sources found so far
(:class:`Found`).
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from numnet.core.datasets import check_labels, check_pair
from numnet.core.errors import DataError
from numnet.core.idx import IdxHeaderMismatch, read_idx_hashed
from numnet.lab.data.registry import DatasetSpec, IdxFileSpec, identify

log = logging.getLogger("numnet.lab.data")


class NotPinned(DataError):
    """A well-formed file that is not the official one: its checksum or its count differs
    from the pin (``verify=False`` would accept it)."""


@dataclass
class Found:
    """What the sources have produced so far, keyed by file name (``"train-images-idx3-ubyte"``)."""

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


def note(found: Found, progress: bool, text: str) -> None:
    """Record why a source did not serve; say it on stderr when showing progress."""
    found.notes.append(text)
    if progress:
        print(f"numnet: {text}", file=sys.stderr)
    else:
        log.info(text)


def read_checked(
    spec: DatasetSpec,
    f: IdxFileSpec,
    path: Path,
    name: str,
    *,
    pinned: bool,
    found: Found | None = None,
) -> tuple[np.ndarray, str]:
    """Read one of ``spec``'s files at ``path``; ``name`` labels errors.

    The header is checked against the data set before anything is allocated, so a forged
    header or a gzip bomb costs 16 bytes of reading: images must be uint8 ``(n, 28, 28)``,
    labels one-dimensional, and a label file whose image file is already in ``found`` must hold
    as many labels. These shape checks hold whatever ``pinned`` says: numnet's models take
    28x28 images and ten classes. ``pinned``: the file must be the official one (its count is
    checked from the header, its SHA-256 after reading; :class:`NotPinned` if not). Returns
    ``(array, sha256 of the decompressed content)``.
    """
    images = spec.files.index(f) in (0, 2)  # train images, test images
    count = f.count if pinned else None
    count_is_pin = count is not None
    if not images and found is not None:
        partner = spec.files[spec.files.index(f) - 1]
        if partner.name in found.arrays:
            count, count_is_pin = len(found.arrays[partner.name]), False
    try:
        array, sha = read_idx_hashed(
            path,
            name=name,
            item_shape=spec.image_shape if images else (),
            count=count,
            dtype=np.uint8 if images else None,
        )
    except IdxHeaderMismatch as exc:
        if exc.field == "count" and count_is_pin:
            raise NotPinned(f"{exc} (the official {spec.title} count)") from None
        if exc.field == "item_shape" and images:
            h, w = spec.image_shape
            raise DataError(
                f"{exc}; numnet's models take {h}x{w} images (--no-verify does not change that)"
            ) from None
        raise
    if not images:  # an image file's dtype and shape were checked from its header
        check_labels(array, name, spec.num_classes)
    if pinned and sha != f.sha256:
        raise NotPinned(mismatch(name, sha, f, spec.title))
    return array, sha


def check_pairs(spec: DatasetSpec, found: Found) -> None:
    """Each image file and its label file hold the same number of examples."""
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


def mismatch(path: Path | str, sha: str, f: IdxFileSpec, title: str) -> str:
    """The message for a file whose checksum is not the pin (naming the data set it is from)."""
    known = identify(sha)
    if known is not None and known[0].title != title:
        what = f"it is {known[0].title}'s {known[1].name}: use --dataset {known[0].name}"
    elif known is not None:
        what = f"it is {title}'s {known[1].name}"
    else:
        what = f"not the official {title} {f.name}"
    return f"{path}: SHA-256 of the decompressed content is {sha}, expected {f.sha256} ({what})"


def is_dir(path: Path) -> bool:
    """``path.is_dir()`` that says False instead of raising (no permission, a link loop)."""
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False
