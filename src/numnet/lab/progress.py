"""Progress of training runs on the terminal: tqdm bars, periodic log lines, or nothing.

Shared by ``reproduce``, ``sweep``, ``train`` and ``compare``; every message goes through a ``Log``
(a function taking one line of text, by default :func:`stderr_log`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from numnet.lab.report.diagnosis import diagnose
from numnet.lab.training import Progress, RunResult, RunSpec

Log = Callable[[str], None]


class ProgressDisplay:
    """Shows the runs' progress: tqdm bars (``"bars"``), log lines (``"log"``) or nothing.

    ``mode`` "auto": bars on a terminal, else log lines.
    Bars: one overall bar (all updates of all runs to train, so its ETA is the job's) and one
    bar per run with updates/s, the current training loss per example (mean of the batches
    since the last refresh; ln 10 = 2.30 is chance), the last evaluation's accuracies and the
    run's ETA. Log lines: one when a run starts, one every ``log_every_s`` seconds, one when it
    ends (:func:`describe_run`: status, diagnosis, final-weights accuracies).

    Runs on worker processes (:meth:`in_flight`): the overall bar alone, its postfix the runs
    in flight (``model4-setting3 41%``); log lines: one per finished run and, every
    ``log_every_s`` seconds, one compact line of the runs in flight.
    """

    def __init__(self, mode: str, log: Log, total_updates: int, log_every_s: float = 30.0,
                 say_ends: bool = True):
        if mode == "auto":
            mode = "bars" if sys.stderr.isatty() else "log"
        if mode not in ("bars", "log", "none"):
            raise ValueError(f"progress mode must be 'bars', 'log', 'none' or 'auto', got {mode!r}")
        self.mode, self.log, self.log_every_s = mode, log, log_every_s
        self.say_ends = say_ends  # False: the caller says how the runs ended (numnet train)
        self._overall: Any = None
        self._bar: Any = None
        self._last_update = 0
        self._last_log = 0.0
        self._counted: dict[str, int] = {}  # updates of runs in flight on the overall bar
        if mode == "bars":
            from tqdm.auto import tqdm

            self._tqdm = tqdm
            self._overall = tqdm(total=total_updates, desc="all runs", unit="upd",
                                 position=0, dynamic_ncols=True, file=sys.stderr)

    def message(self, text: str) -> None:
        if self.mode == "bars":
            self._tqdm.write(text, file=sys.stderr)
        elif self.mode == "log":
            self.log(text)

    def start_run(self, label: str, spec: RunSpec, total: int) -> None:
        self._last_update = 0
        self._last_log = time.monotonic()
        if self.mode == "bars":
            self._bar = self._tqdm(total=total, desc=spec.run_id, unit="upd", position=1,
                                   leave=False, dynamic_ncols=True, file=sys.stderr)
        self.message(f"{label} {spec.run_id}: {plural(spec.epochs, 'epoch')}, lr {spec.lr:g}, "
                     f"{spec.reduction} loss, {plural(total, 'update')}")

    def update(self, p: Progress) -> None:
        step = p.update - self._last_update
        self._last_update = p.update
        parts = []
        if p.train_loss is not None:
            parts.append(f"loss/example {p.train_loss:.3f}")
        if p.train_accuracy is not None:
            parts.append(f"train {p.train_accuracy:.4f}, test {p.test_accuracy:.4f}")
        acc = ", ".join(parts)
        if self.mode == "bars":
            self._bar.update(step)
            self._overall.update(step)
            if acc:
                self._bar.set_postfix_str(acc, refresh=False)
        elif self.mode == "log" and time.monotonic() - self._last_log >= self.log_every_s:
            self._last_log = time.monotonic()
            rate = p.update / p.elapsed if p.elapsed > 0 else 0.0
            eta = (p.total_updates - p.update) / rate if rate > 0 else float("nan")
            self.log(f"  {p.spec.run_id}: update {p.update}/{p.total_updates} "
                     f"({rate:.0f} upd/s, ETA {eta:.0f} s) {acc}".rstrip())

    def in_flight(self, runs: list[InFlight]) -> None:
        """The runs on worker processes now (called every fraction of a second)."""
        step = 0
        for r in runs:
            step += r.update - self._counted.get(r.run_id, 0)
            self._counted[r.run_id] = r.update
        if self.mode == "bars":
            self._overall.update(step)
            self._overall.set_postfix_str("; ".join(r.short() for r in runs))
        elif self.mode == "log" and time.monotonic() - self._last_log >= self.log_every_s:
            self._last_log = time.monotonic()
            self.log("  in flight: " + "; ".join(r.describe() for r in runs))

    def end_run(self, label: str, result: RunResult, total: int, reused: bool = False) -> None:
        """A run ended (``reused``: finished earlier; ``result.shared_with``: taken from a run
        still training, whose updates count on the overall bar)."""
        if self.mode == "bars":
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            if not reused and result.shared_with is None:
                counted = self._counted.pop(result.run_id, self._last_update)
                self._overall.update(total - counted)
        if self.say_ends:
            self.message(f"{label} {result.run_id}: {describe_run(result, reused)}")

    def close(self) -> None:
        """Close the bars (idempotent)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._overall is not None:
            self._overall.close()
            self._overall = None


def plural(n: int, word: str) -> str:
    """``"1 epoch"``, ``"5 epochs"``: a count and its noun, in the number it takes."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@dataclass(frozen=True)
class InFlight:
    """A run on a worker process, as its slot last showed it."""

    run_id: str
    update: int
    total: int
    test_accuracy: float | None
    elapsed: float
    threads: int

    def describe(self) -> str:
        rate = self.update / self.elapsed if self.elapsed > 0 else 0.0
        acc = "" if self.test_accuracy is None else f", test {self.test_accuracy:.4f}"
        return (f"{self.run_id} {self.update}/{self.total} ({rate:.0f} upd/s, "
                f"{self.threads} thread{'s' if self.threads > 1 else ''}{acc})")

    def short(self) -> str:
        """For the overall bar: ``model4-setting3 41%``."""
        return f"{self.run_id} {100 * self.update / max(self.total, 1):.0f}%"


def describe_run(result: RunResult, reused: bool = False) -> str:
    """One line: status, diagnosis (verdict labels and the verdict's reason), time and the
    accuracies of the final weights (else of the last curve point, labelled so)."""
    how = "reused (already finished)" if reused else (
        f"{result.wall_time:.1f} s, {result.updates_per_second:.0f} upd/s")
    if result.shared_with is not None and not reused:
        how = f"taken from {result.shared_with} at update {result.updates}"
    fw = result.final_weights
    if fw is not None:
        accs = (f"final weights (update {fw['update']}): train {fw['train_accuracy']:.4f}, "
                f"test {fw['test_accuracy']:.4f}")
    elif result.final_train_accuracy is None:
        accs = "no evaluation"
    else:
        accs = (f"last curve point: train {result.final_train_accuracy:.4f}, "
                f"test {result.final_test_accuracy:.4f}")
    diag = diagnose(result.to_dict())
    verdict = f"{diag.summary().upper() if diag.failed else diag.summary()}"
    reason = diag.reasons.get(diag.verdict, "")
    if result.diverged:
        return (f"DIVERGED at update {result.diverged_at_update} "
                f"({result.divergence_reason}); {how}; {accs}")
    return f"{verdict}; {how}; {accs} -- {reason}"


def stderr_log(text: str) -> None:
    """The default log: one line on stderr, flushed."""
    print(text, file=sys.stderr, flush=True)
