"""Softmax cross-entropy: hand-worked values, extreme logits, the gradient p - y (/ N for mean)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from numnet.core import gradcheck
from numnet.core.losses import log_softmax, softmax, softmax_cross_entropy


def test_hand_worked_value_and_gradient() -> None:
    # Row 1: logits (0, 0), class 0 -> loss ln 2, gradient (-1/2, 1/2).
    # Row 2: logits (ln 3, 0), class 1 -> p = (3/4, 1/4), loss ln 4, gradient (3/4, -3/4).
    logits = np.array([[0.0, 0.0], [math.log(3.0), 0.0]])
    y = np.array([[1.0, 0.0], [0.0, 1.0]])
    loss, grad = softmax_cross_entropy(logits, y, reduction="sum")
    assert isinstance(loss, float)
    assert loss == pytest.approx(math.log(2) + math.log(4), rel=1e-15)
    np.testing.assert_allclose(grad, [[-0.5, 0.5], [0.75, -0.75]], rtol=1e-15)
    loss_mean, grad_mean = softmax_cross_entropy(logits, y, reduction="mean")
    assert loss_mean == pytest.approx(loss / 2, rel=1e-15)
    np.testing.assert_allclose(grad_mean, grad / 2, rtol=1e-15)


def test_extreme_logits_are_finite_and_correct() -> None:
    logits = np.array([[1e4, -1e4, 0.0], [1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]])
    y = np.eye(3)[[0, 1, 2]]
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss, grad = softmax_cross_entropy(logits, y)
    # Row 1 is certain and right (0), row 2 certain and wrong by 2e4, row 3 uniform (ln 3).
    assert loss == pytest.approx(2e4 + math.log(3), rel=1e-12)
    np.testing.assert_allclose(
        grad, [[0, 0, 0], [1, -1, 0], [1 / 3, 1 / 3, -2 / 3]], rtol=1e-12, atol=1e-300
    )
    assert np.isfinite(grad).all()


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_gradient_is_p_minus_y_and_matches_finite_differences(reduction: str) -> None:
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((5, 10)) * 3
    y = np.eye(10)[rng.integers(0, 10, 5)]
    _, grad = softmax_cross_entropy(logits, y, reduction)
    expected = softmax(logits) - y
    if reduction == "mean":
        expected /= 5
    np.testing.assert_allclose(grad, expected, rtol=1e-14, atol=1e-16)

    def f() -> float:
        return softmax_cross_entropy(logits, y, reduction)[0]

    numeric = gradcheck.numerical_gradient(f, logits)
    assert gradcheck.max_relative_error(grad, numeric) < 1e-6


def test_integer_labels_equal_one_hot() -> None:
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((4, 10))
    labels = np.array([3, 0, 9, 3])
    a = softmax_cross_entropy(logits, labels)
    b = softmax_cross_entropy(logits, np.eye(10)[labels])
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])


def test_loss_equals_sum_of_minus_log_softmax_at_label() -> None:
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((6, 10))
    labels = rng.integers(0, 10, 6)
    loss, _ = softmax_cross_entropy(logits, labels)
    assert loss == pytest.approx(-log_softmax(logits)[np.arange(6), labels].sum(), rel=1e-14)
    np.testing.assert_allclose(np.exp(log_softmax(logits)), softmax(logits), rtol=1e-14)


def test_float32_in_float32_out() -> None:
    logits = np.random.default_rng(3).standard_normal((4, 10)).astype(np.float32)
    _, grad = softmax_cross_entropy(logits, np.eye(10)[[1, 2, 3, 4]], "mean")  # float64 labels
    assert grad.dtype == np.float32


def test_bad_arguments() -> None:
    logits = np.zeros((2, 3))
    with pytest.raises(ValueError, match="reduction"):
        softmax_cross_entropy(logits, np.eye(3)[:2], reduction="avg")
    with pytest.raises(ValueError, match="labels shape"):
        softmax_cross_entropy(logits, np.eye(4)[:2])
    with pytest.raises(ValueError, match="logits must be"):
        softmax_cross_entropy(np.zeros(3), np.zeros(3))
