"""TensorFlow-compatible DataSet.next_batch, the protocol's split, and the data set checks."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from numnet.core.datasets import (
    check_images,
    check_labels,
    check_pair,
    check_shapes,
    compact_pixels,
    pixels_to_images,
)
from numnet.core.errors import DataError
from numnet.lab.data import DataSet, one_hot, split_like_tensorflow


def _indexed(n: int, seed: int | None = 0) -> DataSet:
    """A DataSet whose image i is [i], so batches reveal which examples they hold."""
    return DataSet(np.arange(n, dtype=np.float32)[:, None], np.arange(n), seed=seed)


def _updates(train: DataSet, num_epochs: int, batch_size: int = 100) -> int:
    """The protocol's training loop, counting the updates."""
    i = 0
    while train.epochs_completed < num_epochs:
        i += 1
        train.next_batch(batch_size)
    return i


@pytest.mark.parametrize("epochs", [1, 2, 5])
def test_spec_loop_makes_550e_plus_1_updates(epochs: int) -> None:
    assert _updates(_indexed(55_000), epochs) == 550 * epochs + 1


def test_loop_count_when_the_size_is_not_divisible() -> None:
    # Epoch E is counted complete by the first call whose batch would end past E*n examples
    # of the stream, i.e. call floor(E*n / batch) + 1 (for 55,000 / 100: 550*E + 1).
    for epochs in (1, 2, 3):
        assert _updates(_indexed(1050), epochs) == 1050 * epochs // 100 + 1
        assert _updates(_indexed(1003), epochs, batch_size=7) == 1003 * epochs // 7 + 1


def test_remainder_rule_worked_by_hand() -> None:
    seed = 7
    rng = np.random.default_rng(seed)
    first, second = rng.permutation(7), rng.permutation(7)
    data = _indexed(7, seed)
    x1, y1 = data.next_batch(3)
    x2, _ = data.next_batch(3)
    assert data.epochs_completed == 0
    x3, y3 = data.next_batch(3)  # 1 left in epoch 0, then 2 from the reshuffled epoch 1
    assert data.epochs_completed == 1
    np.testing.assert_array_equal(x1[:, 0], first[:3])
    np.testing.assert_array_equal(y1, first[:3])
    np.testing.assert_array_equal(x2[:, 0], first[3:6])
    np.testing.assert_array_equal(x3[:, 0], np.concatenate([first[6:], second[:2]]))
    np.testing.assert_array_equal(y3, x3[:, 0])  # images and labels stay paired
    x4, _ = data.next_batch(3)
    np.testing.assert_array_equal(x4[:, 0], second[2:5])


@pytest.mark.parametrize(("n", "batch"), [(1000, 100), (1003, 10), (97, 13)])
def test_every_example_once_per_epoch(n: int, batch: int) -> None:
    # The remainder rule makes the stream of examples a concatenation of whole epochs, so
    # positions e*n .. (e+1)*n of the stream are epoch e.
    data = _indexed(n)
    calls = -(-3 * n // batch)
    stream = np.concatenate([data.next_batch(batch)[0][:, 0] for _ in range(calls)])
    for epoch in range(3):
        np.testing.assert_array_equal(np.sort(stream[epoch * n : (epoch + 1) * n]), np.arange(n))
    assert data.epochs_completed == (3 if calls * batch > 3 * n else 2)


def test_epochs_are_shuffled_differently() -> None:
    data = _indexed(100)
    a = np.concatenate([data.next_batch(10)[0][:, 0] for _ in range(10)])
    b = np.concatenate([data.next_batch(10)[0][:, 0] for _ in range(10)])
    assert not np.array_equal(a, b) and not np.array_equal(a, np.arange(100))
    np.testing.assert_array_equal(np.sort(a), np.sort(b))


def test_same_seed_same_batches() -> None:
    a, b, c = _indexed(500, seed=3), _indexed(500, seed=3), _indexed(500, seed=4)
    batches_a = [a.next_batch(64)[0] for _ in range(20)]
    batches_b = [b.next_batch(64)[0] for _ in range(20)]
    batches_c = [c.next_batch(64)[0] for _ in range(20)]
    for x, y in zip(batches_a, batches_b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, z) for x, z in zip(batches_a, batches_c, strict=True))


def test_shuffle_false_walks_file_order() -> None:
    data = _indexed(5)
    got = [data.next_batch(2, shuffle=False)[0][:, 0].tolist() for _ in range(3)]
    assert got == [[0, 1], [2, 3], [4, 0]] and data.epochs_completed == 1


def test_batch_size_must_fit() -> None:
    with pytest.raises(ValueError, match=r"batch_size must be in 1\.\.5"):
        _indexed(5).next_batch(6)
    with pytest.raises(ValueError):
        _indexed(5).next_batch(0)


def test_batches_are_copies_and_data_is_untouched() -> None:
    data = _indexed(10)
    x, _ = data.next_batch(4)
    x[:] = -1
    np.testing.assert_array_equal(data.images[:, 0], np.arange(10))


# ------------------------------------------------------------------------------ the split


def _mnist_like(n_train: int = 12, n_test: int = 4) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    return (
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_train).astype(np.uint8),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_test).astype(np.uint8),
    )


def test_split_validation_first_in_file_order() -> None:
    x, y, xt, yt = _mnist_like()
    sets = split_like_tensorflow(x, y, xt, yt, validation_size=5)
    assert (sets.train.num_examples, sets.validation.num_examples) == (7, 5)
    assert sets.test.num_examples == 4
    expected = x.reshape(12, 784).astype(np.float32) * np.float32(1.0 / 255.0)
    np.testing.assert_array_equal(sets.validation.images, expected[:5])
    np.testing.assert_array_equal(sets.train.images, expected[5:])
    np.testing.assert_array_equal(sets.validation.labels, one_hot(y[:5]))
    assert sets.train.labels.dtype == np.float32 and sets.train.labels.shape == (7, 10)
    # one float32 buffer for train + validation (no second copy of the training images)
    assert sets.train.images.base is sets.validation.images.base is not None


def test_pixel_values_are_tensorflow_bits() -> None:
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    sets = split_like_tensorflow(
        pixels, np.zeros(1, np.uint8), pixels, np.zeros(1, np.uint8), validation_size=0
    )
    got = sets.test.images[0]
    # TF 1.x: numpy.multiply(images.astype(float32), 1.0 / 255.0) -> float32 arithmetic
    np.testing.assert_array_equal(got, np.arange(256, dtype=np.float32) * np.float32(1 / 255))
    assert got[0] == 0.0 and got[255] == 1.0
    # versus a correctly rounded pixel / 255: within one unit in the last place, 126 differ
    rounded = (np.arange(256) / 255.0).astype(np.float32)
    assert np.all(np.abs(got - rounded) <= np.spacing(rounded))
    assert np.count_nonzero(got != rounded) == 126


def test_integer_labels() -> None:
    x, y, xt, yt = _mnist_like()
    sets = split_like_tensorflow(x, y, xt, yt, validation_size=2, one_hot_labels=False)
    assert sets.train.labels.dtype == np.int64
    np.testing.assert_array_equal(sets.train.labels, y[2:])


def test_validation_size_bounds() -> None:
    x, y, xt, yt = _mnist_like()
    with pytest.raises(ValueError, match=r"validation_size must be in 0\.\.12"):
        split_like_tensorflow(x, y, xt, yt, validation_size=13)


# ------------------------------------------------------------------------------ checks


def test_label_range_and_kind() -> None:
    check_labels(np.array([0, 9, 3], dtype=np.uint8), "l")
    with pytest.raises(
        DataError, match=r"^l: label 10 at index 1 is outside 0-9 \(2 such labels\)"
    ):
        check_labels(np.array([0, 10, 255], dtype=np.uint8), "l")
    with pytest.raises(DataError, match="expected a label file"):
        check_labels(np.zeros((3, 2), dtype=np.uint8), "l")


def test_image_checks() -> None:
    check_images(np.zeros((2, 28, 28), np.uint8), "i", (28, 28))
    check_images(np.zeros((2, 32, 32), np.uint8), "i", None)
    with pytest.raises(DataError, match=r"^i: expected 28x28 images, found 32x32"):
        check_images(np.zeros((2, 32, 32), np.uint8), "i", (28, 28))
    with pytest.raises(DataError, match=r"expected uint8 images .* found float32"):
        check_images(np.zeros((2, 28, 28), np.float32), "i", (28, 28))


def test_pair_counts() -> None:
    check_pair(np.zeros((3, 2, 2)), np.zeros(3), "a", "b")
    with pytest.raises(DataError, match=r"^imgs holds 3 images but labs holds 2 labels"):
        check_pair(np.zeros((3, 2, 2)), np.zeros(2), "imgs", "labs")


def _splits(images: np.ndarray, labels: np.ndarray, **kw: object):
    return split_like_tensorflow(images, labels, images[:3], labels[:3], validation_size=2, **kw)


def test_check_shapes_accepts_the_protocol_splits() -> None:
    images = np.zeros((6, 28, 28), np.uint8)
    labels = np.arange(6, dtype=np.uint8)
    check_shapes(_splits(images, labels))
    check_shapes(_splits(images, labels, one_hot_labels=False))


def test_check_shapes_names_the_split_and_the_shapes() -> None:
    # 32x32 images used to reach the first matrix product as a raw NumPy shape error
    sets = _splits(np.zeros((6, 32, 32), np.uint8), np.arange(6, dtype=np.uint8))
    with pytest.raises(DataError) as info:
        check_shapes(sets)
    assert str(info.value) == (
        "data (train split): images are float32 with shape (4, 1024), expected float (n, 784) "
        "(28x28 images flattened); the models take 28x28 images"
    )
    bad = _splits(np.zeros((6, 28, 28), np.uint8), np.array([0, 1, 2, 3, 4, 11], np.uint8),
                  one_hot_labels=False)
    with pytest.raises(DataError, match=r"^data \(train split\) labels: label 11 at index 3 is "):
        check_shapes(bad)
    sets = _splits(np.zeros((6, 28, 28), np.uint8), np.arange(6, dtype=np.uint8))
    broken = sets._replace(test=DataSet(sets.test.images, sets.test.labels[:, :9]))
    with pytest.raises(DataError, match=r"^data \(test split\): labels of shape \(3, 9\) are not "):
        check_shapes(broken)
    empty = sets._replace(train=DataSet(sets.train.images[:0], sets.train.labels[:0]))
    with pytest.raises(DataError, match=r"^data \(train split\): holds no examples"):
        check_shapes(empty)


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32)


def test_converted_pixels_pickle_as_pixels_bit_for_bit() -> None:
    """A DataSet of converted uint8 pixels travels to a worker as the pixels: a quarter of the
    bytes, the same float32 bits and the same batch state on the other side."""
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, size=(600, 28, 28), dtype=np.uint8)
    pixels[0, :16, :16] = np.arange(256, dtype=np.uint8).reshape(16, 16)  # every value
    data = split_like_tensorflow(pixels, rng.integers(0, 10, 600), pixels[:50],
                                 rng.integers(0, 10, 50), validation_size=100, seed=7)
    data.train.next_batch(30)  # mid-epoch: order, position and generator state must travel
    copy = pickle.loads(pickle.dumps(data))
    for name in ("train", "validation", "test"):
        original, moved = getattr(data, name), getattr(copy, name)
        assert moved.images.dtype == np.float32 and moved.images.shape == original.images.shape
        assert np.array_equal(_bits(moved.images), _bits(original.images))
        assert np.array_equal(moved.labels, original.labels)
    for _ in range(20):  # crosses an epoch boundary: the same batches on both sides
        (xa, ya), (xb, yb) = data.train.next_batch(70), copy.train.next_batch(70)
        assert np.array_equal(_bits(xa), _bits(xb)) and np.array_equal(ya, yb)
    floats = pickle.dumps(data.train.images)
    assert len(pickle.dumps(data.train)) < 0.3 * len(floats)


@pytest.mark.parametrize("spoil", ["ulp", "negative_zero", "nan", "above_one", "float64"])
def test_images_that_are_not_converted_pixels_pickle_as_they_are(
    spoil: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One value that no uint8 pixel converts to (one unit in the last place off, -0.0, NaN,
    above 1) keeps the whole array as floats; a round trip is exact in every bit."""
    monkeypatch.setattr("numnet.core.datasets._COMPACT_ROWS", 16)  # the check runs by blocks
    images = pixels_to_images(np.arange(256, dtype=np.uint8).repeat(40).reshape(80, 128))
    assert np.array_equal(compact_pixels(images), np.arange(256).repeat(40).reshape(80, 128))
    row = 39  # in the third block: every block is checked, not only the first
    if spoil == "ulp":
        images[row, 3] = np.nextafter(images[row, 3], np.float32(1))
    elif spoil == "negative_zero":
        images[row, 3] = -0.0
    elif spoil == "nan":
        images[row, 3] = np.nan
    elif spoil == "above_one":
        images[row, 3] = 2.0
    else:
        images = images.astype(np.float64)
    assert compact_pixels(images) is None
    ds = DataSet(images, np.zeros(len(images), np.int64))
    moved = pickle.loads(pickle.dumps(ds))
    assert moved.images.dtype == images.dtype
    assert np.array_equal(moved.images.view(np.uint8), images.view(np.uint8))
