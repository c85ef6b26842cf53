"""Protocol files: which runs ``numnet reproduce`` makes, read from TOML and checked strictly.

A protocol names the data, the training loop's constants (batch size, evaluation cadence and
sizes), and per model the architecture options, the loss reduction, the initialisation and the
``(epochs, learning rate)`` settings. Three ship inside the package (``numnet/protocols``):
``assignment`` (SPEC exactly), ``assignment-mean`` (the same with the loss averaged over the
batch) and ``notebook-variant`` (SPEC's "known variant"). A user may pass a path to their own.

Layout of a protocol file (every key is checked; unknown keys are errors)::

    name = "assignment"            # optional, defaults to the file name
    description = "..."            # optional
    seed = 0                       # protocol seed; every run derives its own from it

    [data]
    dataset = "mnist"              # "mnist" or "fashion-mnist"
    validation_size = 5000         # first N training images (file order) are validation

    [training]
    batch_size = 100
    eval_every = 200               # updates between two evaluations
    eval_train_examples = 11000    # the first N train examples (file order) are evaluated
    eval_test_examples = 10000     # the first N test examples are evaluated
    eval_batch_size = 1000         # evaluation chunk (memory only; results do not depend on it)
    dtype = "float32"              # or "float64"

    [quick]                        # what --quick changes (a smoke run, labelled QUICK)
    epochs = 1                     # every setting runs this many epochs (learning rates kept)
    eval_every = 50
    eval_train_examples = 2000
    eval_test_examples = 2000

    [defaults]                     # per-model options, overridable in [models.<name>]
    reduction = "sum"              # "sum" (SPEC) or "mean" over the batch
    weight_init = "xavier_uniform"
    bias_init = "zeros"            # or "uniform_sqrt3": U(+-sqrt(3 / n_out))
    conv_activation = "none"       # or "relu", "sigmoid", "tanh" (only model 4 has convs)

    [models.model1]
    settings = [ { epochs = 5, lr = 0.0001 }, { epochs = 5, lr = 0.005 } ]

Errors are :class:`numnet.core.errors.ProtocolError` naming the file and the key path
(``models.model3.settings[1].lr``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from numnet.core.errors import ProtocolError

BUILTIN_PROTOCOLS = ("assignment", "assignment-mean", "notebook-variant")

#: Images per split of the datasets a protocol may name: (training file, test file).
DATASET_SIZES = {"mnist": (60000, 10000), "fashion-mnist": (60000, 10000)}
MODEL_NAMES = ("model1", "model2", "model3", "model4")
REDUCTIONS = ("sum", "mean")
WEIGHT_INITS = ("xavier_uniform",)
BIAS_INITS = ("zeros", "uniform_sqrt3")
CONV_ACTIVATIONS = ("none", "relu", "sigmoid", "tanh")
DTYPES = ("float32", "float64")

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
TRAINING_DEFAULTS: dict[str, Any] = {
    "batch_size": 100,
    "eval_every": 200,
    "eval_train_examples": 11000,
    "eval_test_examples": 10000,
    "eval_batch_size": 1000,
    "dtype": "float32",
}
QUICK_DEFAULTS: dict[str, int] = {
    "epochs": 1,
    "eval_every": 50,
    "eval_train_examples": 2000,
    "eval_test_examples": 2000,
}


@dataclass(frozen=True)
class Setting:
    """One hyper-parameter setting of SPEC's table: ``(num_epochs, learning_rate)``."""

    epochs: int
    lr: float


@dataclass(frozen=True)
class ModelPlan:
    """One model of a protocol: its build options, its loss reduction and its settings."""

    name: str
    reduction: str
    weight_init: str
    bias_init: str
    conv_activation: str
    settings: tuple[Setting, ...]

    @property
    def number(self) -> int:
        """The model's number in SPEC ("model4" -> 4)."""
        return int(self.name.removeprefix("model"))


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
            "batch_size": self.batch_size,
            "eval_every": self.eval_every,
            "eval_train_examples": self.eval_train_examples,
            "eval_test_examples": self.eval_test_examples,
            "dtype": self.dtype,
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
        _check_int(seed, "seed", self.source, minimum=0)
        return dataclasses.replace(self, seed=seed)

    def quick_variant(self) -> Protocol:
        """The ``--quick`` smoke variant: every setting runs ``quick.epochs`` epochs (learning
        rates kept) with the evaluation cadence and sizes of ``[quick]``; labelled QUICK."""
        if self.quick:
            return self
        q = self.quick_options
        models = tuple(
            dataclasses.replace(
                m, settings=tuple(Setting(q["epochs"], s.lr) for s in m.settings)
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


# --------------------------------------------------------------------------- loading


def builtin_path(name: str) -> Path:
    """Path of the packaged protocol ``name`` (one of :data:`BUILTIN_PROTOCOLS`)."""
    return Path(str(resources.files("numnet.lab") / "protocols" / f"{name}.toml"))


def load(name_or_path: str | Path) -> Protocol:
    """Load a protocol by built-in name ("assignment") or from a TOML file path.

    Raises ProtocolError (file missing, TOML syntax, unknown key, bad value) with the key path.
    """
    text, source, default_name = _read(name_or_path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProtocolError(f"{source}: not valid TOML: {exc}") from None
    return parse(raw, source=source, text=text, default_name=default_name)


def loads(text: str, *, source: str = "<string>", default_name: str = "custom") -> Protocol:
    """Parse and check a protocol given as TOML text."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProtocolError(f"{source}: not valid TOML: {exc}") from None
    return parse(raw, source=source, text=text, default_name=default_name)


def _read(name_or_path: str | Path) -> tuple[str, str, str]:
    s = str(name_or_path)
    if s in BUILTIN_PROTOCOLS:
        path = builtin_path(s)
        return path.read_text(encoding="utf-8"), f"builtin:{s}", s
    path = Path(s)
    if path.is_file():
        try:
            return path.read_text(encoding="utf-8"), str(path), path.stem
        except (OSError, UnicodeDecodeError) as exc:
            raise ProtocolError(f"{path}: cannot read the protocol file: {exc}") from None
    if path.suffix == ".toml" or "/" in s or "\\" in s:
        raise ProtocolError(f"protocol file {s} does not exist; check the path")
    raise ProtocolError(
        f"unknown protocol {s!r}: give a built-in name ({', '.join(BUILTIN_PROTOCOLS)}) "
        "or the path of a .toml protocol file"
    )


def parse(
    raw: dict[str, Any], *, source: str = "<dict>", text: str = "", default_name: str = "custom"
) -> Protocol:
    """Check a decoded TOML document against the schema and build a :class:`Protocol`."""
    _check_keys(raw, {"name", "description", "seed", "data", "training", "quick", "defaults",
                      "models"}, "", source)
    name = _get_str(raw, "name", "", source, default=default_name)
    description = _get_str(raw, "description", "", source, default="")
    seed = raw.get("seed", 0)
    _check_int(seed, "seed", source, minimum=0)

    data = _get_table(raw, "data", "", source)
    _check_keys(data, {"dataset", "validation_size"}, "data", source)
    dataset = _get_str(data, "dataset", "data", source, default="mnist")
    if dataset not in DATASET_SIZES:
        raise ProtocolError(
            f"{source}: data.dataset = {dataset!r} is not a known dataset; "
            f"use one of {sorted(DATASET_SIZES)}"
        )
    n_train_file, n_test = DATASET_SIZES[dataset]
    validation_size = data.get("validation_size", 5000)
    _check_int(validation_size, "data.validation_size", source, minimum=0,
               maximum=n_train_file - 1)
    n_train = n_train_file - validation_size

    training = _get_table(raw, "training", "", source)
    _check_keys(training, set(TRAINING_DEFAULTS), "training", source)
    t = {**TRAINING_DEFAULTS, **training}
    _check_int(t["batch_size"], "training.batch_size", source, minimum=1)
    if t["batch_size"] > n_train:
        raise ProtocolError(
            f"{source}: training.batch_size = {t['batch_size']} is larger than the train split "
            f"({n_train} examples of {dataset} after a validation split of {validation_size})"
        )
    _check_int(t["eval_every"], "training.eval_every", source, minimum=1)
    _check_int(t["eval_train_examples"], "training.eval_train_examples", source, minimum=1,
               maximum=n_train)
    _check_int(t["eval_test_examples"], "training.eval_test_examples", source, minimum=1,
               maximum=n_test)
    _check_int(t["eval_batch_size"], "training.eval_batch_size", source, minimum=1)
    _check_choice(t["dtype"], DTYPES, "training.dtype", source)

    quick = _get_table(raw, "quick", "", source)
    _check_keys(quick, set(QUICK_DEFAULTS), "quick", source)
    q = {**QUICK_DEFAULTS, **quick}
    for key, value in q.items():
        _check_int(value, f"quick.{key}", source, minimum=1)

    defaults = _get_table(raw, "defaults", "", source)
    _check_keys(defaults, set(MODEL_OPTION_DEFAULTS), "defaults", source)
    for key, value in defaults.items():
        _check_choice(value, MODEL_OPTION_CHOICES[key], f"defaults.{key}", source)
    model_defaults = {**MODEL_OPTION_DEFAULTS, **defaults}

    models_raw = _get_table(raw, "models", "", source)
    if not models_raw:
        raise ProtocolError(f"{source}: the protocol names no models; add a [models.model1] table")
    plans = []
    for model_name, body in models_raw.items():
        path = f"models.{model_name}"
        if model_name not in MODEL_NAMES:
            raise ProtocolError(
                f"{source}: {path}: unknown model {model_name!r}; use one of {list(MODEL_NAMES)}"
            )
        if not isinstance(body, dict):
            raise ProtocolError(f"{source}: {path} must be a table ([models.{model_name}])")
        _check_keys(body, {"settings", *MODEL_OPTION_DEFAULTS}, path, source)
        options = dict(model_defaults)
        for key in MODEL_OPTION_DEFAULTS:
            if key in body:
                _check_choice(body[key], MODEL_OPTION_CHOICES[key], f"{path}.{key}", source)
                options[key] = body[key]
        settings_raw = body.get("settings")
        if not isinstance(settings_raw, list) or not settings_raw:
            raise ProtocolError(
                f"{source}: {path}.settings must be a non-empty array of "
                "{ epochs = E, lr = LR } tables"
            )
        settings = []
        for i, s in enumerate(settings_raw):
            spath = f"{path}.settings[{i}]"
            if not isinstance(s, dict):
                raise ProtocolError(f"{source}: {spath} must be a table {{ epochs = E, lr = LR }}")
            _check_keys(s, {"epochs", "lr"}, spath, source)
            for key in ("epochs", "lr"):
                if key not in s:
                    raise ProtocolError(f"{source}: {spath}.{key} is missing")
            _check_int(s["epochs"], f"{spath}.epochs", source, minimum=1)
            _check_positive_float(s["lr"], f"{spath}.lr", source)
            settings.append(Setting(int(s["epochs"]), float(s["lr"])))
        plans.append(ModelPlan(name=model_name, settings=tuple(settings), **options))
    plans.sort(key=lambda m: m.number)

    return Protocol(
        name=name,
        description=description,
        seed=int(seed),
        dataset=dataset,
        validation_size=int(validation_size),
        batch_size=int(t["batch_size"]),
        eval_every=int(t["eval_every"]),
        eval_train_examples=int(t["eval_train_examples"]),
        eval_test_examples=int(t["eval_test_examples"]),
        eval_batch_size=int(t["eval_batch_size"]),
        dtype=t["dtype"],
        quick_options={k: int(v) for k, v in q.items()},
        models=tuple(plans),
        text=text,
        source=source,
    )


def check_against_data(protocol: Protocol, n_train: int, n_test: int) -> None:
    """Check the sizes a protocol asks for against the splits actually loaded."""
    src = protocol.source
    if protocol.batch_size > n_train:
        raise ProtocolError(
            f"{src}: training.batch_size = {protocol.batch_size} is larger than the train "
            f"split ({n_train} examples)"
        )
    if protocol.eval_train_examples > n_train:
        raise ProtocolError(
            f"{src}: training.eval_train_examples = {protocol.eval_train_examples} is larger "
            f"than the train split ({n_train} examples)"
        )
    if protocol.eval_test_examples > n_test:
        raise ProtocolError(
            f"{src}: training.eval_test_examples = {protocol.eval_test_examples} is larger "
            f"than the test split ({n_test} examples)"
        )


# --------------------------------------------------------------------------- checks


def _where(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _check_keys(table: dict[str, Any], allowed: set[str], path: str, source: str) -> None:
    for key in table:
        if key not in allowed:
            raise ProtocolError(
                f"{source}: unknown key {_where(path, key)!r}; "
                f"allowed here: {', '.join(sorted(allowed))}"
            )


def _get_table(raw: dict[str, Any], key: str, path: str, source: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ProtocolError(f"{source}: {_where(path, key)} must be a table ([{key}])")
    return value


def _get_str(raw: dict[str, Any], key: str, path: str, source: str, *, default: str) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str):
        raise ProtocolError(
            f"{source}: {_where(path, key)} must be a string, got {type(value).__name__}"
        )
    return value


def _check_int(
    value: Any, where: str, source: str, *, minimum: int | None = None,
    maximum: int | None = None,
) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(
            f"{source}: {where} must be an integer, got {value!r} ({type(value).__name__})"
        )
    if minimum is not None and value < minimum:
        rule = "positive" if minimum == 1 else f">= {minimum}"
        raise ProtocolError(f"{source}: {where} must be {rule}, got {value}")
    if maximum is not None and value > maximum:
        raise ProtocolError(f"{source}: {where} must be at most {maximum}, got {value}")


def _check_positive_float(value: Any, where: str, source: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(
            f"{source}: {where} must be a number, got {value!r} ({type(value).__name__})"
        )
    if not math.isfinite(value) or value <= 0:
        raise ProtocolError(f"{source}: {where} must be a positive finite number, got {value}")


def _check_choice(value: Any, choices: tuple[str, ...], where: str, source: str) -> None:
    if value not in choices:
        raise ProtocolError(
            f"{source}: {where} = {value!r} is not allowed; use one of {list(choices)}"
        )


def resolve(
    protocol: Protocol | str | Path, seed: int | None = None, quick: bool = False
) -> Protocol:
    """A protocol (or its built-in name or file path) with ``--seed`` and ``--quick`` applied."""
    if not isinstance(protocol, Protocol):
        protocol = load(protocol)
    if seed is not None:
        protocol = protocol.with_seed(seed)
    return protocol.quick_variant() if quick else protocol
