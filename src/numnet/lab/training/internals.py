"""Training internals: what a run's weights, gradients and activations did at each evaluation,
and what its final model gets wrong -- the evidence behind the report's diagnosis.

At every evaluation :class:`InternalsRecorder` takes one *snapshot* from the stepper (numnet's
or PyTorch's, same keys) on a fixed probe batch (the first :data:`PROBE_EXAMPLES` train
examples, file order):

- per parametrised layer (by its numnet name, "fc1", "conv1", ...): ``weight_norm`` ||W||,
  ``grad_norm`` ||dL/dW|| of the last step (the gradient the update used) and
  ``update_ratio`` = ||update|| / ||W|| of that step (the usual heuristic wants about 1e-3):
  lr * ||dL/dW|| / ||W|| for plain SGD at a constant rate, else the update measured by the
  stepper (``update_norm`` in the snapshot: momentum, Adam, a schedule);
- per ReLU layer: ``dead_fraction``, the fraction of units that are 0 on every probe example;
- ``logit_absmax`` (mean over the probe of max |z|), ``logit_std`` and ``top_prob`` (mean
  largest softmax probability; 0.1 is a uniform guess).

The run's record holds them as per-evaluation lists (:meth:`InternalsRecorder.to_dict`), aligned
with its curves (``update[k]`` is the update of the k-th evaluation); its metrics CSV gets one
column per internal (:func:`internals_columns`, e.g. ``update_ratio.fc1``). The numbers are
read, never written: a run with internals is bit-identical to one without.

At the end of a run that did not diverge, :func:`final_evidence` looks at the final model on the
test examples: the confusion matrix, the most confidently wrong test images and, for a
convolutional model, its first-layer filters and the feature maps of one test digit (images
stored as base64 uint8, :func:`encode_image`, so the report needs nothing but the record).
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from numnet.core import introspect
from numnet.core.backend import array_module, to_numpy
from numnet.core.layers import Conv2D
from numnet.core.losses import softmax
from numnet.core.names import IMAGE_SHAPE, NUM_CLASSES

PROBE_EXAMPLES = 256
CONFUSED_IMAGES = 16
#: the update/weight ratio the usual heuristic asks for
USUAL_UPDATE_RATIO = 1e-3
PER_LAYER = ("weight_norm", "grad_norm", "update_ratio")
SCALARS = ("logit_absmax", "logit_std", "top_prob")


def _finite(x: float) -> float | None:
    """``x`` as a float, or None when it is not finite (records are strict JSON)."""
    x = float(x)
    return x if math.isfinite(x) else None


def numnet_snapshot(model: Any, x_probe: Any) -> dict[str, Any]:
    """One snapshot of a numnet model (see the module docstring) on the probe ``x_probe``
    ``(P, 784)``: ``{"weight_norm": {layer: v}, "grad_norm": {...}, "dead_fraction": {...},
    "logit_absmax": v, "logit_std": v, "top_prob": v}``."""
    relus = set(introspect.relu_layers(model))
    logits, kept = introspect.forward_trace(model, x_probe, lambda name, _: name in relus)
    return {
        "weight_norm": introspect.weight_norms(model),
        "grad_norm": introspect.grad_norms(model),
        "dead_fraction": {name: introspect.dead_fraction(a) for name, a in kept.items()},
        **introspect.logit_stats(logits),
    }


class Series:
    """Snapshots as lists: ``update`` and, aligned with it, every internal."""

    def __init__(self, lr: float) -> None:
        self.lr = float(lr)
        self.update: list[int] = []
        self.layers: dict[str, dict[str, list[float | None]]] = {k: {} for k in PER_LAYER}
        self.dead_fraction: dict[str, list[float | None]] = {}
        self.scalars: dict[str, list[float | None]] = {k: [] for k in SCALARS}

    def append(self, snap: dict[str, Any], update: int, gradient: bool = True) -> None:
        """Append one snapshot taken after update ``update``; ``gradient=False`` (before the
        first step) records no gradient norm or ratio."""
        self.update.append(int(update))
        measured = snap.get("update_norm")
        for name, w in snap["weight_norm"].items():
            g = snap["grad_norm"][name] if gradient else math.nan
            step = measured[name] if measured is not None and gradient else self.lr * g
            ratio = step / w if w > 0 else math.nan
            for key, value in (("weight_norm", w), ("grad_norm", g), ("update_ratio", ratio)):
                self.layers[key].setdefault(name, []).append(_finite(value))
        for name, value in snap["dead_fraction"].items():
            self.dead_fraction.setdefault(name, []).append(_finite(value))
        for key in SCALARS:
            self.scalars[key].append(_finite(snap[key]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "update": list(self.update),
            **{k: {n: list(v) for n, v in self.layers[k].items()} for k in PER_LAYER},
            "dead_fraction": {n: list(v) for n, v in self.dead_fraction.items()},
            **{k: list(v) for k, v in self.scalars.items()},
        }


class InternalsRecorder:
    """Collects one snapshot per evaluation (``record``) into per-evaluation lists, and two
    more at the start (``record_start``): before the first step (update 0, no gradient yet)
    and after it (update 1) -- where a run that blows up usually does."""

    def __init__(self, lr: float, x_probe: Any) -> None:
        self.lr = float(lr)
        self.x_probe = x_probe
        self.evals = Series(lr)
        self.start = Series(lr)
        #: seconds spent recording (the snapshots and the final evidence)
        self.seconds = 0.0

    def timed(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``, its time counted in :attr:`seconds`."""
        t0 = time.perf_counter()
        out = fn(*args)
        self.seconds += time.perf_counter() - t0
        return out

    def record(self, stepper: Any, update: int) -> None:
        """Take the stepper's snapshot after update ``update`` (an evaluation) and append it."""
        self.evals.append(self.timed(stepper.internals, self.x_probe), update)

    def record_start(self, stepper: Any, update: int) -> None:
        """A start snapshot: ``update`` 0 (before any step) or 1 (after the first)."""
        self.start.append(self.timed(stepper.internals, self.x_probe), update,
                          gradient=update > 0)

    def final(self, stepper: Any, x_te: Any, y_te: Any, batch_size: int,
              update: int) -> dict[str, Any]:
        """:func:`final_evidence`, its time counted in :attr:`seconds`."""
        return self.timed(final_evidence, stepper, x_te, y_te, batch_size, update)

    def to_dict(self) -> dict[str, Any]:
        """The record's ``internals`` object (JSON-ready): the per-evaluation lists at the top
        level, the start snapshots under ``"start"`` in the same shape. (The time the recording
        took, :attr:`seconds`, is the run's ``RunResult.internals_time``, not in the record:
        records of one seed stay identical.)"""
        return {
            "probe_examples": int(len(self.x_probe)),
            "lr": self.lr,
            **self.evals.to_dict(),
            "start": self.start.to_dict(),
        }


def internals_columns(internals: dict[str, Any]) -> list[str]:
    """The CSV columns of an ``internals`` object after ``update``: ``weight_norm.fc1``, ...,
    ``dead_fraction.relu1``, ``logit_absmax``, ``logit_std``, ``top_prob``."""
    cols = [f"{k}.{n}" for k in PER_LAYER for n in internals.get(k, {})]
    cols += [f"dead_fraction.{n}" for n in internals.get("dead_fraction", {})]
    return cols + [k for k in SCALARS if k in internals]


def internals_value(internals: dict[str, Any], column: str, k: int) -> float | None:
    """The value of ``column`` (see :func:`internals_columns`) at evaluation ``k``."""
    if "." in column:
        group, name = column.split(".", 1)
        return internals[group][name][k]
    return internals[column][k]


def internals_cells(internals: dict[str, Any], update: int) -> list[str]:
    """The cells of :func:`internals_columns` for the evaluation at ``update`` (the metrics
    CSV's extra columns, ``numnet.lab.metrics``); empty cells for an update without a
    snapshot or a non-finite value."""
    cols = internals_columns(internals)
    try:
        k = internals["update"].index(update)
    except ValueError:
        return [""] * len(cols)
    values = [internals_value(internals, c, k) for c in cols]
    return ["" if v is None else repr(float(v)) for v in values]


# ------------------------------------------------------------------------------ final model


def encode_image(a: np.ndarray, lo: float | None = None, hi: float | None = None) -> dict[str, Any]:
    """``a`` (any shape) scaled from ``[lo, hi]`` (default: its own range) to uint8, as
    ``{"shape", "lo", "hi", "b64"}``: compact, exact enough to draw."""
    a = np.asarray(a, dtype=np.float64)
    lo = float(a.min()) if lo is None else lo
    hi = float(a.max()) if hi is None else hi
    scale = (hi - lo) if hi > lo else 1.0
    q = np.clip(np.rint((a - lo) / scale * 255), 0, 255).astype(np.uint8)
    return {"shape": list(a.shape), "lo": lo, "hi": hi,
            "b64": base64.b64encode(q.tobytes()).decode("ascii")}


def decode_image(d: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_image`: float64 values in ``[lo, hi]``, shaped ``d["shape"]``."""
    q = np.frombuffer(base64.b64decode(d["b64"]), dtype=np.uint8).reshape(d["shape"])
    return d["lo"] + q.astype(np.float64) / 255 * (d["hi"] - d["lo"])


def most_confused(probs: np.ndarray, labels: np.ndarray, k: int = CONFUSED_IMAGES) -> np.ndarray:
    """Indices of the ``k`` misclassified examples the model was surest of (highest
    probability of the wrong predicted class), surest first; ``probs`` ``(N, 10)``."""
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probs[wrong, predicted[wrong]]
    order = np.argsort(-confidence, kind="stable")
    return wrong[order[:k]]


def evidence_from_probs(probs: np.ndarray, labels: np.ndarray,
                        images: np.ndarray) -> dict[str, Any]:
    """The confusion matrix and the most confused images from test probabilities ``(N, 10)``,
    labels ``(N,)`` and images ``(N, 784)`` in [0, 1]."""
    predicted = probs.argmax(axis=1)
    worst = most_confused(probs, labels)
    return {
        "test_examples": int(len(labels)),
        "confusion": introspect.confusion_matrix(labels, predicted, NUM_CLASSES).tolist(),
        "confused": [
            {"index": int(i), "label": int(labels[i]), "predicted": int(predicted[i]),
             "prob": float(probs[i, predicted[i]]),
             "image": encode_image(images[i].reshape(IMAGE_SHAPE[:2]), 0.0, 1.0)}
            for i in worst
        ],
    }


def numnet_probabilities(model: Any, x: Any, batch_size: int) -> np.ndarray:
    """Softmax probabilities ``(N, 10)`` (NumPy, float64) of ``model`` on ``x``, in chunks."""
    xp = array_module(x)
    out = []
    for start in range(0, len(x), batch_size):
        logits = model.forward(x[start : start + batch_size], train=False)
        out.append(to_numpy(softmax(logits.astype(xp.float64))))
    return np.concatenate(out) if out else np.zeros((0, NUM_CLASSES))


def cnn_evidence(model: Any, image: Any) -> dict[str, Any]:
    """A convolutional model's first-layer filters (HWIO weights, one image per output channel)
    and the outputs of each Conv2D for one image ``(784,)``."""
    convs = [(n, layer) for n, layer in model.layers if isinstance(layer, Conv2D)]
    first = to_numpy(convs[0][1].weight.value)
    _, kept = introspect.forward_trace(model, image.reshape(1, -1),
                                       lambda _, layer: isinstance(layer, Conv2D))
    return {
        "filters": {"layer": convs[0][0],
                    "weights": encode_image(first[:, :, 0, :].transpose(2, 0, 1))},
        "feature_maps": {name: encode_image(to_numpy(a)[0].transpose(2, 0, 1))
                         for name, a in kept.items()},
    }


def final_evidence(stepper: Any, x_te: Any, y_te: Any, batch_size: int,
                   update: int) -> dict[str, Any]:
    """The record's ``final_model`` object: :func:`evidence_from_probs` on the test examples
    and, for a convolutional numnet model, :func:`cnn_evidence` of the first test digit the
    model gets right (the digit is stored too). ``update``: the number of updates the final
    model has had (the last evaluation may be a few updates earlier)."""
    probs = stepper.probabilities(x_te, batch_size)
    labels = to_numpy(y_te).argmax(axis=1)
    images = to_numpy(x_te)
    out = {"update": int(update), **evidence_from_probs(probs, labels, images)}
    model = stepper.model
    if hasattr(model, "layers") and introspect.is_convolutional(model):
        right = np.flatnonzero(probs.argmax(axis=1) == labels)
        k = int(right[0]) if len(right) else 0
        out["digit"] = {"index": k, "label": int(labels[k]),
                        "image": encode_image(images[k].reshape(IMAGE_SHAPE[:2]), 0.0, 1.0)}
        out.update(cnn_evidence(model, x_te[k]))
    return out
