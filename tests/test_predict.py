"""predict: digit PNGs rendered from test-set samples are read, framed and classified."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from tiny_mnist import tiny_datasets

from numnet.core import serialize
from numnet.core.errors import DataError
from numnet.lab import predict, training

DATA = tiny_datasets()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    spec = training.RunSpec("model1", epochs=3, lr=0.01, batch_size=10, eval_every=55,
                            eval_train_examples=110, eval_test_examples=200, seed=5)
    result = training.train_run(spec, DATA)
    assert result.final_test_accuracy == 1.0
    path = tmp_path_factory.mktemp("w") / "model1.npz"
    serialize.save(path, result.model)
    return path, result.model


def sample(k: int) -> tuple[np.ndarray, int]:
    return DATA.test.images[k], int(DATA.test.labels[k].argmax())


def write_png(path, pixels01: np.ndarray, mode: str = "L") -> None:
    u8 = np.round(pixels01 * 255).astype(np.uint8)
    img = Image.fromarray(u8)
    if mode != "L":
        img = img.convert(mode)
    img.save(path)


def test_28x28_png_is_the_sample_exactly(weights, tmp_path) -> None:
    path, model = weights
    x, label = sample(0)
    png = tmp_path / "d.png"
    write_png(png, x.reshape(28, 28))
    v = predict.image_to_vector(png)
    np.testing.assert_array_equal(v, x)  # k/255 survives the uint8 PNG round trip
    [pred] = predict.predict_files(path, [png])
    assert pred.label == label
    expected = predict.predict_vectors(model, x[None])[0]
    np.testing.assert_allclose(pred.probabilities, expected, rtol=1e-6)
    assert sum(pred.probabilities) == pytest.approx(1.0)


def test_large_dark_on_light_png_is_inverted_and_framed(weights, tmp_path) -> None:
    path, _ = weights
    files, labels = [], []
    for k in range(12):
        x, label = sample(k)
        big = np.kron(x.reshape(28, 28), np.ones((4, 4)))  # 112x112
        big = np.pad(big, ((10, 30), (25, 5)))  # off-centre
        png = tmp_path / f"d{k}.png"
        write_png(png, 1.0 - big)  # dark digit on white paper
        files.append(png)
        labels.append(label)
    v = predict.image_to_vector(files[0])
    assert v.shape == (784,) and v.dtype == np.float32
    # framing does not depend on scale, position or polarity: same as framing the original
    framed = predict.mnist_frame(sample(0)[0].reshape(28, 28).astype(float)).ravel()
    np.testing.assert_allclose(v, framed, atol=1 / 255 + 1e-6)
    assert np.corrcoef(v, sample(0)[0])[0, 1] > 0.5  # and the original was MNIST-framed too
    preds = predict.predict_files(path, files)
    assert [p.label for p in preds] == labels


def test_rgba_with_transparent_background(weights, tmp_path) -> None:
    path, _ = weights
    x, label = sample(3)
    big = np.kron(x.reshape(28, 28), np.ones((2, 2)))
    rgba = np.zeros((56, 56, 4), np.uint8)
    rgba[..., 3] = np.round(big * 255).astype(np.uint8)  # black ink, alpha = stroke
    png = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(png)
    assert predict.predict_files(path, [png])[0].label == label


def test_area_method_and_dark_detection(tmp_path) -> None:
    x, _ = sample(1)
    png = tmp_path / "big.png"
    write_png(png, np.kron(x.reshape(28, 28), np.ones((3, 3))))  # light on dark, 84x84
    v = predict.image_to_vector(png, method="area")
    np.testing.assert_allclose(v, x, atol=1e-6)  # 3x3 block averages give the pixels back
    assert not predict.is_dark_on_light(x.reshape(28, 28).astype(float))
    assert predict.is_dark_on_light(1.0 - x.reshape(28, 28).astype(float))


def test_bad_images(tmp_path) -> None:
    small = tmp_path / "small.png"
    write_png(small, np.zeros((20, 27)))
    with pytest.raises(DataError, match="27x20 pixels; it must be at least 28x28"):
        predict.image_to_vector(small)
    blank = tmp_path / "blank.png"
    write_png(blank, np.ones((64, 64)))
    with pytest.raises(DataError, match="blank"):
        predict.image_to_vector(blank)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(DataError, match="not a readable image"):
        predict.image_to_vector(text)
    with pytest.raises(DataError, match="no such image"):
        predict.image_to_vector(tmp_path / "missing.png")
