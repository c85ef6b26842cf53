"""Learning-rate schedules: the learning rate of each update as a pure function of its index.

The training loop sets ``opt.lr = schedule.lr_at(t, base_lr, total_updates)`` before update
``t``, where ``t = 0, 1, ..., total_updates - 1`` counts the updates already made (PyTorch's
``last_epoch`` for a scheduler stepped once per update). Nothing is kept between calls, so a
resumed run needs no schedule state.

With ``W = warmup_updates`` and ``T = total_updates``:

- warm-up, ``t < W``: ``lr = base_lr * (t + 1) / W`` -- a linear ramp whose first update
  uses ``base_lr / W`` and whose last (``t = W - 1``) uses ``base_lr``; no update is made at
  a learning rate of 0. The schedule proper then starts at ``s = t - W``:
- ``constant``: ``base_lr`` (returned as given: bit for bit the protocol's learning rate);
- ``step``: ``base_lr * gamma ** (s // step_size)`` (``torch.optim.lr_scheduler.StepLR``);
- ``cosine``: ``min_lr + (base_lr - min_lr) * (1 + cos(pi * s / (T - W))) / 2`` for
  ``s < T - W``, then ``min_lr`` (``CosineAnnealingLR`` with ``T_max = T - W``,
  ``eta_min = min_lr``; its last update is just above ``min_lr``).

Specs, as a protocol writes them (:func:`check_spec` runs without a model)::

    {"type": "constant", "warmup_updates": 0}
    {"type": "step", "step_size": 1000, "gamma": 0.1, "warmup_updates": 0}
    {"type": "cosine", "min_lr": 0.0, "warmup_updates": 0}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from numnet.core.errors import OptimizerError
from numnet.core.names import SCHEDULES
from numnet.core.optim import check_int, check_keys, check_real, check_type

__all__ = ["SCHEDULES", "Constant", "Cosine", "Schedule", "Step", "build", "check_spec",
           "depends_on_length"]


@dataclass(frozen=True)
class Schedule:
    """The linear warm-up every schedule shares; subclasses give ``_after_warmup``."""

    #: the type name (``numnet.core.names.SCHEDULES``)
    name: ClassVar[str]
    warmup_updates: int = 0

    def __post_init__(self) -> None:
        check_spec(self.spec(), where=type(self).__name__)  # Step(gamma=0) is refused too

    def lr_at(self, update: int, base_lr: float, total_updates: int | None = None) -> float:
        """The learning rate of update ``update`` (0-based: the updates already made) of a
        run of ``total_updates`` updates (needed by ``cosine`` only) from ``base_lr``."""
        where = f"{type(self).__name__}.lr_at"
        t = check_int(where, "update", update, 0)
        check_real(where, "base_lr", base_lr, lambda x: x >= 0, ">= 0")
        if total_updates is not None:
            total_updates = check_int(where, "total_updates", total_updates, 1)
        w = self.warmup_updates
        if t < w:
            return base_lr * ((t + 1) / w)
        horizon = None if total_updates is None else total_updates - w
        return self._after_warmup(t - w, base_lr, horizon)

    def _after_warmup(self, s: int, base_lr: float, horizon: int | None) -> float:
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        """The spec that builds this schedule (every key given)."""
        return {"type": self.name, **asdict(self)}


@dataclass(frozen=True)
class Constant(Schedule):
    """``base_lr`` at every update (after the warm-up, if any)."""

    name = "constant"

    def _after_warmup(self, s: int, base_lr: float, horizon: int | None) -> float:
        return base_lr


@dataclass(frozen=True)
class Step(Schedule):
    """``base_lr * gamma ** (s // step_size)``: multiplied by ``gamma`` every ``step_size``
    updates (PyTorch's ``StepLR``; its ``gamma`` default, 0.1)."""

    name = "step"
    step_size: int = 1
    gamma: float = 0.1

    def _after_warmup(self, s: int, base_lr: float, horizon: int | None) -> float:
        return base_lr * self.gamma ** (s // self.step_size)


@dataclass(frozen=True)
class Cosine(Schedule):
    """Half a cosine from ``base_lr`` down to ``min_lr`` over the updates after the warm-up
    (PyTorch's ``CosineAnnealingLR``, closed form, ``T_max`` = those updates); ``min_lr`` after."""

    name = "cosine"
    min_lr: float = 0.0

    def _after_warmup(self, s: int, base_lr: float, horizon: int | None) -> float:
        if horizon is None:
            raise OptimizerError("Cosine.lr_at: total_updates is needed (the run's length)")
        if s >= horizon:
            return self.min_lr
        return self.min_lr + (base_lr - self.min_lr) * (1 + math.cos(math.pi * s / horizon)) / 2


#: type name -> class; the names are numnet.core.names.SCHEDULES (a test holds them equal)
CLASSES: dict[str, type[Schedule]] = {cls.name: cls for cls in (Constant, Step, Cosine)}
#: keys each type takes besides "type" (required ones have no default)
REQUIRED = {"step": ("step_size",)}


def check_spec(spec: Mapping[str, Any], where: str = "schedule") -> dict[str, Any]:
    """Check a schedule spec (see the module docstring); return it with every default filled
    in. An unknown type or key, a missing ``step_size``, a negative count or ``min_lr``, or
    ``gamma <= 0`` raises a one-line :class:`OptimizerError` that starts with ``where``."""
    kind = check_type(where, spec, SCHEDULES)
    cls = CLASSES[kind]
    given = {k: v for k, v in spec.items() if k != "type"}
    defaults = {f.name: f.default for f in fields(cls)}
    allowed = tuple(defaults)
    check_keys(where, given, allowed, f"type {kind!r}")
    missing = [k for k in REQUIRED.get(kind, ()) if k not in given]
    if missing:
        raise OptimizerError(f"{where}: type {kind!r} needs {', '.join(missing)}")
    full = {**defaults, **given}
    full["warmup_updates"] = check_int(where, "warmup_updates", full["warmup_updates"], 0)
    if kind == "step":
        full["step_size"] = check_int(where, "step_size", full["step_size"], 1)
        full["gamma"] = check_real(where, "gamma", full["gamma"], lambda x: x > 0, "> 0")
    if kind == "cosine":
        full["min_lr"] = check_real(where, "min_lr", full["min_lr"], lambda x: x >= 0, ">= 0")
    return {"type": kind, **full}


def depends_on_length(spec: Mapping[str, Any]) -> bool:
    """Whether a schedule's rates depend on the run's total updates (``cosine``: it decays
    over the whole run), so that a shorter run is no prefix of a longer one."""
    return check_spec(spec)["type"] == "cosine"


def build(spec: Mapping[str, Any], where: str = "schedule") -> Schedule:
    """The schedule ``spec`` describes (see :func:`check_spec`)."""
    full = check_spec(spec, where)
    return CLASSES[full.pop("type")](**full)
