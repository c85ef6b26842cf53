"""What the tasks of a sweep produced and where it is kept: a finished task's record
(``tasks/<task_id>.json``, format :data:`TASK_FORMAT`), a failed task's error
(``errors/<task_id>.json``, :class:`TaskFailure`), and everything one invocation got
(:class:`SweepOutcome`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from numnet.lab.executor import ALLOWED_FAILURES, TaskFailure, failure
from numnet.lab.sweep.plan import SweepTask

__all__ = ["ALLOWED_FAILURES", "TASK_FORMAT", "Outcome", "SweepOutcome", "TaskFailure",
           "TaskFn", "error_path", "failure", "task_path"]

TASK_FORMAT = "numnet.sweep-task/1"  # format names: as before the core/lab split
#: ``task_fn(task, data, device, threads) -> record``: what a worker runs for a task
TaskFn = Callable[..., dict[str, Any]]


#: What an executor yields per task: ``(task, record, None)`` or ``(task, None, failure)``.
Outcome = tuple[SweepTask, dict[str, Any] | None, TaskFailure | None]


@dataclass
class SweepOutcome:
    """What :func:`numnet.lab.sweep.run_tasks` did: the records by task id, the failures,
    which tasks were reused from an earlier invocation, how long it took."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: dict[str, TaskFailure] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)
    wall_time: float = 0.0


def task_path(out_dir: Path, task_id: str) -> Path:
    return out_dir / "tasks" / f"{task_id}.json"


def error_path(out_dir: Path, task_id: str) -> Path:
    return out_dir / "errors" / f"{task_id}.json"
