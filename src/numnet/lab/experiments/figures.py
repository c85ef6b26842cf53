"""Each finished run's evidence figures, drawn by the worker process that trained it.

A run's figures (``report.internals_section.run_evidence_images``: its internals, its confusion
matrix and worst mistakes, the CNN's filters) depend on its record alone, so ``reproduce`` on
workers need not draw them all after the last run: each worker draws the figures of each run
as it ends (a shorter run's at its end inside the longer one, ``work.train_group``) and returns
the PNG bytes with the group's results, and ``write_report`` embeds them instead of
drawing them again (the bytes are the same either way, tested). The drawing so spreads over
the workers, beside the trainings and evaluations still running, and only the figures of the
last run to end are drawn after it. (About 0.6 s of matplotlib a dense run, 0.9 s a CNN run, on
this project's 2-CPU machine: some 8 s for the protocol's 12 runs.)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from numnet.lab.report.internals_section import run_evidence_images


def draw_figures(results: Iterable[Any]) -> dict[str, dict[str, bytes]]:
    """``{run_id: {file name: PNG bytes}}`` of the evidence figures of finished runs (each a
    ``RunResult``): what ``write_report`` would draw from the same records."""
    return {result.run_id: run_evidence_images(result.to_dict()) for result in results}
