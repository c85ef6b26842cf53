"""The checks of protocol files: each raises a ProtocolError that names the file and the key
path (``models.model3.settings[1].lr``) and says what is allowed."""

from __future__ import annotations

import math
from typing import Any

from numnet.core.errors import ProtocolError

#: The most updates one run may plan: 10^7 is about 180 epochs of MNIST at batch 1, or 18,000
#: at the protocol's batch of 100 -- far beyond any protocol, well short of a typo's 10^8 epochs.
MAX_UPDATES_PER_RUN = 10**7


def planned_updates(epochs: int, batch_size: int, num_examples: int) -> int:
    """The updates ``epochs`` epochs of ``num_examples`` make at ``batch_size`` (within one of
    ``numnet.lab.training.expected_updates``, computed without looping)."""
    return epochs * -(-num_examples // batch_size) + 1


def check_updates(epochs: int, batch_size: int, num_examples: int, where: str,
                  source: str) -> None:
    """A ProtocolError naming ``where`` when a run would plan more than MAX_UPDATES_PER_RUN."""
    updates = planned_updates(epochs, batch_size, num_examples)
    if updates > MAX_UPDATES_PER_RUN:
        raise ProtocolError(
            f"{source}: {where} = {epochs} plans {updates:.3g} updates per run (batch "
            f"{batch_size}, {num_examples} examples), more than the {MAX_UPDATES_PER_RUN:.0e} "
            "numnet allows; use fewer epochs"
        )


def where(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def check_keys(table: dict[str, Any], allowed: set[str], path: str, source: str) -> None:
    for key in table:
        if key not in allowed:
            raise ProtocolError(
                f"{source}: unknown key {where(path, key)!r}; "
                f"allowed here: {', '.join(sorted(allowed))}"
            )


def get_table(raw: dict[str, Any], key: str, path: str, source: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ProtocolError(f"{source}: {where(path, key)} must be a table ([{key}])")
    return value


def get_str(raw: dict[str, Any], key: str, path: str, source: str, *, default: str) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str):
        raise ProtocolError(
            f"{source}: {where(path, key)} must be a string, got {type(value).__name__}"
        )
    return value


def check_int(
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


def check_bool(value: Any, where: str, source: str) -> None:
    if not isinstance(value, bool):
        raise ProtocolError(
            f"{source}: {where} must be true or false, got {value!r} ({type(value).__name__})"
        )


def check_positive_float(value: Any, where: str, source: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(
            f"{source}: {where} must be a number, got {value!r} ({type(value).__name__})"
        )
    if not math.isfinite(value) or value <= 0:
        raise ProtocolError(f"{source}: {where} must be a positive finite number, got {value}")


def check_choice(value: Any, choices: tuple[str, ...], where: str, source: str) -> None:
    if value not in choices:
        raise ProtocolError(
            f"{source}: {where} = {value!r} is not allowed; use one of {list(choices)}"
        )
