"""Learning: every model drives its loss down and classifies a small synthetic task well.

The task: 10 class prototypes (random 28x28 images of smooth blobs, values in [0, 1]) plus
pixel noise; a model that learns nothing scores 10%.
"""

from __future__ import annotations

import numpy as np
import pytest

from numnet.core.losses import softmax_cross_entropy
from numnet.core.models import build
from numnet.core.optim import SGD


def _prototype_task(n_train: int, n_test: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28]
    protos = np.zeros((10, 28, 28))
    for k in range(10):
        for _ in range(3):  # three Gaussian blobs per class
            cy, cx = rng.uniform(5, 23, size=2)
            protos[k] += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 2.5**2))
    protos = np.clip(protos, 0, 1).reshape(10, 784)

    def sample(n):
        labels = rng.integers(0, 10, n)
        x = np.clip(protos[labels] + rng.normal(0, 0.3, (n, 784)), 0, 1).astype(np.float32)
        return x, np.eye(10, dtype=np.float32)[labels]

    return sample(n_train), sample(n_test)


# (model, lr for the summed loss, epochs)
SETTINGS = [("model1", 0.005, 3), ("model2", 0.005, 4), ("model3", 0.002, 4), ("model4", 0.002, 2)]


def _train(name: str, lr: float, epochs: int, kernels: str = "fast"):
    """SGD with batches of 100 on the prototype task; returns (losses, predictions, logits)."""
    (x, y), (x_test, y_test) = _prototype_task(1000, 500)
    model = build(name, seed=0, kernels=kernels)
    opt = SGD(model.parameters(), lr=lr)
    rng = np.random.default_rng(1)
    losses = []
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), 100):
            idx = order[start : start + 100]
            loss, d = softmax_cross_entropy(model.forward(x[idx]), y[idx], reduction="sum")
            model.backward(d)
            opt.step()
            losses.append(loss)
    logits = model.predict(x_test)
    return losses, logits.argmax(1) == y_test.argmax(1), logits


@pytest.mark.parametrize("name, lr, epochs", SETTINGS)
def test_model_learns_the_prototype_task(name: str, lr: float, epochs: int) -> None:
    losses, correct, _ = _train(name, lr, epochs)
    first, last = np.mean(losses[:3]), np.mean(losses[-3:])
    assert last < 0.2 * first, (first, last)
    assert correct.mean() >= 0.95, correct.mean()


def test_model4_learns_as_well_on_the_plain_kernels() -> None:
    """The plain path trains model 4 to the fast path's result: float32 rounding differs
    (other sum orders), so the two runs drift apart by rounding only -- losses within 0.1%,
    logits within a small fraction of their scale, the same accuracy up to a sample or two."""
    fast_losses, fast_correct, fast_logits = _train("model4", 0.002, 2, "fast")
    plain_losses, plain_correct, plain_logits = _train("model4", 0.002, 2, "plain")
    np.testing.assert_allclose(plain_losses, fast_losses, rtol=1e-3)
    scale = np.abs(fast_logits).max()
    assert np.abs(plain_logits - fast_logits).max() < 2e-4 * scale
    assert plain_correct.mean() >= 0.95
    assert abs(plain_correct.mean() - fast_correct.mean()) <= 2 / len(fast_correct)
