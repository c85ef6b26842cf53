"""Tiny, learnable MNIST look-alikes for fast tests (no real MNIST needed).

Each class is a fixed random 5x5 binary pattern (touching all four sides of its box) blown up
to 20x20 and placed in a 28x28 image with its centre of mass at the centre -- as MNIST frames
its digits -- jittered by up to one pixel, with random stroke intensity. A linear model
separates the classes within a few epochs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from numnet.core.datasets import DataSet, Datasets, split_like_tensorflow
from numnet.core.idx import write_idx

TEMPLATES = np.random.default_rng(1234).random((10, 5, 5)) > 0.5
TEMPLATES[:, [0, -1], 2] = True  # every pattern spans the full 5x5 box
TEMPLATES[:, 2, [0, -1]] = True


def make_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 images ``(n, 28, 28)`` and their int labels ``(n,)``."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    for k, label in enumerate(labels):
        glyph = np.kron(TEMPLATES[label], np.ones((4, 4)))
        intensity = rng.uniform(0.6, 1.0) * 255 * glyph * rng.uniform(0.8, 1.0, glyph.shape)
        mass = intensity.sum()
        cy = intensity.sum(axis=1) @ np.arange(20) / mass
        cx = intensity.sum(axis=0) @ np.arange(20) / mass
        dy, dx = rng.integers(-1, 2, 2)
        top = int(np.clip(round(13.5 - cy) + dy, 0, 8))
        left = int(np.clip(round(13.5 - cx) + dx, 0, 8))
        images[k, top : top + 20, left : left + 20] = intensity.astype(np.uint8)
    return images, labels


def tiny_datasets(
    n_train: int = 550, n_validation: int = 50, n_test: int = 200, seed: int = 0
) -> Datasets:
    """Protocol splits of synthetic digits: ``n_train`` train, ``n_validation``, ``n_test``."""
    x, y = make_digits(n_train + n_validation, seed)
    xt, yt = make_digits(n_test, seed + 1)
    return split_like_tensorflow(x, y, xt, yt, validation_size=n_validation)


#: A protocol sized for tiny_datasets(): 550 train examples at batch 10 = 55 updates an epoch.
def write_tiny_idx(data_dir: Path) -> Path:
    """``data_dir`` (created) holding the four MNIST IDX files of 600 train and 200 test tiny
    digits, as a ``--data-dir`` for commands that load data from files."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for prefix, (x, y) in (("train", make_digits(600, 0)), ("t10k", make_digits(200, 1))):
        write_idx(data_dir / f"{prefix}-images-idx3-ubyte.gz", x)
        write_idx(data_dir / f"{prefix}-labels-idx1-ubyte.gz", y.astype(np.uint8))
    return data_dir


TINY_PROTOCOL = """\
name = "tiny"
description = "test protocol on synthetic digits"
seed = 7

[training]
batch_size = 10
eval_every = 10
eval_train_examples = 110
eval_test_examples = 200
eval_batch_size = 64

[quick]
epochs = 1
eval_every = 5
eval_train_examples = 50
eval_test_examples = 100

[models.model1]
settings = [{ epochs = 2, lr = 0.001 }, { epochs = 1, lr = 0.01 }, { epochs = 2, lr = 1e38 }]

[models.model2]
settings = [{ epochs = 1, lr = 0.005 }]

[models.model4]
settings = [{ epochs = 1, lr = 0.001 }]
"""


class PoisonedBatches:
    """Normal batches, except that update number ``at`` gets an overflowing input."""

    def __init__(self, source: DataSet, at: int) -> None:
        self.source, self.at, self.calls = source, at, 0

    @property
    def epochs_completed(self) -> int:
        return self.source.epochs_completed

    @property
    def num_examples(self) -> int:
        return self.source.num_examples

    def next_batch(self, b: int):
        self.calls += 1
        x, y = self.source.next_batch(b)
        if self.calls == self.at:
            x = np.full_like(x, np.inf)
        return x, y
