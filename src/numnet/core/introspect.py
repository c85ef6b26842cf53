"""Looking inside a model: the numbers that say *why* a run learns or does not.

Pure functions of a model (a ``models.Sequential``) and arrays; nothing here changes a model,
its parameters or its gradients, so calling them between training steps leaves the run
bit-identical.

- :func:`weight_norms` / :func:`grad_norms`: the Frobenius norm of each parametrised layer's
  weight (the ``weight`` parameter; the bias is left out, as in the usual update/weight
  heuristic) and of the gradient the last ``backward`` left in it.
- :func:`forward_trace`: the logits of a batch plus the outputs of chosen layers, running the
  layers one by one in evaluation mode (no fused step, nothing cached for backward).
- :func:`dead_fraction`: the fraction of a ReLU layer's units that are zero for every example
  of a batch (a dead unit passes no gradient, so it never comes back).
- :func:`logit_stats`: the scale of the logits and the confidence of the softmax.
- :func:`confusion_matrix`: counts of (true class, predicted class).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from numnet.core.backend import array_module, to_numpy
from numnet.core.kernels.plain import softmax
from numnet.core.layers import Conv2D, Layer, ReLU
from numnet.core.names import NUM_CLASSES
from numnet.core.runtime import single_threaded_blas

Array = Any  # numpy.ndarray or cupy.ndarray

__all__ = [
    "confusion_matrix", "dead_fraction", "forward_trace", "grad_norms", "is_convolutional",
    "logit_stats", "relu_layers", "weight_layers", "weight_norms",
]  # fmt: skip


def weight_layers(model: Any) -> list[tuple[str, Layer]]:
    """``(name, layer)`` of every layer with a ``weight`` parameter (Linear, Conv2D), in order."""
    return [(name, layer) for name, layer in model.layers if "weight" in layer.param_names]


def relu_layers(model: Any) -> list[str]:
    """Names of the model's ReLU layers, in order."""
    return [name for name, layer in model.layers if isinstance(layer, ReLU)]


def _norm(a: Array) -> float:
    xp = array_module(a)
    # float64 accumulation: a float32 sum of squares of a large layer loses digits
    return float(xp.sqrt(xp.sum(xp.square(a.astype(xp.float64)))))


def weight_norms(model: Any) -> dict[str, float]:
    """``{layer name: ||W||_F}`` of every layer with a weight."""
    return {name: _norm(layer.weight.value) for name, layer in weight_layers(model)}


def grad_norms(model: Any) -> dict[str, float]:
    """``{layer name: ||dL/dW||_F}``: the gradient of the last ``backward`` (the last step)."""
    return {name: _norm(layer.weight.grad) for name, layer in weight_layers(model)}


def weights(model: Any) -> dict[str, Array]:
    """``{layer name: a copy of W}`` of every layer with a weight (before an update)."""
    return {name: array_module(layer.weight.value).array(layer.weight.value)
            for name, layer in weight_layers(model)}


def update_norms(model: Any, before: dict[str, Array]) -> dict[str, float]:
    """``{layer name: ||W - W_before||_F}``: the size of the update made since ``before``
    (:func:`weights`), whatever the optimiser."""
    return {name: _norm(layer.weight.value - before[name])
            for name, layer in weight_layers(model)}


def forward_trace(
    model: Any, x: Array, keep: Callable[[str, Layer], bool]
) -> tuple[Array, dict[str, Array]]:
    """``(logits (N, 10), {name: output})`` of an evaluation forward of ``x`` (``(N, 784)``),
    keeping the output of each layer for which ``keep(name, layer)`` is true.

    Runs the model's own execution plan (its fused steps included, same kernels, evaluation
    mode: nothing is cached for backward, parameters untouched), so the logits are those of
    ``model.forward(x, train=False)``; only when a layer to keep sits inside a fused step does
    it run the layers one by one, so that that layer's output exists. BLAS runs on one thread,
    as in ``Sequential.forward`` (the GEMMs are small).
    """
    xp = array_module(model.parameters()[0].value) if model.parameters() else array_module(x)
    h = xp.asarray(x, dtype=model.dtype)
    names = {id(layer): name for name, layer in model.layers}
    # the plan's steps, each with the layers it runs; a fused step hiding a kept layer -> none
    steps = [(step, list(getattr(step, "layers", [step]))) for step, _ in
             getattr(model, "_plan", [(layer, None) for _, layer in model.layers])]
    hidden = any(len(inner) > 1 and any(keep(names[id(la)], la) for la in inner)
                 for _, inner in steps)
    if hidden:
        steps = [(layer, [layer]) for _, layer in model.layers]
    kept: dict[str, Array] = {}
    with single_threaded_blas():
        for step, inner in steps:
            h = step.forward(h, train=False)
            name = names[id(inner[-1])]
            if len(inner) == 1 and keep(name, inner[0]):
                kept[name] = h.copy()  # layers may reuse their output buffers
    return h, kept


def dead_fraction(relu_output: Array) -> float:
    """Fraction of units that are 0 for every example: ``relu_output`` is ``(N, units)`` or
    ``(N, H, W, C)`` (a unit is then a channel, dead when 0 at every position of every
    example). A NaN counts as alive (it is not <= 0)."""
    a = relu_output.reshape(-1, relu_output.shape[-1])
    xp = array_module(a)
    dead = xp.all(a <= 0, axis=0)
    return float(xp.mean(dead))


def logit_stats(logits: Array) -> dict[str, float]:
    """The size of logits ``(N, K)`` and the confidence they give:

    - ``logit_absmax``: mean over examples of ``max_k |z_k|``;
    - ``logit_std``: standard deviation of all N*K logits;
    - ``top_prob``: mean over examples of the largest softmax probability (0.1 = uniform over
      10 classes, 1.0 = certain).
    """
    xp = array_module(logits)
    z = logits.astype(xp.float64)
    finite = bool(xp.isfinite(z).all())
    if not finite:
        nan = math.nan
        return {"logit_absmax": nan, "logit_std": nan, "top_prob": nan}
    return {
        "logit_absmax": float(xp.mean(xp.max(xp.abs(z), axis=1))),
        "logit_std": float(xp.std(z)),
        "top_prob": float(xp.mean(xp.max(softmax(z), axis=1))),
    }


def confusion_matrix(labels: Any, predicted: Any, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """``C[t, p]`` = number of examples of true class ``t`` predicted as ``p`` (int64,
    ``(num_classes, num_classes)``); rows sum to the class counts. ``labels`` and ``predicted``
    are class indices ``(N,)``."""
    t = to_numpy(labels).astype(np.int64).ravel()
    p = to_numpy(predicted).astype(np.int64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"labels {t.shape} and predictions {p.shape} differ in length")
    if len(t) and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= num_classes):
        raise ValueError(f"class indices must lie in [0, {num_classes})")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def is_convolutional(model: Any) -> bool:
    """True when the model has a Conv2D layer."""
    return any(isinstance(layer, Conv2D) for _, layer in model.layers)
