"""Layers: each a small class whose ``forward`` and ``backward`` sit side by side.

Layouts (TensorFlow's, the public layout whatever happens inside):
- images NHWC ``(N, H, W, C)``;
- ``Linear``: weight ``(in, out)``, bias ``(out,)``, ``y = x @ W + b``;
- ``Conv2D``: weight HWIO ``(kh, kw, c_in, c_out)``, bias ``(c_out,)``;
- ``Flatten``: ``(N, H, W, C) -> (N, H*W*C)`` in (height, width, channel) order;
- SAME padding as TensorFlow computes it: ``out = ceil(in / stride)``, total padding
  ``max((out - 1) * stride + k - in, 0)``, ``total // 2`` before and the rest (the odd one) after.
  Convolutions pad with zeros, max-pooling with ``-inf``.

Protocol of every layer:
- ``forward(x, train=True) -> y``. With ``train=True`` the layer keeps what ``backward`` needs;
  with ``train=False`` it keeps nothing (evaluation).
- ``backward(dy, input_grad=True) -> dx`` for the most recent training forward. It *overwrites*
  each parameter's ``.grad`` (no accumulation) and returns dL/dx, or ``None`` when
  ``input_grad=False`` (the first layer of a model: the input gradient is not needed to train).

Array math goes through ``xp = backend.array_module(x)`` so the same code runs on NumPy or CuPy.

Beside the fast kernels sit plain reference versions (``conv2d_reference``,
``maxpool2d_reference`` and their backward passes): loops over output positions that are
obviously right, used by the tests to hold the fast paths equal.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from numnet.core.backend import array_module, to_device
from numnet.core.runtime import run_parts, single_threaded_blas, split_parts

Array = Any  # numpy.ndarray or cupy.ndarray


class Parameter:
    """A trainable array ``value`` and its gradient ``grad`` (same shape and dtype).

    ``backward`` overwrites ``grad``; optimisers update ``value`` in place.
    """

    __slots__ = ("value", "grad")

    def __init__(self, value: Array) -> None:
        self.value = value
        self.grad = array_module(value).zeros_like(value)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.value.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.value.dtype

    def to(self, device: str) -> None:
        """Move value and gradient to ``device`` ("cpu" or "cuda")."""
        self.value = to_device(self.value, device)
        self.grad = to_device(self.grad, device)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"


class Layer:
    """Base class: parameter bookkeeping and scratch buffers reused across steps."""

    #: attribute names of this layer's parameters, in a fixed order ("weight", "bias")
    param_names: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._buffers: dict[str, Array] = {}

    # -- to implement ---------------------------------------------------------------------------
    def forward(self, x: Array, train: bool = True) -> Array:
        raise NotImplementedError

    def backward(self, dy: Array, input_grad: bool = True) -> Array | None:
        raise NotImplementedError

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Per-sample output shape for a per-sample ``input_shape`` (no batch axis)."""
        return input_shape

    # -- shared ---------------------------------------------------------------------------------
    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        for name in self.param_names:
            yield name, getattr(self, name)

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def to(self, device: str) -> None:
        """Move the parameters to ``device`` and drop scratch buffers and cached activations."""
        for p in self.parameters():
            p.to(device)
        self.clear_cache()

    def clear_cache(self) -> None:
        """Forget cached activations and scratch buffers (they are rebuilt on demand)."""
        self._buffers = {}
        for attr in list(vars(self)):
            if attr.startswith("_cache"):
                setattr(self, attr, None)

    def _scratch(
        self, key: str, shape: tuple[int, ...], dtype: Any, xp: Any, fill: float | None = None
    ) -> Array:
        """A buffer kept across calls (reallocated when shape, dtype or device change).

        With ``fill`` the buffer is filled once at allocation; callers then only overwrite the
        parts that change (the interior of a padded buffer), so its border keeps ``fill``.
        """
        buf = self._buffers.get(key)
        if buf is None or buf.shape != shape or buf.dtype != dtype or array_module(buf) is not xp:
            buf = xp.empty(shape, dtype=dtype) if fill is None else xp.full(shape, fill, dtype)
            self._buffers[key] = buf
        return buf

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# ----------------------------------------------------------------------------------------------
# Dense layers and activations
# ----------------------------------------------------------------------------------------------


class Linear(Layer):
    """Fully connected layer ``y = x @ W + b``.

    x: ``(N, in_features)``; W: ``(in_features, out_features)``; b: ``(out_features,)``;
    y: ``(N, out_features)``.

    Backward: ``dW = x.T @ dy``, ``db = sum_n dy``, ``dx = dy @ W.T``.
    """

    param_names = ("weight", "bias")

    def __init__(self, in_features: int, out_features: int, dtype: Any = "float32") -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(np.zeros((in_features, out_features), dtype=dtype))
        self.bias = Parameter(np.zeros((out_features,), dtype=dtype))
        self._cache_x: Array | None = None

    def forward(self, x: Array, train: bool = True) -> Array:
        y = x @ self.weight.value
        y += self.bias.value
        if train:
            self._cache_x = x
        return y

    def backward(self, dy: Array, input_grad: bool = True) -> Array | None:
        xp = array_module(dy)
        x = self._cache_x
        xp.matmul(x.T, dy, out=self.weight.grad)
        dy.sum(axis=0, out=self.bias.grad)
        return dy @ self.weight.value.T if input_grad else None

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (self.out_features,)

    def __repr__(self) -> str:
        return f"Linear({self.in_features}, {self.out_features})"


class ReLU(Layer):
    """``y = max(x, 0)``; ``dx = dy * (x > 0)`` (the subgradient 0 at x = 0, as TF and PyTorch)."""

    def __init__(self) -> None:
        super().__init__()
        self._cache_y: Array | None = None

    def forward(self, x: Array, train: bool = True) -> Array:
        xp = array_module(x)
        y = xp.maximum(x, 0)
        if train:
            self._cache_y = y
        return y

    def backward(self, dy: Array, input_grad: bool = True) -> Array | None:
        return self.backward_from_output(self._cache_y, dy) if input_grad else None

    @staticmethod
    def backward_from_output(y: Array, dy: Array) -> Array:
        """dL/dx from the forward's output ``y`` and dL/dy."""
        return array_module(dy).where(y > 0, dy, 0)  # 0, not 0 * dy: exact even for inf/nan


class Sigmoid(Layer):
    """``y = 1 / (1 + exp(-x))`` computed without overflow; ``dx = dy * y * (1 - y)``."""

    def __init__(self) -> None:
        super().__init__()
        self._cache_y: Array | None = None

    def forward(self, x: Array, train: bool = True) -> Array:
        xp = array_module(x)
        e = xp.exp(-xp.abs(x))  # in (0, 1]: never overflows
        y = xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
        if train:
            self._cache_y = y
        return y

    def backward(self, dy: Array, input_grad: bool = True) -> Array | None:
        return self.backward_from_output(self._cache_y, dy) if input_grad else None

    @staticmethod
    def backward_from_output(y: Array, dy: Array) -> Array:
        """dL/dx from the forward's output ``y`` and dL/dy."""
        return dy * y * (1 - y)


class Tanh(Layer):
    """``y = tanh(x)``; ``dx = dy * (1 - y**2)``."""

    def __init__(self) -> None:
        super().__init__()
        self._cache_y: Array | None = None

    def forward(self, x: Array, train: bool = True) -> Array:
        y = array_module(x).tanh(x)
        if train:
            self._cache_y = y
        return y

    def backward(self, dy: Array, input_grad: bool = True) -> Array | None:
        return self.backward_from_output(self._cache_y, dy) if input_grad else None

    @staticmethod
    def backward_from_output(y: Array, dy: Array) -> Array:
        """dL/dx from the forward's output ``y`` and dL/dy."""
        return dy * (1 - y * y)


ACTIVATIONS: dict[str, type[Layer]] = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh}


def activation(name: str) -> Layer:
    """A fresh activation layer by name: "relu", "sigmoid" or "tanh"."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}"
        ) from None


class Flatten(Layer):
    """``(N, H, W, C) -> (N, H*W*C)`` in (height, width, channel) order, as TensorFlow's."""

    def __init__(self) -> None:
        super().__init__()
        self._cache_shape: tuple[int, ...] | None = None

    def forward(self, x: Array, train: bool = True) -> Array:
        if train:
            self._cache_shape = tuple(x.shape)
        return x.reshape(x.shape[0], -1)

    def backward(self, dy: Array, input_grad: bool = True) -> Array | None:
        return dy.reshape(self._cache_shape) if input_grad else None

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (math.prod(input_shape),)


class Reshape(Layer):
    """``(N, ...) -> (N, *shape)``; model 4 uses ``Reshape((28, 28, 1))`` on ``(N, 784)`` rows."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        self._cache_shape: tuple[int, ...] | None = None

    def forward(self, x: Array, train: bool = True) -> Array:
        if train:
            self._cache_shape = tuple(x.shape)
        return x.reshape((x.shape[0], *self.shape))

    def backward(self, dy: Array, input_grad: bool = True) -> Array | None:
        return dy.reshape(self._cache_shape) if input_grad else None

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if math.prod(input_shape) != math.prod(self.shape):
            raise ValueError(f"cannot reshape {input_shape} to {self.shape}")
        return self.shape

    def __repr__(self) -> str:
        return f"Reshape({self.shape})"


# ----------------------------------------------------------------------------------------------
# Padding and windows (shared by Conv2D and MaxPool2D)
# ----------------------------------------------------------------------------------------------

PADDINGS = ("same", "valid")


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


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(v, int | np.integer):
        return int(v), int(v)
    a, b = v
    return int(a), int(b)


def _windows(
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


def im2col(windows: Array, buffer: Array, taps_major: bool) -> Array:
    """Copy a window view ``(*positions, kh, kw, C)`` into the matrix ``cols`` ``(M, K)``:
    one row per output position, columns in (kh, kw, C) order (HWIO's input axes).

    ``buffer`` must hold M*K elements. With ``taps_major`` the copy is laid out as the
    contiguous ``(K, M)`` transpose and its ``.T`` view is returned: the same matrix for the
    GEMMs, but each copied run is a row of output positions rather than kw*C values -- much
    faster when kw*C is small (a 1-channel input). No copy of the data other than this one.
    """
    *lead, kh, kw, c = windows.shape
    k, m = kh * kw * c, math.prod(lead)
    if taps_major:
        nlead = len(lead)
        order = (nlead, nlead + 1, nlead + 2, *range(nlead))
        buffer.reshape((kh, kw, c, *lead))[...] = windows.transpose(order)
        return buffer.reshape(k, m).T
    buffer.reshape(windows.shape)[...] = windows
    return buffer.reshape(m, k)


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


# ----------------------------------------------------------------------------------------------
# Conv2D
# ----------------------------------------------------------------------------------------------


class Conv2D(Layer):
    """2-d convolution (cross-correlation, as TensorFlow and PyTorch), NHWC in and out.

    x: ``(N, H, W, c_in)``; weight HWIO ``(kh, kw, c_in, c_out)``; bias ``(c_out,)``;
    y: ``(N, Ho, Wo, c_out)`` with ``y[n, ho, wo, o] = b[o] +
    sum_{i, j, c} xpad[n, ho*sh + i, wo*sw + j, c] * W[i, j, c, o]``.

    Forward (im2col): the input is written into the interior of a zero-bordered buffer kept
    across steps, copied once through a strided window view into ``cols``
    ``(N*Ho*Wo, kh*kw*c_in)``, and ``y = cols @ W.reshape(-1, c_out) + b`` is one GEMM.

    Backward: ``dW = cols.T @ dy`` (one GEMM), ``db = sum dy``. dL/dX is the full correlation
    of dy with the flipped kernel: for stride 1 it is computed as exactly that, a stride-1
    convolution of the zero-padded dy with ``W[::-1, ::-1]`` (in/out channels swapped) -- im2col
    and one GEMM again. For other strides: ``dcols = dy @ W.T`` then col2im, kh*kw shifted
    strided slice-adds into a padded buffer (never ``np.add.at``).
    """

    param_names = ("weight", "bias")

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int | tuple[int, int] = 1,
        padding: str = "same",
        dtype: Any = "float32",
    ) -> None:
        super().__init__()
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = padding
        kh, kw = self.kernel_size
        self.weight = Parameter(np.zeros((kh, kw, in_channels, out_channels), dtype=dtype))
        self.bias = Parameter(np.zeros((out_channels,), dtype=dtype))
        self._cache_cols: Array | None = None
        self._cache_geom: tuple | None = None

    def geometry(self, h: int, w: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """``((Ho, top, bottom), (Wo, left, right))`` for an ``h x w`` input."""
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        return output_size(h, kh, sh, self.padding), output_size(w, kw, sw, self.padding)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        h, w, c = input_shape
        if c != self.in_channels:
            raise ValueError(f"Conv2D expects {self.in_channels} input channels, got {c}")
        (ho, _, _), (wo, _, _) = self.geometry(h, w)
        return (ho, wo, self.out_channels)

    # -- building blocks, shared with the ConvPool2x2 fast path ---------------------------------
    def _padded_input(self, key: str, x: Array) -> Array:
        """``x`` written into the interior of a kept zero-bordered buffer (SAME padding)."""
        xp = array_module(x)
        n, h, w, c = x.shape
        (_, top, bottom), (_, left, right) = self.geometry(h, w)
        shape = (n, top + h + bottom, left + w + right, c)
        padded = self._scratch(key, shape, x.dtype, xp, fill=0)
        padded[:, top : top + h, left : left + w, :] = x
        return padded

    def _columns(self, key: str, windows: Array) -> Array:
        """im2col of ``windows`` into a kept buffer (taps-major when a window row is short)."""
        xp = array_module(windows)
        *_, kw, c = windows.shape
        buffer = self._scratch(key, (windows.size,), windows.dtype, xp)
        return im2col(windows, buffer, taps_major=kw * c < 8)

    def _ones(self, rows: int, dtype: Any, xp: Any) -> Array:
        """A kept vector of ``rows`` ones (for ``column_sums``)."""
        return self._scratch(f"ones.{rows}", (rows,), dtype, xp, fill=1)

    def _weight_matrix(self) -> Array:
        kh, kw = self.kernel_size
        return self.weight.value.reshape(kh * kw * self.in_channels, self.out_channels)

    def _input_grad_stride1(
        self, dy_padded: Array, h: int, w: int, key: str = "dx", out: Array | None = None
    ) -> Array:
        """dL/dX ``(N, h, w, c_in)`` of a stride-1 conv from dy zero-padded by ``kh-1-top``
        before and ``kh-1-bottom`` after (rows; columns alike): a stride-1 correlation with
        the flipped kernel ``W[::-1, ::-1]`` whose in/out channels are swapped. Written into
        ``out`` when given (a contiguous ``(N, h, w, c_in)`` array)."""
        xp = array_module(dy_padded)
        kh, kw = self.kernel_size
        n = dy_padded.shape[0]
        windows = _windows(dy_padded, (h, w), (kh, kw), (1, 1))
        cols = self._columns(f"{key}.cols", windows)
        flipped = self.weight.value[::-1, ::-1].transpose(0, 1, 3, 2)
        flipped = flipped.reshape(kh * kw * self.out_channels, self.in_channels)
        if out is None:
            out = xp.empty((n, h, w, self.in_channels), dtype=dy_padded.dtype)
        xp.matmul(cols, flipped, out=out.reshape(n * h * w, self.in_channels))
        return out

    # -- layer protocol -------------------------------------------------------------------------
    def forward(self, x: Array, train: bool = True) -> Array:
        xp = array_module(x)
        n, h, w, c = x.shape
        (ho, _, _), (wo, _, _) = self.geometry(h, w)
        mode = "train" if train else "eval"
        padded = self._padded_input(f"{mode}.padded", x)
        cols = self._columns(
            f"{mode}.cols", _windows(padded, (ho, wo), self.kernel_size, self.stride)
        )
        y = self._scratch(f"{mode}.y", (n * ho * wo, self.out_channels), x.dtype, xp)
        xp.matmul(cols, self._weight_matrix(), out=y)
        y = add_channel_bias(y, self.bias.value, n)  # a fresh output: the caller may keep it
        if train:
            self._cache_cols = cols
            self._cache_geom = (n, h, w, c, ho, wo, padded.shape)
        return y.reshape(n, ho, wo, self.out_channels)

    def backward(self, dy: Array, input_grad: bool = True) -> Array | None:
        xp = array_module(dy)
        n, h, w, c, ho, wo, padded_shape = self._cache_geom
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        cout = self.out_channels
        dy2 = dy.reshape(n * ho * wo, cout)
        xp.matmul(self._cache_cols.T, dy2, out=self.weight.grad.reshape(kh * kw * c, cout))
        column_sums(dy2, self._ones(len(dy2), dy.dtype, xp), out=self.bias.grad)
        if not input_grad:
            return None
        (_, top, bottom), (_, left, right) = self.geometry(h, w)
        if (sh, sw) == (1, 1):
            before_h, before_w = kh - 1 - top, kw - 1 - left
            shape = (n, h + kh - 1, w + kw - 1, cout)
            dy_padded = self._scratch("dy_padded", shape, dy.dtype, xp, fill=0)
            dy_padded[:, before_h : before_h + ho, before_w : before_w + wo, :] = dy
            return self._input_grad_stride1(dy_padded, h, w)
        # General stride: dcols = dy @ W.T, then col2im -- window (i, j) of every output
        # position adds into a shifted, strided slice of the padded input gradient.
        dcols = (dy2 @ self._weight_matrix().T).reshape(n, ho, wo, kh, kw, c)
        dpadded = xp.zeros(padded_shape, dtype=dy.dtype)
        for i in range(kh):
            for j in range(kw):
                dpadded[:, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw, :] += (
                    dcols[:, :, :, i, j, :]
                )
        return dpadded[:, top : top + h, left : left + w, :]

    def __repr__(self) -> str:
        return (
            f"Conv2D({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding!r})"
        )


def conv2d_reference(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    stride: int | tuple = 1,
    padding: str = "same",
) -> np.ndarray:
    """Plain convolution for the tests: a loop over output positions, one einsum each.

    Shapes as ``Conv2D``: x NHWC, weight HWIO, returns ``(N, Ho, Wo, c_out)``.
    """
    kh, kw, _, cout = weight.shape
    sh, sw = _pair(stride)
    n, h, w, c = x.shape
    ho, top, bottom = output_size(h, kh, sh, padding)
    wo, left, right = output_size(w, kw, sw, padding)
    xpad = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    y = np.empty((n, ho, wo, cout), dtype=np.result_type(x, weight))
    for r in range(ho):
        for s in range(wo):
            patch = xpad[:, r * sh : r * sh + kh, s * sw : s * sw + kw, :]
            y[:, r, s, :] = np.einsum("nijc,ijco->no", patch, weight) + bias
    return y


def conv2d_reference_backward(
    x: np.ndarray,
    weight: np.ndarray,
    dy: np.ndarray,
    stride: int | tuple = 1,
    padding: str = "same",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dx, dweight, dbias)`` of ``conv2d_reference`` by the chain rule, position by position."""
    kh, kw, _, _ = weight.shape
    sh, sw = _pair(stride)
    n, h, w, c = x.shape
    ho, top, bottom = output_size(h, kh, sh, padding)
    wo, left, right = output_size(w, kw, sw, padding)
    xpad = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    dxpad = np.zeros_like(xpad)
    dw = np.zeros_like(weight)
    for r in range(ho):
        for s in range(wo):
            rows, cols = slice(r * sh, r * sh + kh), slice(s * sw, s * sw + kw)
            g = dy[:, r, s, :]  # (N, c_out)
            dw += np.einsum("nijc,no->ijco", xpad[:, rows, cols, :], g)
            dxpad[:, rows, cols, :] += np.einsum("ijco,no->nijc", weight, g)
    db = dy.sum(axis=(0, 1, 2))
    return dxpad[:, top : top + h, left : left + w, :], dw, db


# ----------------------------------------------------------------------------------------------
# MaxPool2D
# ----------------------------------------------------------------------------------------------


class MaxPool2D(Layer):
    """Max-pooling over ``pool_size`` windows moved by ``stride``, NHWC in and out, no parameters.

    x: ``(N, H, W, C)`` -> y: ``(N, Ho, Wo, C)``. SAME pads with ``-inf`` (extra row/column at
    the end, as TensorFlow), so padding never wins a max.

    Backward: each output's gradient goes to the *first* maximum of its window in row-major
    window order (as TensorFlow and PyTorch do on exact ties).

    Fast path: 2x2 windows, stride 2, even H and W (no padding) -- the maximum of the four
    quarter planes ``x[:, i::2, j::2, :]`` with elementwise ``maximum``. General path: an
    ``argmax`` over a copied window view of the ``-inf``-padded input.
    """

    def __init__(
        self,
        pool_size: int | tuple[int, int] = 2,
        stride: int | tuple[int, int] | None = None,
        padding: str = "valid",
    ) -> None:
        super().__init__()
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
        self.pool_size = _pair(pool_size)
        self.stride = _pair(stride) if stride is not None else self.pool_size
        self.padding = padding
        self._cache: tuple | None = None

    def geometry(self, h: int, w: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """``((Ho, top, bottom), (Wo, left, right))`` for an ``h x w`` input."""
        (ph, pw), (sh, sw) = self.pool_size, self.stride
        return output_size(h, ph, sh, self.padding), output_size(w, pw, sw, self.padding)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        h, w, c = input_shape
        (ho, _, _), (wo, _, _) = self.geometry(h, w)
        return (ho, wo, c)

    def _is_fast(self, h: int, w: int) -> bool:
        return self.pool_size == (2, 2) and self.stride == (2, 2) and h % 2 == 0 and w % 2 == 0

    def forward(self, x: Array, train: bool = True) -> Array:
        n, h, w, c = x.shape
        if self._is_fast(h, w):
            return self._forward_2x2(x, train)
        return self._forward_general(x, train)

    def backward(self, dy: Array, input_grad: bool = True) -> Array | None:
        if not input_grad:
            return None
        if self._cache[0] == "2x2":
            return self._backward_2x2(dy)
        return self._backward_general(dy)

    # -- 2x2 / 2 fast path --------------------------------------------------------------------
    def _forward_2x2(self, x: Array, train: bool) -> Array:
        xp = array_module(x)
        top = xp.maximum(x[:, 0::2, 0::2, :], x[:, 0::2, 1::2, :])
        bottom = xp.maximum(x[:, 1::2, 0::2, :], x[:, 1::2, 1::2, :])
        y = xp.maximum(top, bottom, out=top)
        if train:
            self._cache = ("2x2", x, y)
        return y

    def _backward_2x2(self, dy: Array) -> Array:
        xp = array_module(dy)
        _, x, y = self._cache
        dx = xp.empty_like(x)  # the four quarters cover every element exactly once
        remaining = dy.copy()  # the gradient not yet given to an earlier maximum of its window
        for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)):  # row-major window order
            taken = remaining * (x[:, i::2, j::2, :] == y)
            dx[:, i::2, j::2, :] = taken
            remaining -= taken  # exactly 0 where taken: later ties get nothing
        return dx

    # -- general path -------------------------------------------------------------------------
    def _forward_general(self, x: Array, train: bool) -> Array:
        xp = array_module(x)
        n, h, w, c = x.shape
        (ph, pw), (sh, sw) = self.pool_size, self.stride
        (ho, top, bottom), (wo, left, right) = self.geometry(h, w)
        padded = xp.full((n, top + h + bottom, left + w + right, c), -xp.inf, dtype=x.dtype)
        padded[:, top : top + h, left : left + w, :] = x
        windows = _windows(padded, (ho, wo), (ph, pw), (sh, sw)).reshape(n, ho, wo, ph * pw, c)
        arg = xp.argmax(windows, axis=3)  # first maximum in row-major window order
        y = xp.take_along_axis(windows, arg[:, :, :, None, :], axis=3)[:, :, :, 0, :]
        if train:
            self._cache = ("general", arg, (n, h, w, c, ho, wo, top, left, padded.shape))
        return y

    def _backward_general(self, dy: Array) -> Array:
        xp = array_module(dy)
        _, arg, (n, h, w, c, ho, wo, top, left, padded_shape) = self._cache
        (ph, pw), (sh, sw) = self.pool_size, self.stride
        dpadded = xp.zeros(padded_shape, dtype=dy.dtype)
        for i in range(ph):
            for j in range(pw):
                dpadded[:, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw, :] += (
                    xp.where(arg == i * pw + j, dy, 0)
                )
        return dpadded[:, top : top + h, left : left + w, :]

    def __repr__(self) -> str:
        return (
            f"MaxPool2D(pool_size={self.pool_size}, stride={self.stride}, padding={self.padding!r})"
        )


# ----------------------------------------------------------------------------------------------
# Fast path: convolution and 2x2 max-pooling together
# ----------------------------------------------------------------------------------------------


class ConvPool2x2:
    """Fast path for ``Conv2D`` (stride 1, SAME) -> optional activation -> ``MaxPool2D``
    (2x2, stride 2) on an input of even height and width: the same maths as running the
    layers one after the other (the tests hold the two equal), with the pooling made cheap.

    The trick is the order of the im2col rows: quarter-major, ``(dy, dx, n, i, j)`` for the
    conv output pixel ``(2i + dy, 2j + dx)``. The GEMM output ``(4, N*H/2*W/2, c_out)`` then
    holds the four positions of every 2x2 window as four contiguous slabs, so the max-pool is
    three elementwise ``maximum`` calls on contiguous arrays and its backward nine contiguous
    elementwise passes -- no strided quarter views of a full-size feature map.

    Other details: the conv bias is added after pooling when there is no activation
    (``max(y + b) = max(y) + b``, on a quarter of the values); ties go to the first maximum in
    row-major window order, as ``MaxPool2D``; dL/dX is the stride-1 correlation of the
    un-pooled dy with the flipped kernel (``Conv2D._input_grad_stride1``). A big batch is split
    into two halves of images run at once on two threads (``split_parts``/``run_parts``, BLAS
    held to one thread); only the weight gradient needs a final sum. An odd-sized input falls
    back to the three layers. It holds no parameters: they stay the ``Conv2D``'s.
    """

    def __init__(self, conv: Conv2D, act: Layer | None, pool: MaxPool2D) -> None:
        if not self.fusable(conv, act, pool):
            raise ValueError(f"cannot fuse {conv!r}, {act!r}, {pool!r}")
        self.conv, self.act, self.pool = conv, act, pool
        self._cache: tuple | None = None

    @staticmethod
    def fusable(conv: Layer, act: Layer | None, pool: Layer) -> bool:
        """True for Conv2D(stride 1, SAME), then None or an elementwise activation, then a
        2x2 stride-2 MaxPool2D."""
        return (
            isinstance(conv, Conv2D)
            and conv.stride == (1, 1)
            and conv.padding == "same"
            and (act is None or isinstance(act, ReLU | Sigmoid | Tanh))
            and isinstance(pool, MaxPool2D)
            and pool.pool_size == (2, 2)
            and pool.stride == (2, 2)
        )

    @property
    def layers(self) -> list[Layer]:
        return [layer for layer in (self.conv, self.act, self.pool) if layer is not None]

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        return self.conv.named_parameters()

    def parameters(self) -> list[Parameter]:
        return self.conv.parameters()

    def forward(self, x: Array, train: bool = True) -> Array:
        n, h, w, c = x.shape
        if h % 2 or w % 2:  # the pool would pad: run the layers one by one
            for layer in self.layers:
                x = layer.forward(x, train=train)
            if train:
                self._cache = ("layers",)
            return x
        xp = array_module(x)
        conv = self.conv
        out = xp.empty((n, h // 2, w // 2, conv.out_channels), dtype=x.dtype)  # fresh output
        parts = split_parts(n, n * h * w * conv.out_channels)
        caches: list[tuple] = [()] * len(parts)
        mode = "train" if train else "eval"

        def run(k: int) -> None:
            lo, hi = parts[k]
            caches[k] = self._forward_part(x[lo:hi], out[lo:hi], f"fused.{mode}.{k}", train)

        with single_threaded_blas():
            run_parts(run, len(parts), xp)
        if train:
            self._cache = ("fused", parts, caches, (n, h, w, c))
        return out

    def _forward_part(self, x: Array, out: Array, key: str, train: bool) -> tuple:
        """Conv + [activation] + pool of the images ``x`` into ``out``; returns what backward
        needs. Touches only buffers named after ``key``, so two parts can run at once."""
        xp = array_module(x)
        conv, act = self.conv, self.act
        n, h, w, c = x.shape
        kh, kw = conv.kernel_size
        cout = conv.out_channels
        hq, wq = h // 2, w // 2
        quarter = n * hq * wq
        padded = conv._padded_input(f"{key}.padded", x)
        s_n, s_h, s_w, s_c = padded.strides
        # windows[dy, dx, n, i, j, ti, tj, c] = padded[n, 2i + dy + ti, 2j + dx + tj, c]
        windows = xp.lib.stride_tricks.as_strided(
            padded,
            shape=(2, 2, n, hq, wq, kh, kw, c),
            strides=(s_h, s_w, s_n, 2 * s_h, 2 * s_w, s_h, s_w, s_c),
        )
        cols = conv._columns(f"{key}.cols", windows)
        y = conv._scratch(f"{key}.y", (4 * quarter, cout), x.dtype, xp)
        xp.matmul(cols, conv._weight_matrix(), out=y)
        if act is not None:  # the layer's own forward would keep a cache shared by the parts
            y += conv.bias.value
            y = act.forward(y, train=False)
        # 2x2 max-pool over the four contiguous quarter planes, (0, 0), (0, 1), (1, 0), (1, 1).
        # Backward needs only which one won each window -- first maximum in row-major order:
        # a pair's left pixel wins ties with its right one, the top pair wins ties with the
        # bottom pair -- kept as three masks, so y's memory is free for backward's dy.
        quarters = y.reshape(4, quarter, cout)
        left_wins = conv._scratch(f"{key}.left_wins", (2, quarter, cout), bool, xp)
        top_wins = conv._scratch(f"{key}.top_wins", (quarter, cout), bool, xp)
        xp.greater_equal(quarters[0], quarters[1], out=left_wins[0])
        xp.greater_equal(quarters[2], quarters[3], out=left_wins[1])
        if act is None:  # the pair maxima overwrite quarters 0 and 2
            top_pair, bottom_pair = quarters[0], quarters[2]
        else:  # backward needs the activation's output intact
            top_pair = conv._scratch(f"{key}.top_pair", (quarter, cout), x.dtype, xp)
            bottom_pair = conv._scratch(f"{key}.bottom_pair", (quarter, cout), x.dtype, xp)
        xp.maximum(quarters[0], quarters[1], out=top_pair)
        xp.maximum(quarters[2], quarters[3], out=bottom_pair)
        xp.greater_equal(top_pair, bottom_pair, out=top_wins)
        xp.maximum(top_pair, bottom_pair, out=out.reshape(quarter, cout))
        if act is None:  # the bias, tiled over an image's pixels: long inner loops
            image_rows = out.reshape(n, hq * wq * cout)
            image_rows += xp.tile(conv.bias.value, hq * wq)
        if not train:
            return ()
        return (cols, left_wins, top_wins, y.reshape(4, quarter, cout) if act else None)

    def backward(self, dz: Array, input_grad: bool = True) -> Array | None:
        if self._cache[0] == "layers":
            grad = dz
            for k, layer in reversed(list(enumerate(self.layers))):
                grad = layer.backward(grad, input_grad=input_grad or k > 0)
            return grad
        xp = array_module(dz)
        _, parts, caches, (n, h, w, c) = self._cache
        conv = self.conv
        kh, kw = conv.kernel_size
        k_rows, cout = kh * kw * c, conv.out_channels
        dx = xp.empty((n, h, w, c), dtype=dz.dtype) if input_grad else None
        if len(parts) == 1:
            grads = [(conv.weight.grad.reshape(k_rows, cout), conv.bias.grad)]
        else:  # per-part sums, added at the end
            grads = [
                (
                    conv._scratch(f"fused.dw.{k}", (k_rows, cout), dz.dtype, xp),
                    conv._scratch(f"fused.db.{k}", (cout,), dz.dtype, xp),
                )
                for k in range(len(parts))
            ]

        def run(k: int) -> None:
            lo, hi = parts[k]
            part_dx = dx[lo:hi] if dx is not None else None
            self._backward_part(dz[lo:hi], caches[k], grads[k], part_dx, f"fused.train.{k}")

        with single_threaded_blas():
            run_parts(run, len(parts), xp)
        if len(parts) > 1:
            xp.add(grads[0][0], grads[1][0], out=conv.weight.grad.reshape(k_rows, cout))
            xp.add(grads[0][1], grads[1][1], out=conv.bias.grad)
        return dx

    def _backward_part(
        self, dz: Array, cache: tuple, grads: tuple[Array, Array], dx: Array | None, key: str
    ) -> None:
        """Backward of one part: its weight and bias gradients into ``grads``, its input
        gradient into ``dx`` (skipped when None)."""
        xp = array_module(dz)
        cols, left_wins, top_wins, activated = cache
        conv, act = self.conv, self.act
        n, hq, wq, cout = dz.shape
        h, w = 2 * hq, 2 * wq
        kh, kw = conv.kernel_size
        quarter = n * hq * wq
        dz2 = dz.reshape(quarter, cout)
        # Max-pool backward: each window's dz to the pixel that won it (masks from forward).
        # Subtracting the part taken leaves exact zeros and exact values. Without an
        # activation, dy takes the place of the forward's y (no longer needed).
        name = "y" if act is None else "dy"
        dy = conv._scratch(f"{key}.{name}", (4 * quarter, cout), dz.dtype, xp).reshape(
            4, quarter, cout
        )
        xp.multiply(dz2, top_wins, out=dy[1])  # dz of the windows the top pair wins
        xp.subtract(dz2, dy[1], out=dy[3])  # ... and of those the bottom pair wins
        xp.multiply(dy[1], left_wins[0], out=dy[0])
        xp.subtract(dy[1], dy[0], out=dy[1])
        xp.multiply(dy[3], left_wins[1], out=dy[2])
        xp.subtract(dy[3], dy[2], out=dy[3])
        dy = dy.reshape(4 * quarter, cout)
        dweight, dbias = grads
        if act is not None:
            dy = act.backward_from_output(activated.reshape(4 * quarter, cout), dy)
            column_sums(dy, conv._ones(len(dy), dz.dtype, xp), out=dbias)
        else:  # every dz lands on exactly one pixel
            column_sums(dz2, conv._ones(quarter, dz.dtype, xp), out=dbias)
        xp.matmul(cols.T, dy, out=dweight)
        if dx is None:
            return
        # Un-pool dy into the zero-bordered buffer that the flipped-kernel correlation reads.
        (_, top, _), (_, left, _) = conv.geometry(h, w)
        before_h, before_w = kh - 1 - top, kw - 1 - left
        shape = (n, h + kh - 1, w + kw - 1, cout)
        dy_padded = conv._scratch(f"{key}.dy_padded", shape, dz.dtype, xp, fill=0)
        by_quarter = dy.reshape(2, 2, n, hq, wq, cout)
        for i in (0, 1):
            for j in (0, 1):
                rows = slice(before_h + i, before_h + h, 2)
                columns = slice(before_w + j, before_w + w, 2)
                dy_padded[:, rows, columns, :] = by_quarter[i, j]
        conv._input_grad_stride1(dy_padded, h, w, key=f"{key}.dx", out=dx)

    def __repr__(self) -> str:
        return f"ConvPool2x2({', '.join(repr(layer) for layer in self.layers)})"


def maxpool2d_reference(
    x: np.ndarray,
    pool_size: int | tuple = 2,
    stride: int | tuple | None = None,
    padding: str = "valid",
) -> np.ndarray:
    """Plain max-pooling for the tests: loops over output positions and window elements.

    Shapes as ``MaxPool2D``: x ``(N, H, W, C)`` -> ``(N, Ho, Wo, C)``.
    """
    y, _ = _maxpool_reference_argmax(x, pool_size, stride, padding)
    return y


def _maxpool_reference_argmax(
    x: np.ndarray, pool_size: int | tuple, stride: int | tuple | None, padding: str
) -> tuple[np.ndarray, np.ndarray]:
    """``(y, where)``: the maxima and, per output, the (row, col) in x of the first maximum."""
    ph, pw = _pair(pool_size)
    sh, sw = _pair(stride) if stride is not None else (ph, pw)
    n, h, w, c = x.shape
    ho, top, _ = output_size(h, ph, sh, padding)
    wo, left, _ = output_size(w, pw, sw, padding)
    y = np.full((n, ho, wo, c), -np.inf, dtype=x.dtype)
    where = np.zeros((n, ho, wo, c, 2), dtype=np.int64)  # (row, col) in x of the first maximum
    for r in range(ho):
        for s in range(wo):
            for i in range(ph):  # row-major window order; strict ">" keeps the first maximum
                for j in range(pw):
                    xr, xc = r * sh + i - top, s * sw + j - left
                    if not (0 <= xr < h and 0 <= xc < w):
                        continue  # padding (-inf) never wins
                    v = x[:, xr, xc, :]
                    better = v > y[:, r, s, :]
                    y[:, r, s, :] = np.where(better, v, y[:, r, s, :])
                    where[:, r, s, :, 0] = np.where(better, xr, where[:, r, s, :, 0])
                    where[:, r, s, :, 1] = np.where(better, xc, where[:, r, s, :, 1])
    return y, where


def maxpool2d_reference_backward(
    x: np.ndarray,
    dy: np.ndarray,
    pool_size: int | tuple = 2,
    stride: int | tuple | None = None,
    padding: str = "valid",
) -> np.ndarray:
    """dL/dx of ``maxpool2d_reference``: each dy goes to its window's first maximum."""
    _, where = _maxpool_reference_argmax(x, pool_size, stride, padding)
    n, ho, wo, c = dy.shape
    dx = np.zeros_like(x)
    for b in range(n):
        for r in range(ho):
            for s in range(wo):
                for k in range(c):
                    xr, xc = where[b, r, s, k]
                    dx[b, xr, xc, k] += dy[b, r, s, k]
    return dx
