"""Layers: finite-difference gradient checks (float64), fast paths against the plain reference
implementations, TensorFlow's SAME padding, the flatten order and max-pool ties."""

from __future__ import annotations

import numpy as np
import pytest

from numnet.core import gradcheck
from numnet.core.layers import (
    Conv2D,
    ConvPool2x2,
    Flatten,
    Linear,
    MaxPool2D,
    ReLU,
    Reshape,
    Sigmoid,
    Tanh,
    conv2d_reference,
    conv2d_reference_backward,
    maxpool2d_reference,
    maxpool2d_reference_backward,
    output_size,
)

TOL = 1e-6  # max relative error of a float64 central-difference check


def _randomize(layer, rng: np.random.Generator) -> None:
    for p in layer.parameters():
        p.value = rng.standard_normal(p.shape)
        p.grad = np.zeros(p.shape)


def _distinct(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Values with no near-ties: a permutation of 0.01 * k (gaps 1000x the check's step)."""
    n = int(np.prod(shape))
    return (rng.permutation(n) * 0.01 - n * 0.005).reshape(shape)


# -- dense layers and activations --------------------------------------------------------------


def test_linear_gradients() -> None:
    rng = np.random.default_rng(0)
    layer = Linear(7, 5, dtype="float64")
    _randomize(layer, rng)
    errors = gradcheck.check_layer(layer, rng.standard_normal((4, 7)))
    assert set(errors) == {"input", "weight", "bias"}
    assert max(errors.values()) < TOL, errors


def test_linear_is_x_at_w_plus_b() -> None:
    layer = Linear(2, 3, dtype="float64")
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


def _conv(case, rng):
    n, h, w, cin, cout, k, s, pad = case
    layer = Conv2D(cin, cout, k, stride=s, padding=pad, dtype="float64")
    _randomize(layer, rng)
    return layer, rng.standard_normal((n, h, w, cin))


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_gradients(case) -> None:
    rng = np.random.default_rng(2)
    layer, x = _conv(case, rng)
    errors = gradcheck.check_layer(layer, x)
    assert set(errors) == {"input", "weight", "bias"}
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize(
    "case", [*CONV_CASES, (3, 28, 28, 1, 8, 3, 1, "same"), (3, 14, 14, 8, 8, 3, 1, "same")]
)
def test_conv_matches_reference(case) -> None:
    rng = np.random.default_rng(3)
    layer, x = _conv(case, rng)
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


def test_conv_hand_worked_same_padding() -> None:
    """All-ones 3x3 kernel on an all-ones 4x4 image: each output counts the in-image
    neighbours of its pixel (corners 4, edges 6, inside 9), plus the bias."""
    layer = Conv2D(1, 1, 3, padding="same", dtype="float64")
    layer.weight.value = np.ones((3, 3, 1, 1))
    layer.bias.value = np.array([0.5])
    y = layer.forward(np.ones((1, 4, 4, 1)))[0, :, :, 0]
    expected = np.array([[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6], [4, 6, 6, 4]]) + 0.5
    np.testing.assert_array_equal(y, expected)


def test_conv_weight_layout_is_hwio() -> None:
    """A kernel with a single 1 at (i, j, c, o) copies input channel c, shifted, to output o."""
    layer = Conv2D(2, 3, 3, padding="same", dtype="float64")
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


@pytest.mark.parametrize("case", POOL_CASES)
def test_maxpool_gradients(case) -> None:
    n, h, w, c, k, s, pad = case
    rng = np.random.default_rng(5)
    errors = gradcheck.check_layer(MaxPool2D(k, s, pad), _distinct((n, h, w, c), rng))
    assert errors == {"input": pytest.approx(0, abs=TOL)}, errors


@pytest.mark.parametrize("case", [*POOL_CASES, (3, 28, 28, 8, 2, 2, "same")])
def test_maxpool_matches_reference(case) -> None:
    n, h, w, c, k, s, pad = case
    rng = np.random.default_rng(6)
    x = rng.standard_normal((n, h, w, c))
    layer = MaxPool2D(k, s, pad)
    y = layer.forward(x)
    np.testing.assert_array_equal(y, maxpool2d_reference(x, k, s, pad))
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(
        layer.backward(dy), maxpool2d_reference_backward(x, dy, k, s, pad), rtol=0, atol=1e-15
    )


def test_maxpool_same_pads_with_minus_infinity_at_the_end() -> None:
    """A 3x3 all-negative image, 2x2/2 SAME: the last row/column is padded after, with -inf,
    so the corner output is the corner pixel itself (zero padding would give 0)."""
    x = -np.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    y = MaxPool2D(2, 2, "same").forward(x)[0, :, :, 0]
    np.testing.assert_array_equal(y, [[-1.0, -3.0], [-7.0, -9.0]])


@pytest.mark.parametrize(
    "shape, pool, stride, padding",
    [
        ((1, 4, 4, 1), 2, 2, "same"),  # fast path
        ((1, 5, 5, 1), 2, 2, "same"),  # general path
        ((1, 5, 5, 1), 3, 1, "same"),  # general path, overlapping windows
    ],
)
def test_maxpool_ties_go_to_first_maximum_in_row_major_order(shape, pool, stride, padding) -> None:
    # Every window is a tie (a constant image): each output's gradient lands on its window's
    # top-left in-image element, as in TensorFlow and PyTorch.
    x = np.full(shape, 2.0)
    layer = MaxPool2D(pool, stride, padding)
    y = layer.forward(x)
    dy = np.arange(1.0, y.size + 1).reshape(y.shape)
    dx = layer.backward(dy)
    np.testing.assert_array_equal(dx, maxpool2d_reference_backward(x, dy, pool, stride, padding))
    assert dx.sum() == dy.sum()


def test_maxpool_ties_hand_worked() -> None:
    # window [[1, 3], [3, 2]]: the max 3 appears at (0, 1) and (1, 0); (0, 1) comes first.
    # window [[5, 5], [5, 5]]: (0, 0). window [[0, 1], [4, 4]]: (1, 0).
    x = np.array([[1, 3, 5, 5, 0, 1], [3, 2, 5, 5, 4, 4]], dtype=np.float64)[None, :, :, None]
    layer = MaxPool2D(2, 2)
    np.testing.assert_array_equal(layer.forward(x)[0, 0, :, 0], [3, 5, 4])
    dx = layer.backward(np.array([10.0, 20.0, 30.0]).reshape(1, 1, 3, 1))[0, :, :, 0]
    np.testing.assert_array_equal(dx, [[0, 10, 20, 0, 0, 0], [0, 0, 0, 0, 30, 0]])


def test_layers_keep_nothing_in_eval_mode() -> None:
    rng = np.random.default_rng(7)
    conv = Conv2D(2, 2, 3, dtype="float64")
    _randomize(conv, rng)
    x1, x2 = rng.standard_normal((2, 2, 6, 6, 2))
    y1 = conv.forward(x1)
    conv.forward(x2, train=False)  # must not replace what backward uses
    dy = rng.standard_normal(y1.shape)
    dx = conv.backward(dy)
    np.testing.assert_allclose(dx, conv2d_reference_backward(x1, conv.weight.value, dy)[0])


def test_maxpool_general_path_keeps_nothing_in_eval_mode() -> None:
    rng = np.random.default_rng(8)
    pool = MaxPool2D(3, 2, "same")
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
def test_convpool_fast_path_equals_the_layers(n, h, w, cin, cout, k, act) -> None:
    rng = np.random.default_rng(9)
    conv = Conv2D(cin, cout, k, padding="same", dtype="float64")
    _randomize(conv, rng)
    layers = [conv, *([act()] if act else []), MaxPool2D(2, 2, "same")]
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
    np.testing.assert_array_equal(fused.forward(x, train=False), z)
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
    # A zero kernel makes every window a four-way tie: the gradient goes to the top-left pixel.
    conv.weight.value[...] = 0
    z = fused.forward(rng.standard_normal((1, 4, 4, 2)))
    fused.backward(np.ones(z.shape))
    unpooled = np.zeros((1, 4, 4, 3))
    unpooled[:, ::2, ::2, :] = 1  # what reached the conv output
    np.testing.assert_allclose(conv.bias.grad, unpooled.sum(axis=(0, 1, 2)))
    dx = fused.backward(np.ones(z.shape))
    np.testing.assert_array_equal(dx, np.zeros((1, 4, 4, 2)))  # zero kernel: no input gradient


def test_convpool_refuses_what_it_cannot_fuse() -> None:
    assert not ConvPool2x2.fusable(Conv2D(1, 1, 3, stride=2), None, MaxPool2D(2))
    assert not ConvPool2x2.fusable(Conv2D(1, 1, 3, padding="valid"), None, MaxPool2D(2))
    assert not ConvPool2x2.fusable(Conv2D(1, 1, 3), None, MaxPool2D(3, 2))
    assert not ConvPool2x2.fusable(Conv2D(1, 1, 3), Flatten(), MaxPool2D(2))
    with pytest.raises(ValueError, match="cannot fuse"):
        ConvPool2x2(Conv2D(1, 1, 3), None, MaxPool2D(3))


def test_two_thread_split_equals_one_thread(monkeypatch) -> None:
    """The conv fast path split into two halves of images (forced here on small arrays)
    computes exactly the same on two threads as on one."""
    import numnet.core.runtime as layers_module

    monkeypatch.setattr(layers_module, "SPLIT_MIN_ELEMENTS", 0)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((5, 8, 6, 3))
    dz = rng.standard_normal((5, 4, 3, 4))
    results = []
    for threads, act in ((1, None), (2, None), (1, Tanh), (2, Tanh)):
        monkeypatch.setattr(layers_module, "_threads", threads)
        conv = Conv2D(3, 4, 3, padding="same", dtype="float64")
        conv.weight.value = np.random.default_rng(12).standard_normal(conv.weight.shape)
        conv.bias.value = np.random.default_rng(13).standard_normal(4)
        fused = ConvPool2x2(conv, act() if act else None, MaxPool2D(2))
        z = fused.forward(x)
        assert len(fused._cache[1]) == 2
        dx = fused.backward(dz)
        results.append((z, dx, conv.weight.grad.copy(), conv.bias.grad.copy()))
    for one, two in (results[:2], results[2:]):
        for a, b in zip(one, two, strict=True):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="threads"):
        layers_module.set_threads(3)


def test_work_is_taken_back_from_a_busy_helper(monkeypatch) -> None:
    """run_parts: when the helper thread has not started its part, the caller runs it."""
    import threading

    import numnet.core.runtime as layers_module

    if not layers_module._blas_controllers():
        pytest.skip("threadpoolctl cannot hold BLAS to one thread here: no helper thread")
    monkeypatch.setattr(layers_module, "_threads", 2)
    blocker = threading.Event()
    layers_module.run_parts(lambda k: None, 2)  # make sure the helper exists
    layers_module._helper.submit(blocker.wait)  # keep the helper busy
    done = []
    layers_module.run_parts(lambda k: done.append((k, threading.current_thread().name)), 2)
    blocker.set()
    assert sorted(k for k, _ in done) == [0, 1]
    assert {name for _, name in done} == {threading.current_thread().name}


def test_single_threaded_blas_restores_the_count() -> None:
    import numnet.core.runtime as layers_module

    libs = layers_module._blas_controllers()
    if not libs:
        pytest.skip("threadpoolctl cannot see a BLAS library here")
    before = [lib.num_threads for lib in libs]
    with layers_module.single_threaded_blas():
        with layers_module.single_threaded_blas():  # re-entrant
            assert all(lib.num_threads == 1 for lib in libs)
        assert all(lib.num_threads == 1 for lib in libs)
    assert [lib.num_threads for lib in libs] == before
