"""Conventions shared by every command's output folder: where it goes by default, how a
finished record is recognised on resume, and what is left out when two outputs are compared.

- :func:`default_out_dir`: ``runs/[<kind>-]<name>[-quick]-<YYYYmmdd-HHMMSS>``.
- :func:`load_finished`: a saved JSON record, if it is readable, its run (``result``) matches
  the schema (``numnet.lab.results.validate_run``) and it was made by the same computation
  (the fields that define it equal what is asked now); else None: redo it.
- :func:`strip_timing`: a document without the fields that depend on the clock or on where it
  ran (:data:`TIMING_KEYS`); what is left must be identical between two runs with one seed.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from numnet.core.errors import NumnetError
from numnet.core.io import check_safe_name, read_json
from numnet.lab.results import validate_run

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


def _field(record: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        record = record[key]
    return record


def load_finished(path: Path, expected: Mapping[str, Any],
                  requires: Iterable[Path] = ()) -> dict[str, Any] | None:
    """The JSON record at ``path`` when it is finished and made by the same computation.

    ``expected`` maps dotted field names (``"result.spec"``) to the values they must have;
    ``requires`` are files that must exist too (e.g. the weights a record points to). Anything
    missing, unreadable or different gives None: the caller redoes the work.
    """
    if not path.is_file() or not all(Path(p).is_file() for p in requires):
        return None
    try:
        record = read_json(path)  # bounded: numnet.core.documents
        if all(_field(record, key) == value for key, value in expected.items()):
            if isinstance(record, dict) and "result" in record:
                # the run it holds is trusted only once it matches the schema (accuracies in
                # [0, 1], curves as long as the counts say, ...): a damaged one is redone
                validate_run(record["result"], str(path))
            return record
    except (NumnetError, KeyError, TypeError):
        pass  # unreadable, of another shape or out of bounds: redo
    return None


def strip_timing(obj: Any) -> Any:
    """``obj`` without the keys of :data:`TIMING_KEYS`, recursively."""
    if isinstance(obj, dict):
        return {k: strip_timing(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [strip_timing(v) for v in obj]
    return obj
