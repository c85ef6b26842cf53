"""TensorFlow 1.x compatible ``DataSet`` / ``Datasets``: the split and the batching of SPEC.

``DataSet.next_batch`` reproduces ``tensorflow.contrib.learn.datasets.mnist.DataSet.next_batch``
(shuffle=True): a fresh permutation on the first call and at every epoch boundary; a batch that
runs past the end of an epoch takes the examples left, reshuffles, and is completed from the
start of the new epoch. The shuffling is driven by a seeded ``numpy.random.Generator``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


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

    def next_batch(self, batch_size: int, shuffle: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Return the next ``(images, labels)`` batch of ``batch_size`` examples (SPEC rule).

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
    """The three splits SPEC defines: train (55,000), validation (5,000), test (10,000)."""

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
    """Build SPEC's splits from uint8 images ``(n, 28, 28)`` and integer labels ``(n,)``.

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
        flat = u8.reshape(len(u8), -1).astype(np.float32)
        flat *= np.float32(1.0 / 255.0)  # TF: numpy.multiply(images, 1.0 / 255.0) on float32
        return flat

    def labels(y: np.ndarray) -> np.ndarray:
        return one_hot(y) if one_hot_labels else y.astype(np.int64)

    x_all, y_all = images(train_images_u8), labels(train_labels)
    return Datasets(
        train=DataSet(x_all[validation_size:], y_all[validation_size:], seed=seed),
        validation=DataSet(x_all[:validation_size], y_all[:validation_size], seed=seed),
        test=DataSet(images(test_images_u8), labels(test_labels), seed=seed),
    )
