"""Layers on both kernel paths ("plain" and "fast"): finite-difference gradient checks
(float64), the vectorised references of ``kernels.loops``, TensorFlow's SAME padding, the
flatten order, max-pool ties and the ConvPool2x2 plan step. The kernels themselves, function by
function, are held to the index-for-index loops in tests/test_kernels.py."""

from __future__ import annotations

import numpy as np
import pytest

from numnet.core import gradcheck
from numnet.core.errors import KernelsError, NumnetError
from numnet.core.kernels.loops import (
    avgpool2d_loops,
    conv2d_reference,
    conv2d_reference_backward,
    conv2d_weight_grad_loops,
    maxpool2d_reference,
    maxpool2d_reference_backward,
)
from numnet.core.layers import (
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Dropout,
    Flatten,
    Linear,
    MaxPool2D,
    ReLU,
    Reshape,
    Sigmoid,
    Tanh,
    output_size,
)
from numnet.core.names import KERNELS
from numnet.core.plan import ConvPool2x2

TOL = 1e-6  # max relative error of a float64 central-difference check
both_kernels = pytest.mark.parametrize("kernels", KERNELS)


def _randomize(layer, rng: np.random.Generator) -> None:
    for p in layer.parameters():
        p.value = rng.standard_normal(p.shape)
        p.grad = np.zeros(p.shape)


def _distinct(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Values with no near-ties: a permutation of 0.01 * k (gaps 1000x the check's step)."""
    n = int(np.prod(shape))
    return (rng.permutation(n) * 0.01 - n * 0.005).reshape(shape)


# -- dense layers and activations --------------------------------------------------------------


@both_kernels
def test_linear_gradients(kernels: str) -> None:
    rng = np.random.default_rng(0)
    layer = Linear(7, 5, dtype="float64", kernels=kernels)
    _randomize(layer, rng)
    errors = gradcheck.check_layer(layer, rng.standard_normal((4, 7)))
    assert set(errors) == {"input", "weight", "bias"}
    assert max(errors.values()) < TOL, errors


@both_kernels
def test_linear_is_x_at_w_plus_b(kernels: str) -> None:
    layer = Linear(2, 3, dtype="float64", kernels=kernels)
    layer.weight.value = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    layer.bias.value = np.array([0.5, 0.0, -1.0])
    y = layer.forward(np.array([[1.0, -1.0]]))
    np.testing.assert_array_equal(y, [[-2.5, -3.0, -4.0]])


@pytest.mark.parametrize("cls", [ReLU, Sigmoid, Tanh])
def test_activation_gradients(cls) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 11)) * 3
    x[np.abs(x) < 0.05] = 0.5  # keep ReLU's kink out of the finite-difference step
    errors = gradcheck.check_layer(cls(), x)
    assert errors["input"] < TOL, errors


def test_sigmoid_is_finite_and_exact_at_extremes() -> None:
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # no overflow
        y = Sigmoid().forward(np.array([[-1000.0, 0.0, 1000.0, np.log(3.0)]]))
    np.testing.assert_allclose(y, [[0.0, 0.5, 1.0, 0.75]], rtol=1e-15, atol=0)


def test_relu_gradient_at_zero_is_zero() -> None:
    relu = ReLU()
    relu.forward(np.array([[-1.0, 0.0, 2.0]]))
    np.testing.assert_array_equal(relu.backward(np.ones((1, 3))), [[0.0, 0.0, 1.0]])


def test_flatten_is_height_width_channel_order() -> None:
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5)
    y = Flatten().forward(x)
    assert y.shape == (2, 60)
    h, w, c = 1, 2, 3
    assert y[1, h * 4 * 5 + w * 5 + c] == x[1, h, w, c]
    layer = Flatten()
    layer.forward(x)
    np.testing.assert_array_equal(layer.backward(y), x)


def test_reshape_round_trip() -> None:
    layer = Reshape((28, 28, 1))
    x = np.arange(2 * 784, dtype=np.float64).reshape(2, 784)
    y = layer.forward(x)
    assert y.shape == (2, 28, 28, 1) and y[1, 3, 5, 0] == x[1, 3 * 28 + 5]
    np.testing.assert_array_equal(layer.backward(y), x)


# -- SAME padding ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size, kernel, stride, padding, expected",
    [
        (28, 3, 1, "same", (28, 1, 1)),  # odd kernel, stride 1: symmetric
        (28, 2, 2, "same", (14, 0, 0)),
        (7, 2, 2, "same", (4, 0, 1)),  # odd size: the extra row goes at the end
        (5, 3, 2, "same", (3, 1, 1)),
        (6, 3, 2, "same", (3, 0, 1)),
        (7, 4, 1, "same", (7, 1, 2)),  # even kernel: the odd one at the end
        (7, 3, 2, "valid", (3, 0, 0)),
        (8, 3, 2, "valid", (3, 0, 0)),  # the last row is never reached
    ],
)
def test_output_size_matches_tensorflow(size, kernel, stride, padding, expected) -> None:
    assert output_size(size, kernel, stride, padding) == expected


def test_output_size_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="padding"):
        output_size(5, 3, 1, "full")
    with pytest.raises(ValueError, match="does not fit"):
        output_size(2, 3, 1, "valid")


# -- Conv2D ------------------------------------------------------------------------------------

CONV_CASES = [
    # (N, H, W, c_in, c_out, kernel, stride, padding)
    (2, 5, 7, 3, 4, 3, 1, "same"),
    (2, 7, 6, 2, 3, 3, 2, "same"),
    (1, 8, 9, 3, 2, (3, 2), 2, "valid"),
    (2, 6, 6, 1, 8, 3, 1, "same"),
    (1, 9, 7, 2, 2, 5, 3, "same"),
    (2, 4, 5, 2, 3, 1, 1, "valid"),
    (1, 7, 7, 3, 2, 2, 2, "same"),
    (2, 7, 5, 2, 3, 4, 1, "same"),
    (1, 9, 9, 2, 2, 3, (2, 1), "valid"),
]


def _conv(case, rng, kernels="fast"):
    n, h, w, cin, cout, k, s, pad = case
    layer = Conv2D(cin, cout, k, stride=s, padding=pad, dtype="float64", kernels=kernels)
    _randomize(layer, rng)
    return layer, rng.standard_normal((n, h, w, cin))


@both_kernels
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_gradients(case, kernels) -> None:
    rng = np.random.default_rng(2)
    layer, x = _conv(case, rng, kernels)
    errors = gradcheck.check_layer(layer, x)
    assert set(errors) == {"input", "weight", "bias"}
    assert max(errors.values()) < TOL, errors


@both_kernels
@pytest.mark.parametrize(
    "case", [*CONV_CASES, (3, 28, 28, 1, 8, 3, 1, "same"), (3, 14, 14, 8, 8, 3, 1, "same")]
)
def test_conv_matches_reference(case, kernels) -> None:
    rng = np.random.default_rng(3)
    layer, x = _conv(case, rng, kernels)
    w, b, stride, pad = layer.weight.value, layer.bias.value, layer.stride, layer.padding
    y = layer.forward(x)
    y_ref = conv2d_reference(x, w, b, stride, pad)
    assert y.shape == y_ref.shape
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    dx_ref, dw_ref, db_ref = conv2d_reference_backward(x, w, dy, stride, pad)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.weight.grad, dw_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.bias.grad, db_ref, rtol=1e-12, atol=1e-12)


@both_kernels
def test_conv_hand_worked_same_padding(kernels: str) -> None:
    """All-ones 3x3 kernel on an all-ones 4x4 image: each output counts the in-image
    neighbours of its pixel (corners 4, edges 6, inside 9), plus the bias."""
    layer = Conv2D(1, 1, 3, padding="same", dtype="float64", kernels=kernels)
    layer.weight.value = np.ones((3, 3, 1, 1))
    layer.bias.value = np.array([0.5])
    y = layer.forward(np.ones((1, 4, 4, 1)))[0, :, :, 0]
    expected = np.array([[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6], [4, 6, 6, 4]]) + 0.5
    np.testing.assert_array_equal(y, expected)


@both_kernels
def test_conv_weight_layout_is_hwio(kernels: str) -> None:
    """A kernel with a single 1 at (i, j, c, o) copies input channel c, shifted, to output o."""
    layer = Conv2D(2, 3, 3, padding="same", dtype="float64", kernels=kernels)
    w = np.zeros((3, 3, 2, 3))
    w[0, 2, 1, 2] = 1.0  # row offset -1, column offset +1
    layer.weight.value = w
    x = np.random.default_rng(4).standard_normal((1, 5, 5, 2))
    y = layer.forward(x)
    np.testing.assert_array_equal(y[0, 1:, :4, 2], x[0, :4, 1:, 1])
    assert not y[..., :2].any()


def test_conv_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="padding"):
        Conv2D(1, 1, 3, padding="full")
    with pytest.raises(ValueError, match="input channels"):
        Conv2D(3, 1, 3).output_shape((5, 5, 2))
    with pytest.raises(KernelsError, match="kernels must be one of"):
        Conv2D(1, 1, 3, kernels="turbo")
    layer = Linear(2, 2)
    with pytest.raises(NumnetError, match="kernels must be one of"):
        layer.kernels = "slow"
    assert layer.kernels == "fast"


# -- MaxPool2D ---------------------------------------------------------------------------------

POOL_CASES = [
    # (N, H, W, C, pool, stride, padding)
    (2, 6, 4, 3, 2, 2, "same"),  # fast path
    (2, 8, 8, 2, 2, 2, "valid"),  # fast path
    (2, 7, 5, 3, 2, 2, "same"),  # odd sizes: -inf row/column at the end
    (2, 7, 5, 3, 2, 2, "valid"),  # odd sizes: last row/column dropped
    (1, 7, 6, 2, 3, 2, "same"),
    (1, 5, 5, 2, 3, 1, "same"),  # overlapping windows
    (2, 6, 7, 1, (2, 3), (1, 2), "valid"),
    (1, 9, 8, 2, 3, 3, "valid"),
]


@both_kernels
@pytest.mark.parametrize("case", POOL_CASES)
def test_maxpool_gradients(case, kernels) -> None:
    n, h, w, c, k, s, pad = case
    rng = np.random.default_rng(5)
    layer = MaxPool2D(k, s, pad, kernels=kernels)
    errors = gradcheck.check_layer(layer, _distinct((n, h, w, c), rng))
    assert errors == {"input": pytest.approx(0, abs=TOL)}, errors


@both_kernels
@pytest.mark.parametrize("case", [*POOL_CASES, (3, 28, 28, 8, 2, 2, "same")])
def test_maxpool_matches_reference(case, kernels) -> None:
    n, h, w, c, k, s, pad = case
    rng = np.random.default_rng(6)
    x = rng.standard_normal((n, h, w, c))
    layer = MaxPool2D(k, s, pad, kernels=kernels)
    y = layer.forward(x)
    np.testing.assert_array_equal(y, maxpool2d_reference(x, k, s, pad))
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(
        layer.backward(dy), maxpool2d_reference_backward(x, dy, k, s, pad), rtol=0, atol=1e-15
    )


@both_kernels
def test_maxpool_same_pads_with_minus_infinity_at_the_end(kernels: str) -> None:
    """A 3x3 all-negative image, 2x2/2 SAME: the last row/column is padded after, with -inf,
    so the corner output is the corner pixel itself (zero padding would give 0)."""
    x = -np.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    y = MaxPool2D(2, 2, "same", kernels=kernels).forward(x)[0, :, :, 0]
    np.testing.assert_array_equal(y, [[-1.0, -3.0], [-7.0, -9.0]])


@both_kernels
@pytest.mark.parametrize(
    "shape, pool, stride, padding",
    [
        ((1, 4, 4, 1), 2, 2, "same"),  # fast path
        ((1, 5, 5, 1), 2, 2, "same"),  # general path
        ((1, 5, 5, 1), 3, 1, "same"),  # general path, overlapping windows
    ],
)
def test_maxpool_ties_go_to_first_maximum_in_row_major_order(
    shape, pool, stride, padding, kernels
) -> None:
    # Every window is a tie (a constant image): each output's gradient lands on its window's
    # top-left in-image element, as in TensorFlow and PyTorch.
    x = np.full(shape, 2.0)
    layer = MaxPool2D(pool, stride, padding, kernels=kernels)
    y = layer.forward(x)
    dy = np.arange(1.0, y.size + 1).reshape(y.shape)
    dx = layer.backward(dy)
    np.testing.assert_array_equal(dx, maxpool2d_reference_backward(x, dy, pool, stride, padding))
    assert dx.sum() == dy.sum()


@both_kernels
def test_maxpool_ties_hand_worked(kernels: str) -> None:
    # window [[1, 3], [3, 2]]: the max 3 appears at (0, 1) and (1, 0); (0, 1) comes first.
    # window [[5, 5], [5, 5]]: (0, 0). window [[0, 1], [4, 4]]: (1, 0).
    x = np.array([[1, 3, 5, 5, 0, 1], [3, 2, 5, 5, 4, 4]], dtype=np.float64)[None, :, :, None]
    layer = MaxPool2D(2, 2, kernels=kernels)
    np.testing.assert_array_equal(layer.forward(x)[0, 0, :, 0], [3, 5, 4])
    dx = layer.backward(np.array([10.0, 20.0, 30.0]).reshape(1, 1, 3, 1))[0, :, :, 0]
    np.testing.assert_array_equal(dx, [[0, 10, 20, 0, 0, 0], [0, 0, 0, 0, 30, 0]])


@both_kernels
def test_layers_keep_nothing_in_eval_mode(kernels: str) -> None:
    rng = np.random.default_rng(7)
    conv = Conv2D(2, 2, 3, dtype="float64", kernels=kernels)
    _randomize(conv, rng)
    x1, x2 = rng.standard_normal((2, 2, 6, 6, 2))
    y1 = conv.forward(x1)
    conv.forward(x2, train=False)  # must not replace what backward uses
    dy = rng.standard_normal(y1.shape)
    dx = conv.backward(dy)
    np.testing.assert_allclose(dx, conv2d_reference_backward(x1, conv.weight.value, dy)[0])


@both_kernels
def test_maxpool_general_path_keeps_nothing_in_eval_mode(kernels: str) -> None:
    rng = np.random.default_rng(8)
    pool = MaxPool2D(3, 2, "same", kernels=kernels)
    x1, x2 = rng.standard_normal((2, 2, 7, 5, 3))
    y1 = pool.forward(x1)
    pool.forward(x2, train=False)
    dy = rng.standard_normal(y1.shape)
    expected = maxpool2d_reference_backward(x1, dy, 3, 2, "same")
    np.testing.assert_array_equal(pool.backward(dy), expected)


# -- the ConvPool2x2 fast path against the layers one by one ----------------------------------


@pytest.mark.parametrize(
    "n, h, w, cin, cout, k, act",
    [
        (3, 28, 28, 1, 8, 3, None),  # model 4's first block
        (3, 14, 14, 8, 8, 3, None),  # model 4's second block
        (2, 6, 8, 3, 4, 3, ReLU),
        (2, 8, 6, 2, 3, 5, Tanh),
        (2, 6, 6, 2, 2, 2, Sigmoid),  # even kernel: asymmetric SAME padding
        (2, 7, 5, 2, 3, 3, ReLU),  # odd sizes: falls back to the layers
    ],
)
@pytest.mark.parametrize("kernels", KERNELS)
def test_convpool_fast_path_equals_the_layers(n, h, w, cin, cout, k, act, kernels) -> None:
    rng = np.random.default_rng(9)
    conv = Conv2D(cin, cout, k, padding="same", dtype="float64", kernels=kernels)
    _randomize(conv, rng)
    layers = [conv, *([act(kernels)] if act else []), MaxPool2D(2, 2, "same", kernels=kernels)]
    fused = ConvPool2x2(conv, layers[1] if act else None, layers[-1])
    x = rng.standard_normal((n, h, w, cin))
    z = fused.forward(x)
    dz = rng.standard_normal(z.shape)
    dx = fused.backward(dz)
    grads = [p.grad.copy() for p in conv.parameters()]

    ref = x
    for layer in layers:
        ref = layer.forward(ref)
    np.testing.assert_allclose(z, ref, rtol=1e-12, atol=1e-13)
    ref_dx = dz
    for layer in reversed(layers):
        ref_dx = layer.backward(ref_dx)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-11, atol=1e-12)
    for g, p in zip(grads, conv.parameters(), strict=True):
        np.testing.assert_allclose(g, p.grad, rtol=1e-11, atol=1e-12)
    # evaluation takes the pooling-window GEMM: the same sums, in BLAS's order
    np.testing.assert_allclose(fused.forward(x, train=False), z, rtol=1e-13, atol=1e-14)
    fused.forward(x)  # the layers' own run above replaced the shared activation's cache
    assert fused.backward(dz, input_grad=False) is None
    for g, p in zip(grads, conv.parameters(), strict=True):
        np.testing.assert_array_equal(g, p.grad)


def test_convpool_fast_path_gradients_and_ties() -> None:
    rng = np.random.default_rng(10)
    conv = Conv2D(2, 3, 3, padding="same", dtype="float64")
    _randomize(conv, rng)
    fused = ConvPool2x2(conv, None, MaxPool2D(2, 2))
    errors = gradcheck.check_layer(fused, rng.standard_normal((2, 6, 8, 2)))
    assert max(errors.values()) < TOL, errors
    # A zero kernel makes every window a four-way tie: the gradient goes to the top-left pixel,
    # which the weight gradient shows (it sums the input under the pixels that won).
    conv.weight.value[...] = 0
    x = rng.standard_normal((1, 4, 4, 2))
    z = fused.forward(x)
    dx = fused.backward(np.ones(z.shape))
    unpooled = np.zeros((1, 4, 4, 3))
    unpooled[:, ::2, ::2, :] = 1  # what reached the conv output
    np.testing.assert_allclose(conv.bias.grad, unpooled.sum(axis=(0, 1, 2)))
    np.testing.assert_allclose(conv.weight.grad, conv2d_weight_grad_loops(x, unpooled, 3, 3))
    np.testing.assert_array_equal(dx, np.zeros((1, 4, 4, 2)))  # zero kernel: no input gradient


def test_convpool_refuses_what_it_cannot_fuse() -> None:
    assert not ConvPool2x2.fusable(Conv2D(1, 1, 3, stride=2), None, MaxPool2D(2))
    assert not ConvPool2x2.fusable(Conv2D(1, 1, 3, padding="valid"), None, MaxPool2D(2))
    assert not ConvPool2x2.fusable(Conv2D(1, 1, 3), None, MaxPool2D(3, 2))
    assert not ConvPool2x2.fusable(Conv2D(1, 1, 3), Flatten(), MaxPool2D(2))
    with pytest.raises(ValueError, match="cannot fuse"):
        ConvPool2x2(Conv2D(1, 1, 3), None, MaxPool2D(3))


# -- BatchNorm, Dropout, AvgPool2D -------------------------------------------------------------


@both_kernels
@pytest.mark.parametrize("shape", [(8, 3), (2, 5, 4, 3)])
def test_batchnorm_normalises_the_last_axis_and_updates_running_statistics(shape, kernels):
    rng = np.random.default_rng(11)
    x = rng.standard_normal(shape) * 4 + 2
    layer = BatchNorm(3, momentum=0.2, dtype="float64", kernels=kernels)
    y = layer.forward(x)
    flat = y.reshape(-1, 3)
    np.testing.assert_allclose(flat.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(flat.var(axis=0), 1, rtol=1e-4)  # var / (var + eps)
    rows = x.reshape(-1, 3)
    np.testing.assert_allclose(layer.running_mean, 0.2 * rows.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(layer.running_var, 0.8 + 0.2 * rows.var(axis=0, ddof=1),
                               rtol=1e-12)  # fmt: skip
    # evaluation: the running statistics, row by row (a row alone gives the same output)
    expected = (x - layer.running_mean) / np.sqrt(layer.running_var + 1e-5)
    np.testing.assert_allclose(layer.forward(x, train=False), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(layer.forward(x[:1], train=False), layer.forward(x, False)[:1])


def test_batchnorm_float32_stays_float32_and_needs_two_values_to_train() -> None:
    layer = BatchNorm(4)
    y = layer.forward(np.ones((3, 4), dtype=np.float32))
    assert y.dtype == layer.running_var.dtype == layer.running_mean.dtype == np.float32
    dx = layer.backward(np.ones((3, 4), dtype=np.float32))
    assert dx.dtype == layer.weight.grad.dtype == np.float32
    with pytest.raises(ValueError, match="more than 1 value per feature"):
        layer.forward(np.ones((1, 4), dtype=np.float32))
    assert layer.forward(np.ones((1, 4), dtype=np.float32), train=False).shape == (1, 4)


def test_dropout_masks_rates_and_evaluation() -> None:
    x = np.ones((200, 50))
    layer = Dropout(0.3, seed=1)
    y = layer.forward(x)
    assert set(np.unique(layer.last_mask)) == {0.0, 1 / 0.7}
    np.testing.assert_array_equal(y, x * layer.last_mask)
    assert abs((layer.last_mask > 0).mean() - 0.7) < 0.02
    np.testing.assert_array_equal(layer.backward(np.full(x.shape, 2.0)), 2 * layer.last_mask)
    assert layer.forward(x, train=False) is x
    assert np.array_equal(Dropout(0.3, seed=1).forward(x), y)  # the seed fixes the masks
    # the same draws give the same mask in float32 and float64
    m32 = Dropout(0.5, seed=2)
    m32.forward(x.astype(np.float32))
    m64 = Dropout(0.5, seed=2)
    m64.forward(x)
    assert m32.last_mask.dtype == np.float32
    np.testing.assert_array_equal(m32.last_mask, m64.last_mask)
    np.testing.assert_array_equal(Dropout(0.0).forward(x), x)
    for rate in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="rate"):
            Dropout(rate)


AVGPOOL_CASES = [
    (2, 6, 4, 3, 2, 2, "same"),
    (2, 7, 5, 3, 2, 2, "same"),
    (2, 7, 5, 3, 2, 2, "valid"),
    (1, 5, 5, 2, 3, 1, "same"),
    (1, 9, 8, 2, 3, 3, "valid"),
]


@both_kernels
@pytest.mark.parametrize("case", AVGPOOL_CASES)
def test_avgpool_gradients_and_loops(case, kernels) -> None:
    n, h, w, c, k, s, pad = case
    rng = np.random.default_rng(12)
    layer = AvgPool2D(k, s, pad, kernels=kernels)
    x = rng.standard_normal((n, h, w, c))
    errors = gradcheck.check_layer(layer, x)
    assert errors["input"] < TOL, errors
    y = layer.forward(x)
    dy = rng.standard_normal(y.shape)
    y_ref, dx_ref = avgpool2d_loops(x, k, s, pad, dy)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.backward(dy), dx_ref, rtol=1e-12, atol=1e-12)
    assert layer.output_shape((h, w, c)) == y.shape[1:]


def test_avgpool_same_divides_by_the_in_image_count() -> None:
    """3x3 image, 2x2/2 SAME: the corner window holds one pixel and is that pixel, not a
    quarter of it (TensorFlow's avg_pool; zero padding is not averaged in)."""
    x = np.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    y = AvgPool2D(2, 2, "same").forward(x)[0, :, :, 0]
    np.testing.assert_array_equal(y, [[(1 + 2 + 4 + 5) / 4, (3 + 6) / 2], [(7 + 8) / 2, 9.0]])
