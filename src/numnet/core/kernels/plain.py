"""The plain kernels: every operation's forward and backward pass as a short pure function.

This is the file to read to learn backprop from numnet (``docs/derivations.md`` derives each
formula and cites these functions by name). Each forward returns ``(output, cache)``; its
backward takes the upstream gradient and that cache and returns the gradients. No buffers are
kept, no threads are used, nothing is fused: ``fast.py`` holds the fast versions of the same
operations and the tests hold the two equal (``tests/test_kernels.py``).

Layouts (TensorFlow's):
- a batch of vectors is ``(N, features)``; a linear weight is ``(in, out)``, ``y = x @ w + b``;
- images are NHWC ``(N, H, W, C)``; a convolution weight is HWIO ``(kh, kw, c_in, c_out)``;
- SAME padding as TensorFlow computes it (``output_size``): the odd row/column goes at the end.
  Convolutions pad with zeros, max-pooling with ``-inf``.

The arrays may be NumPy or CuPy: every array function comes from ``xp = array_module(x)``.

``fast.py`` has every function of this file under the same name and signature (a layer holds
one of the two modules as ``layer.ops`` and calls ``layer.ops.conv2d_forward(...)``, never a
branch). So that one call fits both, the kernels the fast module keeps buffers for
(``conv2d_forward`` / ``conv2d_backward``) take a keyword ``workspace`` here too, and ignore it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numnet.core.backend import array_module

Array = Any  # numpy.ndarray or cupy.ndarray
PADDINGS = ("same", "valid")
REDUCTIONS = ("sum", "mean")


# ----------------------------------------------------------------------------------------------
# Linear layer
# ----------------------------------------------------------------------------------------------


def linear_forward(x: Array, w: Array, b: Array) -> tuple[Array, tuple]:
    """``y = x @ w + b``. x: ``(N, in)``; w: ``(in, out)``; b: ``(out,)``; y: ``(N, out)``."""
    y = x @ w + b
    return y, (x, w)


def linear_backward(
    dy: Array, cache: tuple, input_grad: bool = True
) -> tuple[Array | None, Array, Array]:
    """Gradients of ``linear_forward`` from dy = dL/dy ``(N, out)``: ``(dx, dw, db)`` shaped
    like x ``(N, in)``, w ``(in, out)`` and b ``(out,)``; dx is None unless ``input_grad``."""
    x, w = cache
    dw = x.T @ dy
    db = dy.sum(axis=0)
    dx = dy @ w.T if input_grad else None
    return dx, dw, db


# ----------------------------------------------------------------------------------------------
# Elementwise activations: the cache is the output y, from which each derivative follows
# ----------------------------------------------------------------------------------------------


def relu_forward(x: Array) -> tuple[Array, Array]:
    """``y = max(x, 0)``, any shape; the cache is y."""
    y = array_module(x).maximum(x, 0)
    return y, y


def relu_backward(dy: Array, cache: Array) -> Array:
    """``dx = dy * [x > 0]``, tested on the cached output (y > 0 exactly where x > 0); the
    subgradient at x = 0 is 0, as in TensorFlow and PyTorch."""
    y = cache
    return array_module(dy).where(y > 0, dy, 0)  # 0, not 0 * dy: exact even for inf/nan


def sigmoid_forward(x: Array) -> tuple[Array, Array]:
    """``y = 1 / (1 + exp(-x))``, any shape, without overflow; the cache is y."""
    xp = array_module(x)
    e = xp.exp(-xp.abs(x))  # in (0, 1]: never overflows
    y = xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
    return y, y


def sigmoid_backward(dy: Array, cache: Array) -> Array:
    """``dx = dy * y * (1 - y)``."""
    y = cache
    return dy * y * (1 - y)


def tanh_forward(x: Array) -> tuple[Array, Array]:
    """``y = tanh(x)``, any shape; the cache is y."""
    y = array_module(x).tanh(x)
    return y, y


def tanh_backward(dy: Array, cache: Array) -> Array:
    """``dx = dy * (1 - y**2)``."""
    y = cache
    return dy * (1 - y * y)


#: activation name -> (forward, backward)
ACTIVATIONS = {
    "relu": (relu_forward, relu_backward),
    "sigmoid": (sigmoid_forward, sigmoid_backward),
    "tanh": (tanh_forward, tanh_backward),
}


# ----------------------------------------------------------------------------------------------
# Padding and windows (shared by the convolution and max-pooling)
# ----------------------------------------------------------------------------------------------


def pair(v: int | tuple[int, int]) -> tuple[int, int]:
    """``3 -> (3, 3)``; ``(3, 2) -> (3, 2)``: a size or stride for (height, width)."""
    if isinstance(v, int | np.integer):
        return int(v), int(v)
    a, b = v
    return int(a), int(b)


def output_size(size: int, kernel: int, stride: int, padding: str) -> tuple[int, int, int]:
    """``(out, pad_before, pad_after)`` along one spatial axis, as TensorFlow computes them.

    SAME: ``out = ceil(size / stride)``, total padding ``max((out-1)*stride + kernel - size, 0)``
    split ``total // 2`` before and the rest after. VALID: ``out = (size - kernel) // stride + 1``,
    no padding (trailing rows that no window reaches are ignored).
    """
    if padding == "same":
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        return out, total // 2, total - total // 2
    if padding == "valid":
        if size < kernel:
            raise ValueError(f"VALID window {kernel} does not fit an input of size {size}")
        return (size - kernel) // stride + 1, 0, 0
    raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")


def geometry(
    h: int, w: int, kernel: tuple[int, int], stride: tuple[int, int], padding: str
) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """``((Ho, top, bottom), (Wo, left, right))`` of a window sliding over an ``h x w`` image."""
    return (
        output_size(h, kernel[0], stride[0], padding),
        output_size(w, kernel[1], stride[1], padding),
    )


def windows(
    xpad: Array, kernel: tuple[int, int], stride: tuple[int, int], out_hw: tuple[int, int]
) -> Array:
    """Every window of the padded NHWC image ``xpad``, copied: ``(N, Ho, Wo, kh*kw, C)`` with
    ``[n, i, j, u*kw + v, c] = xpad[n, i*sh + u, j*sw + v, c]`` (taps in row-major order)."""
    (kh, kw), (sh, sw), (ho, wo) = kernel, stride, out_hw
    n, _, _, c = xpad.shape
    out = array_module(xpad).empty((n, ho, wo, kh * kw, c), dtype=xpad.dtype)
    for u in range(kh):
        for v in range(kw):
            out[:, :, :, u * kw + v, :] = xpad[:, u : u + sh * ho : sh, v : v + sw * wo : sw, :]
    return out


def im2col(
    xpad: Array, kernel: tuple[int, int], stride: tuple[int, int], out_hw: tuple[int, int]
) -> Array:
    """The windows as a matrix ``cols`` ``(N*Ho*Wo, kh*kw*C)``: one row per output position,
    columns in (kh, kw, C) order -- the order of HWIO's input axes, so a convolution is
    ``cols @ w.reshape(kh*kw*C, c_out)``."""
    win = windows(xpad, kernel, stride, out_hw)
    return win.reshape(-1, win.shape[3] * win.shape[4])


# ----------------------------------------------------------------------------------------------
# Convolution
# ----------------------------------------------------------------------------------------------


def conv2d_forward(
    x: Array, w: Array, b: Array, stride: int | tuple = 1, padding: str = "same", *,
    workspace: Any = None,
) -> tuple[Array, tuple]:  # fmt: skip
    """2-d convolution (a cross-correlation, as TensorFlow and PyTorch) by im2col + one GEMM.

    x: ``(N, H, W, c_in)``; w: HWIO ``(kh, kw, c_in, c_out)``; b: ``(c_out,)``; stride: int or
    (sh, sw); padding: "same" or "valid". Returns y ``(N, Ho, Wo, c_out)`` with
    ``y[n, i, j, o] = b[o] + sum_{u, v, c} xpad[n, i*sh + u, j*sw + v, c] * w[u, v, c, o]``.
    ``workspace``: ignored (the fast kernel's buffers; the plain one keeps none).
    """
    xp = array_module(x)
    n, h, wd, c = x.shape
    kh, kw, _, cout = w.shape
    stride = pair(stride)
    (ho, top, bottom), (wo, left, right) = geometry(h, wd, (kh, kw), stride, padding)
    xpad = xp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    cols = im2col(xpad, (kh, kw), stride, (ho, wo))
    y = cols @ w.reshape(kh * kw * c, cout) + b
    return y.reshape(n, ho, wo, cout), (x.shape, cols, w, stride, (top, left))


def conv2d_backward(
    dy: Array, cache: tuple, input_grad: bool = True, *, workspace: Any = None
) -> tuple[Array | None, Array, Array]:
    """Gradients of ``conv2d_forward`` from dy ``(N, Ho, Wo, c_out)``: ``(dx, dw, db)`` shaped
    like x, w and b (dx None unless ``input_grad``; ``workspace`` ignored).

    dW and db are the linear layer's, on the im2col matrix. dL/dX is a correlation of dy with
    the flipped kernel ``w[::-1, ::-1]`` whose in/out channels are swapped: dy is first
    dilated by the stride (``stride - 1`` zeros between its rows and columns; nothing for
    stride 1) and zero-padded by ``kh - 1 - top`` rows before (``kw - 1 - left`` columns), so
    that the stride-1 VALID correlation lands exactly on the input's ``H x W`` pixels.
    """
    (n, h, wd, c), cols, w, (sh, sw), (top, left) = cache
    xp = array_module(dy)
    kh, kw, _, cout = w.shape
    dy2 = dy.reshape(-1, cout)  # one row per output position, as the rows of cols
    dw = (cols.T @ dy2).reshape(w.shape)
    db = dy2.sum(axis=0)
    if not input_grad:
        return None, dw, db
    _, ho, wo, _ = dy.shape
    dy_big = xp.zeros((n, h + kh - 1, wd + kw - 1, cout), dtype=dy.dtype)
    r, s = kh - 1 - top, kw - 1 - left
    dy_big[:, r : r + sh * (ho - 1) + 1 : sh, s : s + sw * (wo - 1) + 1 : sw, :] = dy
    w_flipped = w[::-1, ::-1].transpose(0, 1, 3, 2)  # (kh, kw, c_out, c_in)
    dx = im2col(dy_big, (kh, kw), (1, 1), (h, wd)) @ w_flipped.reshape(kh * kw * cout, c)
    return dx.reshape(n, h, wd, c), dw, db


# ----------------------------------------------------------------------------------------------
# Max-pooling
# ----------------------------------------------------------------------------------------------


def maxpool2d_forward(
    x: Array, pool: int | tuple = 2, stride: int | tuple | None = None, padding: str = "valid"
) -> tuple[Array, tuple]:
    """Max over ``pool`` windows moved by ``stride`` (default: the pool size), per channel.

    x: ``(N, H, W, C)`` -> y ``(N, Ho, Wo, C)``; SAME pads with ``-inf`` (padding never wins).
    The cache keeps which tap of each window won: the first maximum in row-major window order.
    """
    xp = array_module(x)
    kernel = pair(pool)
    stride = pair(stride) if stride is not None else kernel
    n, h, w, c = x.shape
    (ho, top, bottom), (wo, left, right) = geometry(h, w, kernel, stride, padding)
    xpad = xp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=-xp.inf)
    win = windows(xpad, kernel, stride, (ho, wo))  # (N, Ho, Wo, taps, C)
    arg = win.argmax(axis=3)  # argmax returns the first maximum: ties go to the earliest tap
    y = xp.take_along_axis(win, arg[:, :, :, None, :], axis=3)[:, :, :, 0, :]
    return y, (arg, x.shape, xpad.shape, kernel, stride, (top, left))


def maxpool2d_backward(dy: Array, cache: tuple) -> Array:
    """dL/dx ``(N, H, W, C)`` from dy ``(N, Ho, Wo, C)``: each window's gradient goes, whole, to
    the tap that won it; an input that won several (overlapping) windows collects the sum."""
    arg, (n, h, w, c), xpad_shape, (kh, kw), (sh, sw), (top, left) = cache
    xp = array_module(dy)
    _, ho, wo, _ = dy.shape
    dxpad = xp.zeros(xpad_shape, dtype=dy.dtype)
    for u in range(kh):
        for v in range(kw):
            won = xp.where(arg == u * kw + v, dy, 0)  # dy where tap (u, v) won, else 0
            dxpad[:, u : u + sh * (ho - 1) + 1 : sh, v : v + sw * (wo - 1) + 1 : sw, :] += won
    return dxpad[:, top : top + h, left : left + w, :]


# ----------------------------------------------------------------------------------------------
# Average pooling
# ----------------------------------------------------------------------------------------------


def avgpool2d_forward(
    x: Array, pool: int | tuple = 2, stride: int | tuple | None = None, padding: str = "valid"
) -> tuple[Array, tuple]:
    """Mean over ``pool`` windows moved by ``stride`` (default: the pool size), per channel,
    as TensorFlow's ``tf.nn.avg_pool``: x ``(N, H, W, C)`` -> y ``(N, Ho, Wo, C)``.

    SAME pads with zeros at the end (as ``output_size``) and divides each window's sum by the
    number of its elements inside the image, ``count[i, j]`` ``(Ho, Wo)``: the padding is not
    averaged in. VALID: every window is inside, ``count = kh * kw``.
    """
    xp = array_module(x)
    kernel = pair(pool)
    stride = pair(stride) if stride is not None else kernel
    n, h, w, c = x.shape
    (ho, top, bottom), (wo, left, right) = geometry(h, w, kernel, stride, padding)
    pads = ((0, 0), (top, bottom), (left, right), (0, 0))
    inside = xp.pad(xp.ones((1, h, w, 1), dtype=x.dtype), pads)  # 1 on the image, 0 on padding
    count = windows(inside, kernel, stride, (ho, wo)).sum(axis=3)  # (1, Ho, Wo, 1)
    sums = windows(xp.pad(x, pads), kernel, stride, (ho, wo)).sum(axis=3)  # (N, Ho, Wo, C)
    return sums / count, (x.shape, count, kernel, stride, (top, bottom, left, right))


def avgpool2d_backward(dy: Array, cache: tuple) -> Array:
    """dL/dx ``(N, H, W, C)`` from dy ``(N, Ho, Wo, C)``: every element of window (i, j)
    receives ``dy[i, j] / count[i, j]``; an element of several (overlapping) windows collects
    the sum; what lands on the padding is cropped off."""
    (n, h, w, c), count, (kh, kw), (sh, sw), (top, bottom, left, right) = cache
    xp = array_module(dy)
    _, ho, wo, _ = dy.shape
    share = dy / count
    dxpad = xp.zeros((n, top + h + bottom, left + w + right, c), dtype=dy.dtype)
    for u in range(kh):
        for v in range(kw):
            dxpad[:, u : u + sh * (ho - 1) + 1 : sh, v : v + sw * (wo - 1) + 1 : sw, :] += share
    return dxpad[:, top : top + h, left : left + w, :]


# ----------------------------------------------------------------------------------------------
# Batch normalisation (over the last axis: the features of (N, F), the channels of NHWC)
# ----------------------------------------------------------------------------------------------


def batchnorm_forward(
    x: Array, gamma: Array, beta: Array, running_mean: Array, running_var: Array,
    train: bool = True, momentum: float = 0.1, eps: float = 1e-5,
) -> tuple[Array, tuple | None]:  # fmt: skip
    """Batch normalisation of x ``(N, F)`` or ``(N, H, W, C)`` over every axis but the last
    (F = C features); gamma, beta, running_mean, running_var ``(F,)``. The arguments are
    ``torch.nn.functional.batch_norm``'s, and so is the arithmetic.

    Training: the batch's mean and *biased* variance over its M = N (or N*H*W) values per
    feature normalise, ``xhat = (x - mean) / sqrt(var + eps)``, ``y = gamma * xhat + beta``;
    and -- this kernel's one side effect, as PyTorch's -- the running statistics are updated
    in place: ``running = (1 - momentum) * running + momentum * batch``, the variance's with
    the *unbiased* batch variance ``var * M / (M - 1)``. Evaluation (``train=False``): the
    running statistics normalise, nothing is updated, and each row's output depends on that
    row alone. The cache (None in evaluation) is ``(xhat, inv_std, gamma)``.
    """
    xp = array_module(x)
    axes = tuple(range(x.ndim - 1))
    if not train:
        inv_std = 1 / xp.sqrt(running_var + eps)
        return (x - running_mean) * (gamma * inv_std) + beta, None
    m = x.size // x.shape[-1]
    if m < 2:
        raise ValueError(f"batch norm needs more than 1 value per feature to train, got x of "
                         f"shape {tuple(x.shape)}")  # fmt: skip
    # the sums of M values (78,400 per channel after a conv) in float64: in float32 they
    # drift by 1e-5 of the result, enough to move a float32 run off its float64 twin
    mean = x.mean(axis=axes, dtype=xp.float64).astype(x.dtype)
    centered = x - mean
    var = (centered * centered).mean(axis=axes, dtype=xp.float64).astype(x.dtype)  # biased
    inv_std = 1 / xp.sqrt(var + eps)
    xhat = centered * inv_std
    running_mean *= 1 - momentum
    running_mean += momentum * mean
    running_var *= 1 - momentum
    running_var += momentum * (var * (m / (m - 1)))  # unbiased, as PyTorch
    return gamma * xhat + beta, (xhat, inv_std, gamma)


def batchnorm_backward(
    dy: Array, cache: tuple, input_grad: bool = True
) -> tuple[Array | None, Array, Array]:
    """Gradients of a training ``batchnorm_forward`` from dy (x's shape): ``(dx, dgamma,
    dbeta)``, dgamma and dbeta ``(F,)``; dx None unless ``input_grad``. With sums and means
    over the M values of each feature (``docs/derivations.md`` derives it):
    ``dbeta = sum dy``, ``dgamma = sum dy * xhat``, and with ``g = gamma * dy`` (dL/dxhat)
    ``dx = inv_std * (g - mean(g) - xhat * mean(g * xhat))``.
    """
    xhat, inv_std, gamma = cache
    xp = array_module(dy)
    axes = tuple(range(dy.ndim - 1))

    def total(a: Array) -> Array:  # over the M values of each feature, summed in float64
        return a.sum(axis=axes, dtype=xp.float64).astype(dy.dtype)

    def mean(a: Array) -> Array:
        return a.mean(axis=axes, dtype=xp.float64).astype(dy.dtype)

    dbeta = total(dy)
    dgamma = total(dy * xhat)
    if not input_grad:
        return None, dgamma, dbeta
    g = dy * gamma  # dL/dxhat
    dx = inv_std * (g - mean(g) - xhat * mean(g * xhat))
    return dx, dgamma, dbeta


# ----------------------------------------------------------------------------------------------
# Dropout (inverted)
# ----------------------------------------------------------------------------------------------


def dropout_forward(x: Array, rate: float, rng: np.random.Generator) -> tuple[Array, Array]:
    """Inverted dropout of x (any shape) for a training pass: each element is kept with
    probability ``1 - rate`` and then scaled by ``1 / (1 - rate)``, so that the expected output
    is x and evaluation needs nothing (it is the identity; the layer skips this kernel).

    The mask is x's shape and dtype, each element 0 or ``1 / (1 - rate)``: element a is kept
    when ``u_a >= rate`` for ``u = rng.random(x.shape)`` (float64, C order), so the same
    Generator state gives the same mask in float32 and float64. Returns ``(y, mask)``,
    ``y = x * mask``; the mask is the cache.
    """
    xp = array_module(x)
    keep = rng.random(x.shape) >= rate
    mask = xp.asarray(keep.astype(x.dtype) * x.dtype.type(1 / (1 - rate)))
    return x * mask, mask


def dropout_backward(dy: Array, cache: Array) -> Array:
    """``dx = dy * mask``: a dropped element passes nothing back, a kept one its scaled dy."""
    return dy * cache


# ----------------------------------------------------------------------------------------------
# Softmax cross-entropy
# ----------------------------------------------------------------------------------------------


def softmax(logits: Array) -> Array:
    """Row-wise softmax ``(N, K) -> (N, K)``, shifted by the row maximum."""
    xp = array_module(logits)
    e = xp.exp(logits - logits.max(axis=1, keepdims=True))
    e /= e.sum(axis=1, keepdims=True)
    return e


def log_softmax(logits: Array) -> Array:
    """``z - logsumexp(z)`` row by row, shifted by the row maximum so nothing overflows."""
    xp = array_module(logits)
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))


def softmax_cross_entropy(
    logits: Array, labels: Array, reduction: str = "sum"
) -> tuple[float, Array]:
    """Cross-entropy of ``softmax(logits)`` against ``labels``; returns ``(loss, dlogits)``.

    logits: ``(N, K)`` float. labels: one-hot (or any rows of class probabilities) ``(N, K)``,
    or integer class indices ``(N,)``. reduction: "sum" (the protocol: summed over the batch)
    or "mean". Returns the loss as a Python float and ``dloss/dlogits`` ``(N, K)`` in the
    logits' dtype: ``softmax(z) * sum_c y[c] - y`` (= ``p - y`` for one-hot rows), divided by N
    for "mean". Stable for any logits: the log-sum-exp is taken after subtracting each row's
    maximum.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    xp = array_module(logits)
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, K), got shape {tuple(logits.shape)}")
    n, k = logits.shape
    if labels.ndim == 1:  # class indices -> one-hot, in the logits' dtype
        onehot = xp.zeros((n, k), dtype=logits.dtype)
        onehot[xp.arange(n), labels.astype(xp.int64)] = 1
        labels = onehot
    elif tuple(labels.shape) != (n, k):
        raise ValueError(f"labels shape {tuple(labels.shape)} does not match logits {(n, k)}")
    labels = labels.astype(logits.dtype, copy=False)

    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = xp.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    log_probs = shifted - xp.log(total)
    loss = -(labels * log_probs).sum()
    grad = exp / total
    grad *= labels.sum(axis=1, keepdims=True)
    grad -= labels
    if reduction == "mean":
        loss = loss / n
        grad /= n
    return float(loss), grad
