"""SGD: hand-worked updates, momentum, a changing learning rate, and one step on a model."""

from __future__ import annotations

import numpy as np
import pytest

from numnet.core.layers import Parameter
from numnet.core.losses import softmax_cross_entropy
from numnet.core.models import build
from numnet.core.optim import SGD


def _param(value, grad) -> Parameter:
    p = Parameter(np.array(value, dtype=np.float64))
    p.grad[...] = grad
    return p


def test_plain_sgd_hand_worked() -> None:
    p = _param([1.0, 2.0], [0.5, -1.0])
    opt = SGD([p], lr=0.1)
    opt.step()
    np.testing.assert_allclose(p.value, [0.95, 2.1], rtol=1e-15)
    opt.lr = 0.2  # schedules change lr between steps
    opt.step()
    np.testing.assert_allclose(p.value, [0.85, 2.3], rtol=1e-15)


def test_momentum_hand_worked() -> None:
    # v1 = g = 1; p = 1 - 0.1 * 1 = 0.9. v2 = 0.5 * 1 + 1 = 1.5; p = 0.9 - 0.15 = 0.75.
    p = _param([1.0], [1.0])
    opt = SGD([p], lr=0.1, momentum=0.5)
    opt.step()
    np.testing.assert_allclose(p.value, [0.9], rtol=1e-15)
    opt.step()
    np.testing.assert_allclose(p.value, [0.75], rtol=1e-15)


def test_step_is_in_place_and_zero_grad() -> None:
    p = _param([[1.0, 2.0]], [[1.0, 1.0]])
    value = p.value
    opt = SGD([p], lr=1.0)
    opt.step()
    assert p.value is value
    opt.zero_grad()
    assert not p.grad.any()


def test_one_step_on_a_model_equals_theta_minus_lr_grad() -> None:
    model = build("model2", seed=0, dtype="float64")
    rng = np.random.default_rng(0)
    x, y = rng.random((8, 784)), np.eye(10)[rng.integers(0, 10, 8)]
    _, d = softmax_cross_entropy(model.forward(x), y)
    model.backward(d)
    expected = [p.value - 0.05 * p.grad for p in model.parameters()]
    SGD(model.parameters(), lr=0.05).step()
    for e, p in zip(expected, model.parameters(), strict=True):
        np.testing.assert_allclose(p.value, e, rtol=1e-15, atol=1e-18)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="empty"):
        SGD([], lr=0.1)
    with pytest.raises(ValueError, match=">= 0"):
        SGD([_param([1.0], [1.0])], lr=-0.1)
