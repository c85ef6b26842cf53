"""Which runs a protocol makes (:func:`plan_runs`) and the seed of each (:func:`run_seed`)."""

from __future__ import annotations

import zlib

import numpy as np

from numnet.core.errors import NumnetError
from numnet.core.names import DEFAULT_KERNELS, MODEL_NAMES
from numnet.lab.protocol import Protocol
from numnet.lab.training import RunSpec


def run_seed(protocol_seed: int, model: str, setting_index: int) -> int:
    """The seed of run ``(model, setting_index)`` (0-based) of a protocol seeded
    ``protocol_seed``: ``SeedSequence([protocol_seed, crc32(model), setting_index])``'s first
    uint32 word. Independent of the other runs, so subsets of a protocol reproduce exactly."""
    ss = np.random.SeedSequence([protocol_seed, zlib.crc32(model.encode()), setting_index])
    return int(ss.generate_state(1)[0])


def plan_runs(protocol: Protocol, models: list[str] | None = None,
              kernels: str = DEFAULT_KERNELS, internals: bool = True) -> list[RunSpec]:
    """The :class:`RunSpec` of every run of ``protocol`` (models in protocol order, then
    settings), restricted to ``models`` (names like "model4") when given; ``kernels`` is the
    core implementation every run uses; ``internals`` whether they record their training
    internals."""
    specs = []
    for plan in protocol.select_models(models):
        for k, setting in enumerate(plan.settings):
            specs.append(RunSpec(
                model=plan.name,
                epochs=setting.epochs,
                lr=setting.lr,
                reduction=plan.reduction,
                batch_size=protocol.batch_size,
                eval_every=protocol.eval_every,
                eval_train_examples=protocol.eval_train_examples,
                eval_test_examples=protocol.eval_test_examples,
                eval_batch_size=protocol.eval_batch_size,
                seed=run_seed(protocol.seed, plan.name, k),
                dtype=protocol.dtype,
                weight_init=plan.weight_init,
                bias_init=plan.bias_init,
                conv_activation=plan.conv_activation,
                setting=k + 1,
                kernels=kernels,
                internals=internals,
            ))
    return specs


def model_name(text: str) -> str | None:
    """``"4"``, ``"model4"`` or ``"Model 4"`` -> ``"model4"``; None when it names no model."""
    name = text.strip().lower().replace(" ", "").replace("_", "")
    name = f"model{name}" if name.isdigit() else name
    return name if name in MODEL_NAMES else None


def parse_model(text: str, option: str = "--model") -> str:
    """One model name given on the command line (see :func:`model_name`); a NumnetError
    naming ``option`` when it is not a model."""
    name = model_name(text)
    if name is None:
        raise NumnetError(f"{option}: unknown model {text.strip().lower()!r}; use numbers 1-4 "
                          "or names model1..model4")
    return name


def parse_models(text: str | None) -> list[str] | None:
    """``"1,4"`` or ``"model1,model4"`` -> ``["model1", "model4"]``; None stays None."""
    if text is None:
        return None
    names = []
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            name = parse_model(part, "--models")
        except NumnetError as exc:
            raise NumnetError(f"{exc}, comma-separated (e.g. --models 1,4)") from None
        if name not in names:
            names.append(name)
    if not names:
        raise NumnetError("--models: no model given; e.g. --models 1,4")
    return names
