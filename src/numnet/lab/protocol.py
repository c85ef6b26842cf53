"""Protocol files: which runs ``numnet reproduce`` makes, read from TOML and checked strictly.

A protocol names the data, the training loop's constants (batch size, evaluation cadence and
sizes), and per model the architecture options, the loss reduction, the initialisation and the
``(epochs, learning rate)`` settings. Three ship inside the package (``numnet/protocols``):
``assignment`` (docs/protocol.md exactly), ``assignment-mean`` (the same with the loss
averaged over the batch) and ``notebook-variant`` (an earlier NumPy solution's choices, see
docs/protocol.md, "Variants"). A user may pass a path to their own.

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
    shared_start = false           # true: every setting of a model starts from the same
                                   # weights and sees the same batches (seeds per model)

    [quick]                        # what --quick changes (a smoke run, labelled QUICK)
    epochs = 1                     # every setting runs this many epochs (learning rates kept)
    eval_every = 50
    eval_train_examples = 2000
    eval_test_examples = 2000

    [defaults]                     # per-model options, overridable in [models.<name>]
    reduction = "sum"              # "sum" (the protocol) or "mean" over the batch
    weight_init = "xavier_uniform"   # or "conv_uniform_fan_sum": conv kernels uniform in
                                   # +-sqrt(6 / (kh*kw*c_in*c_out + c_out)), dense Glorot
    bias_init = "zeros"            # or "uniform_sqrt3": U(+-sqrt(3 / n_out))
    conv_activation = "none"       # or "relu", "sigmoid", "tanh" (only model 4 has convs)

    [models.model1]
    settings = [ { epochs = 5, lr = 0.0001 }, { epochs = 5, lr = 0.005 } ]

Errors are :class:`numnet.core.errors.ProtocolError` naming the file and the key path
(``models.model3.settings[1].lr``).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from numnet.core import documents, models, optim, schedules
from numnet.core.errors import ProtocolError
from numnet.core.models import WEIGHT_INITS
from numnet.core.names import CUSTOM_MODEL_NAME, DATASET_NAMES, DEFAULT_DTYPE, DTYPES, MODEL_NAMES

BUILTIN_PROTOCOLS = ("assignment", "assignment-mean", "notebook-variant", "assignment-remedies")

#: Images per split of the data sets a protocol may name: (training file, test file). Every data
#: set numnet knows (``names.DATASET_NAMES``) has MNIST's sizes.
DATASET_SIZES = dict.fromkeys(DATASET_NAMES, (60000, 10000))
REDUCTIONS = ("sum", "mean")
BIAS_INITS = ("zeros", "uniform_sqrt3")
CONV_ACTIVATIONS = ("none", "relu", "sigmoid", "tanh")

#: The per-model options' choices; the first of each is its default.
MODEL_OPTION_CHOICES: dict[str, tuple[str, ...]] = {
    "reduction": REDUCTIONS,
    "weight_init": WEIGHT_INITS,
    "bias_init": BIAS_INITS,
    "conv_activation": CONV_ACTIVATIONS,
}
MODEL_OPTION_DEFAULTS = {key: choices[0] for key, choices in MODEL_OPTION_CHOICES.items()}
#: Options a protocol may set in [defaults], per model and per setting (the setting wins),
#: beside :data:`MODEL_OPTION_DEFAULTS`: the optimiser (a table, ``{ type = "adam", ... }``:
#: ``numnet.core.optim.check_spec``), its weight decay and the learning-rate schedule (a table,
#: ``numnet.core.schedules.check_spec``). Absent: plain SGD at a constant rate (the protocol).
TRAINING_OPTIONS = ("optimizer", "weight_decay", "schedule")
#: Every option a setting may override (its model's ``layers`` too: a variant of the model
#: that starts from the same draws, e.g. with batch normalisation, under shared starts).
SETTING_OPTIONS = (*MODEL_OPTION_DEFAULTS, *TRAINING_OPTIONS, "layers")
#: The options kept as canonical JSON text (tables and arrays), and what each must be.
TABLE_OPTIONS = {
    "layers": 'an array of layer tables, e.g. [ { type = "linear", units = 10 } ]',
    "optimizer": 'a table, e.g. { type = "adam" }',
    "schedule": 'a table, e.g. { type = "cosine", warmup_updates = 100 }',
}
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
#: The most updates one run may plan: 10^7 is about 180 epochs of MNIST at batch 1, or 18,000
#: at the protocol's batch of 100 -- far beyond any protocol, well short of a typo's 10^8 epochs.
MAX_UPDATES_PER_RUN = 10**7
#: Bounds of a protocol file (:mod:`numnet.core.documents`): a protocol is a few KB and nests
#: three tables deep (``[models.model1]``, its ``settings`` array of inline tables).
MAX_PROTOCOL_BYTES = 1 << 20
MAX_PROTOCOL_DEPTH = 8
MAX_MODELS = 64
MAX_SETTINGS = 64
#: What a protocol's ``name`` may hold: it names the output folder (``runs/<name>-...``), so
#: no path separator, no ``..``, nothing a shell or a file system would trip on.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
#: What a custom model's name may hold: it is part of run ids and file names.
MODEL_NAME_PATTERN = re.compile(CUSTOM_MODEL_NAME)


# ------------------------------------------------------------------------------ the data


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
        models = tuple(dataclasses.replace(m, settings=tuple(
            dataclasses.replace(s, epochs=q["epochs"]) for s in m.settings)) for m in self.models)
        return dataclasses.replace(
            self, models=models, eval_every=q["eval_every"], quick=True,
            eval_train_examples=min(q["eval_train_examples"], self.eval_train_examples),
            eval_test_examples=min(q["eval_test_examples"], self.eval_test_examples))

    def select_models(self, names: list[str] | None) -> tuple[ModelPlan, ...]:
        """The plans of ``names`` in protocol order (all when None); ProtocolError on unknown."""
        if names is None:
            return self.models
        for name in names:
            self.model(name)
        return tuple(m for m in self.models if m.name in names)


def planned_updates(epochs: int, batch_size: int, num_examples: int) -> int:
    """The updates ``epochs`` epochs of ``num_examples`` make at ``batch_size`` (within one of
    ``numnet.lab.training.expected_updates``, computed without looping)."""
    return epochs * -(-num_examples // batch_size) + 1


# ------------------------------------------------------------------------------ reading


def builtin_path(name: str) -> Path:
    """Path of the packaged protocol ``name`` (one of :data:`BUILTIN_PROTOCOLS`)."""
    return Path(str(resources.files("numnet.lab") / "protocols" / f"{name}.toml"))


def load(name_or_path: str | Path) -> Protocol:
    """Load a protocol by built-in name ("assignment") or from a TOML file path.

    Raises ProtocolError (file missing, TOML syntax, unknown key, bad value) with the key path.
    """
    text, source, default_name = _read(name_or_path)
    return loads(text, source=source, default_name=default_name)


def safe_name(stem: str) -> str:
    """A protocol name made from a file name: characters outside ``NAME_PATTERN`` become
    ``-`` (a file "my run.toml" gives the name "my-run")."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", stem).lstrip("._-")[:100]
    return name or "custom"


def loads(text: str, *, source: str = "<string>", default_name: str = "custom") -> Protocol:
    """Parse and check a protocol given as TOML text (a leading byte-order mark is dropped:
    editors on Windows write one, TOML does not allow it)."""
    text = text.removeprefix("\ufeff")
    if len(text) > MAX_PROTOCOL_BYTES:  # characters: at least as many bytes
        raise ProtocolError(f"{source}: the protocol is {len(text)} characters, more than the "
                            f"{MAX_PROTOCOL_BYTES} numnet reads; a protocol is a few KB")
    # nesting bounded before tomllib (which recurses once per level) sees the text
    raw = documents.loads_toml(text, documents.printable(source), "protocol file",
                               max_depth=MAX_PROTOCOL_DEPTH, error=ProtocolError)
    return parse(raw, source=source, text=text, default_name=default_name)


def _read(name_or_path: str | Path) -> tuple[str, str, str]:
    s = str(name_or_path)
    if s in BUILTIN_PROTOCOLS:
        path = builtin_path(s)
        return path.read_text(encoding="utf-8"), f"builtin:{s}", s
    path = Path(s)
    shown = documents.display(path)
    if path.is_file():
        # a regular file (checked again on the open descriptor), at most MAX_PROTOCOL_BYTES
        text = documents.read_text(path, "protocol file", max_bytes=MAX_PROTOCOL_BYTES,
                                   error=ProtocolError)
        return text, shown, safe_name(documents.display(path.stem))
    if path.is_dir():
        raise ProtocolError(f"{shown} is a directory, not a protocol file; give the path of a "
                            ".toml file")
    if path.exists():
        raise ProtocolError(f"{shown} is not a regular file (a device, a pipe or a socket); "
                            "give the path of a .toml protocol file")
    if path.suffix == ".toml" or "/" in s or "\\" in s:
        raise ProtocolError(f"protocol file {shown} does not exist; check the path")
    raise ProtocolError(
        f"unknown protocol {s!r}: give a built-in name ({', '.join(BUILTIN_PROTOCOLS)}) "
        "or the path of a .toml protocol file"
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


def check_against_data(protocol: Protocol, n_train: int, n_test: int) -> None:
    """Check the sizes a protocol asks for against the splits actually loaded."""
    for key, n, split in (("batch_size", n_train, "train"),
                          ("eval_train_examples", n_train, "train"),
                          ("eval_test_examples", n_test, "test")):
        if getattr(protocol, key) > n:
            raise ProtocolError(f"{protocol.source}: training.{key} = {getattr(protocol, key)} "
                                f"is larger than the {split} split ({n} examples)")


# ------------------------------------------------------------------------------ the checks
# Each raises a ProtocolError that names the file and the key path
# (``models.model3.settings[1].lr``) and says what is allowed.


def _where(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _table(raw: dict[str, Any], key: str, allowed: Any, source: str) -> dict[str, Any]:
    """The table ``raw[key]`` of the top level (empty when absent), its keys among ``allowed``
    (any when None)."""
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ProtocolError(f"{source}: {key} must be a table ([{key}])")
    if allowed is not None:
        _check_keys(value, allowed, key, source)
    return value


def _check_keys(table: dict[str, Any], allowed: Any, path: str, source: str) -> None:
    for key in table:
        if key not in allowed:
            raise ProtocolError(f"{source}: unknown key {_where(path, key)!r}; "
                                f"allowed here: {', '.join(sorted(allowed))}")


def _get_str(raw: dict[str, Any], key: str, path: str, source: str, default: str) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str):
        raise ProtocolError(f"{source}: {_where(path, key)} must be a string, got "
                            f"{type(value).__name__}")
    return value


def check_int(value: Any, where: str, source: str, *, minimum: int | None = None,
              maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(
            f"{source}: {where} must be an integer, got {value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:
        rule = "positive" if minimum == 1 else f">= {minimum}"
        raise ProtocolError(f"{source}: {where} must be {rule}, got {value}")
    if maximum is not None and value > maximum:
        raise ProtocolError(f"{source}: {where} must be at most {maximum}, got {value}")


def _check_choice(value: Any, choices: tuple[Any, ...], where: str, source: str) -> None:
    if value not in choices:
        raise ProtocolError(
            f"{source}: {where} = {value!r} is not allowed; use one of {list(choices)}")


def _check_updates(epochs: int, batch_size: int, num_examples: int, where: str,
                   source: str) -> None:
    """A ProtocolError naming ``where`` when a run would plan more than MAX_UPDATES_PER_RUN."""
    updates = planned_updates(epochs, batch_size, num_examples)
    if updates > MAX_UPDATES_PER_RUN:
        raise ProtocolError(
            f"{source}: {where} = {epochs} plans {updates:.3g} updates per run (batch "
            f"{batch_size}, {num_examples} examples), more than the {MAX_UPDATES_PER_RUN:.0e} "
            "numnet allows; use fewer epochs")


def parse(
    raw: dict[str, Any], *, source: str = "<dict>", text: str = "", default_name: str = "custom"
) -> Protocol:
    """Check a decoded TOML document against the schema and build a :class:`Protocol`."""
    _check_keys(raw, {"name", "description", "seed", "data", "training", "quick", "defaults",
                      "models"}, "", source)
    name = _get_str(raw, "name", "", source, default_name)
    if not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise ProtocolError(
            f"{source}: name = {name!r} is not allowed: it names the output folder, so use 1 to "
            "100 letters, digits, '-', '_' or '.' (no '/', no '..', not starting with '.')"
        )
    description = _get_str(raw, "description", "", source, "")
    seed = raw.get("seed", 0)
    check_int(seed, "seed", source, minimum=0)

    data = _table(raw, "data", {"dataset", "validation_size"}, source)
    dataset = _get_str(data, "dataset", "data", source, "mnist")
    if dataset not in DATASET_SIZES:
        raise ProtocolError(f"{source}: data.dataset = {dataset!r} is not a known dataset; "
                            f"use one of {sorted(DATASET_SIZES)}")
    n_train_file, n_test = DATASET_SIZES[dataset]
    validation_size = data.get("validation_size", 5000)
    check_int(validation_size, "data.validation_size", source, minimum=0,
              maximum=n_train_file - 1)
    n_train = n_train_file - validation_size

    t = {**TRAINING_DEFAULTS, **_table(raw, "training", TRAINING_DEFAULTS, source)}
    check_int(t["batch_size"], "training.batch_size", source, minimum=1)
    if t["batch_size"] > n_train:
        raise ProtocolError(
            f"{source}: training.batch_size = {t['batch_size']} is larger than the train split "
            f"({n_train} examples of {dataset} after a validation split of {validation_size})")
    for key, maximum in (("eval_every", None), ("eval_train_examples", n_train),
                         ("eval_test_examples", n_test), ("eval_batch_size", None)):
        check_int(t[key], f"training.{key}", source, minimum=1, maximum=maximum)
    _check_choice(t["dtype"], DTYPES, "training.dtype", source)
    if not isinstance(t["shared_start"], bool):
        raise ProtocolError(f"{source}: training.shared_start must be true or false, got "
                            f"{t['shared_start']!r} ({type(t['shared_start']).__name__})")

    q = {**QUICK_DEFAULTS, **_table(raw, "quick", QUICK_DEFAULTS, source)}
    for key, value in q.items():
        check_int(value, f"quick.{key}", source, minimum=1)
    _check_updates(q["epochs"], t["batch_size"], n_train, "quick.epochs", source)

    defaults = _table(raw, "defaults", {*MODEL_OPTION_DEFAULTS, *TRAINING_OPTIONS}, source)
    model_defaults = {**MODEL_OPTION_DEFAULTS, **dict.fromkeys(TRAINING_OPTIONS)}
    for key, value in defaults.items():
        model_defaults[key] = check_option(key, value, f"defaults.{key}", source)
    models_raw = _table(raw, "models", None, source)
    if not models_raw:
        raise ProtocolError(f"{source}: the protocol names no models; add a [models.model1] table")
    if len(models_raw) > MAX_MODELS:
        raise ProtocolError(f"{source}: the protocol names {len(models_raw)} models; at most "
                            f"{MAX_MODELS} are allowed")
    plans = [parse_model(model_name, body, model_defaults, t["batch_size"], n_train, source)
             for model_name, body in models_raw.items()]
    if all(plan.name in MODEL_NAMES for plan in plans):
        plans.sort(key=lambda m: MODEL_NAMES.index(m.name))  # the protocol's order, 1 to 4

    return Protocol(
        name=name,
        description=description,
        seed=int(seed),
        dataset=dataset,
        validation_size=int(validation_size),
        **{key: int(t[key]) for key in ("batch_size", "eval_every", "eval_train_examples",
                                        "eval_test_examples", "eval_batch_size")},
        dtype=t["dtype"],
        shared_start=t["shared_start"],
        quick_options={k: int(v) for k, v in q.items()},
        models=tuple(plans),
        text=text,
        source=source,
    )


def parse_model(model_name: str, body: Any, model_defaults: dict[str, Any], batch_size: int,
                n_train: int, source: str) -> ModelPlan:
    """One ``[models.NAME]`` table: a built-in model (model1..model4) or a custom one with its
    ``layers``; its options over ``model_defaults``; its settings, each overriding them."""
    path = f"models.{model_name}"
    if not isinstance(body, dict):
        raise ProtocolError(f"{source}: {path} must be a table ([models.{model_name}])")
    builtin = model_name in MODEL_NAMES
    if not builtin and not MODEL_NAME_PATTERN.fullmatch(model_name):
        raise ProtocolError(
            f"{source}: {path}: a model's name must start with a letter and hold 1 to 40 "
            "letters, digits, '-' or '_' (it names the runs' files)")
    _check_keys(body, {"settings", *SETTING_OPTIONS}, path, source)
    if builtin and "layers" in body:
        raise ProtocolError(f"{source}: {path}.layers: {model_name} is a built-in model "
                            "(docs/protocol.md); give your own model another name, e.g. "
                            f"[models.my-{model_name}]")
    if not builtin and "layers" not in body:
        close = difflib.get_close_matches(model_name, MODEL_NAMES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ProtocolError(
            f"{source}: {path}: unknown model {model_name!r}{hint}; use one of "
            f"{list(MODEL_NAMES)} or define it with layers = [ {{ type = \"linear\", "
            "units = 10 }, ... ]")
    options = {"layers": None, **model_defaults}
    for key in SETTING_OPTIONS:
        if key in body:
            options[key] = check_option(key, body[key], f"{path}.{key}", source,
                                        model=model_name)
    settings_raw = body.get("settings")
    if not isinstance(settings_raw, list) or not settings_raw:
        raise ProtocolError(f"{source}: {path}.settings must be a non-empty array of "
                            "{ epochs = E, lr = LR } tables")
    if len(settings_raw) > MAX_SETTINGS:
        raise ProtocolError(f"{source}: {path}.settings has {len(settings_raw)} settings; at "
                            f"most {MAX_SETTINGS} are allowed")
    settings = []
    for i, s in enumerate(settings_raw):
        spath = f"{path}.settings[{i}]"
        if not isinstance(s, dict):
            raise ProtocolError(f"{source}: {spath} must be a table {{ epochs = E, lr = LR }}")
        _check_keys(s, {"epochs", "lr", "label", *SETTING_OPTIONS}, spath, source)
        for key in ("epochs", "lr"):
            if key not in s:
                raise ProtocolError(f"{source}: {spath}.{key} is missing")
        check_int(s["epochs"], f"{spath}.epochs", source, minimum=1)
        _check_updates(s["epochs"], batch_size, n_train, f"{spath}.epochs", source)
        lr = s["lr"]
        if isinstance(lr, bool) or not isinstance(lr, int | float):
            raise ProtocolError(f"{source}: {spath}.lr must be a number, got {lr!r} "
                                f"({type(lr).__name__})")
        if not math.isfinite(lr) or lr <= 0:
            raise ProtocolError(f"{source}: {spath}.lr must be a positive finite number, got "
                                f"{lr}")
        label = s.get("label")
        if label is not None and (not isinstance(label, str) or not 0 < len(label) <= 40
                                  or not label.isprintable()):
            raise ProtocolError(f"{source}: {spath}.label must be a printable string of 1 to "
                                f"40 characters, got {label!r}")
        overrides = {key: check_option(key, s[key], f"{spath}.{key}", source, model=model_name)
                     for key in SETTING_OPTIONS if key in s}
        settings.append(Setting(int(s["epochs"]), float(lr), label,
                                tuple(sorted((k, canonical(v)) for k, v in overrides.items()))))
    return ModelPlan(name=model_name, settings=tuple(settings), **{
        key: canonical(value) if key in TABLE_OPTIONS and value is not None else value
        for key, value in options.items()})


def canonical(value: Any) -> str:
    """A value as canonical JSON (sorted keys, no spaces): equal options, equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def check_table_option(key: str, value: Any, where: str, model: str) -> None:
    """A model's ``layers``, an optimiser or a schedule (:data:`TABLE_OPTIONS`) checked by the
    core's own checks -- what a run would build (``models.check_definition`` also infers every
    layer's shape); the core's one-line ValueError otherwise."""
    if key == "layers":
        models.check_definition(value, name=model)
    else:
        (optim if key == "optimizer" else schedules).check_spec(value, where=where)


def check_option(key: str, value: Any, where: str, source: str, model: str = "") -> Any:
    """A model option from a protocol, checked (a ProtocolError naming ``where`` otherwise):
    a choice (:data:`MODEL_OPTION_CHOICES`), a weight decay (a number >= 0) or a table option
    (:func:`check_table_option`). Returns the value as it is kept."""
    if key in MODEL_OPTION_CHOICES:
        _check_choice(value, MODEL_OPTION_CHOICES[key], where, source)
        return value
    if key == "weight_decay":
        if (isinstance(value, bool) or not isinstance(value, int | float)
                or not math.isfinite(value) or value < 0):
            raise ProtocolError(f"{source}: {where} must be a finite number >= 0, got {value!r}")
        return float(value)
    if not isinstance(value, list if key == "layers" else dict):
        raise ProtocolError(f"{source}: {where} must be {TABLE_OPTIONS[key]}")
    try:
        check_table_option(key, value, f"{source}: {where}", model)
    except ValueError as exc:  # the core's one-line errors (DefinitionError, OptimizerError...)
        text = str(exc)
        raise ProtocolError(text if text.startswith(source) else f"{source}: {where}: {text}"
                            ) from None
    return [dict(layer) for layer in value] if key == "layers" else dict(value)
