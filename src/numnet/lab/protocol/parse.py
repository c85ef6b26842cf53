"""Reading protocol files: the built-in ones by name, any other from a TOML path, checked
against the schema of :mod:`numnet.lab.protocol` strictly (unknown keys are errors)."""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

from numnet.core import documents, models, optim, schedules
from numnet.core.errors import ProtocolError
from numnet.core.names import CUSTOM_MODEL_NAME, DTYPES, MODEL_NAMES
from numnet.lab.protocol.checks import (
    check_bool,
    check_choice,
    check_int,
    check_keys,
    check_positive_float,
    check_updates,
    get_str,
    get_table,
)
from numnet.lab.protocol.model import (
    BUILTIN_PROTOCOLS,
    DATASET_SIZES,
    MODEL_OPTION_CHOICES,
    MODEL_OPTION_DEFAULTS,
    QUICK_DEFAULTS,
    SETTING_OPTIONS,
    TRAINING_DEFAULTS,
    TRAINING_OPTIONS,
    ModelPlan,
    Protocol,
    Setting,
)

#: Bounds of a protocol file (:mod:`numnet.core.documents`): a protocol is a few KB and nests
#: three tables deep (``[models.model1]``, its ``settings`` array of inline tables).
MAX_PROTOCOL_BYTES = 1 << 20
MAX_PROTOCOL_DEPTH = 8


def builtin_path(name: str) -> Path:
    """Path of the packaged protocol ``name`` (one of :data:`BUILTIN_PROTOCOLS`)."""
    return Path(str(resources.files("numnet.lab") / "protocols" / f"{name}.toml"))


def load(name_or_path: str | Path) -> Protocol:
    """Load a protocol by built-in name ("assignment") or from a TOML file path.

    Raises ProtocolError (file missing, TOML syntax, unknown key, bad value) with the key path.
    """
    text, source, default_name = _read(name_or_path)
    return loads(text, source=source, default_name=default_name)


#: What a protocol's ``name`` may hold: it names the output folder (``runs/<name>-...``), so
#: no path separator, no ``..``, nothing a shell or a file system would trip on.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def display_path(path: str | os.PathLike[str]) -> str:
    """``path`` as text that can be printed and written as UTF-8 whatever bytes it holds (a
    name that is not valid UTF-8 shows U+FFFD where its bad bytes were; a control character,
    a newline in a file name, is escaped so that a message stays one line)."""
    return documents.display(path)


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
    shown = display_path(path)
    if path.is_file():
        # a regular file (checked again on the open descriptor), at most MAX_PROTOCOL_BYTES
        text = documents.read_text(path, "protocol file", max_bytes=MAX_PROTOCOL_BYTES,
                                   error=ProtocolError)
        return text, shown, safe_name(display_path(path.stem))
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


def parse(
    raw: dict[str, Any], *, source: str = "<dict>", text: str = "", default_name: str = "custom"
) -> Protocol:
    """Check a decoded TOML document against the schema and build a :class:`Protocol`."""
    check_keys(raw, {"name", "description", "seed", "data", "training", "quick", "defaults",
                      "models"}, "", source)
    name = get_str(raw, "name", "", source, default=default_name)
    if not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise ProtocolError(
            f"{source}: name = {name!r} is not allowed: it names the output folder, so use 1 to "
            "100 letters, digits, '-', '_' or '.' (no '/', no '..', not starting with '.')"
        )
    description = get_str(raw, "description", "", source, default="")
    seed = raw.get("seed", 0)
    check_int(seed, "seed", source, minimum=0)

    data = get_table(raw, "data", "", source)
    check_keys(data, {"dataset", "validation_size"}, "data", source)
    dataset = get_str(data, "dataset", "data", source, default="mnist")
    if dataset not in DATASET_SIZES:
        raise ProtocolError(
            f"{source}: data.dataset = {dataset!r} is not a known dataset; "
            f"use one of {sorted(DATASET_SIZES)}"
        )
    n_train_file, n_test = DATASET_SIZES[dataset]
    validation_size = data.get("validation_size", 5000)
    check_int(validation_size, "data.validation_size", source, minimum=0,
               maximum=n_train_file - 1)
    n_train = n_train_file - validation_size

    training = get_table(raw, "training", "", source)
    check_keys(training, set(TRAINING_DEFAULTS), "training", source)
    t = {**TRAINING_DEFAULTS, **training}
    check_int(t["batch_size"], "training.batch_size", source, minimum=1)
    if t["batch_size"] > n_train:
        raise ProtocolError(
            f"{source}: training.batch_size = {t['batch_size']} is larger than the train split "
            f"({n_train} examples of {dataset} after a validation split of {validation_size})"
        )
    check_int(t["eval_every"], "training.eval_every", source, minimum=1)
    check_int(t["eval_train_examples"], "training.eval_train_examples", source, minimum=1,
               maximum=n_train)
    check_int(t["eval_test_examples"], "training.eval_test_examples", source, minimum=1,
               maximum=n_test)
    check_int(t["eval_batch_size"], "training.eval_batch_size", source, minimum=1)
    check_choice(t["dtype"], DTYPES, "training.dtype", source)
    check_bool(t["shared_start"], "training.shared_start", source)

    quick = get_table(raw, "quick", "", source)
    check_keys(quick, set(QUICK_DEFAULTS), "quick", source)
    q = {**QUICK_DEFAULTS, **quick}
    for key, value in q.items():
        check_int(value, f"quick.{key}", source, minimum=1)
    check_updates(q["epochs"], t["batch_size"], n_train, "quick.epochs", source)

    defaults = get_table(raw, "defaults", "", source)
    check_keys(defaults, {*MODEL_OPTION_DEFAULTS, *TRAINING_OPTIONS}, "defaults", source)
    model_defaults: dict[str, Any] = {**MODEL_OPTION_DEFAULTS,
                                      **dict.fromkeys(TRAINING_OPTIONS)}
    for key, value in defaults.items():
        model_defaults[key] = check_option(key, value, f"defaults.{key}", source)

    models_raw = get_table(raw, "models", "", source)
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
        batch_size=int(t["batch_size"]),
        eval_every=int(t["eval_every"]),
        eval_train_examples=int(t["eval_train_examples"]),
        eval_test_examples=int(t["eval_test_examples"]),
        eval_batch_size=int(t["eval_batch_size"]),
        dtype=t["dtype"],
        shared_start=t["shared_start"],
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


def resolve(
    protocol: Protocol | str | Path, seed: int | None = None, quick: bool = False
) -> Protocol:
    """A protocol (or its built-in name or file path) with ``--seed`` and ``--quick`` applied."""
    if not isinstance(protocol, Protocol):
        protocol = load(protocol)
    if seed is not None:
        protocol = protocol.with_seed(seed)
    return protocol.quick_variant() if quick else protocol


#: What a custom model's name may hold: it is part of run ids and file names.
MODEL_NAME_PATTERN = re.compile(CUSTOM_MODEL_NAME)
MAX_MODELS = 64
MAX_SETTINGS = 64


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
    check_keys(body, {"settings", *SETTING_OPTIONS}, path, source)
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
    options = dict(model_defaults)
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
        check_keys(s, {"epochs", "lr", "label", *SETTING_OPTIONS}, spath, source)
        for key in ("epochs", "lr"):
            if key not in s:
                raise ProtocolError(f"{source}: {spath}.{key} is missing")
        check_int(s["epochs"], f"{spath}.epochs", source, minimum=1)
        check_updates(s["epochs"], batch_size, n_train, f"{spath}.epochs", source)
        check_positive_float(s["lr"], f"{spath}.lr", source)
        label = s.get("label")
        if label is not None and (not isinstance(label, str) or not 0 < len(label) <= 40
                                  or not label.isprintable()):
            raise ProtocolError(f"{source}: {spath}.label must be a printable string of 1 to "
                                f"40 characters, got {label!r}")
        overrides = {key: check_option(key, s[key], f"{spath}.{key}", source, model=model_name)
                     for key in SETTING_OPTIONS if key in s}
        settings.append(Setting(int(s["epochs"]), float(s["lr"]), label,
                                tuple(sorted((k, canonical(v)) for k, v in overrides.items()))))
    return ModelPlan(name=model_name, settings=tuple(settings),
                     **{k: options[k] for k in MODEL_OPTION_DEFAULTS},
                     layers=None if options.get("layers") is None
                     else canonical(options["layers"]),
                     optimizer=None if options["optimizer"] is None
                     else canonical(options["optimizer"]),
                     weight_decay=options["weight_decay"],
                     schedule=None if options["schedule"] is None
                     else canonical(options["schedule"]))


def canonical(value: Any) -> str:
    """A value as canonical JSON (sorted keys, no spaces): equal options, equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def check_option(key: str, value: Any, where: str, source: str, model: str = "") -> Any:
    """A model option from a protocol, checked (a ProtocolError naming ``where`` otherwise):
    a choice (:data:`MODEL_OPTION_CHOICES`), a weight decay (a number >= 0), an optimiser or a
    schedule table (their core checks), or a model's ``layers`` (``models.check_definition``,
    which also infers every layer's shape). Returns the value as it is kept."""
    if key in MODEL_OPTION_CHOICES:
        check_choice(value, MODEL_OPTION_CHOICES[key], where, source)
        return value
    if key == "weight_decay":
        if (isinstance(value, bool) or not isinstance(value, int | float)
                or not math.isfinite(value) or value < 0):
            raise ProtocolError(f"{source}: {where} must be a finite number >= 0, got {value!r}")
        return float(value)
    checks = {"optimizer": optim.check_spec, "schedule": schedules.check_spec}
    try:
        if key in checks:
            if not isinstance(value, dict):
                raise ProtocolError(f"{source}: {where} must be a table, e.g. "
                                    + ('{ type = "adam" }' if key == "optimizer"
                                       else '{ type = "cosine", warmup_updates = 100 }'))
            checks[key](value, where=f"{source}: {where}")
            return dict(value)
        if not isinstance(value, list):
            raise ProtocolError(f"{source}: {where} must be an array of layer tables, e.g. "
                                '[ { type = "linear", units = 10 } ]')
        models.check_definition(value, name=model)
        return [dict(layer) for layer in value]
    except ProtocolError:
        raise
    except ValueError as exc:  # the core's one-line errors (DefinitionError, OptimizerError...)
        text = str(exc)
        raise ProtocolError(text if text.startswith(source) else f"{source}: {where}: {text}"
                            ) from None
