"""The float64 agreement of numnet and PyTorch on one run.

numnet and PyTorch are the same computation, so in float64, from the same weights on the same
batches, their losses must agree to rounding:

1. *trajectory*: both train independently for the first ``updates`` (200) updates of the run;
   the largest relative difference of the batch loss, ``|L_numnet - L_torch| / max(|L_numnet|,
   |L_torch|)``, must stay below ``tolerance`` (1e-9).
2. Some runs amplify rounding exponentially (a chaotic regime, e.g. model 1 at lr 0.1 with the
   summed loss: a 1e-16 difference grows about 10x every 10 updates). There two *identical*
   computations that merely round differently separate, so the trajectory check cannot tell a
   bug from rounding. When the trajectory difference exceeds the tolerance, two more checks
   run and decide instead:

   - *control*: numnet against numnet fed each batch with its rows reversed (the same
     mathematics; only the order of the sums over the batch, hence the rounding, differs).
     The *horizon* is the number of leading updates during which the control stays within
     ``control_tolerance`` (1e-12): over the horizon the run does not yet amplify rounding, and
     there the trajectory difference must still be below ``tolerance``;
   - *lockstep*: at every one of the updates, PyTorch is given numnet's current weights (and
     batch norm's running statistics), both compute the loss and make one update; the
     relative difference of the loss and of the updated weights must be below ``tolerance``
     at every update. (Each keeps its own optimiser state -- momentum, Adam's averages --
     built from gradients at the same weights; the dropout streams advance together.)

Both sides run the run's own optimiser and learning-rate schedule (``spec.optimizer``,
``spec.schedule``; the schedule over the run's full length, as in the run) and its model,
whatever its layers: PyTorch's is :func:`numnet.lab.reference_torch.build_twin` of numnet's,
dropping the same units at every step. The control's dropout layers draw the same masks with
their rows reversed, so that it still drops the same units of the same examples.

A run that fails makes ``numnet compare`` raise :class:`AgreementError` once every output is
written (the CLI exits with code 1).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from numnet.core.datasets import DataSet
from numnet.core.errors import NumnetError
from numnet.core.layers import Dropout
from numnet.lab.reference_torch import (
    ReferenceTrainer,
    build_twin,
    copy_numnet_weights,
    numnet_layout_arrays,
)
from numnet.lab.training import (
    NumnetStepper,
    RunSpec,
    build_model,
    expected_updates,
    make_batch_source,
)

TOLERANCE = 1e-9
CONTROL_TOLERANCE = 1e-12
AGREEMENT_UPDATES = 200


class AgreementError(NumnetError):
    """numnet and PyTorch disagree in float64 beyond the tolerance: a bug in one of them."""


def _rel(a: float, b: float) -> float:
    if a == b:
        return 0.0
    if not (math.isfinite(a) and math.isfinite(b)):
        return math.inf
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def _param_rel(numnet_model: Any, torch_model: Any) -> float:
    """Largest, over the parameters, of ``max|p_numnet - p_torch|`` over the scale of the
    parameter's layer, ``max|p_numnet|`` over all of that layer's parameters. (Per layer, not
    per tensor: the bias of a layer right before a batch norm has a zero gradient and stays at
    rounding noise in both implementations, where a ratio to its own size means nothing.)"""
    values = {name: p.value for name, p in numnet_model.named_parameters()}
    scale: dict[str, float] = {}
    for name, value in values.items():
        layer = name.rsplit(".", 1)[0]
        scale[layer] = max(scale.get(layer, 0.0), float(np.max(np.abs(value))))
    worst = 0.0
    for (name, p), q in zip(values.items(), numnet_layout_arrays(torch_model), strict=True):
        s = scale[name.rsplit(".", 1)[0]]
        diff = float(np.max(np.abs(p - q)))
        worst = max(worst, diff / s if s > 0 else diff)
    return worst if math.isfinite(worst) else math.inf


class _RowsReversed:
    """A dropout layer's Generator whose draws come out with their rows (the batch axis)
    reversed: the control model, fed each batch with its rows reversed, then drops the same
    units of the same examples as the model it is compared with."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def random(self, shape: tuple[int, ...]) -> np.ndarray:
        return self.rng.random(shape)[::-1]


def _numnet_stepper(spec64: RunSpec, total: int, rows_reversed: bool = False) -> Any:
    """numnet's stepper of ``spec64`` (its optimiser and schedule over ``total`` updates);
    ``rows_reversed``: for batches fed with their rows reversed (the control)."""
    model = build_model(spec64)
    if rows_reversed:
        for _, layer in model.layers:
            if isinstance(layer, Dropout):
                layer.rng = _RowsReversed(layer.rng)
    return NumnetStepper.for_run(model, spec64, total)


def _steppers(spec64: RunSpec, total: int) -> tuple[Any, Any]:
    """A fresh numnet float64 model for ``spec64`` and its PyTorch twin, as steppers with the
    run's optimiser and its schedule over ``total`` updates."""
    numnet = _numnet_stepper(spec64, total)
    return numnet, ReferenceTrainer.for_run(build_twin(numnet.model), spec64, total)


def _in_step(first: Any, second: Any, spec: RunSpec, train: DataSet, n: int, *,
             reverse: bool = False, copy_weights: bool = False,
             ) -> Iterator[tuple[int, float, float]]:  # fmt: skip
    """Both steppers through the run's first ``n`` batches (its shuffle seed, images cast to
    float64): ``(update, loss_first, loss_second)`` after one update of each, or, after a
    non-finite loss, without an update and last. ``reverse``: the second gets each batch with
    its rows reversed; ``copy_weights``: the second starts each update from the first's
    weights (``copy_numnet_weights``: a numnet model and its twin)."""
    source = make_batch_source(spec, train)
    for i in range(1, n + 1):
        x, y = source.next_batch(spec.batch_size)
        x = x.astype(np.float64)
        if copy_weights:
            copy_numnet_weights(first.model, second.model)
        a = first.loss(x, y)
        b = second.loss(x[::-1].copy(), y[::-1].copy()) if reverse else second.loss(x, y)
        finite = math.isfinite(a) and math.isfinite(b)
        if finite:
            first.update()
            second.update()
        yield i, a, b
        if not finite:
            return


def float64_agreement(
    spec: RunSpec,
    train: DataSet,
    updates: int = AGREEMENT_UPDATES,
    *,
    tolerance: float = TOLERANCE,
    control_tolerance: float = CONTROL_TOLERANCE,
) -> dict[str, Any]:
    """The float64 agreement of numnet and PyTorch over the first ``updates`` updates of the
    run ``spec`` (its init and shuffle seeds, options and learning rate; dtype forced to
    float64). See the module docstring for the three checks and the pass rule. Returns a
    JSON-able dict; ``passed`` says whether the run passed."""
    spec64 = dataclasses.replace(spec, dtype="float64")
    total = expected_updates(train.num_examples, spec.batch_size, spec.epochs)
    n = min(updates, total)
    result: dict[str, Any] = {
        "dtype": "float64", "requested_updates": updates, "updates": n,
        "tolerance": tolerance, "control_tolerance": control_tolerance,
    }
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        # 1. trajectory: both train on their own.
        numnet, torch_ = _steppers(spec64, total)
        rel: list[float] = []
        both_diverged_at = None
        for i, a, b in _in_step(numnet, torch_, spec, train, n):
            if not (math.isfinite(a) or math.isfinite(b)):
                both_diverged_at = i  # the same verdict in both; nothing more to compare
                break
            rel.append(_rel(a, b))  # inf when one diverged, the other not (and it ends)
        worst = max(rel, default=0.0)
        result.update(
            method="trajectory",
            compared_updates=len(rel),
            both_diverged_at_update=both_diverged_at,
            max_rel_loss_diff=worst,
            at_update=(rel.index(worst) + 1) if rel else None,
            final_rel_param_diff=_param_rel(numnet.model, torch_.model) if rel else None,
            rel_loss_diff_curve=_thin(rel),
        )
        if worst <= tolerance:
            result["passed"] = True
            return result

        # 2a. control: numnet against itself with each batch's rows reversed.
        control = [_rel(a, c) for _, a, c in _in_step(
            _numnet_stepper(spec64, total), _numnet_stepper(spec64, total, rows_reversed=True),
            spec, train, len(rel), reverse=True)]
        horizon = next((k for k, r in enumerate(control) if r > control_tolerance), len(control))
        within = max(rel[:horizon], default=0.0)

        # 2b. lockstep: PyTorch restarts every update from numnet's weights.
        numnet, torch_ = _steppers(spec64, total)
        lock_loss, lock_param, lock_at = 0.0, 0.0, None
        lock_updates = 0
        for i, a, b in _in_step(numnet, torch_, spec, train, len(rel), copy_weights=True):
            r = _rel(a, b)
            if not (math.isfinite(a) and math.isfinite(b)):
                if math.isfinite(a) or math.isfinite(b):
                    lock_loss, lock_at = math.inf, i
                break
            lock_updates = i
            rp = _param_rel(numnet.model, torch_.model)
            if max(r, rp) > max(lock_loss, lock_param):
                lock_at = i
            lock_loss, lock_param = max(lock_loss, r), max(lock_param, rp)

    result.update(
        method="trajectory + control + lockstep",
        control_max_rel_loss_diff=max(control, default=0.0),
        control_rel_loss_diff_curve=_thin(control),
        horizon=horizon,
        max_rel_loss_diff_within_horizon=within,
        lockstep_updates=lock_updates,
        lockstep_max_rel_loss_diff=lock_loss,
        lockstep_max_rel_param_diff=lock_param,
        lockstep_at_update=lock_at,
    )
    result["passed"] = bool(within <= tolerance and lock_loss <= tolerance
                            and lock_param <= tolerance)
    return result


def _thin(values: list[float], points: int = 50) -> list[list[float]]:
    """``[[update, value], ...]`` at most ``points`` samples (every k-th and the worst), for
    compare.json (JSON-safe: inf becomes 1e308)."""
    if not values:
        return []
    step = max(1, math.ceil(len(values) / points))
    keep = set(range(step - 1, len(values), step)) | {int(np.argmax(values)), 0}
    return [[k + 1, min(values[k], 1e308)] for k in sorted(keep)]


def describe_agreement(a: dict[str, Any]) -> str:
    """One line: the float64 agreement of a run."""
    verdict = "PASS" if a["passed"] else "FAIL"
    text = (f"{verdict}: max relative loss difference {a['max_rel_loss_diff']:.2e} over "
            f"{a['compared_updates']} updates")
    if a.get("both_diverged_at_update"):
        text += f" (both diverged at update {a['both_diverged_at_update']})"
    if "lockstep_max_rel_loss_diff" in a:
        text += (f"; rounding-sensitive run: numnet vs itself (batch rows reversed) "
                 f"{a['control_max_rel_loss_diff']:.2e}, within the horizon of {a['horizon']} "
                 f"updates {a['max_rel_loss_diff_within_horizon']:.2e}; lockstep loss "
                 f"{a['lockstep_max_rel_loss_diff']:.2e}, weights "
                 f"{a['lockstep_max_rel_param_diff']:.2e}")
    return text
