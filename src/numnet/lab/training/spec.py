"""The records of one training run: what defines it (:class:`RunSpec`), what it produced
(:class:`RunResult`) and where it stands while it runs (:class:`Progress`). All picklable and
JSON-able (``to_dict`` / ``from_dict``), so a run can be made in another process or machine."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from numnet.core.names import DEFAULT_DTYPE, DEFAULT_KERNELS

STATUS_OK = "ok"
STATUS_DIVERGED = "diverged"
#: A result's curves, one value per evaluation
CURVES = ("train_accuracy", "test_accuracy", "train_loss", "test_loss")


#: RunSpec fields left out of its ``to_dict`` at these values: the records of default runs keep
#: the fields they always had
OMITTED: dict[str, Any] = {"kernels": DEFAULT_KERNELS, "internals": True, "layers": None,
                           "optimizer": None, "schedule": None, "replicate": None}


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines one run (hashable, picklable, JSON-able via ``to_dict``).

    ``setting`` is the 1-based index of the setting in the protocol (labels only: it is part of
    ``run_id`` but does not change the computation; ``seed`` does). ``kernels`` picks the core's
    implementation ("fast" or "plain", ``numnet.core.names.KERNELS``). ``internals`` (default
    True) records the training internals at each evaluation
    (``numnet.lab.training.internals``); they never change the results. Fields at their
    :data:`OMITTED` values are left out of ``to_dict``.

    ``layers``: a custom model's definition (canonical JSON of its layer list,
    ``numnet.core.models.build``); None for the built-in ``model`` 1-4. ``optimizer``: the
    optimiser's table as canonical JSON (``numnet.core.optim.build``: its type, its
    hyper-parameters and weight decay; the learning rate is ``lr``), None for plain SGD;
    ``schedule``: the learning-rate schedule's table (``numnet.core.schedules.build``), None
    for a constant rate.

    ``replicate``: a label like ``setting``: the replicate of a sweep (``numnet sweep``) this
    run is, which makes its ``run_id`` unique per replicate (``model4-setting2-seed3``); the
    seed alone decides the numbers; None for reproduce's runs.
    """

    model: str
    epochs: int
    lr: float
    reduction: str = "sum"
    batch_size: int = 100
    eval_every: int = 200
    eval_train_examples: int = 11000
    eval_test_examples: int = 10000
    eval_batch_size: int = 1000
    seed: int = 0
    dtype: str = DEFAULT_DTYPE
    weight_init: str = "xavier_uniform"
    bias_init: str = "zeros"
    conv_activation: str = "none"
    setting: int | None = None
    kernels: str = DEFAULT_KERNELS
    internals: bool = True
    layers: str | None = None
    optimizer: str | None = None
    schedule: str | None = None
    replicate: int | None = None

    @property
    def run_id(self) -> str:
        """File-name-safe identifier: ``model4-setting1`` (or ``model4-e5-lr0.01`` ad hoc),
        ``-seed3`` appended for replicate 3 of a sweep."""
        base = (f"{self.model}-setting{self.setting}" if self.setting is not None
                else f"{self.model}-e{self.epochs}-lr{self.lr:g}")
        return base if self.replicate is None else f"{base}-seed{self.replicate}"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items()
                if k not in OMITTED or v != OMITTED[k]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunSpec:
        return cls(**d)

    def definition(self) -> list[dict[str, Any]] | None:
        """The custom model's layer list (``layers`` parsed), None for a built-in model."""
        return None if self.layers is None else json.loads(self.layers)

    def optimizer_spec(self) -> dict[str, Any] | None:
        """The optimiser's table (``optimizer`` parsed), None for plain SGD."""
        return None if self.optimizer is None else json.loads(self.optimizer)

    def schedule_spec(self) -> dict[str, Any] | None:
        """The schedule's table (``schedule`` parsed), None for a constant rate."""
        return None if self.schedule is None else json.loads(self.schedule)

    def layer_types(self) -> set[str]:
        """The types of the custom model's layers (empty for a built-in model)."""
        return {layer["type"] for layer in self.definition() or ()}


@dataclass
class RunResult:
    """What a run produced. ``model`` (the trained model) is not part of ``to_dict``.

    Curves: ``samples[k]`` is the number of training samples processed at the k-th evaluation
    (``update * batch_size``); ``train_accuracy[k]``/``train_loss[k]`` are measured on the first
    ``eval_train_examples`` train examples (file order), ``test_*`` on the first
    ``eval_test_examples`` test examples. Losses are mean per-example cross-entropies.

    ``final_train_accuracy``/``final_test_accuracy`` are the *last curve point* (the protocol's
    lists end at the last multiple of ``eval_every``, e.g. update 2,600 of 2,751).
    ``final_weights`` is one more evaluation, of the weights after the last update (those that
    are saved and that ``numnet predict`` uses), on the same examples:
    ``{"update", "train_accuracy", "test_accuracy", "train_loss", "test_loss"}``; None for a
    diverged run (its weights are not worth measuring) and in records made before it existed.
    ``internals`` (per-evaluation lists) and ``final_model`` (confusion matrix, confused
    images, filters) are described in ``numnet.lab.training.internals``; None when not
    recorded.
    ``shared_with``: the run this one was taken from (the same initial weights and batches,
    more epochs: this run is its prefix, see ``train_run``'s ``shorter``); None when trained
    on its own.
    """

    spec: RunSpec
    status: str
    updates: int
    samples: list[int]
    train_accuracy: list[float]
    test_accuracy: list[float]
    train_loss: list[float]
    test_loss: list[float]
    init_seed: int
    shuffle_seed: int
    diverged_at_update: int | None = None
    divergence_reason: str | None = None
    wall_time: float = 0.0
    final_weights: dict[str, Any] | None = None
    shared_with: str | None = None
    model: Any = field(default=None, repr=False, compare=False)
    internals: dict[str, Any] | None = field(default=None, repr=False)
    final_model: dict[str, Any] | None = field(default=None, repr=False)
    #: seconds of ``wall_time`` spent recording the internals (not in ``to_dict``)
    internals_time: float = field(default=0.0, repr=False, compare=False)
    #: seconds from the start of the loop to the end of each curve evaluation (not in
    #: ``to_dict``: the metrics CSV's ``wall_time`` column)
    evaluation_times: list[float] = field(default_factory=list, repr=False, compare=False)
    #: the optimiser's state after the last update (``Optimizer.state_dict()``: momentum and
    #: Adam's moments), saved beside the weights so the run can be continued exactly; None for
    #: plain SGD (it has none) and a PyTorch stepper (not in ``to_dict``)
    optimizer_state: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def run_id(self) -> str:
        return self.spec.run_id

    @property
    def evaluations(self) -> int:
        return len(self.samples)

    @property
    def diverged(self) -> bool:
        return self.status == STATUS_DIVERGED

    @property
    def final_train_accuracy(self) -> float | None:
        return self.train_accuracy[-1] if self.train_accuracy else None

    @property
    def final_test_accuracy(self) -> float | None:
        return self.test_accuracy[-1] if self.test_accuracy else None

    @property
    def final_weights_test_accuracy(self) -> float | None:
        """Test accuracy of the final weights, else (older records) of the last curve point."""
        if self.final_weights is not None:
            return self.final_weights["test_accuracy"]
        return self.final_test_accuracy

    @property
    def updates_per_second(self) -> float:
        return self.updates / self.wall_time if self.wall_time > 0 else 0.0

    def spec_tuple(self) -> tuple[tuple[int, float], list[float], list[float]]:
        """The protocol's result tuple: ``((num_epochs, learning_rate), train_acc_list,
        test_acc_list)``."""
        return (self.spec.epochs, self.spec.lr), list(self.train_accuracy), list(self.test_accuracy)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "spec": self.spec.to_dict(),
            "status": self.status,
            "diverged_at_update": self.diverged_at_update,
            "divergence_reason": self.divergence_reason,
            "updates": self.updates,
            "evaluations": self.evaluations,
            "samples": list(self.samples),
            **{k: list(getattr(self, k)) for k in CURVES},
            "final_train_accuracy": self.final_train_accuracy,
            "final_test_accuracy": self.final_test_accuracy,
            "final_weights": dict(self.final_weights) if self.final_weights else None,
            "init_seed": self.init_seed,
            "shuffle_seed": self.shuffle_seed,
            "wall_time": self.wall_time,
            "updates_per_second": self.updates_per_second,
            **({"internals": self.internals} if self.internals is not None else {}),
            **({"final_model": self.final_model} if self.final_model is not None else {}),
            "shared_with": self.shared_with,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunResult:
        return cls(
            spec=RunSpec.from_dict(d["spec"]),
            status=d["status"],
            updates=int(d["updates"]),
            samples=[int(s) for s in d["samples"]],
            **{k: [float(a) for a in d[k]] for k in CURVES},
            init_seed=int(d["init_seed"]),
            shuffle_seed=int(d["shuffle_seed"]),
            wall_time=float(d.get("wall_time", 0.0)),
            **{k: d.get(k) for k in ("diverged_at_update", "divergence_reason", "internals",
                                     "final_model", "final_weights", "shared_with")},
        )


@dataclass(frozen=True)
class Progress:
    """Passed to ``on_progress``: where a run stands (accuracies of the last evaluation).

    ``train_loss``: the mean training loss *per example* of the batches since the previous
    report (a summed batch loss divided by the batch size), None before the first update;
    ln 10 = 2.30 is a uniform guess over the 10 classes."""

    spec: RunSpec
    update: int
    total_updates: int
    evaluations: int
    train_accuracy: float | None
    test_accuracy: float | None
    elapsed: float
    done: bool = False
    train_loss: float | None = None
