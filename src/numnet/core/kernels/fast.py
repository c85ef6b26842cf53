"""The fast kernels: ``plain.py``'s functions, same names, same signatures, same results.

A layer holds one kernel module, ``plain`` or ``fast``, as ``layer.ops`` and calls it the same
way either way (``layer.ops.conv2d_forward(x, w, b, stride, padding, workspace=...)``):
choosing the fast kernels is an alias, not a branch. This module defines a function of its own
only where a measurement showed it beats the plain one in a model that runs it; every other
name is the plain function itself, imported below. Measured (``batch 100, float32, one BLAS
thread, forward + backward, best of 7``; on the 2-core AMD EPYC host):

- ``conv2d_*``: 0.38x the plain time for a 28x28x1 -> 8 conv, 0.58x for 14x14x8 -> 8. Model 4
  runs its convolutions fused with their pooling (``fused.py``), but a conv followed by
  anything else (batch norm, an activation then batch norm, a stride, VALID) runs this one;
- ``maxpool2d_*``: 0.21x on 28x28x8 2x2/2 windows (the four quarter planes);
- ``linear_*``: 1.01x -- no gain, so the plain functions are the fast ones (bit for bit the
  same numbers as the buffered versions they replaced: one GEMM, the bias add, one column sum);
- ``batchnorm_*``: a training step of a conv + batch norm model (``(100, 28, 28, 8)`` after the
  conv, the "cnn-bn" definition of the tests) spent 15.0 ms in the plain batch norm against
  2.0 ms in the conv: NumPy reduces over the leading axes 8 values (one pixel's channels) at a
  time. Here every sum over the batch is a GEMV per block of 256 rows, the blocks added in
  float64 (``batch_sums``: as fast as one float32 GEMV, 2.5e-8 from the exact sum where a
  float32 one is 1.5e-6 off): 6.3 ms (0.42x), the same values up to rounding;
- dropout, average pooling, the activations and the loss: the plain functions.

``workspace``: a ``Workspace`` of buffers kept across calls, owned by the caller (a layer,
which keeps one for training passes and one for evaluations, so an evaluation between a
training forward and its backward changes nothing); None makes a fresh one (nothing kept).

The tricks: im2col copies once from a strided window view (``window_view``) into a kept
buffer, laid out taps-major when a window row is short (``im2col_into``); the convolution's
bias is tiled over an image's pixels (``add_channel_bias``); column sums are GEMVs
(``column_sums``); dL/dX of a stride-1 convolution is the flipped-kernel correlation run on
im2col + one GEMM (``conv2d_input_grad_stride1``); 2x2/2 max-pooling works on the four quarter
planes. ``fused.py`` adds convolution + 2x2 max-pooling in one step.

The arithmetic of every function here is fixed (same GEMMs, same sums in the same order):
results depend on the inputs alone, never on threads or on what ran before. A change to it
changes trained weights in their last bits, and is said in the change log of the commit.
"""

from __future__ import annotations

import math
from typing import Any

from numnet.core.backend import array_module
from numnet.core.kernels import plain
from numnet.core.kernels.plain import (  # noqa: F401  (the plain functions are the fast ones)
    ACTIVATIONS,
    PADDINGS,
    REDUCTIONS,
    avgpool2d_backward,
    avgpool2d_forward,
    dropout_backward,
    dropout_forward,
    geometry,
    im2col,
    linear_backward,
    linear_forward,
    log_softmax,
    output_size,
    pair,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    softmax,
    softmax_cross_entropy,
    tanh_backward,
    tanh_forward,
    windows,
)
from numnet.core.runtime import current_lane

Array = Any


class Workspace:
    """Named buffers kept across calls (reallocated when shape, dtype or device change)."""

    __slots__ = ("buffers",)

    def __init__(self) -> None:
        self.buffers: dict[str, Array] = {}

    def get(
        self, key: str, shape: tuple[int, ...], dtype: Any, xp: Any, fill: float | None = None
    ) -> Array:
        """The buffer ``key`` with this shape and dtype on ``xp``'s device.

        With ``fill`` the buffer is filled once at allocation; callers then only overwrite the
        parts that change (the interior of a padded buffer), so its border keeps ``fill``.
        Inside ``runtime.run_lanes`` each lane gets its own buffer of the name (two chunks of
        an evaluation run through the same layer at once).
        """
        lane = current_lane()
        if lane:
            key = f"{key}@{lane}"
        buf = self.buffers.get(key)
        if buf is None or buf.shape != shape or buf.dtype != dtype or array_module(buf) is not xp:
            buf = xp.empty(shape, dtype=dtype) if fill is None else xp.full(shape, fill, dtype)
            self.buffers[key] = buf
        return buf

    def ones(self, rows: int, dtype: Any, xp: Any) -> Array:
        """A kept vector of ``rows`` ones (for ``column_sums``)."""
        return self.get(f"ones.{rows}", (rows,), dtype, xp, fill=1)

    def clear(self) -> None:
        self.buffers = {}


# ----------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------


def window_view(
    padded: Array, out_hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int]
) -> Array:
    """Strided view ``(N, Ho, Wo, kh, kw, C)`` of a padded NHWC array: window (i, j) of output
    position (ho, wo) is ``padded[:, ho*sh + i, wo*sw + j, :]``. No copy."""
    xp = array_module(padded)
    n, _, _, c = padded.shape
    s_n, s_h, s_w, s_c = padded.strides
    return xp.lib.stride_tricks.as_strided(
        padded,
        shape=(n, out_hw[0], out_hw[1], kernel[0], kernel[1], c),
        strides=(s_n, stride[0] * s_h, stride[1] * s_w, s_h, s_w, s_c),
    )


def im2col_into(view: Array, buffer: Array, taps_major: bool) -> Array:
    """Copy a window view ``(*positions, kh, kw, C)`` into the matrix ``cols`` ``(M, K)``:
    one row per output position, columns in (kh, kw, C) order (HWIO's input axes).

    ``buffer`` must hold M*K elements. With ``taps_major`` the copy is laid out as the
    contiguous ``(K, M)`` transpose and its ``.T`` view is returned: the same matrix for the
    GEMMs, but each copied run is a row of output positions rather than kw*C values -- much
    faster when kw*C is small (a 1-channel input). No copy of the data other than this one.
    """
    *lead, kh, kw, c = view.shape
    k, m = kh * kw * c, math.prod(lead)
    if taps_major:
        nlead = len(lead)
        order = (nlead, nlead + 1, nlead + 2, *range(nlead))
        buffer.reshape((kh, kw, c, *lead))[...] = view.transpose(order)
        return buffer.reshape(k, m).T
    buffer.reshape(view.shape)[...] = view
    return buffer.reshape(m, k)


def columns(workspace: Workspace, key: str, view: Array) -> Array:
    """im2col of the window view ``view`` into the kept buffer ``key`` (taps-major when a
    window row is short: fewer than 8 values)."""
    xp = array_module(view)
    *_, kw, c = view.shape
    buffer = workspace.get(key, (view.size,), view.dtype, xp)
    return im2col_into(view, buffer, taps_major=kw * c < 8)


def padded_input(
    workspace: Workspace, key: str, x: Array, pads: tuple[int, int, int, int]
) -> Array:
    """``x`` ``(N, H, W, C)`` written into the interior of the kept zero-bordered buffer ``key``;
    ``pads`` = (top, bottom, left, right). Only axes 1 and 2 are padded, so a batch-last
    ``(C, H, W, N)`` array (any strides: ``fused.batch_last`` of an NHWC one) works the same."""
    xp = array_module(x)
    n, h, w, c = x.shape
    top, bottom, left, right = pads
    padded = workspace.get(key, (n, top + h + bottom, left + w + right, c), x.dtype, xp, fill=0)
    padded[:, top : top + h, left : left + w, :] = x
    return padded


def add_channel_bias(y: Array, bias: Array, n: int) -> Array:
    """``y + bias`` for ``y`` ``(n * P, C)`` (NHWC rows), as a fresh array.

    Broadcasting a length-C bias runs NumPy's inner loop C elements at a time (slow for C=8);
    viewing y as ``(n, P*C)`` rows and tiling the bias P times makes each inner loop P*C long.
    """
    xp = array_module(y)
    rows, c = y.shape
    per = rows // n
    return (y.reshape(n, per * c) + xp.tile(bias, per)).reshape(rows, c)


def column_sums(a: Array, ones: Array, out: Array) -> Array:
    """``a.sum(axis=0)`` for a tall ``(M, C)`` array as the GEMV ``ones @ a`` (``ones``: (M,)).

    NumPy's axis-0 reduction walks the rows C elements at a time; the GEMV streams them.
    """
    return array_module(a).matmul(ones, a, out=out)


def conv2d_input_grad_stride1(
    workspace: Workspace, key: str, dy_padded: Array, w: Array, out: Array | None = None
) -> Array:
    """dL/dX ``(N, H, W, c_in)`` of a stride-1 convolution with HWIO kernel ``w``, from dy
    zero-padded by ``kh-1-top`` rows before and ``kh-1-bottom`` after (columns alike), i.e.
    ``dy_padded`` ``(N, H + kh - 1, W + kw - 1, c_out)``: a stride-1 correlation with the
    flipped kernel ``w[::-1, ::-1]`` whose in/out channels are swapped (im2col + one GEMM).
    Written into ``out`` when given (a contiguous ``(N, H, W, c_in)`` array)."""
    xp = array_module(dy_padded)
    kh, kw, cin, cout = w.shape
    n, hp, wp, _ = dy_padded.shape
    h, wd = hp - kh + 1, wp - kw + 1
    cols = columns(workspace, f"{key}.cols", window_view(dy_padded, (h, wd), (kh, kw), (1, 1)))
    flipped = w[::-1, ::-1].transpose(0, 1, 3, 2).reshape(kh * kw * cout, cin)
    if out is None:
        out = xp.empty((n, h, wd, cin), dtype=dy_padded.dtype)
    xp.matmul(cols, flipped, out=out.reshape(n * h * wd, cin))
    return out


# ----------------------------------------------------------------------------------------------
# Convolution
# ----------------------------------------------------------------------------------------------


def conv2d_forward(
    x: Array, w: Array, b: Array, stride: int | tuple = 1, padding: str = "same", *,
    workspace: Workspace | None = None,
) -> tuple[Array, tuple]:  # fmt: skip
    """``plain.conv2d_forward`` on kept buffers: the input is written into the interior of a
    zero-bordered buffer, copied once through a strided window view into ``cols``
    ``(N*Ho*Wo, kh*kw*c_in)``, and ``y = cols @ W.reshape(-1, c_out) + b`` is one GEMM (the
    bias tiled). x ``(N, H, W, c_in)``, w HWIO, b ``(c_out,)``; y ``(N, Ho, Wo, c_out)`` is a
    fresh array; the cache holds ``cols``, a buffer of ``workspace`` (its next forward
    overwrites it)."""
    workspace = Workspace() if workspace is None else workspace
    xp = array_module(x)
    n, h, wd, c = x.shape
    kh, kw, _, cout = w.shape
    stride = pair(stride)
    (ho, top, bottom), (wo, left, right) = geometry(h, wd, (kh, kw), stride, padding)
    padded = padded_input(workspace, "padded", x, (top, bottom, left, right))
    cols = columns(workspace, "cols", window_view(padded, (ho, wo), (kh, kw), stride))
    y = workspace.get("y", (n * ho * wo, cout), x.dtype, xp)
    xp.matmul(cols, w.reshape(kh * kw * c, cout), out=y)
    y = add_channel_bias(y, b, n)  # a fresh output: the caller may keep it
    return y.reshape(n, ho, wo, cout), (x.shape, cols, w, stride, (top, left), padded.shape)


def conv2d_backward(
    dy: Array, cache: tuple, input_grad: bool = True, *, workspace: Workspace | None = None
) -> tuple[Array | None, Array, Array]:
    """``plain.conv2d_backward`` on kept buffers: ``(dx, dw, db)`` from dy ``(N, Ho, Wo,
    c_out)``, dw and db fresh arrays, dx a buffer of ``workspace`` for stride 1.

    dW = cols.T @ dy (one GEMM), db a GEMV. dL/dX for stride 1: the flipped-kernel correlation
    of dy zero-padded in a kept buffer; other strides: ``dcols = dy @ W.T`` then col2im, kh*kw
    shifted strided slice-adds into a padded buffer (never ``np.add.at``).
    """
    workspace = Workspace() if workspace is None else workspace
    xp = array_module(dy)
    (n, h, wd, c), cols, w, (sh, sw), (top, left), padded_shape = cache
    kh, kw, _, cout = w.shape
    _, ho, wo, _ = dy.shape
    dy2 = dy.reshape(n * ho * wo, cout)
    dw = (cols.T @ dy2).reshape(w.shape)
    db = column_sums(dy2, workspace.ones(len(dy2), dy.dtype, xp), out=xp.empty(cout, dy.dtype))
    if not input_grad:
        return None, dw, db
    if (sh, sw) == (1, 1):
        r, s = kh - 1 - top, kw - 1 - left
        shape = (n, h + kh - 1, wd + kw - 1, cout)
        dy_padded = workspace.get("dy_padded", shape, dy.dtype, xp, fill=0)
        dy_padded[:, r : r + ho, s : s + wo, :] = dy
        return conv2d_input_grad_stride1(workspace, "dx", dy_padded, w), dw, db
    # General stride: window (i, j) of every output position adds into a shifted, strided slice.
    dcols = (dy2 @ w.reshape(kh * kw * c, cout).T).reshape(n, ho, wo, kh, kw, c)
    dpadded = xp.zeros(padded_shape, dtype=dy.dtype)
    for i in range(kh):
        for j in range(kw):
            dpadded[:, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw, :] += (
                dcols[:, :, :, i, j, :]
            )
    return dpadded[:, top : top + h, left : left + wd, :], dw, db


# ----------------------------------------------------------------------------------------------
# Max-pooling
# ----------------------------------------------------------------------------------------------


def maxpool2d_forward(
    x: Array, pool: int | tuple = 2, stride: int | tuple | None = None, padding: str = "valid"
) -> tuple[Array, tuple]:
    """``plain.maxpool2d_forward``; for 2x2 windows, stride 2 and even sizes (no padding) the
    maximum of the four quarter planes ``x[:, i::2, j::2, :]`` by elementwise ``maximum``."""
    kernel = pair(pool)
    stride = pair(stride) if stride is not None else kernel
    _, h, w, _ = x.shape
    if not (kernel == stride == (2, 2) and h % 2 == 0 and w % 2 == 0):
        y, cache = plain.maxpool2d_forward(x, kernel, stride, padding)
        return y, ("plain", cache)
    xp = array_module(x)
    top = xp.maximum(x[:, 0::2, 0::2, :], x[:, 0::2, 1::2, :])
    bottom = xp.maximum(x[:, 1::2, 0::2, :], x[:, 1::2, 1::2, :])
    y = xp.maximum(top, bottom, out=top)
    return y, ("2x2", (x, y))


def maxpool2d_backward(dy: Array, cache: tuple) -> Array:
    """``plain.maxpool2d_backward``; on the 2x2 path the four quarters in row-major window
    order each take the gradient still remaining where they hold the maximum."""
    path, inner = cache
    if path == "plain":
        return plain.maxpool2d_backward(dy, inner)
    x, y = inner
    xp = array_module(dy)
    dx = xp.empty_like(x)  # the four quarters cover every element exactly once
    remaining = dy.copy()  # the gradient not yet given to an earlier maximum of its window
    for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)):  # row-major window order
        taken = remaining * (x[:, i::2, j::2, :] == y)
        dx[:, i::2, j::2, :] = taken
        remaining -= taken  # exactly 0 where taken: later ties get nothing
    return dx


# ----------------------------------------------------------------------------------------------
# Batch normalisation
# ----------------------------------------------------------------------------------------------


def batch_sums(rows: Array, block: int = 256) -> Array:
    """The column sums of ``rows`` ``(M, F)`` in float64, ``(F,)``: a GEMV per block of
    ``block`` rows (one batched matmul), the blocks' partial sums added in float64. As fast
    as one float32 GEMV and far closer to the exact sum: a batch norm of a conv's output adds
    M = N*H*W = 78,400 values per channel, and a float32 running sum of them drifts by about
    1e-6 of the result (PyTorch's own float32 statistics are 1e-7 off), enough to move a
    float32 run off its float64 twin within a few updates."""
    xp = array_module(rows)
    m, f = rows.shape
    k = m // block
    total = xp.zeros(f, dtype=xp.float64)
    if k:
        ones = xp.ones(block, dtype=rows.dtype)
        total += xp.matmul(ones, rows[: k * block].reshape(k, block, f)).sum(0, dtype=xp.float64)
    return total + rows[k * block :].sum(0, dtype=xp.float64)


def batchnorm_forward(
    x: Array, gamma: Array, beta: Array, running_mean: Array, running_var: Array,
    train: bool = True, momentum: float = 0.1, eps: float = 1e-5,
) -> tuple[Array, tuple | None]:  # fmt: skip
    """``plain.batchnorm_forward`` with the batch statistics summed by :func:`batch_sums`
    over the ``(M, F)`` rows of x; evaluation is the plain function."""
    if not train or x.size // x.shape[-1] < 2:  # (the plain kernel says what is wrong)
        return plain.batchnorm_forward(x, gamma, beta, running_mean, running_var, train,
                                       momentum, eps)  # fmt: skip
    xp = array_module(x)
    f = x.shape[-1]
    rows = x.reshape(-1, f)
    m = len(rows)
    mean = (batch_sums(rows) / m).astype(x.dtype)
    centered = rows - mean
    var = (batch_sums(centered * centered) / m).astype(x.dtype)
    inv_std = 1 / xp.sqrt(var + eps)
    xhat = centered * inv_std
    running_mean *= 1 - momentum
    running_mean += momentum * mean
    running_var *= 1 - momentum
    running_var += momentum * (var * (m / (m - 1)))
    y = xhat * gamma
    y += beta
    return y.reshape(x.shape), (xhat, inv_std, gamma, x.shape)


def batchnorm_backward(
    dy: Array, cache: tuple, input_grad: bool = True
) -> tuple[Array | None, Array, Array]:
    """``plain.batchnorm_backward`` with the batch sums by :func:`batch_sums`."""
    xhat, inv_std, gamma, shape = cache
    m, f = xhat.shape
    rows = dy.reshape(m, f)
    dbeta = batch_sums(rows).astype(dy.dtype)
    dgamma = batch_sums(rows * xhat).astype(dy.dtype)
    if not input_grad:
        return None, dgamma, dbeta
    # sum(g) = gamma * dbeta and sum(g * xhat) = gamma * dgamma, with g = gamma * dy
    g = rows * gamma
    dx = g - (gamma * dbeta) / m
    dx -= xhat * ((gamma * dgamma) / m)
    dx *= inv_std
    return dx.reshape(shape), dgamma, dbeta
