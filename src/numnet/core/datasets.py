"""TensorFlow 1.x compatible ``DataSet`` / ``Datasets``: the protocol's split and batching.

``DataSet.next_batch`` reproduces ``tensorflow.contrib.learn.datasets.mnist.DataSet.next_batch``
(shuffle=True): a fresh permutation on the first call and at every epoch boundary; a batch that
runs past the end of an epoch takes the examples left, reshuffles, and is completed from the
start of the new epoch. The shuffling is driven by a seeded ``numpy.random.Generator``.

The ``check_*`` functions say, as one-line :class:`DataError`, why arrays cannot be a data set
the models take: :func:`check_images`, :func:`check_labels` and :func:`check_pair` on the uint8
IDX arrays, :func:`check_shapes` on built ``Datasets`` (e.g. handed to the training code).

A ``DataSet`` whose images are TF's conversion of uint8 pixels pickles as those pixels (a
quarter of the bytes) and redoes the conversion when unpickled: worker processes get their
data sooner, bit for bit the same (:func:`compact_pixels` checks it at pickling time).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from numnet.core.errors import DataError

#: TF 1.x's pixel scale, ``numpy.multiply(images, 1.0 / 255.0)`` on float32 images.
PIXEL_SCALE = np.float32(1.0 / 255.0)

#: Rows converted at a time by :func:`compact_pixels` (its float32 buffer stays in cache).
_COMPACT_ROWS = 4096


def pixels_to_images(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels (any shape) -> float32 images of that shape, ``float32(p) * float32(1/255)``:
    TF 1.x's conversion bit for bit (not a correctly rounded ``p / 255``: one unit in the last
    place apart for 126 of the 256 values)."""
    images = pixels.astype(np.float32)
    images *= PIXEL_SCALE
    return images


def compact_pixels(images: np.ndarray) -> np.ndarray | None:
    """The uint8 pixels whose :func:`pixels_to_images` is ``images`` bit for bit (float32,
    any shape), or None where there are none (other values, another dtype, NaN, -0.0).

    Done in blocks of rows, so it costs a pass over the images and no full-size float copy."""
    if images.dtype != np.float32 or images.ndim == 0 or images.size == 0:
        return None
    flat = images.reshape(len(images), -1)
    pixels = np.empty(flat.shape, np.uint8)
    block = np.empty((min(_COMPACT_ROWS, len(flat)), flat.shape[1]), np.float32)
    for start in range(0, len(flat), _COMPACT_ROWS):
        rows, out = flat[start:start + _COMPACT_ROWS], pixels[start:start + _COMPACT_ROWS]
        guess = block[: len(rows)]
        np.multiply(rows, np.float32(255.0), out=guess)
        np.rint(guess, out=guess)
        np.fmax(guess, 0, out=guess)  # fmax/fmin drop NaN too: every value casts cleanly
        np.fmin(guess, 255, out=guess)
        out[...] = guess
        np.multiply(out, PIXEL_SCALE, out=guess, dtype=np.float32)
        if not np.array_equal(guess.view(np.uint32), rows.view(np.uint32)):
            return None
    return pixels.reshape(images.shape)


class DataSet:
    """One split: images ``(n, 784)`` float32 in [0, 1] and labels ``(n, 10)`` one-hot float32
    (or ``(n,)`` int64 class indices when built with integer labels).

    Batches are gathered copies of the selected rows; the arrays themselves are never copied
    or permuted in place, so several DataSets may share one underlying buffer.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, seed: int | None = 0) -> None:
        if len(images) != len(labels):
            raise ValueError(f"images ({len(images)}) and labels ({len(labels)}) differ in count")
        self.images = images
        self.labels = labels
        self.num_examples = len(images)
        self.epochs_completed = 0
        self._index_in_epoch = 0
        self._order: np.ndarray | None = None  # None until the first call shuffles
        self._rng = np.random.default_rng(seed)

    def __getstate__(self) -> dict[str, object]:
        # Images that are converted pixels travel as the pixels (a quarter of the bytes).
        state = self.__dict__.copy()
        pixels = compact_pixels(self.images)
        if pixels is not None:
            state["images"], state["_pixels"] = None, pixels
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        pixels = state.pop("_pixels", None)
        self.__dict__.update(state)
        if pixels is not None:
            self.images = pixels_to_images(pixels)  # type: ignore[arg-type]

    def next_batch(self, batch_size: int, shuffle: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Return the next ``(images, labels)`` batch of ``batch_size`` examples (protocol rule).

        Images ``(batch_size, 784)``, labels ``(batch_size, 10)`` (or ``(batch_size,)``).
        ``shuffle=False`` walks the file order instead (TF's ``shuffle`` argument).
        """
        if not 0 < batch_size <= self.num_examples:
            raise ValueError(
                f"batch_size must be in 1..{self.num_examples} (the split size), got {batch_size}"
            )
        if self._order is None:
            self._order = self._new_order(shuffle)
        start = self._index_in_epoch
        if start + batch_size > self.num_examples:
            # Finish the epoch with the examples left, then start a new one.
            self.epochs_completed += 1
            rest = self._order[start:]
            self._order = self._new_order(shuffle)
            self._index_in_epoch = batch_size - len(rest)
            idx = np.concatenate([rest, self._order[: self._index_in_epoch]])
        else:
            self._index_in_epoch = start + batch_size
            idx = self._order[start : self._index_in_epoch]
        return self.images[idx], self.labels[idx]

    def _new_order(self, shuffle: bool) -> np.ndarray:
        if shuffle:
            return self._rng.permutation(self.num_examples)
        return np.arange(self.num_examples)


class Datasets(NamedTuple):
    """The protocol's three splits: train (55,000), validation (5,000), test (10,000)."""

    train: DataSet
    validation: DataSet
    test: DataSet


def one_hot(labels: np.ndarray, num_classes: int = 10, dtype: str = "float32") -> np.ndarray:
    """``(n,)`` integer labels -> ``(n, num_classes)`` one-hot array."""
    out = np.zeros((len(labels), num_classes), dtype=dtype)
    out[np.arange(len(labels)), labels] = 1
    return out


def split_like_tensorflow(
    train_images_u8: np.ndarray,
    train_labels: np.ndarray,
    test_images_u8: np.ndarray,
    test_labels: np.ndarray,
    *,
    validation_size: int = 5000,
    one_hot_labels: bool = True,
    seed: int | None = 0,
) -> Datasets:
    """Build the protocol's splits from uint8 images ``(n, 28, 28)`` and integer labels ``(n,)``.

    The first ``validation_size`` training images (file order) are validation, the rest train.
    Pixels become float32 ``pixel / 255`` flattened to ``(n, 784)``; one conversion of the whole
    array, then views for the splits (no second copy). The arithmetic is TF 1.x's bit for bit:
    ``float32(pixel) * float32(1/255)``, which differs from a correctly rounded ``pixel / 255``
    by one unit in the last place for 126 of the 256 pixel values.
    """
    if not 0 <= validation_size <= len(train_images_u8):
        raise ValueError(
            f"validation_size must be in 0..{len(train_images_u8)}, got {validation_size}"
        )

    def images(u8: np.ndarray) -> np.ndarray:
        return pixels_to_images(u8.reshape(len(u8), -1))

    def labels(y: np.ndarray) -> np.ndarray:
        return one_hot(y) if one_hot_labels else y.astype(np.int64)

    x_all, y_all = images(train_images_u8), labels(train_labels)
    return Datasets(
        train=DataSet(x_all[validation_size:], y_all[validation_size:], seed=seed),
        validation=DataSet(x_all[:validation_size], y_all[:validation_size], seed=seed),
        test=DataSet(images(test_images_u8), labels(test_labels), seed=seed),
    )


def check_labels(labels: np.ndarray, name: str, num_classes: int = 10) -> None:
    """Labels must be a 1-d integer IDX array with every value in ``0..num_classes-1``."""
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(
            f"{name}: expected a label file (integer IDX with 1 dimension), found "
            f"{labels.dtype.name} with shape {labels.shape}"
        )
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{name}: label {int(labels[i])} at index {i} is outside 0-{num_classes - 1} "
            f"({bad.size} such labels)"
        )


def check_images(images: np.ndarray, name: str, image_shape: tuple[int, int] | None) -> None:
    """Images must be uint8 ``(n, h, w)``; with ``image_shape``, ``(h, w)`` must equal it."""
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DataError(
            f"{name}: expected uint8 images of shape (n, height, width), found "
            f"{images.dtype.name} with shape {images.shape}"
        )
    if image_shape is not None and images.shape[1:] != tuple(image_shape):
        h, w = image_shape
        raise DataError(
            f"{name}: expected {h}x{w} images, found {images.shape[1]}x{images.shape[2]}"
        )


def check_pair(images: np.ndarray, labels: np.ndarray, images_name: str, labels_name: str) -> None:
    """An image file and its label file must hold the same number of examples."""
    if len(images) != len(labels):
        raise DataError(
            f"{images_name} holds {len(images)} images but {labels_name} holds "
            f"{len(labels)} labels; the two files must come from the same data set"
        )


def check_shapes(
    data: Datasets, image_shape: tuple[int, int] = (28, 28), num_classes: int = 10
) -> None:
    """Check built splits once, up front, before any training: a DataError, not a matmul error.

    Each split must hold images ``(n, h*w)`` of a float type and labels ``(n, num_classes)``
    one-hot or ``(n,)`` integers in ``0..num_classes-1``, the same ``n`` for both; train and
    test must not be empty. ``data`` is what :func:`split_like_tensorflow` returns.
    """
    h, w = image_shape
    for split, ds in zip(Datasets._fields, data, strict=True):
        images, labels = np.asarray(ds.images), np.asarray(ds.labels)
        where = f"data ({split} split)"
        if images.ndim != 2 or images.shape[1] != h * w or images.dtype.kind != "f":
            raise DataError(
                f"{where}: images are {images.dtype.name} with shape {images.shape}, expected "
                f"float (n, {h * w}) ({h}x{w} images flattened); the models take {h}x{w} images"
            )
        if len(labels) != len(images):
            raise DataError(
                f"{where}: {len(images)} images but {len(labels)} labels; they must agree"
            )
        if labels.ndim == 2:
            ok = labels.shape[1] == num_classes and bool(
                np.all((labels == 0) | (labels == 1)) and np.all(labels.sum(axis=1) == 1)
            )
            if not ok:
                raise DataError(
                    f"{where}: labels of shape {labels.shape} are not one-hot over "
                    f"{num_classes} classes"
                )
        else:
            check_labels(labels, f"{where} labels", num_classes)
        if split != "validation" and len(images) == 0:
            raise DataError(f"{where}: holds no examples")
