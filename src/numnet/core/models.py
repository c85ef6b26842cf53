"""The ``Sequential`` container, model definitions, and ``build`` for any of them.

A model is defined as a list of layer dicts (:data:`LAYER_TYPES`), e.g. ::

    [{"type": "conv2d", "filters": 8, "kernel": 3}, {"type": "batchnorm"}, {"type": "relu"},
     {"type": "maxpool2d", "size": 2, "padding": "same"}, {"type": "flatten"},
     {"type": "dropout", "rate": 0.25}, {"type": "linear", "units": 32}, {"type": "relu"},
     {"type": "linear", "units": 10}]

Keys: ``linear`` units; ``conv2d`` filters, kernel, stride=1, padding="same"; ``maxpool2d`` and
``avgpool2d`` size, stride=size, padding="valid"; ``flatten``; ``relu``/``sigmoid``/``tanh``;
``dropout`` rate in [0, 1); ``batchnorm`` momentum=0.1, eps=1e-5; any layer an optional
``name``. The input rows ``(N, 784)`` are reshaped to NHWC ``(N, 28, 28, 1)``
(``names.IMAGE_SHAPE``) by a layer named "reshape" when the first layer needs an image (conv or
pool); shapes are then inferred layer by layer, and the last layer must be the 10 logits,
``{"type": "linear", "units": 10}``. :func:`check_definition` checks a definition and gives
each layer's output shape without allocating anything; every problem is one
:class:`DefinitionError`. Layer names, unless given: the type and a count of that type from 1
(``conv2d1``, ``batchnorm1``, ``relu1``, ``relu2``, ``linear1``, ``linear2``), so parameters
are named ``"linear2.weight"``, ``"batchnorm1.bias"``. Messages count layers from 1 too.

The protocol's models 1-4 are built-in definitions (:data:`BUILTIN_DEFINITIONS`) with the
layer names they always had:

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
linear and conv layers are visited in forward order (batch norm's gamma and beta start as
ones and zeros and draw nothing; a dropout layer at position k of the definition draws its
masks from its own ``default_rng(SeedSequence(seed, spawn_key=(k,)))``, apart from the
weights' stream); for each, the weight is drawn first
(one ``rng.uniform(-limit, limit, size=shape)`` call in the public layout -- ``(in, out)`` or
HWIO -- in float64, then cast to ``dtype``; the limit is Glorot's, or for conv kernels with
``weight_init="conv_uniform_fan_sum"`` :func:`numnet.core.init.fan_sum_limit`), then the bias
if ``bias_init`` is not "zeros" (one ``rng.uniform`` call of shape ``(n_out,)``).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from numnet.core import init as initializers
from numnet.core.backend import array_module, to_device
from numnet.core.errors import DefinitionError
from numnet.core.kernels.plain import PADDINGS, geometry
from numnet.core.layers import (
    ACTIVATIONS,
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Dropout,
    Flatten,
    Layer,
    Linear,
    MaxPool2D,
    Parameter,
    Reshape,
    activation,
    check_kernels,
)
from numnet.core.names import (
    DEFAULT_KERNELS,
    DEVICES,
    DTYPES,
    IMAGE_SHAPE,
    KERNELS,
    MODEL_NAMES,
    NUM_CLASSES,
)
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
    "BUILTIN_DEFINITIONS", "DEFAULT_WEIGHT_INIT", "DTYPES", "EVAL_CHUNK", "EVAL_CHUNK_DENSE",
    "IMAGE_LAYERS", "KERNELS", "LAYER_TYPES", "MAX_LAYERS", "MAX_PARAMETERS",
    "MAX_VALUES_PER_EXAMPLE", "MODEL_NAMES", "WEIGHT_INITS", "DefinitionError", "PlannedLayer",
    "Sequential", "build", "builtin_definition", "check_definition", "init_parameters",
    "normalize_bias_init", "normalize_name", "plan_definition",
]  # fmt: skip


class Sequential:
    """Layers applied in order; named parameters ``"<layer name>.<param name>"``.

    ``forward(x, train=True)`` casts ``x`` to the model's dtype and returns logits;
    ``train=False`` (or ``predict``) keeps nothing for backward. ``backward(dout)`` back-propagates
    the most recent training forward and overwrites every ``Parameter.grad``; with
    ``input_grad=True`` it also returns dL/dx (shaped like the forward input), otherwise it
    skips the input gradient of the first parametrised layer and returns ``None``.

    ``forward(x, train=False)`` is the evaluation mode: dropout off, batch norm on its running
    statistics (each row on its own, so evaluating in chunks stays exact). State: the
    parameters (``named_parameters``) and the untrained buffers (``named_buffers``: batch
    norm's running statistics), together ``named_state`` / ``state_dict``.

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

    def named_buffers(self) -> Iterator[tuple[str, Array]]:
        """``("<layer name>.<buffer name>", array)`` of the untrained state (batch norm's
        running statistics), in layer order."""
        for layer_name, layer in self.layers:
            for bname, array in layer.named_buffers():
                yield f"{layer_name}.{bname}", array

    def named_state(self) -> Iterator[tuple[str, Array]]:
        """Every array of the model's state by name: layer by layer, its parameters' values
        then its buffers -- what ``state_dict`` copies and a weights file stores."""
        for layer_name, layer in self.layers:
            for pname, p in layer.named_parameters():
                yield f"{layer_name}.{pname}", p.value
            for bname, array in layer.named_buffers():
                yield f"{layer_name}.{bname}", array

    def state_dict(self) -> dict[str, np.ndarray]:
        """Host (NumPy) copies of the parameter values and buffers by name (``named_state``)."""
        return {name: np.array(to_device(a, "cpu")) for name, a in self.named_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Copy values in by name (parameters and buffers, in place); names, shapes and dtypes
        must match exactly."""
        own = dict(self.named_state())
        if set(own) != set(state):
            raise ValueError(
                f"parameter names differ: missing {sorted(set(own) - set(state))}, "
                f"unexpected {sorted(set(state) - set(own))}"
            )
        for name, a in own.items():
            value = state[name]
            if tuple(value.shape) != tuple(a.shape) or value.dtype != a.dtype:
                raise ValueError(
                    f"{name}: got {value.dtype}{tuple(value.shape)}, model has "
                    f"{a.dtype}{tuple(a.shape)}"
                )
        for name, a in own.items():
            a[...] = array_module(a).asarray(state[name])

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


# ----------------------------------------------------------------------------------------------
# Model definitions: a list of layer dicts
# ----------------------------------------------------------------------------------------------

#: layer type -> (required keys, optional keys with their defaults); every type also takes an
#: optional "name" (the layer's name: a lower-case identifier, unique in the model). A pool's
#: stride defaults to its size (None here).
LAYER_TYPES: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "linear": (("units",), {}),
    "conv2d": (("filters", "kernel"), {"stride": 1, "padding": "same"}),
    "maxpool2d": (("size",), {"stride": None, "padding": "valid"}),
    "avgpool2d": (("size",), {"stride": None, "padding": "valid"}),
    "flatten": ((), {}),
    "relu": ((), {}),
    "sigmoid": ((), {}),
    "tanh": ((), {}),
    "dropout": (("rate",), {}),
    "batchnorm": ((), {"momentum": 0.1, "eps": 1e-5}),
}
#: layer types that need an image (H, W, C): when the first layer is one, the (N, 784) input
#: rows are reshaped to NHWC ``(N, *IMAGE_SHAPE)`` by a layer named "reshape"
IMAGE_LAYERS = ("conv2d", "maxpool2d", "avgpool2d")
#: bounds that keep a definition from asking for an absurd allocation
MAX_LAYERS = 4096
MAX_PARAMETERS = 50_000_000
MAX_VALUES_PER_EXAMPLE = 10_000_000  # of one layer's output, per example
#: the protocol's models as definitions, with today's layer names (so parameter names and
#: weights files are the ones models 1-4 always had); model 4's ``conv_activation`` inserts
#: ``act1``/``act2`` after its convolutions (:func:`builtin_definition`)
BUILTIN_DEFINITIONS: dict[str, list[dict[str, Any]]] = {
    "model1": [{"type": "linear", "units": 10, "name": "fc1"}],
    "model2": [
        {"type": "linear", "units": 32, "name": "fc1"},
        {"type": "relu", "name": "relu1"},
        {"type": "linear", "units": 10, "name": "fc2"},
    ],
    "model3": [
        {"type": "linear", "units": 32, "name": "fc1"},
        {"type": "relu", "name": "relu1"},
        {"type": "linear", "units": 32, "name": "fc2"},
        {"type": "relu", "name": "relu2"},
        {"type": "linear", "units": 10, "name": "fc3"},
    ],
    "model4": [
        {"type": "conv2d", "filters": 8, "kernel": 3, "stride": 1, "padding": "same",
         "name": "conv1"},
        {"type": "maxpool2d", "size": 2, "stride": 2, "padding": "same", "name": "pool1"},
        {"type": "conv2d", "filters": 8, "kernel": 3, "stride": 1, "padding": "same",
         "name": "conv2"},
        {"type": "maxpool2d", "size": 2, "stride": 2, "padding": "same", "name": "pool2"},
        {"type": "flatten", "name": "flatten"},
        {"type": "linear", "units": 32, "name": "fc1"},
        {"type": "relu", "name": "relu1"},
        {"type": "linear", "units": 10, "name": "fc2"},
    ],
}  # fmt: skip
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,63}")


def builtin_definition(name: str | int, conv_activation: str | None = None) -> list[dict]:
    """The definition of built-in model ``name`` (a copy), with ``conv_activation`` ("relu",
    "sigmoid", "tanh") inserted after each convolution as ``act1``, ``act2``, ..."""
    out: list[dict] = []
    for spec in BUILTIN_DEFINITIONS[normalize_name(name)]:
        out.append(dict(spec))
        if conv_activation is not None and spec["type"] == "conv2d":
            out.append({"type": conv_activation, "name": f"act{spec['name'][4:]}"})
    return out


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)


def _hw(v: Any) -> tuple[int, int] | None:
    """A size or stride: an int >= 1, or a pair [height, width] of them; None if not one."""
    if _is_int(v) and v >= 1:
        return int(v), int(v)
    if isinstance(v, list | tuple) and len(v) == 2 and all(_is_int(a) and a >= 1 for a in v):
        return int(v[0]), int(v[1])
    return None


def _json(v: Any) -> Any:
    """A value as plain JSON: tuples to lists, NumPy scalars to Python numbers."""
    if isinstance(v, list | tuple):
        return [_json(a) for a in v]
    return v.item() if isinstance(v, np.generic) else v


def _check_value(key: str, value: Any) -> str | None:
    """What is wrong with ``value`` for ``key`` (None: nothing)."""
    if key in ("units", "filters"):
        ok, want = _is_int(value) and value >= 1, "an integer >= 1"
    elif key in ("kernel", "size", "stride"):
        ok, want = _hw(value) is not None, "an integer >= 1 or a pair [height, width] of them"
    elif key == "padding":
        ok, want = value in PADDINGS, f"one of {', '.join(map(repr, PADDINGS))}"
    elif key == "rate":
        ok, want = _is_number(value) and 0 <= value < 1, "a number in [0, 1)"
    elif key == "momentum":
        ok, want = _is_number(value) and 0 <= value <= 1, "a number in [0, 1]"
    elif key == "eps":
        ok, want = _is_number(value) and math.isfinite(value) and value > 0, "a finite number > 0"
    else:  # "name"
        ok = isinstance(value, str) and _NAME.fullmatch(value) is not None
        want = "a lower-case identifier (letters, digits, _; at most 64)"
    return None if ok else f"{key!r} must be {want}, got {value!r}"


@dataclass(frozen=True)
class PlannedLayer:
    """One layer of a checked definition: its name, its normalised spec (every key, defaults
    filled in), and the per-example shapes it takes and gives."""

    name: str
    spec: dict[str, Any]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]


def plan_definition(definition: Any, name: str = "custom") -> tuple[bool, list[PlannedLayer]]:
    """Check ``definition`` (a list of layer dicts) and infer every layer's shapes, allocating
    nothing; return ``(reshape, layers)``: whether the input rows are reshaped to an image
    first, and each layer planned. Raises :class:`DefinitionError` (one line: the model, the
    layer counted from 1 and its type, what does not fit) at the first problem."""
    where = f"model {name!r}"
    if not isinstance(definition, list | tuple):
        raise DefinitionError(f"{where}: a definition is a list of layers (dicts with a 'type'), "
                              f"got {type(definition).__name__}")  # fmt: skip
    if not definition:
        raise DefinitionError(f"{where}: the definition has no layers; end it with "
                              f'{{ type = "linear", units = {NUM_CLASSES} }}')  # fmt: skip
    if len(definition) > MAX_LAYERS:
        raise DefinitionError(f"{where}: {len(definition):,} layers, more than the "
                              f"{MAX_LAYERS:,} a definition may have")  # fmt: skip
    first = definition[0].get("type") if isinstance(definition[0], dict) else None
    reshape = first in IMAGE_LAYERS
    shape: tuple[int, ...] = IMAGE_SHAPE if reshape else (math.prod(IMAGE_SHAPE),)
    counts: dict[str, int] = {}
    names: set[str] = {"reshape"}
    planned: list[PlannedLayer] = []
    total = 0
    for k, spec in enumerate(definition, start=1):
        if not isinstance(spec, dict):
            raise DefinitionError(f"{where}, layer {k}: must be a table (a dict with a 'type'), "
                                  f"got {spec!r}")  # fmt: skip
        kind = spec.get("type")
        if not isinstance(kind, str):
            raise DefinitionError(f"{where}, layer {k}: 'type' must be a layer type (one of "
                                  f"{', '.join(LAYER_TYPES)}), got {kind!r}")  # fmt: skip
        at = f"{where}, layer {k} ({kind})"
        if kind not in LAYER_TYPES:
            close = difflib.get_close_matches(kind, LAYER_TYPES, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise DefinitionError(f"{at}: unknown layer type {kind!r}; {hint}known types: "
                                  f"{', '.join(LAYER_TYPES)}")  # fmt: skip
        required, optional = LAYER_TYPES[kind]
        allowed = (*required, *optional, "name")
        for key in spec:
            if key != "type" and key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                what = ", ".join(allowed[:-1]) or "no settings"
                raise DefinitionError(f"{at}: unknown key {key!r}; {hint}a {kind} takes "
                                      f"{what} (and a name)")  # fmt: skip
        for key in required:
            if key not in spec:
                raise DefinitionError(f"{at}: missing key {key!r} (a {kind} needs "
                                      f"{', '.join(required)})")  # fmt: skip
        full = {"type": kind, **{key: spec.get(key, optional.get(key)) for key in
                                 (*required, *optional)}}  # fmt: skip
        if "name" in spec:
            full["name"] = spec["name"]
        for key, value in full.items():
            if key != "type" and value is not None and (problem := _check_value(key, value)):
                raise DefinitionError(f"{at}: {problem}")
        if "stride" in full and full["stride"] is None:  # a pool: its size
            full["stride"] = full["size"]
        counts[kind] = counts.get(kind, 0) + 1
        layer_name = full.get("name", f"{kind}{counts[kind]}")
        if layer_name in names:
            raise DefinitionError(f"{at}: the layer name {layer_name!r} is taken; give it "
                                  "another 'name'")  # fmt: skip
        names.add(layer_name)
        out, params = _infer(at, kind, full, shape)
        total += params
        if total > MAX_PARAMETERS:
            raise DefinitionError(f"{at}: the model has {total:,} parameters up to here, more "
                                  f"than the {MAX_PARAMETERS:,} a definition may ask for")
        if math.prod(out) > MAX_VALUES_PER_EXAMPLE:
            raise DefinitionError(f"{at}: its output {out} holds {math.prod(out):,} values per "
                                  f"example, more than the {MAX_VALUES_PER_EXAMPLE:,} allowed")
        planned.append(PlannedLayer(layer_name, {key: _json(v) for key, v in full.items()},
                                    shape, out))  # fmt: skip
        shape = out
    last = planned[-1]
    if last.spec["type"] != "linear" or last.out_shape != (NUM_CLASSES,):
        got = (f"units = {last.spec['units']}" if last.spec["type"] == "linear"
               else f"a {last.spec['type']}")  # fmt: skip
        raise DefinitionError(f"{where}, layer {len(planned)} ({last.spec['type']}): the last "
                              f'layer must be {{ type = "linear", units = {NUM_CLASSES} }} (the '
                              f"{NUM_CLASSES} class logits; the loss applies the softmax), got "
                              f"{got}")  # fmt: skip
    return reshape, planned


def _describe(shape: tuple[int, ...]) -> str:
    return f"an image {shape}" if len(shape) == 3 else f"a vector {shape}"


def _infer(at: str, kind: str, spec: dict[str, Any],
           shape: tuple[int, ...]) -> tuple[tuple[int, ...], int]:  # fmt: skip
    """``(output shape, number of parameters)`` of one checked layer on input ``shape``."""
    if kind == "linear":
        if len(shape) != 1:
            raise DefinitionError(f"{at}: expects a vector, got {_describe(shape)}; add "
                                  '{ type = "flatten" } before it')  # fmt: skip
        return (spec["units"],), shape[0] * spec["units"] + spec["units"]
    if kind in IMAGE_LAYERS:
        if len(shape) != 3:
            image = "x".join(map(str, IMAGE_SHAPE))
            raise DefinitionError(f"{at}: expects an image (height, width, channels), got "
                                  f"{_describe(shape)}; the input rows are {image} images only "
                                  "to a first layer that needs one: put the image layers first, "
                                  "before any flatten or linear")  # fmt: skip
        window = _hw(spec["kernel" if kind == "conv2d" else "size"])
        stride = _hw(spec["stride"])
        h, w, c = shape
        if spec["padding"] == "valid" and (window[0] > h or window[1] > w):
            raise DefinitionError(f"{at}: its {window[0]}x{window[1]} window does not fit its "
                                  f'{h}x{w} input with padding "valid"')  # fmt: skip
        (ho, _, _), (wo, _, _) = geometry(h, w, window, stride, spec["padding"])
        if kind != "conv2d":
            return (ho, wo, c), 0
        f = spec["filters"]
        return (ho, wo, f), window[0] * window[1] * c * f + f
    if kind == "flatten":
        return (math.prod(shape),), 0
    if kind == "batchnorm":
        return shape, 2 * shape[-1]
    return shape, 0  # activations, dropout


def check_definition(definition: Any, name: str = "custom") -> list[tuple[int, ...]]:
    """The per-example output shape of every layer of ``definition`` (a list of layer dicts,
    see :data:`LAYER_TYPES`), inferred from the ``(784,)`` input rows; allocates nothing. A
    :class:`DefinitionError` naming the model ``name``, the layer (counted from 1) and its
    type when the definition cannot work -- what an application calls before loading data."""
    return [layer.out_shape for layer in plan_definition(definition, name)[1]]


def _make_layer(planned: PlannedLayer, position: int, seed: int, dtype: str) -> Layer:
    """The layer of a checked definition (weights still zeros: ``build`` draws them)."""
    spec, shape = planned.spec, planned.in_shape
    kind = spec["type"]
    if kind == "linear":
        return Linear(shape[0], spec["units"], dtype)
    if kind == "conv2d":
        return Conv2D(shape[-1], spec["filters"], _hw(spec["kernel"]), _hw(spec["stride"]),
                      spec["padding"], dtype)  # fmt: skip
    if kind in ("maxpool2d", "avgpool2d"):
        pool = MaxPool2D if kind == "maxpool2d" else AvgPool2D
        return pool(_hw(spec["size"]), _hw(spec["stride"]), spec["padding"])
    if kind == "flatten":
        return Flatten()
    if kind == "batchnorm":
        return BatchNorm(shape[-1], spec["momentum"], spec["eps"], dtype)
    if kind == "dropout":
        # its own stream, child ``position`` of the build seed: the weights' draws (one
        # Generator of ``seed`` itself) are the same with or without dropout layers
        return Dropout(spec["rate"], np.random.SeedSequence(seed, spawn_key=(position,)))
    return activation(kind)


def build(
    model: str | int | Sequence[dict] | None = None,
    seed: int = 0,
    dtype: str = "float32",
    conv_activation: str | None = None,
    bias_init: str | tuple[str, float] = "zeros",
    kernels: str = DEFAULT_KERNELS,
    weight_init: str = DEFAULT_WEIGHT_INIT,
    *,
    name: str | None = None,
    layers: Sequence[dict] | None = None,
) -> Sequential:
    """Build a model, initialised: a built-in one by name, or any definition.

    model: a built-in model's name ("model1".."model4", 1..4, "Model 3"; or pass ``name=``),
    or a definition -- a list of layer dicts (:data:`LAYER_TYPES`; also ``layers=``), then
    named ``name`` (default "custom") in messages and in ``config``. Built-in models are
    definitions too (:data:`BUILTIN_DEFINITIONS`), built the same way.

    seed: seeds the one ``numpy.random.Generator`` that draws every weight (order in the
    module docstring); a dropout layer draws its masks from its own Generator, seeded from
    ``seed`` apart from the weights. dtype: "float32" (default) or "float64". conv_activation:
    None or "none" (the protocol: no activation after the convolutions) or "relu"/"sigmoid"/
    "tanh" after each conv of model 4 (models 1-3 have no convolutions and ignore it; a
    definition says its activations itself and refuses it). bias_init: "zeros" (the
    protocol), "uniform_sqrt3" (+-sqrt(3 / n_out)) or ``("uniform", limit)``, for the biases
    of linear and conv layers. kernels: "fast" (default) or "plain" (``Sequential``), kept as
    ``model.kernels``; the results agree within float rounding. weight_init: one of
    :data:`WEIGHT_INITS` ("xavier_uniform", the protocol's, by default).

    The returned model's ``config`` holds the other arguments in JSON form, so that
    ``build(**model.config)`` rebuilds the same architecture and weights (with the default
    kernels: ``kernels`` changes how the model computes, not what, and stays out of config):
    for a built-in model ``name``, ``seed``, ``dtype``, ``conv_activation``, ``bias_init``;
    for a definition ``name``, ``layers`` (the definition, every default filled in),
    ``seed``, ``dtype``, ``bias_init``. ``weight_init`` is in ``config`` only when it is not
    the default (older configs stay as they were).

    A definition that cannot work raises :class:`DefinitionError` before anything is
    allocated (``check_definition`` says the same without building).
    """
    if isinstance(model, list | tuple):
        if layers is not None:
            raise DefinitionError("pass the definition once: as the first argument or layers=")
        definition: Sequence[dict] | None = model
    elif layers is not None:
        if model is not None:
            raise DefinitionError(f"pass a built-in model's name ({model!r}) or a definition "
                                  "(layers=), not both")  # fmt: skip
        definition = layers
    else:
        if model is not None and name is not None:
            raise ValueError(f"name {name!r} and model {model!r}: give the model once")
        name = normalize_name(model if model is not None else name)  # a built-in model
        definition = None
    if definition is not None:
        name = "custom" if name is None else name
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise DefinitionError(f"a model's name must be a non-empty string of at most 100 "
                                  f"characters, got {name!r}")  # fmt: skip
        if _builtin_key(name) is not None:
            raise DefinitionError(f"model {name!r}: that is a built-in model's name; give the "
                                  "definition another name")  # fmt: skip
    dtype = np.dtype(dtype).name
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if conv_activation == "none":  # protocol files spell "no activation" this way
        conv_activation = None
    if conv_activation is not None and conv_activation not in ACTIVATIONS:
        raise ValueError(
            f"conv_activation must be None or one of {sorted(ACTIVATIONS)}, got {conv_activation!r}"
        )
    if definition is not None and conv_activation is not None:
        raise DefinitionError(f"model {name!r}: conv_activation applies to the built-in model 4; "
                              f'a definition says its activations itself ({{ type = '
                              f'"{conv_activation}" }} after each conv2d)')  # fmt: skip
    bias_json = normalize_bias_init(bias_init)
    if weight_init not in WEIGHT_INITS:
        raise ValueError(f"weight_init must be one of {WEIGHT_INITS}, got {weight_init!r}")
    check_kernels(kernels)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if definition is None:
        reshape, planned = plan_definition(builtin_definition(name, conv_activation), name)
        config = {"name": name, "seed": int(seed), "dtype": dtype,
                  "conv_activation": conv_activation, "bias_init": bias_json}  # fmt: skip
    else:
        reshape, planned = plan_definition(definition, name)
        config = {"name": name, "layers": [layer.spec for layer in planned], "seed": int(seed),
                  "dtype": dtype, "bias_init": bias_json}  # fmt: skip
    if weight_init != DEFAULT_WEIGHT_INIT:
        config["weight_init"] = weight_init
    named: list[tuple[str, Layer]] = [("reshape", Reshape(IMAGE_SHAPE))] if reshape else []
    for position, layer in enumerate(planned, start=1):
        named.append((layer.name, _make_layer(layer, position, int(seed), dtype)))
    model_ = Sequential(named, dtype=dtype, config=config, kernels=kernels)
    rng = np.random.default_rng(int(seed))
    for _, layer in model_.layers:
        if isinstance(layer, Linear | Conv2D):  # batch norm's gamma/beta: ones/zeros, no draws
            init_parameters(layer, rng, bias_json, weight_init)
    return model_


def _builtin_key(name: Any) -> str | None:
    """The built-in model ``name`` stands for ("model3" for "Model 3"), or None."""
    try:
        return normalize_name(name)
    except ValueError:
        return None
