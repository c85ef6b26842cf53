"""A checked protocol as data: :class:`Protocol`, its :class:`ModelPlan` per model and their
:class:`Setting` s, with the choices and defaults of every option."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from numnet.core.errors import ProtocolError
from numnet.core.models import WEIGHT_INITS
from numnet.core.names import DATASET_NAMES, DEFAULT_DTYPE
from numnet.lab.protocol.checks import check_int

BUILTIN_PROTOCOLS = ("assignment", "assignment-mean", "notebook-variant", "assignment-remedies")

#: Images per split of the data sets a protocol may name: (training file, test file). Every data
#: set numnet knows (``names.DATASET_NAMES``) has MNIST's sizes.
DATASET_SIZES = dict.fromkeys(DATASET_NAMES, (60000, 10000))
REDUCTIONS = ("sum", "mean")
BIAS_INITS = ("zeros", "uniform_sqrt3")
CONV_ACTIVATIONS = ("none", "relu", "sigmoid", "tanh")

MODEL_OPTION_DEFAULTS: dict[str, str] = {
    "reduction": "sum",
    "weight_init": "xavier_uniform",
    "bias_init": "zeros",
    "conv_activation": "none",
}
MODEL_OPTION_CHOICES: dict[str, tuple[str, ...]] = {
    "reduction": REDUCTIONS,
    "weight_init": WEIGHT_INITS,
    "bias_init": BIAS_INITS,
    "conv_activation": CONV_ACTIVATIONS,
}
#: Options a protocol may set in [defaults], per model and per setting (the setting wins),
#: beside :data:`MODEL_OPTION_DEFAULTS`: the optimiser (a table, ``{ type = "adam", ... }``:
#: ``numnet.core.optim.check_spec``), its weight decay and the learning-rate schedule (a table,
#: ``numnet.core.schedules.check_spec``). Absent: plain SGD at a constant rate (the protocol).
TRAINING_OPTIONS = ("optimizer", "weight_decay", "schedule")
#: Every option a setting may override (its model's ``layers`` too: a variant of the model
#: that starts from the same draws, e.g. with batch normalisation, under shared starts).
SETTING_OPTIONS = (*MODEL_OPTION_DEFAULTS, *TRAINING_OPTIONS, "layers")
TRAINING_DEFAULTS: dict[str, Any] = {
    "batch_size": 100,
    "eval_every": 200,
    "eval_train_examples": 11000,
    "eval_test_examples": 10000,
    "eval_batch_size": 1000,
    "dtype": DEFAULT_DTYPE,
    "shared_start": False,
}
QUICK_DEFAULTS: dict[str, int] = {
    "epochs": 1,
    "eval_every": 50,
    "eval_train_examples": 2000,
    "eval_test_examples": 2000,
}


@dataclass(frozen=True)
class Setting:
    """One hyper-parameter setting of the protocol's table: ``(num_epochs, learning_rate)``,
    optionally a ``label`` (shown in reports) and ``options`` that override the model's
    (:data:`SETTING_OPTIONS`), as sorted ``(key, canonical JSON)`` pairs."""

    epochs: int
    lr: float
    label: str | None = None
    options: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ModelPlan:
    """One model of a protocol: its build options, its loss reduction and its settings.

    ``layers``: a custom model's definition (canonical JSON of its layer list,
    ``numnet.core.models.build``); None for the built-in models 1-4. ``optimizer`` and
    ``schedule``: canonical JSON of their tables, None for plain SGD at a constant rate;
    ``weight_decay``: None for none."""

    name: str
    reduction: str
    weight_init: str
    bias_init: str
    conv_activation: str
    settings: tuple[Setting, ...]
    layers: str | None = None
    optimizer: str | None = None
    weight_decay: float | None = None
    schedule: str | None = None

    @property
    def number(self) -> int | None:
        """The model's number in the protocol ("model4" -> 4); None for a custom model."""
        digits = self.name.removeprefix("model")
        return int(digits) if self.name != digits and digits.isdigit() else None


@dataclass(frozen=True)
class Protocol:
    """A checked protocol. ``text`` is the file as read; ``source`` where it came from."""

    name: str
    description: str
    seed: int
    dataset: str
    validation_size: int
    batch_size: int
    eval_every: int
    eval_train_examples: int
    eval_test_examples: int
    eval_batch_size: int
    dtype: str
    quick_options: dict[str, int]
    models: tuple[ModelPlan, ...]
    quick: bool = False
    shared_start: bool = False
    text: str = field(default="", compare=False, repr=False)
    source: str = field(default="", compare=False)

    def model(self, name: str) -> ModelPlan:
        """The plan of model ``name`` ("model4"); ProtocolError if the protocol lacks it."""
        for plan in self.models:
            if plan.name == name:
                return plan
        raise ProtocolError(
            f"protocol {self.name!r} has no model {name!r}; it has {[m.name for m in self.models]}"
        )

    def semantic_dict(self) -> dict[str, Any]:
        """Everything that changes results (not the name, description, text or source)."""
        d = dataclasses.asdict(self)
        for key in ("name", "description", "text", "source"):
            d.pop(key)
        if not d["shared_start"]:
            del d["shared_start"]  # absent before the option existed: keep those hashes
        # Options at their defaults are left out, so that the hashes of protocols written
        # before they existed stay as they were.
        for model in d["models"]:
            for key in ("layers", *TRAINING_OPTIONS):
                if model[key] is None:
                    del model[key]
            for setting in model["settings"]:
                for key in ("label", "options"):
                    if not setting[key]:
                        del setting[key]
        return d

    def metadata(self) -> dict[str, Any]:
        """The protocol as recorded in results.json and compare.json (JSON-ready)."""
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "hash": self.hash,
            "seed": self.seed,
            "quick": self.quick,
            "quick_options": self.quick_options if self.quick else None,
            "models": [m.name for m in self.models],
            "settings": {m.name: [[s.epochs, s.lr] for s in m.settings] for m in self.models},
            **({"labels": {m.name: [s.label for s in m.settings] for m in self.models}}
               if any(s.label for m in self.models for s in m.settings) else {}),
            "batch_size": self.batch_size,
            "eval_every": self.eval_every,
            "eval_train_examples": self.eval_train_examples,
            "eval_test_examples": self.eval_test_examples,
            "dtype": self.dtype,
            "shared_start": self.shared_start,
            "text": self.text,
        }

    @property
    def hash(self) -> str:
        """A stable hash of :meth:`semantic_dict`: equal hashes mean equal runs.

        Comments, formatting, key order, the name and the description do not change it; the
        seed, the quick flag and every number do. Resuming compares it with saved runs.
        """
        canonical = json.dumps(self.semantic_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def with_seed(self, seed: int) -> Protocol:
        """This protocol with another protocol seed (``--seed``)."""
        check_int(seed, "seed", self.source, minimum=0)
        return dataclasses.replace(self, seed=seed)

    def quick_variant(self) -> Protocol:
        """The ``--quick`` smoke variant: every setting runs ``quick.epochs`` epochs (learning
        rates kept) with the evaluation cadence and sizes of ``[quick]``; labelled QUICK."""
        if self.quick:
            return self
        q = self.quick_options
        models = tuple(
            dataclasses.replace(
                m, settings=tuple(dataclasses.replace(s, epochs=q["epochs"])
                                  for s in m.settings)
            )
            for m in self.models
        )
        return dataclasses.replace(
            self,
            models=models,
            eval_every=q["eval_every"],
            eval_train_examples=min(q["eval_train_examples"], self.eval_train_examples),
            eval_test_examples=min(q["eval_test_examples"], self.eval_test_examples),
            quick=True,
        )

    def select_models(self, names: list[str] | None) -> tuple[ModelPlan, ...]:
        """The plans of ``names`` in protocol order (all when None); ProtocolError on unknown."""
        if names is None:
            return self.models
        for name in names:
            self.model(name)
        return tuple(m for m in self.models if m.name in names)
