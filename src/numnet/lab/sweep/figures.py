"""The figures of a sweep: the learning-curve grid with mean curves and bands, and the table
of mean ± std final test accuracies (the reproduce figures' layout and style)."""

from __future__ import annotations

from typing import Any

import numpy as np

from numnet.lab.plots import (
    DIVERGED_COLOR,
    LEARNING_CURVES_SIZE,
    LEARNING_CURVES_TITLE,
    SUMMARY_TABLE_SIZE,
    TEST_COLOR,
    TRAIN_COLOR,
    grid_axes,
    label_panel,
    new_figure,
    table_figure,
)
from numnet.lab.sweep.summary import cell_text


def learning_curves_bands_figure(summary: dict[str, Any]) -> Any:
    """The learning-curve layout for a sweep (``numnet.lab.sweep`` summary.json): rows =
    settings, columns = models; each panel the mean train and test accuracy over the seeds,
    a ±1 std band (darker) and the min-max band (lighter). Cells with diverged or failed runs
    say how many. At least 22 x 12 inches; 4 inches per row beyond 3 rows (grids)."""
    cells = summary["cells"]
    models = list(dict.fromkeys(c["model"] for c in cells)) or ["model1"]
    rows = max((c["setting"] for c in cells), default=1)
    grid = {(c["model"], c["setting"]): c for c in cells}
    fig = new_figure((LEARNING_CURVES_SIZE[0], max(LEARNING_CURVES_SIZE[1], 4 * rows)))
    for (model, setting), ax in grid_axes(fig, models, rows).items():
        cell = grid.get((model, setting))
        ax.set_title(f"Task {model.removeprefix('model')}")
        if cell is None:
            ax.axis("off")
            continue
        label_panel(ax, cell["epochs"], cell["lr"])
        x = np.asarray(cell["curves"]["samples"], dtype=float)
        for which, color in (("train_accuracy", TRAIN_COLOR), ("test_accuracy", TEST_COLOR)):
            st = cell["curves"][which]
            k = len(st["mean"])
            if k == 0:
                continue
            mean = np.asarray(st["mean"], dtype=float)
            std = np.asarray([s or 0.0 for s in st["std"]], dtype=float)
            ax.fill_between(x[:k], st["min"], st["max"], color=color, alpha=0.12,
                            linewidth=0)
            ax.fill_between(x[:k], mean - std, mean + std, color=color, alpha=0.3,
                            linewidth=0)
            name = which.removesuffix("_accuracy")
            ax.plot(x[:k], mean, color=color, label=f"{name} (mean ± std, min-max)")
        if cell["n_diverged"] + cell["n_error"]:
            ax.text(0.02, 0.04, f"{cell['n_diverged']} diverged, {cell['n_error']} failed "
                    f"of {cell['n_tasks']}", transform=ax.transAxes, color=DIVERGED_COLOR)
            for spine in ax.spines.values():
                spine.set_edgecolor(DIVERGED_COLOR)
        if ax.get_lines():
            ax.legend(loc="lower right", fontsize=8)
        ax.grid(alpha=0.3)
    quick = " — QUICK" if summary["protocol"]["quick"] else ""
    fig.suptitle(f"{LEARNING_CURVES_TITLE} — {summary['protocol']['name']}, mean over "
                 f"{summary['seeds']} seeds{quick}")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return fig


def sweep_table_figure(summary: dict[str, Any]) -> Any:
    """The summary table for a sweep: rows "Model 1".., columns "Setting 1"..; each cell the
    final test accuracy in %, mean ± std (n) over the seeds; cells with diverged or failed runs
    red (:func:`numnet.lab.sweep.summary.cell_text` says how many)."""
    cells = summary["cells"]
    models = list(dict.fromkeys(c["model"] for c in cells))
    settings = range(1, max((c["setting"] for c in cells), default=1) + 1)
    grid = {(c["model"], c["setting"]): c for c in cells}
    text = [["", *(f"Setting {k}" for k in settings)],
            *([f"Model {m.removeprefix('model')}",
               *(cell_text(grid[(m, k)]) if (m, k) in grid else "" for k in settings)]
              for m in models)]
    marks = {(row, k): "diverged" for row, m in enumerate(models, start=1) for k in settings
             if (m, k) in grid and grid[(m, k)]["n_diverged"] + grid[(m, k)]["n_error"]}
    fig, ax = table_figure(text, marks, (max(SUMMARY_TABLE_SIZE[0], 3.6 * len(settings)),
                                         1.4 + 0.6 * len(models)), fontsize=10)
    quick = " — QUICK" if summary["protocol"]["quick"] else ""
    ax.set_title(f"Final test accuracy (%), mean ± std over {summary['seeds']} seeds — "
                 f"{summary['protocol']['name']}{quick}", fontweight="bold")
    fig.subplots_adjust(left=0.03, right=0.97, top=0.8, bottom=0.05)
    return fig
