"""PyTorch reference implementation of the protocol's four models, from a numnet model's weights.

This module exists only to *check* numnet: the same architecture written with plain
``torch.nn`` modules and trained with ``torch.optim.SGD``, so that ``numnet compare`` and the
tests can run both from identical weights on identical batches. PyTorch is an optional
dependency (the ``numnet[reference]`` extra); it is imported lazily, inside the functions, and
a missing install raises :class:`ReferenceUnavailableError` with the command that fixes it.

Layouts. numnet keeps TensorFlow's layouts; PyTorch has its own, so weights are converted:

==================  =============================  ================================
parameter           numnet                         PyTorch
==================  =============================  ================================
conv kernel         HWIO ``(kh, kw, c_in, c_out)``  OIHW ``(c_out, c_in, kh, kw)``
linear weight       ``(in, out)``, ``y = x @ W``   ``(out, in)``, ``y = x @ W.T``
bias                ``(out,)``                     ``(out,)``
==================  =============================  ================================

numnet flattens a feature map in (height, width, channel) order (TensorFlow's), PyTorch's
``nn.Flatten`` in (channel, height, width) order. Rather than add a permutation layer, the
rows of the first Linear after a Flatten are permuted when copying, so model 4's
``linear(392 -> 32)`` sees the same feature in the same row in both.

The input is ``(N, 784)`` as in the protocol; ``nn.Unflatten`` turns it into ``(N, 1, 28, 28)``
(with one channel NCHW and NHWC are the same bytes). ``channels_last=True`` stores the conv
weights and activations as NHWC in memory (PyTorch's ``torch.channels_last``), often faster
on CPU; the math is the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from numnet.core.errors import NumnetError
from numnet.core.introspect import logit_stats
from numnet.core.names import IMAGE_SHAPE, MODEL_NAMES

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


def torch_dtype(dtype: str | np.dtype) -> Any:
    """The torch dtype for a NumPy dtype name ("float32" or "float64")."""
    torch = import_torch()
    name = np.dtype(dtype).name
    if name == "float32":
        return torch.float32
    if name == "float64":
        return torch.float64
    raise ValueError(f"dtype must be float32 or float64, got {name}")


def build_reference(
    name: str,
    *,
    conv_activation: str | None = None,
    dtype: str = "float32",
    channels_last: bool = False,
) -> Any:
    """Build the protocol's model ``name`` ("model1".."model4") as a ``torch.nn.Sequential``.

    Input ``(N, 784)``, output logits ``(N, 10)`` (the softmax lives in the loss, as in numnet).
    ``conv_activation`` (None or "relu", "sigmoid", "tanh") follows each convolution of model 4.
    Weights are PyTorch's defaults; use :func:`copy_numnet_weights` (or
    :func:`reference_from_numnet`) to give it a numnet model's weights.
    """
    torch = import_torch()
    nn = torch.nn
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; expected one of {MODEL_NAMES}")
    acts: dict[str | None, Callable[[], Any] | None] = {
        None: None,
        "none": None,
        "relu": nn.ReLU,
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
    }
    if conv_activation not in acts:
        raise ValueError(f"unknown conv_activation {conv_activation!r}; expected {list(acts)}")
    conv_act = acts[conv_activation]

    layers: list[Any]
    if name == "model1":
        layers = [nn.Linear(784, 10)]
    elif name == "model2":
        layers = [nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10)]
    elif name == "model3":
        layers = [nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10)]
    else:
        h, w, c = IMAGE_SHAPE
        layers = [nn.Unflatten(1, (c, h, w)), nn.Conv2d(c, 8, 3, padding="same")]
        if conv_act is not None:
            layers.append(conv_act())
        # ceil_mode=True = TensorFlow's SAME for a 2x2/2 pool (a partial last window on odd
        # sizes; PyTorch pads it with -inf implicitly). 28 -> 14 -> 7 needs none.
        layers += [nn.MaxPool2d(2, 2, ceil_mode=True), nn.Conv2d(8, 8, 3, padding="same")]
        if conv_act is not None:
            layers.append(conv_act())
        layers += [
            nn.MaxPool2d(2, 2, ceil_mode=True),
            nn.Flatten(),
            nn.Linear(7 * 7 * 8, 32),
            nn.ReLU(),
            nn.Linear(32, 10),
        ]
    model = nn.Sequential(*layers).to(torch_dtype(dtype))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def _param_slots(torch_model: Any) -> list[tuple[Any, str, str, tuple[int, int, int] | None]]:
    """Every parameter of ``torch_model`` in order, as ``(module, attr, kind, chw)``.

    ``kind`` is "conv_weight", "linear_weight" or "bias"; ``chw`` is the ``(C, H, W)`` shape
    of the feature map flattened right before a Linear (None if that Linear's input was not a
    flattened feature map). Shapes are found by running one zero example through the model.
    """
    torch = import_torch()
    nn = torch.nn
    slots: list[tuple[Any, str, str, tuple[int, int, int] | None]] = []
    first = next(torch_model.parameters())
    x = torch.zeros((1, int(np.prod(IMAGE_SHAPE))), dtype=first.dtype)
    pending_chw: tuple[int, int, int] | None = None
    with torch.no_grad():
        for module in torch_model:
            if isinstance(module, nn.Flatten) and x.dim() == 4:
                pending_chw = tuple(int(s) for s in x.shape[1:])  # type: ignore[assignment]
            if isinstance(module, nn.Conv2d):
                slots.append((module, "weight", "conv_weight", None))
                slots.append((module, "bias", "bias", None))
            elif isinstance(module, nn.Linear):
                slots.append((module, "weight", "linear_weight", pending_chw))
                slots.append((module, "bias", "bias", None))
                pending_chw = None
            x = module(x)
    return slots


def to_torch_layout(array: np.ndarray, kind: str, chw: tuple[int, int, int] | None) -> np.ndarray:
    """Convert one numnet parameter array to PyTorch's layout (see the module docstring)."""
    if kind == "conv_weight":  # HWIO -> OIHW
        return np.ascontiguousarray(array.transpose(3, 2, 0, 1))
    if kind == "linear_weight":  # (in, out) -> (out, in)
        if chw is not None:  # rows in (h, w, c) order -> (c, h, w) order
            c, h, w = chw
            array = array.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(c * h * w, -1)
        return np.ascontiguousarray(array.T)
    return np.ascontiguousarray(array)


def to_numnet_layout(array: np.ndarray, kind: str, chw: tuple[int, int, int] | None) -> np.ndarray:
    """Inverse of :func:`to_torch_layout`: a PyTorch parameter (or gradient) in numnet's layout."""
    if kind == "conv_weight":  # OIHW -> HWIO
        return np.ascontiguousarray(array.transpose(2, 3, 1, 0))
    if kind == "linear_weight":  # (out, in) -> (in, out)
        array = array.T
        if chw is not None:  # rows in (c, h, w) order -> (h, w, c) order
            c, h, w = chw
            array = array.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(c * h * w, -1)
        return np.ascontiguousarray(array)
    return np.ascontiguousarray(array)


def _numnet_params(numnet_model: Any) -> list[tuple[str, Any]]:
    return list(numnet_model.named_parameters())


def copy_numnet_weights(numnet_model: Any, torch_model: Any) -> None:
    """Copy every parameter of ``numnet_model`` into ``torch_model`` (same architecture),
    converting layouts. Parameters are paired in order; a shape mismatch raises ValueError."""
    torch = import_torch()
    slots = _param_slots(torch_model)
    params = _numnet_params(numnet_model)
    if len(slots) != len(params):
        raise ValueError(
            f"numnet model has {len(params)} parameters, the PyTorch model {len(slots)}: "
            "not the same architecture"
        )
    with torch.no_grad():
        for (module, attr, kind, chw), (pname, p) in zip(slots, params, strict=True):
            target = getattr(module, attr)
            value = to_torch_layout(np.asarray(p.value), kind, chw)
            if tuple(value.shape) != tuple(target.shape):
                raise ValueError(
                    f"parameter {pname}: numnet shape {np.shape(p.value)} does not map onto "
                    f"PyTorch shape {tuple(target.shape)}"
                )
            # copy_ keeps the target's dtype and memory format (channels_last stays so).
            target.copy_(torch.from_numpy(value))


def reference_from_numnet(
    numnet_model: Any,
    name: str | None = None,
    *,
    conv_activation: str | None = None,
    dtype: str | None = None,
    channels_last: bool = False,
) -> Any:
    """The PyTorch twin of ``numnet_model``: same architecture, same weights, same dtype.

    ``name`` and ``conv_activation`` default to the numnet model's ``config`` (keys "name" and
    "conv_activation") when it has one; ``dtype`` defaults to the dtype of its parameters.
    """
    config = dict(getattr(numnet_model, "config", None) or {})
    name = name or config.get("name") or config.get("model")
    if name is None:
        raise ValueError("model name unknown: pass name='model1'..'model4'")
    if conv_activation is None:
        conv_activation = config.get("conv_activation")
    if dtype is None:
        dtype = np.asarray(_numnet_params(numnet_model)[0][1].value).dtype.name
    model = build_reference(
        name, conv_activation=conv_activation, dtype=dtype, channels_last=channels_last
    )
    copy_numnet_weights(numnet_model, model)
    return model


def numnet_layout_arrays(torch_model: Any, what: str = "value") -> list[np.ndarray]:
    """The PyTorch model's parameters (``what="value"``) or gradients (``what="grad"``) as NumPy
    arrays in numnet's layout and order (the order of numnet's ``named_parameters``)."""
    out = []
    for module, attr, kind, chw in _param_slots(torch_model):
        t = getattr(module, attr)
        if what == "grad":
            t = t.grad
            if t is None:
                raise ValueError("no gradient yet: run a backward pass first")
        out.append(to_numnet_layout(t.detach().cpu().numpy(), kind, chw))
    return out


def loss_function(reduction: str) -> Any:
    """``nn.CrossEntropyLoss`` (log-softmax + NLL on logits) with the protocol's reduction ("sum" or
    "mean" over the batch)."""
    torch = import_torch()
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    return torch.nn.CrossEntropyLoss(reduction=reduction)


class ReferenceTrainer:
    """Plain PyTorch training of one reference model: ``torch.optim.SGD`` on the cross-entropy.

    It is a *stepper* of :func:`numnet.lab.training.train_run` (see
    :class:`numnet.lab.training.NumnetStepper`), so PyTorch runs through numnet's own loop:
    ``loss(x, y)`` forward and loss of a NumPy batch (``x`` ``(N, 784)``, ``y`` one-hot
    ``(N, 10)`` or ``(N,)`` class indices; inputs are cast to the model's dtype), ``update()``
    backward and one SGD step for it, ``parameters_finite()``, ``evaluate(x, y, batch_size)``
    -> ``(accuracy, mean cross-entropy)`` without gradients. ``step(x, y)`` does both halves
    and returns the loss before the update.
    """

    def __init__(
        self, model: Any, *, lr: float, reduction: str = "sum", channels_last: bool = False
    ) -> None:
        torch = import_torch()
        self.torch = torch
        self.model = model
        self.dtype = next(model.parameters()).dtype
        self.channels_last = channels_last
        self.loss_fn = loss_function(reduction)
        self.optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        self._loss: Any = None

    def _inputs(self, x: np.ndarray) -> Any:
        return self.torch.from_numpy(np.ascontiguousarray(x)).to(self.dtype)

    def _targets(self, y: np.ndarray) -> Any:
        y = np.asarray(y)
        idx = y.argmax(axis=1) if y.ndim == 2 else y
        return self.torch.from_numpy(np.ascontiguousarray(idx, dtype=np.int64))

    def forward(self, x: np.ndarray) -> Any:
        """Logits ``(N, 10)`` as a torch tensor (with autograd if grad is enabled)."""
        # With one input channel, Unflatten's (N, 1, 28, 28) is already channels_last-contiguous;
        # the convs' channels_last weights keep every activation NHWC from the first conv on.
        return self.model(self._inputs(x))

    def loss(self, x: np.ndarray, y: np.ndarray) -> float:
        """Forward and loss of a training batch (kept for :meth:`update`)."""
        self._loss = self.loss_fn(self.forward(x), self._targets(y))
        return float(self._loss.detach())

    def update(self) -> None:
        """Backward of the last :meth:`loss` and one ``torch.optim.SGD`` step."""
        self.optimizer.zero_grad(set_to_none=False)
        self._loss.backward()
        self._loss = None
        self.optimizer.step()

    def loss_and_grad(self, x: np.ndarray, y: np.ndarray) -> float:
        """Loss of the batch; fills every parameter's ``.grad`` (no update)."""
        loss = self.loss(x, y)
        self.optimizer.zero_grad(set_to_none=False)
        self._loss.backward()
        self._loss = None
        return loss

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        """One SGD update on the batch; returns the batch loss before the update."""
        loss = self.loss(x, y)
        self.update()
        return loss

    def evaluate(self, x: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> tuple[float, float]:
        """``(accuracy, mean cross-entropy)`` over ``x``, in chunks, without gradients.
        Accuracy: the argmax logit equals the label (argmax of the one-hot row)."""
        y = np.asarray(y)
        labels = y.argmax(axis=1) if y.ndim == 2 else y
        correct, loss_sum = 0, 0.0
        with self.torch.no_grad():
            for start in range(0, len(x), batch_size):
                logits = self.forward(x[start : start + batch_size])
                target = self.torch.from_numpy(
                    np.ascontiguousarray(labels[start : start + batch_size], dtype=np.int64)
                )
                correct += int((logits.argmax(dim=1) == target).sum())
                loss_sum += float(
                    self.torch.nn.functional.cross_entropy(logits, target, reduction="sum")
                )
        n = len(x)
        return (correct / n, loss_sum / n) if n else (float("nan"), float("nan"))

    def parameters_finite(self) -> bool:
        """True when every parameter is finite (the runner's divergence rule)."""
        return all(bool(self.torch.isfinite(p).all()) for p in self.model.parameters())

    def internals(self, x_probe: np.ndarray) -> dict[str, Any]:
        """The training internals on the probe ``x_probe`` ``(P, 784)``, as numnet's stepper
        gives them (``numnet.lab.training.internals``), under numnet's layer names
        (:func:`numnet_layer_names`): weight and last-step gradient norms of each Conv2d and
        Linear, the dead fraction of each ReLU (a unit: a feature, or a channel over all
        positions), the logit statistics. Norms do not depend on the layout."""
        nn = self.torch.nn
        weight_norm: dict[str, float] = {}
        grad_norm: dict[str, float] = {}
        dead: dict[str, float] = {}
        with self.torch.no_grad():
            h = self._inputs(x_probe)
            for name, module in zip(numnet_layer_names(self.model), self.model, strict=True):
                h = module(h)
                if isinstance(module, nn.Conv2d | nn.Linear):
                    weight_norm[name] = float(module.weight.detach().double().norm())
                    g = module.weight.grad
                    grad_norm[name] = float(g.double().norm()) if g is not None else 0.0
                elif isinstance(module, nn.ReLU):
                    a = h if h.dim() == 2 else h.movedim(1, -1)  # units on the last axis
                    a = a.reshape(-1, a.shape[-1])
                    dead[name] = float((a <= 0).all(dim=0).double().mean())
            logits = h.double().cpu().numpy()
        return {"weight_norm": weight_norm, "grad_norm": grad_norm, "dead_fraction": dead,
                **logit_stats(logits)}

    def probabilities(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Softmax probabilities ``(N, 10)`` (NumPy, float64), in chunks, without gradients."""
        out = []
        with self.torch.no_grad():
            for start in range(0, len(x), batch_size):
                z = self.forward(x[start : start + batch_size]).double()
                out.append(self.torch.softmax(z, dim=1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 10))


def numnet_layer_names(torch_model: Any) -> list[str]:
    """The name numnet gives each module of a reference model (``numnet.core.models``):
    Conv2d k -> ``conv<k>``, Linear k -> ``fc<k>``, an activation after conv k -> ``act<k>``,
    a ReLU after Linear k -> ``relu<k>``, a max-pool after conv k -> ``pool<k>``; others by
    their class name."""
    nn = import_torch().nn
    names, conv, fc, last = [], 0, 0, ""
    for module in torch_model:
        if isinstance(module, nn.Conv2d):
            conv += 1
            last = "conv"
            names.append(f"conv{conv}")
        elif isinstance(module, nn.Linear):
            fc += 1
            last = "fc"
            names.append(f"fc{fc}")
        elif isinstance(module, nn.ReLU | nn.Sigmoid | nn.Tanh):
            names.append(f"act{conv}" if last == "conv" else f"relu{fc}")
        elif isinstance(module, nn.MaxPool2d):
            names.append(f"pool{conv}")
        else:
            names.append(type(module).__name__.lower())
    return names


def iter_params(torch_model: Any) -> Iterator[Any]:
    """The parameters in numnet's order (for callers that want the tensors themselves)."""
    for module, attr, _kind, _chw in _param_slots(torch_model):
        yield getattr(module, attr)


__all__: Sequence[str] = (
    "INSTALL_HINT",
    "ReferenceTrainer",
    "ReferenceUnavailableError",
    "build_reference",
    "copy_numnet_weights",
    "import_torch",
    "iter_params",
    "loss_function",
    "numnet_layer_names",
    "numnet_layout_arrays",
    "reference_from_numnet",
    "to_numnet_layout",
    "to_torch_layout",
)
