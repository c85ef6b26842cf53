"""Conventions shared by every command's output folder: where it goes by default and what is
left out when two outputs are compared (a record's resume check is
``numnet.lab.experiments.store.load_record``).

- :func:`default_out_dir`: ``runs/[<kind>-]<name>[-quick]-<YYYYmmdd-HHMMSS>``.
- :func:`strip_timing`: a document without the fields that depend on the clock or on where it
  ran (:data:`TIMING_KEYS`); what is left must be identical between two runs with one seed.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from numnet.core.io import check_safe_name

#: Keys whose values depend on the clock (times, rates) or on the process that ran a task
#: (a sweep task's ``worker``); everything else numnet writes is deterministic.
TIMING_KEYS = frozenset({"wall_time", "updates_per_second", "timing", "worker"})


def default_out_dir(name: str, *, kind: str | None = None, quick: bool = False,
                    root: str | Path = "runs") -> Path:
    """``runs/[<kind>-]<name>[-quick]-<YYYYmmdd-HHMMSS>`` (relative to the working directory):
    e.g. ``runs/assignment-quick-20260101-120000`` or ``runs/sweep-assignment-...``."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    check_safe_name(name, "output folder name")  # a protocol or model name: not a path
    if kind is not None:
        check_safe_name(kind, "output folder kind")
    prefix = f"{kind}-" if kind else ""
    return Path(root) / f"{prefix}{name}{'-quick' if quick else ''}-{stamp}"


def timestamp() -> str:
    """The local time to the second, ISO 8601 with the UTC offset (``started_at`` fields)."""
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def strip_timing(obj: Any) -> Any:
    """``obj`` without the keys of :data:`TIMING_KEYS`, recursively."""
    if isinstance(obj, dict):
        return {k: strip_timing(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [strip_timing(v) for v in obj]
    return obj
