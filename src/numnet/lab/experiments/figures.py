"""Each finished run's evidence figures, drawn while the last runs still train.

A run's figures (``report.internals_section.run_evidence_images``) depend on its record alone,
so ``reproduce`` need not draw them all after the last run. Once a core is idle (the queue is
empty and a worker has stopped), a drawing thread of this process takes the finished runs one
by one, at a lower scheduling priority (Linux ``nice`` + 10 for that thread alone): the run
still training -- and its evaluation beside it -- keeps the cores it needs, and the drawing
gets what they leave. ``finish()`` stops the thread after its current figure; whatever it did
not draw, ``write_report`` draws as before. The bytes are the same either way (tested).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from numnet.lab.report.internals_section import run_evidence_images

NICE_INCREMENT = 10  # CFS weight 110 against 1024: about a tenth of a contended core


def _lower_this_threads_priority() -> None:
    """Raise the calling thread's nice value (Linux: per thread); a no-op where unsupported."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + NICE_INCREMENT)
    except (AttributeError, OSError):
        pass


class EarlyFigures:
    """Finished runs whose evidence figures are waiting (``add``), and those drawn
    (``drawn``: ``{run_id: {file name: PNG bytes}}``, what ``write_report`` would draw from
    the same records). ``enabled=False``: nothing is drawn early."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.drawn: dict[str, dict[str, bytes]] = {}
        self._waiting: list[Any] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, result: Any) -> None:
        """A finished run (a ``RunResult``) whose figures may be drawn early."""
        with self._lock:
            self._waiting.append(result)

    def draw_one(self) -> bool:
        """Draw the figures of the first waiting run here; False when none was waiting."""
        with self._lock:
            if not self.enabled or not self._waiting or self._stop.is_set():
                return False
            result = self._waiting.pop(0)
        images = run_evidence_images(result.to_dict())
        with self._lock:
            self.drawn[result.run_id] = images
        return True

    def core_idle(self) -> None:
        """A core is idle: start the drawing thread unless it runs or nothing waits."""
        with self._lock:
            if (not self.enabled or not self._waiting or self._stop.is_set()
                    or (self._thread is not None and self._thread.is_alive())):
                return
            self._thread = threading.Thread(target=self._draw_all, name="numnet-figures",
                                            daemon=True)
            self._thread.start()

    def _draw_all(self) -> None:
        _lower_this_threads_priority()
        while self.draw_one():
            pass

    def finish(self) -> dict[str, dict[str, bytes]]:
        """Stop drawing (the figure in progress is finished) and return ``drawn``."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.drawn
