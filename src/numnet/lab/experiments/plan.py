"""Which runs a protocol makes (:func:`plan_runs`), the seed of each (:func:`run_seed`, or
:func:`model_seed` under ``shared_start``), which runs one training makes (:func:`run_groups`:
a run that is a prefix of another is taken from it) and a run's rough cost
(:func:`estimated_cost`, for the order of the workers' queue)."""

from __future__ import annotations

import difflib
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from numnet.core.errors import NumnetError
from numnet.core.names import DEFAULT_KERNELS, MODEL_NAMES
from numnet.lab.protocol import ModelPlan, Protocol, Setting
from numnet.lab.training import RunSpec, prefix_key

#: Rough relative cost of one epoch per model (this CPU, float32): the scheduling order only.
MODEL_EPOCH_COST = {"model1": 1.0, "model2": 1.5, "model3": 2.0, "model4": 12.0}
#: RunSpec fields copied from the protocol, and from a setting's options (its own, else its
#: model's: setting_options)
PROTOCOL_FIELDS = ("batch_size", "eval_every", "eval_train_examples", "eval_test_examples",
                   "eval_batch_size", "dtype")
OPTION_FIELDS = ("reduction", "weight_init", "bias_init", "conv_activation", "layers",
                 "optimizer", "schedule")


def run_seed(protocol_seed: int, model: str, setting_index: int) -> int:
    """The seed of run ``(model, setting_index)`` (0-based) of a protocol seeded
    ``protocol_seed``: ``SeedSequence([protocol_seed, crc32(model), setting_index])``'s first
    uint32 word. Independent of the other runs, so subsets of a protocol reproduce exactly."""
    ss = np.random.SeedSequence([protocol_seed, zlib.crc32(model.encode()), setting_index])
    return int(ss.generate_state(1)[0])


def model_seed(protocol_seed: int, model: str) -> int:
    """The seed of every run of ``model`` under ``[training] shared_start``:
    ``SeedSequence([protocol_seed, crc32(model)])``'s first uint32 word. The settings of a
    model then start from the same weights and see the same batches: only their
    hyper-parameters differ (a paired comparison)."""
    ss = np.random.SeedSequence([protocol_seed, zlib.crc32(model.encode())])
    return int(ss.generate_state(1)[0])


def plan_runs(protocol: Protocol, models: list[str] | None = None,
              kernels: str = DEFAULT_KERNELS, internals: bool = True) -> list[RunSpec]:
    """The :class:`RunSpec` of every run of ``protocol`` (models in protocol order, then
    settings), restricted to ``models`` (names like "model4") when given; ``kernels`` is the
    core implementation every run uses; ``internals`` whether they record their training
    internals. Seeds: :func:`run_seed` per (model, setting), or :func:`model_seed` per model
    when the protocol has ``shared_start``."""
    specs = []
    for plan in protocol.select_models(models):
        for k, setting in enumerate(plan.settings):
            options = setting_options(plan, setting)
            specs.append(RunSpec(
                model=plan.name, epochs=setting.epochs, lr=setting.lr, setting=k + 1,
                seed=(model_seed(protocol.seed, plan.name) if protocol.shared_start
                      else run_seed(protocol.seed, plan.name, k)),
                kernels=kernels, internals=internals,
                **{key: getattr(protocol, key) for key in PROTOCOL_FIELDS},
                **{key: options[key] for key in OPTION_FIELDS}))
    return specs


def setting_options(plan: ModelPlan, setting: Setting) -> dict[str, Any]:
    """The options of one setting: its model's, overridden by the setting's own; the weight
    decay goes into the optimiser's table (plain SGD's when the setting names none). JSON
    tables stay canonical JSON text (a RunSpec is hashable)."""
    options = {key: getattr(plan, key) for key in (*OPTION_FIELDS, "weight_decay")}
    for key, text in setting.options:
        value = json.loads(text)
        options[key] = text if key in ("layers", "optimizer", "schedule") else value
    if options["weight_decay"]:
        table = json.loads(options["optimizer"]) if options["optimizer"] else {"type": "sgd"}
        table["weight_decay"] = options["weight_decay"]
        options["optimizer"] = json.dumps(table, sort_keys=True, separators=(",", ":"))
    return options


@dataclass(frozen=True)
class RunGroup:
    """Runs made by one training: ``specs[0]`` is trained, the others (its prefixes: same
    :func:`numnet.lab.training.prefix_key`, fewer or as many epochs, longest first) are taken
    from it at their last update (``train_run``'s ``shorter``)."""

    specs: tuple[RunSpec, ...]

    @property
    def task_id(self) -> str:
        return self.specs[0].run_id

    @property
    def trained(self) -> RunSpec:
        return self.specs[0]

    @property
    def shorter(self) -> tuple[RunSpec, ...]:
        return self.specs[1:]


def run_groups(specs: list[RunSpec]) -> list[RunGroup]:
    """``specs`` as the trainings that make them: runs with equal prefix keys (the same
    model, seed, learning rate and everything else but the epochs) in one group, trained
    once for the most epochs. Groups in the order of their first run in ``specs``; each
    group's specs longest first (plan order among equals). Without ``shared_start`` the
    settings' seeds differ, so every group holds one run."""
    groups: dict[RunSpec, list[RunSpec]] = {}
    for spec in specs:
        groups.setdefault(prefix_key(spec), []).append(spec)
    return [RunGroup(tuple(sorted(g, key=lambda s: -s.epochs))) for g in groups.values()]


def estimated_cost(spec: RunSpec) -> float:
    """A rough cost of a run (epochs x per-model epoch cost); tasks start longest first, so
    that the last long runs do not start when every other worker is already idle."""
    cost = MODEL_EPOCH_COST.get(spec.model)
    if cost is None:  # a custom model: convolutions cost about what model 4's do
        cost = MODEL_EPOCH_COST["model4"] if "conv2d" in spec.layer_types() else 2.0
    return spec.epochs * cost


def model_name(text: str, known: Sequence[str] = ()) -> str | None:
    """``"4"``, ``"model4"`` or ``"Model 4"`` -> ``"model4"``, or a name in ``known`` (a
    protocol's custom models) as written; None when it names no model."""
    if text.strip() in known:
        return text.strip()
    name = text.strip().lower().replace(" ", "").replace("_", "")
    name = f"model{name}" if name.isdigit() else name
    return name if name in MODEL_NAMES else None


def parse_model(text: str, option: str = "--model", known: Sequence[str] = ()) -> str:
    """One model name given on the command line (see :func:`model_name`); a NumnetError
    naming ``option`` when it is not a model."""
    name = model_name(text, known)
    if name is None:
        custom = [k for k in known if k not in MODEL_NAMES]
        close = difflib.get_close_matches(text.strip(), [*MODEL_NAMES, *custom], n=1)
        raise NumnetError(
            f"{option}: unknown model {text.strip()!r}"
            + (f" (did you mean {close[0]!r}?)" if close else "")
            + "; use numbers 1-4, names model1..model4"
            + (f" or the protocol's {', '.join(custom)}" if custom else ""))
    return name


def parse_models(text: str | None, known: Sequence[str] = ()) -> list[str] | None:
    """``"1,4"`` or ``"model1,model4"`` -> ``["model1", "model4"]``; None stays None."""
    if text is None:
        return None
    names = []
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            name = parse_model(part, "--models", known)
        except NumnetError as exc:
            raise NumnetError(f"{exc}, comma-separated (e.g. --models 1,4)") from None
        if name not in names:
            names.append(name)
    if not names:
        raise NumnetError("--models: no model given; e.g. --models 1,4")
    return names
