"""Layers: small holders of parameters whose ``forward`` and ``backward`` call the kernels.

The arithmetic lives in ``numnet.core.kernels``: ``plain`` (the readable functions that
``docs/derivations.md`` derives) or ``fast`` (the same functions, buffered where that pays).
Each layer holds one of the two modules as ``ops`` and calls it, the same call either way
(``self.ops.conv2d_forward(...)``); its ``kernels`` attribute, "fast" (the default) or "plain",
names the module and is settable; a model sets it for all of its layers
(``models.build(..., kernels=...)``).

Layouts (TensorFlow's, the public layout whatever happens inside):
- images NHWC ``(N, H, W, C)``;
- ``Linear``: weight ``(in, out)``, bias ``(out,)``, ``y = x @ W + b``;
- ``Conv2D``: weight HWIO ``(kh, kw, c_in, c_out)``, bias ``(c_out,)``;
- ``Flatten``: ``(N, H, W, C) -> (N, H*W*C)`` in (height, width, channel) order;
- ``BatchNorm``: over the last axis (features of ``(N, F)``, channels of NHWC), ``(F,)``
  weight (gamma), bias (beta) and running statistics;
- SAME padding as TensorFlow computes it (``kernels.plain.output_size``).

Protocol of every layer:
- ``forward(x, train=True) -> y``. With ``train=True`` the layer keeps what ``backward`` needs;
  with ``train=False`` it keeps nothing (evaluation): dropout is then the identity and batch
  norm uses its running statistics (which only a training forward updates).
- ``backward(dy, input_grad=True) -> dx`` for the most recent training forward. It *overwrites*
  each parameter's ``.grad`` (no accumulation) and returns dL/dx, or ``None`` when
  ``input_grad=False`` (the first layer of a model: the input gradient is not needed to train).

On the fast path a model runs some runs of layers as one fused step (``numnet.core.plan``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np

from numnet.core.backend import array_module, to_device
from numnet.core.errors import KernelsError
from numnet.core.kernels import kernel_set, plain
from numnet.core.kernels.fast import Workspace
from numnet.core.kernels.plain import PADDINGS, output_size, pair
from numnet.core.names import DEFAULT_KERNELS, KERNELS

Array = Any  # numpy.ndarray or cupy.ndarray

__all__ = [
    "ACTIVATIONS", "PADDINGS", "Activation", "AvgPool2D", "BatchNorm", "Conv2D", "Dropout",
    "Flatten", "Layer", "Linear", "MaxPool2D", "Parameter", "Pool2D", "ReLU", "Reshape",
    "Sigmoid", "Tanh", "activation", "check_kernels", "output_size",
]  # fmt: skip


def check_kernels(kernels: str) -> str:
    """``kernels`` if it names a kernel implementation (``names.KERNELS``), else KernelsError."""
    if kernels not in KERNELS:
        raise KernelsError(f"kernels must be one of {KERNELS}, got {kernels!r}")
    return kernels


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
    """Base class: parameter bookkeeping, the kernel choice, the cache and kept buffers."""

    #: attribute names of this layer's parameters, in a fixed order ("weight", "bias")
    param_names: tuple[str, ...] = ()
    #: attribute names of arrays that are state but not trained (batch norm's running
    #: statistics): saved and loaded with the weights, moved with the layer, no gradient
    buffer_names: tuple[str, ...] = ()

    def __init__(self, kernels: str = DEFAULT_KERNELS) -> None:
        #: the fast kernels' buffers, kept across steps: one set for training passes and one
        #: for evaluations, so an evaluation between a training forward and its backward
        #: cannot overwrite what the backward reads (the plain kernels ignore them)
        self.workspace = Workspace()
        self.eval_workspace = Workspace()
        self._cache: Any = None
        self.kernels = kernels  # and so ``ops``

    @property
    def kernels(self) -> str:
        """"fast" or "plain": the name of ``ops``, the module whose functions ``forward`` and
        ``backward`` call; settable."""
        return self._kernels

    @kernels.setter
    def kernels(self, value: str) -> None:
        self._kernels = check_kernels(value)
        self.clear_cache()

    @property
    def ops(self) -> ModuleType:
        """``numnet.core.kernels.plain`` or ``.fast`` (as ``kernels`` says): the same
        functions with the same signatures. (A property, not an attribute, so that a layer
        stays copyable: a module cannot be deep-copied.)"""
        return kernel_set(self._kernels)

    def buffers(self, train: bool) -> Workspace:
        """The kept buffers of a training (``train=True``) or an evaluation pass."""
        return self.workspace if train else self.eval_workspace

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

    def named_buffers(self) -> Iterator[tuple[str, Array]]:
        """``(name, array)`` of the untrained state arrays (``buffer_names``), in order."""
        for name in self.buffer_names:
            yield name, getattr(self, name)

    def to(self, device: str) -> None:
        """Move the parameters and buffers to ``device``; drop kept buffers and cached
        activations."""
        for p in self.parameters():
            p.to(device)
        for name, array in self.named_buffers():
            setattr(self, name, to_device(array, device))
        self.clear_cache()

    def clear_cache(self) -> None:
        """Forget the cached activations and kept buffers (they are rebuilt on demand)."""
        self._cache = None
        self.workspace.clear()
        self.eval_workspace.clear()

    def _keep(self, cache: Any, train: bool) -> None:
        if train:
            self._cache = cache

    def _store_grads(self, dw: Array, db: Array) -> None:
        """Copy a kernel's gradients into the parameters' own ``grad`` arrays (which stay the
        same objects: an optimiser may hold them)."""
        self.weight.grad[...] = dw
        self.bias.grad[...] = db

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# ----------------------------------------------------------------------------------------------
# Dense layers and activations
# ----------------------------------------------------------------------------------------------


class Linear(Layer):
    """Fully connected layer ``y = x @ W + b`` (``kernels.plain.linear_forward``).

    x: ``(N, in_features)``; W: ``(in_features, out_features)``; b: ``(out_features,)``;
    y: ``(N, out_features)``. Backward: ``dW = x.T @ dy``, ``db = sum_n dy``, ``dx = dy @ W.T``.
    """

    param_names = ("weight", "bias")

    def __init__(
        self, in_features: int, out_features: int, dtype: Any = "float32",
        kernels: str = DEFAULT_KERNELS,
    ) -> None:  # fmt: skip
        super().__init__(kernels)
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(np.zeros((in_features, out_features), dtype=dtype))
        self.bias = Parameter(np.zeros((out_features,), dtype=dtype))

    def forward(self, x: Array, train: bool = True) -> Array:
        y, cache = self.ops.linear_forward(x, self.weight.value, self.bias.value)
        self._keep(cache, train)
        return y

    def backward(self, dy: Array, input_grad: bool = True) -> Array | None:
        dx, dw, db = self.ops.linear_backward(dy, self._cache, input_grad)
        self._store_grads(dw, db)
        return dx

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (self.out_features,)

    def __repr__(self) -> str:
        return f"Linear({self.in_features}, {self.out_features})"


class Activation(Layer):
    """An elementwise activation (``ops.ACTIVATIONS[name]``: the plain kernels on both paths,
    nothing to speed up)."""

    name = ""

    def forward(self, x: Array, train: bool = True) -> Array:
        y, cache = self.ops.ACTIVATIONS[self.name][0](x)
        self._keep(cache, train)
        return y

    def backward(self, dy: Array, input_grad: bool = True) -> Array | None:
        return self.ops.ACTIVATIONS[self.name][1](dy, self._cache) if input_grad else None


class ReLU(Activation):
    """``y = max(x, 0)``; ``dx = dy * (x > 0)`` (the subgradient 0 at x = 0, as TF and PyTorch)."""

    name = "relu"


class Sigmoid(Activation):
    """``y = 1 / (1 + exp(-x))`` computed without overflow; ``dx = dy * y * (1 - y)``."""

    name = "sigmoid"


class Tanh(Activation):
    """``y = tanh(x)``; ``dx = dy * (1 - y**2)``."""

    name = "tanh"


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

    def forward(self, x: Array, train: bool = True) -> Array:
        self._keep(tuple(x.shape), train)
        return x.reshape(x.shape[0], -1)

    def backward(self, dy: Array, input_grad: bool = True) -> Array | None:
        return dy.reshape(self._cache) if input_grad else None

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (math.prod(input_shape),)


class Reshape(Layer):
    """``(N, ...) -> (N, *shape)``; model 4 uses ``Reshape((28, 28, 1))`` on ``(N, 784)`` rows."""

    def __init__(self, shape: tuple[int, ...], kernels: str = DEFAULT_KERNELS) -> None:
        super().__init__(kernels)
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x: Array, train: bool = True) -> Array:
        self._keep(tuple(x.shape), train)
        return x.reshape((x.shape[0], *self.shape))

    def backward(self, dy: Array, input_grad: bool = True) -> Array | None:
        return dy.reshape(self._cache) if input_grad else None

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if math.prod(input_shape) != math.prod(self.shape):
            raise ValueError(f"cannot reshape {input_shape} to {self.shape}")
        return self.shape

    def __repr__(self) -> str:
        return f"Reshape({self.shape})"


# ----------------------------------------------------------------------------------------------
# Convolution and max-pooling
# ----------------------------------------------------------------------------------------------


class Conv2D(Layer):
    """2-d convolution (cross-correlation, as TensorFlow and PyTorch), NHWC in and out
    (``kernels.plain.conv2d_forward`` / ``conv2d_backward``).

    x: ``(N, H, W, c_in)``; weight HWIO ``(kh, kw, c_in, c_out)``; bias ``(c_out,)``;
    y: ``(N, Ho, Wo, c_out)`` with ``y[n, ho, wo, o] = b[o] +
    sum_{i, j, c} xpad[n, ho*sh + i, wo*sw + j, c] * W[i, j, c, o]``.
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
        kernels: str = DEFAULT_KERNELS,
    ) -> None:
        super().__init__(kernels)
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = pair(kernel_size)
        self.stride = pair(stride)
        self.padding = padding
        kh, kw = self.kernel_size
        self.weight = Parameter(np.zeros((kh, kw, in_channels, out_channels), dtype=dtype))
        self.bias = Parameter(np.zeros((out_channels,), dtype=dtype))

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        h, w, c = input_shape
        if c != self.in_channels:
            raise ValueError(f"Conv2D expects {self.in_channels} input channels, got {c}")
        (ho, _, _), (wo, _, _) = plain.geometry(h, w, self.kernel_size, self.stride, self.padding)
        return (ho, wo, self.out_channels)

    def forward(self, x: Array, train: bool = True) -> Array:
        y, cache = self.ops.conv2d_forward(
            x, self.weight.value, self.bias.value, self.stride, self.padding,
            workspace=self.buffers(train),
        )  # fmt: skip
        self._keep(cache, train)
        return y

    def backward(self, dy: Array, input_grad: bool = True) -> Array | None:
        dx, dw, db = self.ops.conv2d_backward(dy, self._cache, input_grad,
                                              workspace=self.buffers(True))  # fmt: skip
        self._store_grads(dw, db)
        return dx

    def __repr__(self) -> str:
        return (
            f"Conv2D({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding!r})"
        )


class Pool2D(Layer):
    """What max- and average pooling share: ``pool_size`` windows moved by ``stride``, NHWC in
    and out, no parameters, TensorFlow's SAME or VALID geometry; a subclass names its kernels
    (``kernel``: ``ops.<kernel>_forward`` / ``ops.<kernel>_backward``).

    x: ``(N, H, W, C)`` -> y: ``(N, Ho, Wo, C)``.
    """

    kernel = ""

    def __init__(
        self,
        pool_size: int | tuple[int, int] = 2,
        stride: int | tuple[int, int] | None = None,
        padding: str = "valid",
        kernels: str = DEFAULT_KERNELS,
    ) -> None:
        super().__init__(kernels)
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
        self.pool_size = pair(pool_size)
        self.stride = pair(stride) if stride is not None else self.pool_size
        self.padding = padding

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        h, w, c = input_shape
        (ho, _, _), (wo, _, _) = plain.geometry(h, w, self.pool_size, self.stride, self.padding)
        return (ho, wo, c)

    def forward(self, x: Array, train: bool = True) -> Array:
        forward = getattr(self.ops, f"{self.kernel}_forward")
        y, cache = forward(x, self.pool_size, self.stride, self.padding)
        self._keep(cache, train)
        return y

    def backward(self, dy: Array, input_grad: bool = True) -> Array | None:
        return getattr(self.ops, f"{self.kernel}_backward")(dy, self._cache) if input_grad else None

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(pool_size={self.pool_size}, stride={self.stride}, "
                f"padding={self.padding!r})")


class MaxPool2D(Pool2D):
    """Max-pooling (``kernels.plain.maxpool2d_forward`` / ``maxpool2d_backward``). SAME pads
    with ``-inf`` (extra row/column at the end, as TensorFlow), so padding never wins a max.
    Backward: each output's gradient goes to the *first* maximum of its window in row-major
    window order (as TensorFlow and PyTorch)."""

    kernel = "maxpool2d"


class AvgPool2D(Pool2D):
    """Average pooling (``kernels.plain.avgpool2d_forward`` / ``avgpool2d_backward``), as
    TensorFlow's ``tf.nn.avg_pool``: SAME pads at the end and divides each window by the number
    of its elements inside the image (padding is not averaged in); VALID divides by
    ``kh * kw``."""

    kernel = "avgpool2d"


# ----------------------------------------------------------------------------------------------
# Batch normalisation and dropout: layers whose training pass differs from their evaluation
# ----------------------------------------------------------------------------------------------


class BatchNorm(Layer):
    """Batch normalisation over the last axis -- the features of ``(N, F)``, the channels of
    NHWC ``(N, H, W, C)`` (``kernels.plain.batchnorm_forward`` / ``batchnorm_backward``, with
    PyTorch's conventions).

    Parameters: ``weight`` (gamma, ones) and ``bias`` (beta, zeros), ``(num_features,)``.
    Buffers (state that is saved and loaded with the weights but not trained):
    ``running_mean`` (zeros) and ``running_var`` (ones). A training forward normalises with
    the batch's mean and biased variance and updates the running statistics,
    ``running = (1 - momentum) * running + momentum * batch`` (the variance's with the unbiased
    batch variance); an evaluation forward (``train=False``) normalises with the running
    statistics, row by row (so evaluating in chunks changes nothing).
    """

    param_names = ("weight", "bias")
    buffer_names = ("running_mean", "running_var")

    def __init__(
        self, num_features: int, momentum: float = 0.1, eps: float = 1e-5, dtype: Any = "float32",
        kernels: str = DEFAULT_KERNELS,
    ) -> None:  # fmt: skip
        super().__init__(kernels)
        self.num_features = num_features
        # Python floats: a NumPy float64 scalar would promote a float32 model's arrays
        self.momentum = float(momentum)
        self.eps = float(eps)
        self.weight = Parameter(np.ones((num_features,), dtype=dtype))
        self.bias = Parameter(np.zeros((num_features,), dtype=dtype))
        self.running_mean = np.zeros((num_features,), dtype=dtype)
        self.running_var = np.ones((num_features,), dtype=dtype)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if input_shape[-1] != self.num_features:
            raise ValueError(f"BatchNorm expects {self.num_features} features (last axis), "
                             f"got {input_shape[-1]}")  # fmt: skip
        return input_shape

    def forward(self, x: Array, train: bool = True) -> Array:
        y, cache = self.ops.batchnorm_forward(
            x, self.weight.value, self.bias.value, self.running_mean, self.running_var,
            train, self.momentum, self.eps,
        )  # fmt: skip
        self._keep(cache, train)
        return y

    def backward(self, dy: Array, input_grad: bool = True) -> Array | None:
        dx, dgamma, dbeta = self.ops.batchnorm_backward(dy, self._cache, input_grad)
        self._store_grads(dgamma, dbeta)
        return dx

    def __repr__(self) -> str:
        return f"BatchNorm({self.num_features}, momentum={self.momentum}, eps={self.eps})"


class Dropout(Layer):
    """Inverted dropout (``kernels.plain.dropout_forward``): a training forward keeps each
    element with probability ``1 - rate`` and scales it by ``1 / (1 - rate)``; an evaluation
    forward is the identity. ``rate`` in [0, 1).

    ``rng``: the ``numpy.random.Generator`` the masks are drawn from (``seed``: an int or a
    Generator; ``models.build`` seeds it from the model's seed, apart from the weights' draws).
    ``last_mask``: the mask of the last training forward, an array of x's shape and dtype
    holding 0 (dropped) or ``1 / (1 - rate)`` (kept) -- ``y = x * last_mask`` -- so that a
    PyTorch twin can apply numnet's exact masks; None before the first.
    """

    def __init__(self, rate: float, seed: int | np.random.SeedSequence | np.random.Generator = 0,
                 kernels: str = DEFAULT_KERNELS) -> None:  # fmt: skip
        super().__init__(kernels)
        if not 0 <= rate < 1:  # NaN fails too
            raise ValueError(f"dropout rate must be in [0, 1), got {rate!r}")
        self.rate = float(rate)
        self.rng = np.random.default_rng(seed)
        self.last_mask: Array | None = None

    def forward(self, x: Array, train: bool = True) -> Array:
        if not train:
            return x
        y, mask = self.ops.dropout_forward(x, self.rate, self.rng)
        self.last_mask = mask
        self._keep(mask, train)
        return y

    def backward(self, dy: Array, input_grad: bool = True) -> Array | None:
        return self.ops.dropout_backward(dy, self._cache) if input_grad else None

    def __repr__(self) -> str:
        return f"Dropout({self.rate})"
