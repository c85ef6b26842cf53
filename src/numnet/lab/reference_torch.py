"""PyTorch twin of any numnet model, from the numnet model's own layers and weights.

This module exists only to *check* numnet: the same model written with plain ``torch.nn``
modules (and ``torch.nn.functional`` where PyTorch has no module that computes the same thing)
and trained with ``torch.optim``, so that ``numnet compare`` and the tests can run both from
identical weights on identical batches. PyTorch is an optional dependency (the
``numnet[reference]`` extra); it is imported lazily, inside the functions, and a missing install
raises :class:`ReferenceUnavailableError` with the command that fixes it.

:func:`build_twin` walks ``model.layers`` (a ``numnet.core.models.Sequential``: the built-in
models 1-4 and every definition alike) and converts each layer, one torch module per numnet
layer, in order; the shapes come from the numnet layers' own ``output_shape``:

================  ==========================================================================
numnet layer      PyTorch twin
================  ==========================================================================
``Reshape``       ``nn.Unflatten(1, (c, h, w))`` of the ``(N, 784)`` rows (one channel:
                  NCHW and NHWC are the same bytes); with several channels a reshape to NHWC
                  and a permutation to NCHW
``Conv2D``        ``nn.Conv2d`` with TensorFlow's SAME padding as its own ``padding``; an
                  asymmetric one (the extra row/column at the end): ``PaddedConv2d``
``MaxPool2D``     ``nn.MaxPool2d``; a SAME padding that is not all zero: ``SameMaxPool2d``
                  (pads with ``-inf``, so that padding never wins a max)
``AvgPool2D``     ``TFAvgPool2d``: TensorFlow's ``avg_pool``, window sums of the zero-padded
                  input over each window's count of in-image elements (VALID: ``kh * kw``)
``Flatten``       ``nn.Flatten`` (channel, height, width order; numnet's is (height, width,
                  channel)): the rows of the next ``Linear`` are permuted when weights are
                  copied, and any per-feature state between the two (a dropout mask, batch
                  norm's vectors) likewise
``Linear``        ``nn.Linear`` (``(in, out)`` -> ``(out, in)``)
``ReLU`` etc.     ``nn.ReLU``, ``nn.Sigmoid``, ``nn.Tanh``
``BatchNorm``     over numnet's last axis, the channels of NHWC: ``nn.BatchNorm2d`` on NCHW
                  maps, ``nn.BatchNorm1d`` on vectors, with numnet's ``momentum`` (PyTorch's
                  convention is numnet's) and ``eps``; gamma, beta, running statistics copied
``Dropout``       ``NumnetDropout``: ``x * mask`` with *numnet's* mask, drawn from a copy of
                  the numnet layer's Generator, so both drop the same units at every step
================  ==========================================================================

Parameter layouts (numnet keeps TensorFlow's): conv kernel HWIO ``(kh, kw, c_in, c_out)`` ->
OIHW ``(c_out, c_in, kh, kw)``; linear weight ``(in, out)`` (``y = x @ W``) -> ``(out, in)``;
bias, gamma, beta ``(out,)`` in both. ``channels_last=True`` stores the conv weights and
activations as NHWC in memory (``torch.channels_last``), often faster on CPU; the math is the
same.

Training (:class:`ReferenceTrainer`): the cross-entropy on the logits with the run's
reduction, the run's optimiser as ``torch.optim.SGD`` / ``Adam`` / ``AdamW`` / ``RMSprop``
with the same hyper-parameters (``spec.optimizer``; plain SGD without one), and before each
update the learning rate of numnet's own schedule object (``numnet.core.schedules``,
``lr_at(t, lr, total_updates)``, set in every param group), so both follow the same rates.
"""

from __future__ import annotations

import copy
import functools
import json
import math
from collections.abc import Iterator, Mapping
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np

from numnet.core import optim as numnet_optim
from numnet.core import schedules as numnet_schedules
from numnet.core.errors import NumnetError
from numnet.core.introspect import dead_fraction, logit_stats
from numnet.core.kernels.plain import geometry, windows
from numnet.core.layers import (
    ACTIVATIONS,
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Dropout,
    Flatten,
    Linear,
    MaxPool2D,
    Reshape,
)
from numnet.core.names import DTYPES, IMAGE_SHAPE

INSTALL_HINT = 'pip install "numnet[reference]"  (here: pip install torch==2.13.0)'


class ReferenceUnavailableError(NumnetError):
    """PyTorch (the optional reference) is not installed."""


def import_torch() -> ModuleType:
    """Return the ``torch`` module, or raise :class:`ReferenceUnavailableError` saying how to
    install it."""
    try:
        import torch
    except ImportError as exc:
        raise ReferenceUnavailableError(
            f"PyTorch is needed for the reference implementation but is not installed "
            f"({exc}); install the optional extra: {INSTALL_HINT}"
        ) from None
    return torch


# ----------------------------------------------------------------------------------------------
# the modules PyTorch lacks (defined once torch is imported)
# ----------------------------------------------------------------------------------------------


@functools.cache
def _modules() -> SimpleNamespace:
    """The twin's own ``nn.Module`` classes (they need torch, imported lazily)."""
    torch = import_torch()
    nn, F = torch.nn, torch.nn.functional

    class NHWCUnflatten(nn.Module):
        """``(N, h*w*c)`` rows, read as NHWC images (numnet's ``Reshape``), to NCHW."""

        def __init__(self, shape: tuple[int, int, int]) -> None:
            super().__init__()
            self.shape = shape

        def forward(self, x: Any) -> Any:
            return x.reshape(x.shape[0], *self.shape).permute(0, 3, 1, 2)

    class PaddedConv2d(nn.Conv2d):
        """``nn.Conv2d`` without padding after an explicit zero ``F.pad`` of ``pads``
        ``(left, right, top, bottom)``: TensorFlow's asymmetric SAME padding."""

        def __init__(self, c_in: int, c_out: int, kernel: tuple[int, int],
                     stride: tuple[int, int], pads: tuple[int, int, int, int]) -> None:
            super().__init__(c_in, c_out, kernel, stride, padding=0)
            self.pads = pads

        def forward(self, x: Any) -> Any:
            return super().forward(F.pad(x, self.pads))

    class SameMaxPool2d(nn.Module):
        """Max-pooling after padding with ``-inf`` by ``pads`` ``(left, right, top,
        bottom)``: TensorFlow's SAME (the padding never wins a max)."""

        def __init__(self, kernel: tuple[int, int], stride: tuple[int, int],
                     pads: tuple[int, int, int, int]) -> None:
            super().__init__()
            self.kernel, self.stride, self.pads = kernel, stride, pads

        def forward(self, x: Any) -> Any:
            return F.max_pool2d(F.pad(x, self.pads, value=-math.inf), self.kernel, self.stride)

    class TFAvgPool2d(nn.Module):
        """TensorFlow's average pooling: window sums of the zero-padded input divided by the
        number of each window's elements inside the image (``count``, ``(Ho, Wo)``)."""

        def __init__(self, kernel: tuple[int, int], stride: tuple[int, int],
                     pads: tuple[int, int, int, int], count: np.ndarray) -> None:
            super().__init__()
            self.kernel, self.stride, self.pads = kernel, stride, pads
            self.register_buffer("count", torch.from_numpy(count[None, None]))

        def forward(self, x: Any) -> Any:
            xpad = F.pad(x, self.pads) if any(self.pads) else x
            sums = F.avg_pool2d(xpad, self.kernel, self.stride, divisor_override=1)
            return sums / self.count

    class NumnetDropout(nn.Module):
        """Inverted dropout with numnet's masks: in training mode ``x * mask``, the mask drawn
        by numnet's kernel's own call, ``rng.random(numnet_shape) >= rate`` scaled by
        ``1 / (1 - rate)``, in numnet's layout, then permuted to PyTorch's; evaluation:
        identity. ``rng``: a copy of the numnet layer's Generator (same state, same stream);
        ``layout``: "same" (the input is in numnet's layout), "nchw" (numnet draws for NHWC)
        or ``(c, h, w)`` (a flattened map: numnet's features in (h, w, c) order, PyTorch's in
        (c, h, w) order). ``last_mask``: the last mask in numnet's layout (as
        ``numnet.core.layers.Dropout.last_mask``)."""

        def __init__(self, rate: float, rng: np.random.Generator,
                     layout: str | tuple[int, int, int]) -> None:
            super().__init__()
            self.rate, self.rng, self.layout = float(rate), rng, layout
            self.last_mask: np.ndarray | None = None

        def forward(self, x: Any) -> Any:
            if not self.training:
                return x
            n = x.shape[0]
            if self.layout == "nchw":
                shape: tuple[int, ...] = (n, x.shape[2], x.shape[3], x.shape[1])
            else:
                shape = tuple(x.shape)
            dtype = np.dtype(str(x.dtype).removeprefix("torch."))
            # numnet's kernel, draw for draw (numnet.core.kernels.plain.dropout_forward)
            keep = self.rng.random(shape) >= self.rate
            mask = keep.astype(dtype) * dtype.type(1 / (1 - self.rate))
            self.last_mask = mask
            if self.layout == "nchw":
                mask = mask.transpose(0, 3, 1, 2)
            elif self.layout != "same":
                mask = _features(mask.T, self.layout, to_torch=True).T
            return x * torch.from_numpy(np.ascontiguousarray(mask)).to(x.device)

    return SimpleNamespace(NHWCUnflatten=NHWCUnflatten, PaddedConv2d=PaddedConv2d,
                           SameMaxPool2d=SameMaxPool2d, TFAvgPool2d=TFAvgPool2d,
                           NumnetDropout=NumnetDropout)


def numnet_dropout_class() -> type:
    """The class of the twin's dropout modules (:class:`NumnetDropout` above)."""
    return _modules().NumnetDropout


# ----------------------------------------------------------------------------------------------
# the walk: one torch module per numnet layer
# ----------------------------------------------------------------------------------------------

#: a slot of the twin: ``(module, attr, kind, chw)`` -- kind "conv_weight", "linear_weight",
#: "bias" (a per-feature vector); ``chw`` the ``(C, H, W)`` of the map flattened before it
#: when its rows/features are in flattened order, else None
Slot = tuple[Any, str, str, "tuple[int, int, int] | None"]


def _pads(h: int, w: int, kernel: tuple[int, int], stride: tuple[int, int],
          padding: str) -> tuple[int, int, int, int]:
    """``(left, right, top, bottom)`` (``F.pad``'s order) of TensorFlow's padding."""
    (_, top, bottom), (_, left, right) = geometry(h, w, kernel, stride, padding)
    return left, right, top, bottom


def _twin_module(layer: Any, in_shape: tuple[int, ...], chw: tuple[int, int, int] | None,
                 slots: list[Slot], buffers: list[Slot]) -> Any:
    """The torch module of one numnet layer whose per-example input is ``in_shape``
    (numnet's layout); appends its parameter and buffer slots."""
    nn, mods = import_torch().nn, _modules()
    if isinstance(layer, Reshape):
        h, w, c = layer.shape
        return nn.Unflatten(1, (c, h, w)) if c == 1 else mods.NHWCUnflatten((h, w, c))
    if isinstance(layer, Conv2D):
        h, w, _ = in_shape
        left, right, top, bottom = _pads(h, w, layer.kernel_size, layer.stride, layer.padding)
        if left == right and top == bottom:
            module = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                               layer.stride, padding=(top, left))
        else:
            module = mods.PaddedConv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                                       layer.stride, (left, right, top, bottom))
        slots += [(module, "weight", "conv_weight", None), (module, "bias", "bias", None)]
        return module
    if isinstance(layer, MaxPool2D | AvgPool2D):
        h, w, _ = in_shape
        pads = _pads(h, w, layer.pool_size, layer.stride, layer.padding)
        if isinstance(layer, MaxPool2D):
            if not any(pads):
                return nn.MaxPool2d(layer.pool_size, layer.stride)
            return mods.SameMaxPool2d(layer.pool_size, layer.stride, pads)
        left, right, top, bottom = pads
        (ho, _, _), (wo, _, _) = geometry(h, w, layer.pool_size, layer.stride, layer.padding)
        inside = np.pad(np.ones((1, h, w, 1)), ((0, 0), (top, bottom), (left, right), (0, 0)))
        count = windows(inside, layer.pool_size, layer.stride, (ho, wo)).sum(axis=3)[0, :, :, 0]
        return mods.TFAvgPool2d(layer.pool_size, layer.stride, pads, count)
    if isinstance(layer, Flatten):
        return nn.Flatten()
    if isinstance(layer, Linear):
        module = nn.Linear(layer.in_features, layer.out_features)
        slots += [(module, "weight", "linear_weight", chw), (module, "bias", "bias", None)]
        return module
    if isinstance(layer, BatchNorm):
        cls = nn.BatchNorm2d if len(in_shape) == 3 else nn.BatchNorm1d
        module = cls(layer.num_features, eps=layer.eps, momentum=layer.momentum)
        slots += [(module, "weight", "bias", chw), (module, "bias", "bias", chw)]
        buffers += [(module, "running_mean", "bias", chw), (module, "running_var", "bias", chw)]
        return module
    if isinstance(layer, Dropout):
        layout: str | tuple[int, int, int] = ("nchw" if len(in_shape) == 3
                                              else chw if chw is not None else "same")
        return mods.NumnetDropout(layer.rate, copy.deepcopy(layer.rng), layout)
    for name, cls in ACTIVATIONS.items():
        if type(layer) is cls:
            return {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}[name]()
    raise ValueError(f"no PyTorch twin for the numnet layer {layer!r}")


def build_twin(numnet_model: Any, *, dtype: str | None = None,
               channels_last: bool = False) -> Any:
    """The PyTorch twin of any numnet model (``models.Sequential``): a ``torch.nn.Sequential``
    of one module per numnet layer (the module docstring lists them), holding the numnet
    model's weights, batch-norm statistics and dropout streams, in ``dtype`` ("float32" or
    "float64"; default: the numnet model's). Input ``(N, 784)`` rows, output logits
    ``(N, 10)``.

    The twin carries ``numnet_names`` (numnet's layer name of each module; the input reshape
    is "unflatten") and the slots that pair its parameters and buffers with numnet's
    (:func:`copy_numnet_weights`, :func:`numnet_layout_arrays`)."""
    torch = import_torch()
    dtype = np.dtype(numnet_model.dtype if dtype is None else dtype).name
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    shape: tuple[int, ...] = (math.prod(IMAGE_SHAPE),)
    chw: tuple[int, int, int] | None = None  # pending: the map flattened before the next Linear
    modules, names, slots, buffers = [], [], [], []  # type: ignore[var-annotated]
    for name, layer in numnet_model.layers:
        modules.append(_twin_module(layer, shape, chw, slots, buffers))
        names.append("unflatten" if isinstance(layer, Reshape) else name)
        if isinstance(layer, Flatten) and len(shape) == 3:
            h, w, c = shape
            chw = (c, h, w)
        elif isinstance(layer, Linear):
            chw = None
        shape = layer.output_shape(shape)
    twin = torch.nn.Sequential(*modules).to(getattr(torch, dtype))
    if channels_last:
        twin = twin.to(memory_format=torch.channels_last)
    twin.numnet_names = names
    twin.numnet_slots = slots
    twin.numnet_buffer_slots = buffers
    copy_numnet_weights(numnet_model, twin)
    return twin


def _twin(torch_model: Any, attr: str) -> Any:
    """What :func:`build_twin` recorded on a twin as ``attr`` (``numnet_slots``: every
    parameter in numnet's order, as ``(module, attr, kind, chw)``; ``numnet_names``)."""
    value = getattr(torch_model, attr, None)
    if value is None:
        raise ValueError("not a twin of a numnet model: build it with build_twin")
    return value


def _features(array: np.ndarray, chw: tuple[int, int, int] | None,
              to_torch: bool) -> np.ndarray:
    """``array`` with its first axis (features of a flattened ``chw`` map) permuted from
    numnet's (h, w, c) order to PyTorch's (c, h, w) order, or back; unchanged when ``chw`` is
    None."""
    if chw is None:
        return array
    c, h, w = chw
    if to_torch:
        return array.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(array.shape)
    return array.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(array.shape)


def to_torch_layout(array: np.ndarray, kind: str, chw: tuple[int, int, int] | None) -> np.ndarray:
    """Convert one numnet parameter array to PyTorch's layout (see the module docstring):
    ``kind`` "conv_weight", "linear_weight" or "bias" (any per-feature vector); ``chw``: the
    flattened map its rows (a linear weight) or features (a vector) come from, else None."""
    if kind == "conv_weight":  # HWIO -> OIHW
        return np.ascontiguousarray(array.transpose(3, 2, 0, 1))
    array = _features(array, chw, to_torch=True)
    return np.ascontiguousarray(array.T if kind == "linear_weight" else array)


def to_numnet_layout(array: np.ndarray, kind: str, chw: tuple[int, int, int] | None) -> np.ndarray:
    """Inverse of :func:`to_torch_layout`: a PyTorch parameter (or gradient) in numnet's layout."""
    if kind == "conv_weight":  # OIHW -> HWIO
        return np.ascontiguousarray(array.transpose(2, 3, 1, 0))
    array = array.T if kind == "linear_weight" else array
    return np.ascontiguousarray(_features(array, chw, to_torch=False))


def copy_numnet_weights(numnet_model: Any, torch_model: Any) -> None:
    """Copy every parameter of ``numnet_model`` and its buffers (batch norm's running
    statistics) into its twin ``torch_model``, converting layouts. They are paired in order; a
    count or shape mismatch raises ValueError. (The dropout streams are copied when the twin
    is built, not here.)"""
    torch = import_torch()
    pairs = [(_twin(torch_model, "numnet_slots"), [(n, np.asarray(p.value)) for n, p in
                                          numnet_model.named_parameters()], "parameters"),
             (torch_model.numnet_buffer_slots,
              [(n, np.asarray(a)) for n, a in numnet_model.named_buffers()], "buffers")]
    with torch.no_grad():
        for slots, arrays, what in pairs:
            if len(slots) != len(arrays):
                raise ValueError(f"numnet model has {len(arrays)} {what}, the PyTorch model "
                                 f"{len(slots)}: not the same architecture")
            for (module, attr, kind, chw), (pname, array) in zip(slots, arrays, strict=True):
                target = getattr(module, attr)
                value = to_torch_layout(array, kind, chw)
                if tuple(value.shape) != tuple(target.shape):
                    raise ValueError(
                        f"{pname}: numnet shape {array.shape} does not map onto PyTorch shape "
                        f"{tuple(target.shape)}"
                    )
                # copy_ keeps the target's dtype and memory format (channels_last stays so).
                target.copy_(torch.from_numpy(value))


def numnet_layout_arrays(torch_model: Any, what: str = "value") -> list[np.ndarray]:
    """The twin's parameters (``what="value"``) or gradients (``what="grad"``) as NumPy
    arrays in numnet's layout and order (the order of numnet's ``named_parameters``)."""
    out = []
    for module, attr, kind, chw in _twin(torch_model, "numnet_slots"):
        t = getattr(module, attr)
        if what == "grad":
            t = t.grad
            if t is None:
                raise ValueError("no gradient yet: run a backward pass first")
        out.append(to_numnet_layout(t.detach().cpu().numpy(), kind, chw))
    return out


def numnet_layout_buffers(torch_model: Any) -> list[np.ndarray]:
    """The twin's buffers (batch norm's running statistics) in numnet's layout and order
    (numnet's ``named_buffers``)."""
    return [to_numnet_layout(getattr(m, attr).detach().cpu().numpy(), kind, chw)
            for m, attr, kind, chw in torch_model.numnet_buffer_slots]


def numnet_layer_names(torch_model: Any) -> list[str]:
    """The numnet layer name of each module of a twin (``numnet.core.models``: "conv1",
    "fc1", "relu1" for the built-in models, "conv2d1", "batchnorm1", ... for a definition);
    the input reshape is "unflatten"."""
    return list(_twin(torch_model, "numnet_names"))


# ----------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------


def loss_function(reduction: str) -> Any:
    """``nn.CrossEntropyLoss`` (log-softmax + NLL on logits) with the protocol's reduction ("sum" or
    "mean" over the batch)."""
    torch = import_torch()
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    return torch.nn.CrossEntropyLoss(reduction=reduction)


def _spec(value: Mapping[str, Any] | str | None) -> dict[str, Any] | None:
    """A spec given as a mapping or as canonical JSON (a ``RunSpec`` field)."""
    if value is None:
        return None
    return json.loads(value) if isinstance(value, str) else dict(value)


def torch_optimizer(params: Any, spec: Mapping[str, Any] | str | None, lr: float) -> Any:
    """The ``torch.optim`` optimiser numnet's ``optim.build(params, spec, lr=lr)`` mirrors:
    ``spec`` (a mapping or its JSON; None: plain SGD) checked by numnet
    (``optim.check_spec``, every default filled in), then passed to ``torch.optim.SGD`` /
    ``Adam`` / ``AdamW`` / ``RMSprop`` under the same names (``betas`` as a tuple; RMSprop not
    centred, as numnet's)."""
    torch = import_torch()
    spec = _spec(spec)
    if spec is None:
        return torch.optim.SGD(params, lr=lr)
    hyper = numnet_optim.check_spec(spec)
    kind = hyper.pop("type")
    if "lr" in hyper and hyper["lr"] != lr:
        raise ValueError(f"optimizer: lr is given twice, {hyper['lr']!r} in the spec and "
                         f"{lr!r} by the caller")
    hyper["lr"] = lr
    if "betas" in hyper:
        hyper["betas"] = tuple(hyper["betas"])
    classes = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
               "rmsprop": torch.optim.RMSprop}
    return classes[kind](params, **hyper)


class ReferenceTrainer:
    """PyTorch training of a twin: ``torch.optim`` on the cross-entropy.

    It is a *stepper* of :func:`numnet.lab.training.train_run` (see
    :class:`numnet.lab.training.NumnetStepper`), so PyTorch runs through numnet's own loop:
    ``loss(x, y)`` forward (training mode) and loss of a NumPy batch (``x`` ``(N, 784)``,
    ``y`` one-hot ``(N, 10)`` or ``(N,)`` class indices; inputs are cast to the model's dtype),
    ``update()`` backward and one optimiser step for it, ``parameters_finite()``,
    ``evaluate(x, y, batch_size)`` -> ``(accuracy, mean cross-entropy)``, ``internals`` and
    ``probabilities``, evaluations in evaluation mode without gradients. ``step(x, y)`` does
    both halves and returns the loss before the update.

    ``optimizer``: numnet's optimiser spec (a mapping or its JSON, ``RunSpec.optimizer``; None:
    plain SGD), built by :func:`torch_optimizer` at ``lr``. ``schedule``: numnet's schedule
    spec (None: ``lr`` throughout); before update ``t`` (0-based) every param group's rate is
    set to ``schedule.lr_at(t, lr, total_updates)``, numnet's own function.
    :meth:`for_run` builds one from a ``RunSpec``.
    """

    def __init__(
        self, model: Any, *, lr: float, reduction: str = "sum",
        optimizer: Mapping[str, Any] | str | None = None,
        schedule: Mapping[str, Any] | str | None = None, total_updates: int | None = None,
    ) -> None:  # fmt: skip
        self.torch = import_torch()
        self.model = model
        self.dtype = next(model.parameters()).dtype
        self.loss_fn = loss_function(reduction)
        self.lr = lr
        self.optimizer = torch_optimizer(model.parameters(), optimizer, lr)
        spec = _spec(schedule)
        self.schedule = None if spec is None else numnet_schedules.build(spec)
        self.total_updates = total_updates
        self.updates = 0  # made so far
        #: as numnet's stepper: measure the next update's size per layer (for the internals);
        #: plain SGD at a constant rate needs no measurement (lr * ||dL/dW||)
        self.measure_next_update = False
        self.last_update_norms: dict[str, float] | None = None
        self._plain_sgd = optimizer is None and schedule is None
        self._loss: Any = None

    @classmethod
    def for_run(cls, model: Any, spec: Any, total_updates: int) -> ReferenceTrainer:
        """The stepper of the run ``spec`` (a ``RunSpec``) on the twin ``model``: its lr,
        reduction, optimiser and schedule over ``total_updates`` updates (as
        ``NumnetStepper.for_run``)."""
        return cls(model, lr=spec.lr, reduction=spec.reduction, optimizer=spec.optimizer_spec(),
                   schedule=spec.schedule_spec(), total_updates=total_updates)

    def _inputs(self, x: np.ndarray) -> Any:
        return self.torch.from_numpy(np.ascontiguousarray(x)).to(self.dtype)

    def _targets(self, y: np.ndarray) -> Any:
        y = np.asarray(y)
        idx = y.argmax(axis=1) if y.ndim == 2 else y
        return self.torch.from_numpy(np.ascontiguousarray(idx, dtype=np.int64))

    def forward(self, x: np.ndarray) -> Any:
        """Logits ``(N, 10)`` as a torch tensor (with autograd if grad is enabled), in the
        model's current mode (training or evaluation)."""
        # With one input channel, Unflatten's (N, 1, 28, 28) is already channels_last-contiguous;
        # the convs' channels_last weights keep every activation NHWC from the first conv on.
        return self.model(self._inputs(x))

    def _eval_logits(self, x: np.ndarray, batch_size: int) -> Iterator[tuple[int, Any]]:
        """``(start, logits)`` of ``x`` in chunks of ``batch_size``, in evaluation mode
        without gradients."""
        self.model.eval()
        with self.torch.no_grad():
            for start in range(0, len(x), batch_size):
                yield start, self.forward(x[start : start + batch_size])

    def loss(self, x: np.ndarray, y: np.ndarray) -> float:
        """Forward (training mode) and loss of a training batch (kept for :meth:`update`)."""
        self.model.train()
        self._loss = self.loss_fn(self.forward(x), self._targets(y))
        return float(self._loss.detach())

    def _weights(self) -> dict[str, Any]:
        """``{numnet layer name: weight tensor}`` of every layer with a weight (as
        ``numnet.core.introspect.weight_layers``: conv, linear, batch norm)."""
        return {name: m.weight for name, m in zip(numnet_layer_names(self.model), self.model,
                                                   strict=True)
                if isinstance(getattr(m, "weight", None), self.torch.nn.Parameter)}

    def _backward(self) -> None:
        self.optimizer.zero_grad(set_to_none=False)
        self._loss.backward()
        self._loss = None

    def update(self) -> None:
        """Backward of the last :meth:`loss` and one optimiser step at the schedule's rate."""
        if self.schedule is not None:
            rate = self.schedule.lr_at(self.updates, self.lr, self.total_updates)
            for group in self.optimizer.param_groups:
                group["lr"] = rate
        self._backward()
        measure, self.measure_next_update = self.measure_next_update, False
        before = None
        if measure and not self._plain_sgd:
            before = {n: w.detach().clone() for n, w in self._weights().items()}
        self.optimizer.step()
        self.updates += 1
        if before is not None:
            self.last_update_norms = {
                n: float((w.detach() - before[n]).double().norm())
                for n, w in self._weights().items()}

    def loss_and_grad(self, x: np.ndarray, y: np.ndarray) -> float:
        """Loss of the batch; fills every parameter's ``.grad`` (no update)."""
        loss = self.loss(x, y)
        self._backward()
        return loss

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        """One update on the batch; returns the batch loss before the update."""
        loss = self.loss(x, y)
        self.update()
        return loss

    def evaluate(self, x: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> tuple[float, float]:
        """``(accuracy, mean cross-entropy)`` over ``x``, in chunks. Accuracy: the argmax
        logit equals the label (argmax of the one-hot row)."""
        correct, loss_sum = 0, 0.0
        cross_entropy = self.torch.nn.functional.cross_entropy
        for start, logits in self._eval_logits(x, batch_size):
            target = self._targets(y[start : start + batch_size])
            correct += int((logits.argmax(dim=1) == target).sum())
            loss_sum += float(cross_entropy(logits, target, reduction="sum"))
        n = len(x)
        return (correct / n, loss_sum / n) if n else (float("nan"), float("nan"))

    def parameters_finite(self) -> bool:
        """True when every parameter is finite (the runner's divergence rule)."""
        return all(bool(self.torch.isfinite(p).all()) for p in self.model.parameters())

    def internals(self, x_probe: np.ndarray) -> dict[str, Any]:
        """The training internals on the probe ``x_probe`` ``(P, 784)``, as numnet's stepper
        gives them (``numnet.lab.training.internals``), under numnet's layer names
        (:func:`numnet_layer_names`), in evaluation mode: weight and last-step gradient norms
        of each layer with a weight (conv, linear, batch norm), the dead fraction of each
        ReLU (a unit: a feature, or a channel over all positions), the logit statistics, and
        the measured update norms when asked (``measure_next_update``). Norms and fractions do
        not depend on the layout."""
        weights = self._weights()
        dead: dict[str, float] = {}
        self.model.eval()
        with self.torch.no_grad():
            h = self._inputs(x_probe)
            for name, module in zip(numnet_layer_names(self.model), self.model, strict=True):
                h = module(h)
                if isinstance(module, self.torch.nn.ReLU):  # units on the last axis
                    dead[name] = dead_fraction((h if h.dim() == 2 else h.movedim(1, -1))
                                               .cpu().numpy())
            logits = h.double().cpu().numpy()
        snap = {"weight_norm": {n: float(w.detach().double().norm()) for n, w in weights.items()},
                "grad_norm": {n: 0.0 if w.grad is None else float(w.grad.double().norm())
                              for n, w in weights.items()},
                "dead_fraction": dead, **logit_stats(logits)}
        if self.last_update_norms is not None:
            snap["update_norm"] = self.last_update_norms
        return snap

    def probabilities(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Softmax probabilities ``(N, 10)`` (NumPy, float64), in chunks."""
        out = [self.torch.softmax(z.double(), dim=1).cpu().numpy()
               for _, z in self._eval_logits(x, batch_size)]
        return np.concatenate(out) if out else np.zeros((0, 10))
