"""Weights files: bit-exact round trips, clear errors for the wrong architecture and for
corrupted, truncated or foreign files, atomic writes."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from numnet.core import serialize
from numnet.core.errors import NumnetError, WeightsFileError
from numnet.core.models import build


def _trained_like(name: str, dtype: str = "float32", **kw):
    """A model whose weights are not just the seeded start (so a rebuild cannot fake a load)."""
    model = build(name, seed=1, dtype=dtype, **kw)
    rng = np.random.default_rng(2)
    for p in model.parameters():
        p.value[...] = rng.standard_normal(p.shape)
    return model


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["model1", "model2", "model3", "model4"])
def test_round_trip_is_bit_exact(tmp_path, name: str, dtype: str) -> None:
    model = _trained_like(name, dtype, bias_init="uniform_sqrt3")
    path = serialize.save(tmp_path / "w.npz", model, metadata={"epochs": 5, "lr": 0.01})
    loaded = serialize.load(path)
    assert loaded.config == model.config
    for (n, p), (m, q) in zip(model.named_parameters(), loaded.named_parameters(), strict=True):
        assert n == m and q.dtype == p.dtype
        assert p.value.tobytes() == q.value.tobytes()
    header = serialize.read_header(path)
    assert header["metadata"] == {"epochs": 5, "lr": 0.01}
    assert header["config"]["name"] == name

    target = build(name, seed=99, dtype=dtype)
    serialize.load_into(path, target)
    for p, q in zip(model.parameters(), target.parameters(), strict=True):
        assert p.value.tobytes() == q.value.tobytes()


def test_conv_activation_survives_the_round_trip(tmp_path) -> None:
    model = _trained_like("model4", conv_activation="relu")
    loaded = serialize.load(serialize.save(tmp_path / "m4.npz", model))
    assert [n for n, _ in loaded.layers] == [n for n, _ in model.layers]
    x = np.random.default_rng(0).random((3, 784)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_kernels_are_chosen_at_load_time_not_stored(tmp_path) -> None:
    model = _trained_like("model4", dtype="float64", kernels="plain")
    path = serialize.save(tmp_path / "m4.npz", model)
    assert "kernels" not in serialize.read_header(path)["config"]  # results stay the same files
    fast, plain = serialize.load(path), serialize.load(path, kernels="plain")
    assert (fast.kernels, plain.kernels) == ("fast", "plain")
    x = np.random.default_rng(0).random((3, 784))
    np.testing.assert_allclose(plain.predict(x), fast.predict(x), rtol=1e-12, atol=1e-12)
    with pytest.raises(NumnetError, match="kernels must be one of"):
        serialize.load(path, kernels="fastest")


@pytest.mark.parametrize(
    "saved, target, message",
    [
        (("model3", {}), ("model2", {}), "name='model3'"),
        (("model4", {"conv_activation": "relu"}), ("model4", {}), "conv_activation"),
        (("model2", {}), ("model2", {"dtype": "float64"}), "dtype"),
    ],
)
def test_wrong_architecture_is_refused(tmp_path, saved, target, message) -> None:
    path = serialize.save(tmp_path / "w.npz", _trained_like(saved[0], **saved[1]))
    model = build(target[0], **target[1])
    before = [p.value.copy() for p in model.parameters()]
    with pytest.raises(WeightsFileError, match=message) as info:
        serialize.load_into(path, model)
    assert str(path) in str(info.value)
    for b, p in zip(before, model.parameters(), strict=True):  # untouched
        np.testing.assert_array_equal(b, p.value)


def test_parameter_names_are_checked_without_a_config(tmp_path) -> None:
    from numnet.core.layers import Linear
    from numnet.core.models import Sequential

    path = serialize.save(tmp_path / "w.npz", _trained_like("model1"))
    custom = Sequential([Linear(784, 10)])  # parameters "0.weight", "0.bias"; no config
    with pytest.raises(WeightsFileError, match=r"missing \['0.bias', '0.weight'\]"):
        serialize.load_into(path, custom)


def _corrupt(path, offset_fraction: float) -> None:
    data = bytearray(path.read_bytes())
    k = int(len(data) * offset_fraction)
    data[k] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where", [0.02, 0.3, 0.5, 0.7, 0.97])
def test_corrupted_file_raises_weights_file_error(tmp_path, where: float) -> None:
    path = serialize.save(tmp_path / "w.npz", _trained_like("model4"))
    _corrupt(path, where)
    with pytest.raises(WeightsFileError, match="w.npz"):
        serialize.load(path)


def test_truncated_file(tmp_path) -> None:
    path = serialize.save(tmp_path / "w.npz", _trained_like("model2"))
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(WeightsFileError, match="corrupted or truncated"):
        serialize.load(path)


def test_tampered_array_fails_its_checksum(tmp_path) -> None:
    """A file rewritten with a changed array but the old header: the zip is valid, the
    SHA-256 is not."""
    path = serialize.save(tmp_path / "w.npz", _trained_like("model1"))
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["fc1.bias"] = arrays["fc1.bias"] + 1
    np.savez(path.open("wb"), **arrays)
    with pytest.raises(WeightsFileError, match="SHA-256"):
        serialize.load(path)


def test_foreign_and_missing_files(tmp_path) -> None:
    plain = tmp_path / "plain.npz"
    np.savez(plain, a=np.zeros(3))
    with pytest.raises(WeightsFileError, match="not a numnet weights file"):
        serialize.load(plain)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(WeightsFileError, match="corrupted"):
        serialize.load(text)
    with pytest.raises(WeightsFileError, match="not found"):
        serialize.load(tmp_path / "nope.npz")
    # A weights file from a future numnet.
    future = tmp_path / "future.npz"
    header = json.dumps({"format": "numnet-weights", "version": 99}).encode()
    np.savez(future, __numnet__=np.frombuffer(header, dtype=np.uint8))
    with pytest.raises(WeightsFileError, match="version 99"):
        serialize.load(future)
    assert issubclass(WeightsFileError, NumnetError)


def test_save_is_atomic_and_overwrites(tmp_path) -> None:
    path = tmp_path / "sub" / "w.npz"
    serialize.save(path, _trained_like("model1"))
    serialize.save(path, build("model1", seed=5))  # replace an existing file
    assert sorted(p.name for p in path.parent.iterdir()) == ["w.npz"]  # no temp files left
    np.testing.assert_array_equal(
        serialize.load(path).parameters()[0].value, build("model1", seed=5).parameters()[0].value
    )
    assert zipfile.is_zipfile(path)


def test_failed_save_leaves_the_old_file(tmp_path) -> None:
    path = serialize.save(tmp_path / "w.npz", _trained_like("model1"))
    before = path.read_bytes()
    with pytest.raises(WeightsFileError, match="JSON"):
        serialize.save(path, build("model1"), metadata={"bad": object()})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.npz"]
