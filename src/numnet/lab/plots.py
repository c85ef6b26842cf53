"""SPEC's two figures, drawn from a results document (the content of results.json).

- :func:`learning_curves_figure`: 3 rows (settings) x 4 columns (models), 22 x 12 inches;
  each panel plots train and test accuracy against "Number of samples processed" (x in
  scientific notation), y label "Epochs: E, Learning rate: LR", title "Task i", a legend; the
  figure's title "Learning Curves for all Tasks and Hyper-parameter settings". A diverged run's
  panel gets a red frame and a "DIVERGED at update N" note; a run not made is marked as such.
- :func:`summary_table_figure`: rows "Model 1".."Model 4", columns "Setting 1".."Setting 3",
  each cell the final test accuracy; diverged cells red.

Quick runs carry "QUICK" in both titles. Figures are built on ``matplotlib.figure.Figure`` with
the Agg canvas, never through pyplot, so no GUI backend or global state is involved.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

LEARNING_CURVES_TITLE = "Learning Curves for all Tasks and Hyper-parameter settings"
LEARNING_CURVES_SIZE = (22, 12)  # inches (SPEC)
SUMMARY_TABLE_SIZE = (9, 3.2)
DPI = 100
TRAIN_COLOR = "#1f77b4"
TEST_COLOR = "#ff7f0e"
DIVERGED_COLOR = "#c62828"
DIVERGED_FILL = "#fde0e0"


def run_grid(doc: dict[str, Any]) -> tuple[list[str], int, dict[tuple[str, int], dict[str, Any]]]:
    """``(models, rows, runs)``: the models present (protocol order; the figure's columns), the
    number of settings (its rows) and ``{(model, setting): run dict}``."""
    runs = {(r["spec"]["model"], r["spec"]["setting"]): r for r in doc["runs"]}
    present = {m for m, _ in runs}
    models = [m for m in doc["protocol"]["models"] if m in present] or sorted(present)
    settings = doc["protocol"].get("settings", {})
    rows = max([len(settings.get(m, [])) for m in models]
               + [s for (_, s) in runs if s is not None] + [1])
    return models, rows, runs


def _quick_suffix(doc: dict[str, Any]) -> str:
    return " — QUICK (reduced smoke-test variant)" if doc.get("label") == "QUICK" else ""


def learning_curves_figure(doc: dict[str, Any]) -> Figure:
    """SPEC's learning-curve figure for the runs of ``doc`` (a results.json document)."""
    models, rows, runs = run_grid(doc)
    fig = Figure(figsize=LEARNING_CURVES_SIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, len(models), squeeze=False)
    settings = doc["protocol"].get("settings", {})
    for col, model in enumerate(models):
        number = model.removeprefix("model")
        for row in range(rows):
            ax = axes[row][col]
            run = runs.get((model, row + 1))
            ax.set_title(f"Task {number}")
            if run is None:
                planned = settings.get(model, [])
                if row < len(planned):
                    e, lr = planned[row]
                    ax.set_ylabel(f"Epochs: {e}, Learning rate: {lr:g}")
                    note = "not run"
                else:
                    note = "no such setting"
                ax.text(0.5, 0.5, note, ha="center", va="center", color="grey",
                        transform=ax.transAxes, fontsize=12)
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            _panel(ax, run, doc.get("data", {}).get("train_examples"))
    fig.suptitle(LEARNING_CURVES_TITLE + _quick_suffix(doc), fontsize=18)
    p = doc["protocol"]
    fig.text(0.995, 0.005, f"numnet — protocol {p['name']} (hash {p['hash']}), seed {p['seed']}",
             ha="right", va="bottom", fontsize=9, color="grey")
    # Fixed margins: tight_layout would draw the whole figure once more just to measure it.
    fig.subplots_adjust(left=0.04, right=0.99, top=0.92, bottom=0.06, hspace=0.35, wspace=0.22)
    return fig


def _panel(ax: Any, run: dict[str, Any], train_examples: int | None) -> None:
    spec = run["spec"]
    x = run["samples"]
    if x:
        marker = "o" if len(x) <= 30 else None
        ax.plot(x, run["train_accuracy"], color=TRAIN_COLOR, marker=marker, markersize=3,
                label="Train accuracy")
        ax.plot(x, run["test_accuracy"], color=TEST_COLOR, marker=marker, markersize=3,
                label="Test accuracy")
        ax.legend(loc="lower right", fontsize=9)
    ax.set_xlabel("Number of samples processed")
    ax.set_ylabel(f"Epochs: {spec['epochs']}, Learning rate: {spec['lr']:g}")
    ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
    ax.grid(True, alpha=0.3)
    if run["status"] != "diverged":
        return
    for spine in ax.spines.values():
        spine.set_color(DIVERGED_COLOR)
        spine.set_linewidth(2.5)
    ax.set_facecolor(DIVERGED_FILL)
    at = run["diverged_at_update"] * spec["batch_size"]
    if train_examples:  # the whole planned run on the x axis, so the early stop shows
        from numnet.lab.training import expected_updates

        planned = expected_updates(train_examples, spec["batch_size"], spec["epochs"])
        ax.set_xlim(0, planned * spec["batch_size"] * 1.02)
    ax.axvline(at, color=DIVERGED_COLOR, linestyle="--", linewidth=1.5)
    if not x:
        ax.set_ylim(0, 1)
    where = f"DIVERGED at update {run['diverged_at_update']}\n({at:.3g} samples)"
    if not x:
        where += "\nbefore the first evaluation"
    ax.text(0.5, 0.5 if not x else 0.35, where, ha="center", va="center",
            color=DIVERGED_COLOR, fontsize=13, fontweight="bold", transform=ax.transAxes,
            bbox={"facecolor": "white", "edgecolor": DIVERGED_COLOR, "alpha": 0.85})


def summary_table_figure(doc: dict[str, Any]) -> Figure:
    """SPEC's summary table: final test accuracy per (model, setting); diverged cells red."""
    models, rows, runs = run_grid(doc)
    fig = Figure(figsize=SUMMARY_TABLE_SIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.axis("off")
    header = ["", *[f"Setting {s}" for s in range(1, rows + 1)]]
    text, diverged = [header], set()
    for model in models:
        row = [f"Model {model.removeprefix('model')}"]
        for s in range(1, rows + 1):
            run = runs.get((model, s))
            if run is None:
                row.append("—")
            elif run["status"] == "diverged":
                acc = run["final_test_accuracy"]
                last = f"\n(last {acc:.4f})" if acc is not None else ""
                row.append(f"diverged @ {run['diverged_at_update']}{last}")
                diverged.add((len(text), s))
            else:
                row.append(f"{run['final_test_accuracy']:.4f}")
        text.append(row)
    label_width = 0.16
    table = ax.table(
        cellText=text,
        colWidths=[label_width] + [(1 - label_width) / rows] * rows,
        cellLoc="center",
        bbox=(0.0, 0.02, 1.0, 0.86),  # fill the axes below the title
    )
    table.auto_set_font_size(False)
    table.set_fontsize(13)
    for (r, c), cell in table.get_celld().items():
        if r == 0 and c == 0:
            cell.set_visible(False)
        elif r == 0 or c == 0:
            cell.set_text_props(fontweight="bold")
            cell.set_facecolor("#e8eef7")
        elif (r, c) in diverged:
            cell.set_facecolor(DIVERGED_FILL)
            cell.set_text_props(color=DIVERGED_COLOR, fontweight="bold", fontsize=11)
    title = "Final test accuracy" + _quick_suffix(doc)
    ax.set_title(title, fontsize=15, fontweight="bold")
    p = doc["protocol"]
    fig.text(0.99, 0.01, f"protocol {p['name']} (hash {p['hash']}), seed {p['seed']}",
             ha="right", va="bottom", fontsize=8, color="grey")
    fig.subplots_adjust(left=0.03, right=0.97, top=0.86, bottom=0.08)
    return fig


def png_bytes(fig: Figure, dpi: int = DPI) -> bytes:
    """The figure as PNG bytes at ``dpi`` (pixel size = inches x dpi, no tight cropping)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def save_figures(doc: dict[str, Any], out_dir: str | Path) -> dict[str, bytes]:
    """Write learning_curves.png and summary_table.png into ``out_dir`` (atomically); return
    ``{file name: PNG bytes}`` (the report embeds the same bytes)."""
    from numnet.lab.experiments import write_bytes

    images = {
        "learning_curves.png": png_bytes(learning_curves_figure(doc)),
        "summary_table.png": png_bytes(summary_table_figure(doc)),
    }
    for name, data in images.items():
        write_bytes(Path(out_dir) / name, data)
    return images


# ------------------------------------------------------------------------------ sweeps (bands)


def learning_curves_bands_figure(summary: dict[str, Any]) -> Figure:
    """SPEC's learning-curve layout for a sweep (``numnet.lab.sweep`` summary.json): rows =
    settings, columns = models; each panel the mean train and test accuracy over the seeds,
    a ±1 std band (darker) and the min-max band (lighter). Cells with diverged or failed runs
    say how many. At least SPEC's 22 x 12 inches; 4 inches per row beyond 3 rows (grids)."""
    import numpy as np

    cells = summary["cells"]
    models = list(dict.fromkeys(c["model"] for c in cells)) or ["model1"]
    rows = max((c["setting"] for c in cells), default=1)
    grid = {(c["model"], c["setting"]): c for c in cells}
    fig = Figure(figsize=(LEARNING_CURVES_SIZE[0], max(LEARNING_CURVES_SIZE[1], 4 * rows)),
                 dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, len(models), squeeze=False)
    for col, model in enumerate(models):
        for row in range(rows):
            ax = axes[row][col]
            cell = grid.get((model, row + 1))
            ax.set_title(f"Task {model.removeprefix('model')}")
            if cell is None:
                ax.axis("off")
                continue
            ax.set_ylabel(f"Epochs: {cell['epochs']}, Learning rate: {cell['lr']:g}")
            ax.set_xlabel("Number of samples processed")
            ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
            x = np.asarray(cell["curves"]["samples"], dtype=float)
            drawn = False
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
                drawn = True
            bad = cell["n_diverged"] + cell["n_error"]
            if bad:
                ax.text(0.02, 0.04, f"{cell['n_diverged']} diverged, {cell['n_error']} failed "
                        f"of {cell['n_tasks']}", transform=ax.transAxes, color=DIVERGED_COLOR)
                for spine in ax.spines.values():
                    spine.set_edgecolor(DIVERGED_COLOR)
            if drawn:
                ax.legend(loc="lower right", fontsize=8)
            ax.grid(alpha=0.3)
    quick = " — QUICK" if summary["protocol"]["quick"] else ""
    fig.suptitle(f"{LEARNING_CURVES_TITLE} — {summary['protocol']['name']}, mean over "
                 f"{summary['seeds']} seeds{quick}")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return fig


def sweep_table_figure(summary: dict[str, Any]) -> Figure:
    """SPEC's summary table for a sweep: rows "Model 1".., columns "Setting 1"..; each cell the
    final test accuracy in %, mean ± std (n) over the seeds; cells with diverged or failed runs
    red (:func:`numnet.lab.sweep.cell_text` says how many)."""
    from numnet.lab.sweep import cell_text

    cells = summary["cells"]
    models = list(dict.fromkeys(c["model"] for c in cells))
    rows = max((c["setting"] for c in cells), default=1)
    grid = {(c["model"], c["setting"]): c for c in cells}
    fig = Figure(figsize=(max(SUMMARY_TABLE_SIZE[0], 3.6 * rows), 1.2 + 0.6 * len(models)),
                 dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.axis("off")
    keys = [[(m, k) for k in range(1, rows + 1)] for m in models]
    text = [[cell_text(grid[key]) if key in grid else "" for key in row] for row in keys]
    colors = [[DIVERGED_FILL if key in grid and (grid[key]["n_diverged"] or grid[key]["n_error"])
               else "white" for key in row] for row in keys]
    table = ax.table(cellText=text, cellColours=colors,
                     rowLabels=[f"Model {m.removeprefix('model')}" for m in models],
                     colLabels=[f"Setting {k}" for k in range(1, rows + 1)], loc="center",
                     cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(10)
    table.scale(1, 1.8)
    quick = " — QUICK" if summary["protocol"]["quick"] else ""
    ax.set_title(f"Final test accuracy (%), mean ± std over {summary['seeds']} seeds — "
                 f"{summary['protocol']['name']}{quick}")
    return fig
