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


@pytest.mark.parametrize("name, lr, epochs", SETTINGS)
def test_model_learns_the_prototype_task(name: str, lr: float, epochs: int) -> None:
    (x, y), (x_test, y_test) = _prototype_task(1000, 500)
    model = build(name, seed=0)
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
    first, last = np.mean(losses[:3]), np.mean(losses[-3:])
    assert last < 0.2 * first, (first, last)
    accuracy = np.mean(model.predict(x_test).argmax(1) == y_test.argmax(1))
    assert accuracy >= 0.95, accuracy
