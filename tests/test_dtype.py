"""dtype discipline: a float32 model stays float32 in forward, loss, backward and SGD, even
when NumPy float64 scalars (a learning rate read from a file, say) meet its arrays."""

from __future__ import annotations

import numpy as np
import pytest

from numnet.core.losses import softmax_cross_entropy
from numnet.core.models import build
from numnet.core.optim import SGD

MODELS = ("model1", "model2", "model3", "model4")


def test_the_pitfall_exists() -> None:
    """Why the care: NumPy 2 promotes a float32 array times a NumPy float64 scalar."""
    if int(np.__version__.split(".")[0]) < 2:
        pytest.skip("NumPy 1 value-based casting keeps float32 here")
    assert (np.float64(0.1) * np.ones(3, dtype=np.float32)).dtype == np.float64


class _Float32Spy:
    """Wraps each layer's forward/backward to record the dtype of everything passing through."""

    def __init__(self, model) -> None:
        self.seen: list[tuple[str, str, np.dtype]] = []
        for name, layer in model.layers:
            layer.forward = self._wrap(name, "forward", layer.forward)
            layer.backward = self._wrap(name, "backward", layer.backward)

    def _wrap(self, name, kind, fn):
        def wrapped(x, *args, **kwargs):
            out = fn(x, *args, **kwargs)
            self.seen.append((name, kind, x.dtype))
            if out is not None:
                self.seen.append((name, kind + " out", out.dtype))
            return out

        return wrapped


@pytest.mark.parametrize("name", MODELS)
def test_float32_end_to_end(name: str) -> None:
    model = build(name, seed=0, conv_activation="relu" if name == "model4" else None)
    spy = _Float32Spy(model)
    rng = np.random.default_rng(0)
    x = rng.random((6, 784))  # float64 data: the model casts it to its own dtype
    y = np.eye(10)[rng.integers(0, 10, 6)]  # float64 labels
    logits = model.forward(x)
    loss, dlogits = softmax_cross_entropy(logits, y, reduction="mean")
    assert isinstance(loss, float)
    dx = model.backward(dlogits, input_grad=True)
    assert logits.dtype == dlogits.dtype == dx.dtype == np.float32
    assert all(dt == np.float32 for *_, dt in spy.seen), [s for s in spy.seen if s[2] != "f4"]
    opt = SGD(model.parameters(), lr=np.float64(0.01), momentum=np.float64(0.9))
    for _ in range(2):
        opt.step()
    plain = SGD(model.parameters(), lr=np.float64(0.01))
    plain.step()
    for pname, p in model.named_parameters():
        assert p.value.dtype == p.grad.dtype == np.float32, pname
    assert model.predict(x).dtype == np.float32


def test_float64_model_stays_float64() -> None:
    model = build("model4", seed=0, dtype="float64")
    x = np.random.default_rng(1).random((3, 784)).astype(np.float32)
    logits = model.forward(x)
    _, d = softmax_cross_entropy(logits, np.array([1, 2, 3]))
    model.backward(d)
    assert logits.dtype == np.float64
    assert all(p.grad.dtype == np.float64 for p in model.parameters())
