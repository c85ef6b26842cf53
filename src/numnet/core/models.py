"""The ``Sequential`` container and ``build(name, ...)`` for the protocol's models 1-4.

Architectures (inputs are ``(N, 784)`` rows; layer names in brackets give the parameter names,
e.g. ``"fc1.weight"``, ``"conv2.bias"``):

- model1: [fc1] Linear(784, 10)
- model2: [fc1] Linear(784, 32), [relu1] ReLU, [fc2] Linear(32, 10)
- model3: [fc1] Linear(784, 32), [relu1] ReLU, [fc2] Linear(32, 32), [relu2] ReLU,
  [fc3] Linear(32, 10)
- model4: [reshape] (N, 784) -> (N, 28, 28, 1) NHWC, [conv1] Conv2D(1 -> 8, 3x3, stride 1, SAME),
  ([act1] if conv_activation), [pool1] MaxPool2D(2x2, stride 2, SAME), [conv2] Conv2D(8 -> 8, 3x3,
  SAME), ([act2]), [pool2] MaxPool2D(2x2, 2, SAME), [flatten] (N, 7*7*8 = 392) in (h, w, c) order,
  [fc1] Linear(392, 32), [relu1] ReLU, [fc2] Linear(32, 10)

The outputs are logits; the softmax lives in ``numnet.core.losses.softmax_cross_entropy``.

Initialisation order (so that the same seed always gives the same weights, and other code --
e.g. a PyTorch reference -- can reproduce them): one ``numpy.random.default_rng(seed)``; the
parametrised layers are visited in forward order; for each, the weight is drawn first
(one ``rng.uniform(-limit, limit, size=shape)`` call in the public layout -- ``(in, out)`` or
HWIO -- in float64, then cast to ``dtype``; the limit is Glorot's, or for conv kernels with
``weight_init="conv_uniform_fan_sum"`` :func:`numnet.core.init.fan_sum_limit`), then the bias
if ``bias_init`` is not "zeros" (one ``rng.uniform`` call of shape ``(n_out,)``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from numnet.core import init as initializers
from numnet.core.backend import array_module, to_device
from numnet.core.layers import (
    ACTIVATIONS,
    Conv2D,
    Flatten,
    Layer,
    Linear,
    MaxPool2D,
    Parameter,
    ReLU,
    Reshape,
    activation,
    check_kernels,
)
from numnet.core.names import DEFAULT_KERNELS, DEVICES, DTYPES, KERNELS, MODEL_NAMES
from numnet.core.plan import make_plan
from numnet.core.runtime import run_lanes, single_threaded_blas, split_rows

Array = Any
#: Rows per evaluation chunk of a convolutional model: small enough that a fused step's
#: buffers (about 45 KB a row for model 4's first conv) stay near the core. Measured, model 4,
#: 21,000 rows: on an AMD EPYC (1 MB L2 a core, 32 MB L3) 64 rows took 0.74x the time of 256
#: at one thread and 0.79x at two; on an Intel Xeon with a 480 MB L3, 0.98x.
EVAL_CHUNK = 64
EVAL_CHUNK_DENSE = 500  # of a dense model: a GEMM big enough to pay for a thread hand-over
#: weight initialisations: Glorot uniform for every weight (the protocol), or conv kernels
#: uniform in +-sqrt(6 / (kh*kw*c_in*c_out + c_out)) and dense weights Glorot (an earlier
#: NumPy solution's choice, the notebook-variant protocol)
WEIGHT_INITS = ("xavier_uniform", "conv_uniform_fan_sum")
DEFAULT_WEIGHT_INIT = "xavier_uniform"
__all__ = [
    "DEFAULT_WEIGHT_INIT", "DTYPES", "EVAL_CHUNK", "EVAL_CHUNK_DENSE", "KERNELS", "MODEL_NAMES",
    "WEIGHT_INITS", "Sequential", "build", "init_parameters", "normalize_bias_init",
    "normalize_name",
]  # fmt: skip


class Sequential:
    """Layers applied in order; named parameters ``"<layer name>.<param name>"``.

    ``forward(x, train=True)`` casts ``x`` to the model's dtype and returns logits;
    ``train=False`` (or ``predict``) keeps nothing for backward. ``backward(dout)`` back-propagates
    the most recent training forward and overwrites every ``Parameter.grad``; with
    ``input_grad=True`` it also returns dL/dx (shaped like the forward input), otherwise it
    skips the input gradient of the first parametrised layer and returns ``None``.

    ``kernels`` ("fast", the default, or "plain"; settable) chooses the kernels of every layer
    (``numnet.core.kernels``): "plain" runs the readable functions of ``kernels/plain.py``,
    "fast" their buffered versions. On the fast path ``fuse`` (default True) also runs each
    Conv2D(stride 1, SAME) [+ activation] + MaxPool2D(2x2/2) as one ``plan.ConvPool2x2`` step
    -- same results, faster; ``fuse=False`` runs the layers one by one. Parameters and their
    names are the layers' either way. ``kernels`` is not part of ``config``: it changes how,
    not what, the model computes.

    Forward and backward hold the host BLAS to one thread (``runtime.single_threaded_blas``):
    the layers' GEMMs are small, and numnet spreads the work over the cores itself: an
    evaluation through chunks of rows on the runtime's lanes (``forward``); a training step
    runs whole on the calling thread (``numnet.core.runtime`` says why).
    """

    def __init__(
        self,
        layers: Sequence[Layer] | Sequence[tuple[str, Layer]],
        dtype: str = "float32",
        config: dict[str, Any] | None = None,
        fuse: bool = True,
        kernels: str = DEFAULT_KERNELS,
    ) -> None:
        named: list[tuple[str, Layer]] = []
        for k, item in enumerate(layers):
            named.append(item if isinstance(item, tuple) else (str(k), item))
        names = [n for n, _ in named]
        if len(set(names)) != len(names):
            raise ValueError(f"layer names must be unique, got {names}")
        self.layers: list[tuple[str, Layer]] = named
        self.dtype = np.dtype(dtype)
        self.config: dict[str, Any] = dict(config or {})
        self.device = "cpu"
        self._fuse = fuse
        self._kernels = check_kernels(kernels)
        for _, layer in named:
            layer.kernels = kernels
        self._plan = self._make_plan()
        self._params = self.parameters()  # the Parameter objects never change, their arrays may
        #: rows per chunk of an evaluation forward (None: no chunking); see ``forward``
        self.eval_chunk: int | None = (
            EVAL_CHUNK if any(isinstance(layer, Conv2D) for _, layer in named) else EVAL_CHUNK_DENSE
        )

    # -- execution plan -------------------------------------------------------------------------
    @property
    def kernels(self) -> str:
        """"fast" or "plain": the kernels every layer calls; settable (drops cached state)."""
        return self._kernels

    @kernels.setter
    def kernels(self, value: str) -> None:
        self._kernels = check_kernels(value)
        for _, layer in self.layers:
            layer.kernels = value
        self._plan = self._make_plan()

    @property
    def fuse(self) -> bool:
        """Whether fast paths that span layers (``ConvPool2x2``) are used, on the fast kernels
        only; settable."""
        return self._fuse

    @fuse.setter
    def fuse(self, value: bool) -> None:
        self._fuse = bool(value)
        self._plan = self._make_plan()

    def _make_plan(self) -> list[tuple[Any, bool]]:
        """``plan.make_plan`` of the layers: fused steps only with ``fuse`` and fast kernels."""
        fuse = self._fuse and self._kernels == "fast"
        return make_plan([layer for _, layer in self.layers], fuse)

    # -- computation ----------------------------------------------------------------------------
    def forward(self, x: Array, train: bool = True) -> Array:
        """Logits ``(N, 10)`` for inputs ``x`` (cast to the model's dtype; no copy if already).

        An evaluation forward (``train=False``) runs in near-equal chunks of at most
        ``eval_chunk`` rows (``runtime.split_rows``: by size alone), each run whole through the
        model on one of the runtime's lanes (``runtime.run_lanes``): the lanes use the cores
        without a multithreaded BLAS, and a convolutional model's im2col buffers of a small
        chunk stay in the CPU caches. A row's logits never depend on the thread count.
        """
        xp = array_module(self._params[0].value) if self._params else array_module(x)
        x = xp.asarray(x, dtype=self.dtype)
        chunk = None if train else self.eval_chunk
        with single_threaded_blas():
            if not chunk or len(x) <= chunk:
                return self._run(x, train)
            parts = split_rows(len(x), chunk)
            logits: list[Array] = [None] * len(parts)

            def run(k: int) -> None:
                lo, hi = parts[k]
                logits[k] = self._run(x[lo:hi], False)

            run_lanes(run, len(parts), xp)
            return xp.concatenate(logits)

    def _run(self, x: Array, train: bool) -> Array:
        for step, _ in self._plan:
            x = step.forward(x, train=train)
        return x

    __call__ = forward

    def predict(self, x: Array) -> Array:
        """Evaluation forward (nothing kept for backward): ``forward(x, train=False)``."""
        return self.forward(x, train=False)

    def backward(self, dout: Array, input_grad: bool = False) -> Array | None:
        """Back-propagate ``dout`` = dL/dlogits; fills every ``Parameter.grad``.

        Returns dL/dx when ``input_grad`` is True, else ``None`` (cheaper: the first
        parametrised layer skips its input gradient and layers before it are not visited).
        """
        xp = array_module(dout)
        grad = xp.asarray(dout, dtype=self.dtype)
        first = next((k for k, (_, has_params) in enumerate(self._plan) if has_params), 0)
        stop = 0 if input_grad else first
        with single_threaded_blas():
            for k in range(len(self._plan) - 1, stop - 1, -1):
                grad = self._plan[k][0].backward(grad, input_grad=input_grad or k > stop)
        return grad if input_grad else None

    # -- parameters -----------------------------------------------------------------------------
    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        for layer_name, layer in self.layers:
            for pname, p in layer.named_parameters():
                yield f"{layer_name}.{pname}", p

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def num_parameters(self) -> int:
        return sum(math.prod(p.shape) for p in self.parameters())

    def zero_grad(self) -> None:
        """Set every gradient to zero (optional: ``backward`` overwrites them anyway)."""
        for p in self.parameters():
            p.grad[...] = 0

    def to(self, device: str) -> Sequential:
        """Move every parameter to ``device`` ("cpu" or "cuda", see ``numnet.core.backend``)."""
        if device not in DEVICES:
            raise ValueError(f"unknown device {device!r}; expected one of {DEVICES}")
        for _, layer in self.layers:
            layer.to(device)
        self.device = device
        self._plan = self._make_plan()  # forget cached activations
        return self

    def state_dict(self) -> dict[str, np.ndarray]:
        """Host (NumPy) copies of the parameter values by name."""
        return {name: np.array(to_device(p.value, "cpu")) for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Copy values in by name; names, shapes and dtypes must match exactly."""
        own = dict(self.named_parameters())
        if set(own) != set(state):
            raise ValueError(
                f"parameter names differ: missing {sorted(set(own) - set(state))}, "
                f"unexpected {sorted(set(state) - set(own))}"
            )
        for name, p in own.items():
            value = state[name]
            if tuple(value.shape) != p.shape or value.dtype != p.dtype:
                raise ValueError(
                    f"{name}: got {value.dtype}{tuple(value.shape)}, model has {p.dtype}{p.shape}"
                )
            p.value[...] = array_module(p.value).asarray(value)

    def __repr__(self) -> str:
        body = "\n".join(f"  ({name}) {layer!r}" for name, layer in self.layers)
        return f"Sequential(dtype={self.dtype}, device={self.device!r}\n{body}\n)"


# ----------------------------------------------------------------------------------------------
# build
# ----------------------------------------------------------------------------------------------


def normalize_name(name: str | int) -> str:
    """``"model3"``, ``3``, ``"3"`` or ``"Model 3"`` -> ``"model3"``."""
    text = str(name).strip().lower().replace(" ", "").replace("_", "")
    if text.isdigit():
        text = f"model{text}"
    if text not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; expected one of {MODEL_NAMES} (or 1..4)")
    return text


def normalize_bias_init(bias_init: Any) -> str | list:
    """Validate ``bias_init``; return its JSON form ("zeros", "uniform_sqrt3", ["uniform", limit]).

    - "zeros": the protocol's biases (the default);
    - "uniform_sqrt3": the known variant, uniform in ``+-sqrt(3 / n_out)`` per layer
      (n_out = out_features for Linear, c_out for Conv2D);
    - ``("uniform", limit)``: uniform in ``+-limit`` for every bias.
    """
    if bias_init in ("zeros", "uniform_sqrt3"):
        return bias_init
    if (
        isinstance(bias_init, list | tuple)
        and len(bias_init) == 2
        and bias_init[0] == "uniform"
        and isinstance(bias_init[1], int | float)
        and not isinstance(bias_init[1], bool)
        and math.isfinite(bias_init[1])
        and bias_init[1] >= 0
    ):
        return ["uniform", float(bias_init[1])]
    raise ValueError(
        f"bias_init must be 'zeros', 'uniform_sqrt3' or ('uniform', limit >= 0), got {bias_init!r}"
    )


def init_parameters(layer: Layer, rng: np.random.Generator, bias_init: str | list,
                    weight_init: str = DEFAULT_WEIGHT_INIT) -> None:
    """Draw ``layer``'s weight (Glorot uniform; a conv kernel's with ``fan_sum_limit`` under
    ``weight_init="conv_uniform_fan_sum"``) then, unless zeros, its bias, from ``rng``."""
    weight, bias = layer.weight, layer.bias
    dtype = weight.dtype
    if weight_init == "conv_uniform_fan_sum" and len(weight.shape) == 4:  # HWIO conv kernel
        weight.value = initializers.uniform_fan_sum(rng, weight.shape, dtype)
    else:
        weight.value = initializers.glorot_uniform(rng, weight.shape, dtype)
    if bias_init == "zeros":
        bias.value = initializers.zeros(bias.shape, dtype)
    elif bias_init == "uniform_sqrt3":
        bias.value = initializers.uniform(rng, bias.shape, math.sqrt(3.0 / bias.shape[0]), dtype)
    else:
        bias.value = initializers.uniform(rng, bias.shape, bias_init[1], dtype)
    weight.grad = np.zeros_like(weight.value)
    bias.grad = np.zeros_like(bias.value)


def _layers(name: str, dtype: str, conv_activation: str | None) -> list[tuple[str, Layer]]:
    if name == "model1":
        return [("fc1", Linear(784, 10, dtype))]
    if name == "model2":
        return [("fc1", Linear(784, 32, dtype)), ("relu1", ReLU()), ("fc2", Linear(32, 10, dtype))]
    if name == "model3":
        return [
            ("fc1", Linear(784, 32, dtype)),
            ("relu1", ReLU()),
            ("fc2", Linear(32, 32, dtype)),
            ("relu2", ReLU()),
            ("fc3", Linear(32, 10, dtype)),
        ]
    layers: list[tuple[str, Layer]] = [("reshape", Reshape((28, 28, 1)))]
    for k, cin in ((1, 1), (2, 8)):
        layers.append((f"conv{k}", Conv2D(cin, 8, 3, stride=1, padding="same", dtype=dtype)))
        if conv_activation is not None:
            layers.append((f"act{k}", activation(conv_activation)))
        layers.append((f"pool{k}", MaxPool2D(2, 2, padding="same")))
    layers += [
        ("flatten", Flatten()),
        ("fc1", Linear(7 * 7 * 8, 32, dtype)),
        ("relu1", ReLU()),
        ("fc2", Linear(32, 10, dtype)),
    ]
    return layers


def build(
    name: str | int,
    seed: int = 0,
    dtype: str = "float32",
    conv_activation: str | None = None,
    bias_init: str | tuple[str, float] = "zeros",
    kernels: str = DEFAULT_KERNELS,
    weight_init: str = DEFAULT_WEIGHT_INIT,
) -> Sequential:
    """Build the protocol's model ``name`` ("model1".."model4", or 1..4), initialised.

    seed: seeds the one ``numpy.random.Generator`` that draws every parameter (order in the
    module docstring). dtype: "float32" (default) or "float64". conv_activation: None or "none"
    (the protocol: no activation after the convolutions) or "relu"/"sigmoid"/"tanh" after each
    conv of model 4 (models 1-3 have no convolutions and ignore it).
    bias_init: "zeros" (the protocol), "uniform_sqrt3" (the known variant, +-sqrt(3 / n_out)) or
    ``("uniform", limit)``. kernels: "fast" (default) or "plain" (``Sequential``), kept as
    ``model.kernels``; the results agree within float rounding. weight_init: one of
    :data:`WEIGHT_INITS` ("xavier_uniform", the protocol's, by default).

    The returned model's ``config`` holds the other arguments in JSON form, so that
    ``build(**model.config)`` rebuilds the same architecture and weights (with the default
    kernels: ``kernels`` changes how the model computes, not what, and stays out of config).
    ``weight_init`` is in ``config`` only when it is not the default (older configs stay as
    they were).
    """
    name = normalize_name(name)
    dtype = np.dtype(dtype).name
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if conv_activation == "none":  # protocol files spell "no activation" this way
        conv_activation = None
    if conv_activation is not None and conv_activation not in ACTIVATIONS:
        raise ValueError(
            f"conv_activation must be None or one of {sorted(ACTIVATIONS)}, got {conv_activation!r}"
        )
    bias_json = normalize_bias_init(bias_init)
    if weight_init not in WEIGHT_INITS:
        raise ValueError(f"weight_init must be one of {WEIGHT_INITS}, got {weight_init!r}")
    check_kernels(kernels)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    config = {
        "name": name,
        "seed": int(seed),
        "dtype": dtype,
        "conv_activation": conv_activation,
        "bias_init": bias_json,
    }
    if weight_init != DEFAULT_WEIGHT_INIT:
        config["weight_init"] = weight_init
    model = Sequential(
        _layers(name, dtype, conv_activation), dtype=dtype, config=config, kernels=kernels
    )
    rng = np.random.default_rng(int(seed))
    for _, layer in model.layers:
        if layer.param_names:
            init_parameters(layer, rng, bias_json, weight_init)
    return model
