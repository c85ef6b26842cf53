"""The reproduce figures, drawn from a results document (the content of results.json), and the
style every numnet figure shares.

- :func:`learning_curves_figure`: 3 rows (settings) x 4 columns (models), 22 x 12 inches;
  each panel plots train and test accuracy against "Number of samples processed" (x in
  scientific notation), y label "Epochs: E, Learning rate: LR", title "Task i", a legend; the
  figure's title "Learning Curves for all Tasks and Hyper-parameter settings". A diverged run's
  panel gets a red frame and a "DIVERGED at update N" note; a run not made is marked as such.
- :func:`summary_table_figure`: rows "Model 1".."Model 4", columns "Setting 1".."Setting 3",
  each cell the final test accuracy; diverged cells red.

Quick runs carry "QUICK" in both titles. Figures are built on ``matplotlib.figure.Figure`` with
the Agg canvas (:func:`new_figure`), never through pyplot, so no GUI backend or global state is
involved; matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

from typing import Any

from numnet.lab.results import grid_table, run_grid
from numnet.lab.training import expected_updates

LEARNING_CURVES_TITLE = "Learning Curves for all Tasks and Hyper-parameter settings"
LEARNING_CURVES_SIZE = (22, 12)  # inches
SUMMARY_TABLE_SIZE = (9, 3.2)
DPI = 100
TRAIN_COLOR = "#1f77b4"
TEST_COLOR = "#ff7f0e"
DIVERGED_COLOR = "#c62828"
DIVERGED_FILL = "#fde0e0"


def new_figure(size: tuple[float, float]) -> Any:
    """A ``matplotlib.figure.Figure`` of ``size`` inches at :data:`DPI`, on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _quick_suffix(doc: dict[str, Any]) -> str:
    return " — QUICK (reduced smoke-test variant)" if doc.get("label") == "QUICK" else ""


def learning_curves_figure(doc: dict[str, Any]) -> Any:
    """The learning-curve figure for the runs of ``doc`` (a results.json document)."""
    models, rows, runs = run_grid(doc)
    fig = new_figure(LEARNING_CURVES_SIZE)
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


def summary_table_figure(doc: dict[str, Any]) -> Any:
    """The summary table: final test accuracy per (model, setting); diverged cells red."""
    def cell(model: str, setting: int, run: dict[str, Any] | None) -> str:
        if run is None:
            return "—"
        if run["status"] == "diverged":
            acc = run["final_test_accuracy"]
            last = f"\n(last {acc:.4f})" if acc is not None else ""
            return f"diverged @ {run['diverged_at_update']}{last}"
        return f"{run['final_test_accuracy']:.4f}"

    models, rows, runs = run_grid(doc)
    text = grid_table(doc, cell)
    diverged = {(row, s) for row, model in enumerate(models, start=1) for s in range(1, rows + 1)
                if runs.get((model, s), {}).get("status") == "diverged"}
    fig = new_figure(SUMMARY_TABLE_SIZE)
    ax = fig.add_subplot(1, 1, 1)
    ax.axis("off")
    label_width = 0.16
    table = ax.table(
        cellText=text,
        colWidths=[label_width] + [(1 - label_width) / rows] * rows,
        cellLoc="center",
        bbox=(0.0, 0.02, 1.0, 0.86),  # fill the axes below the title
    )
    table.auto_set_font_size(False)
    table.set_fontsize(13)
    for (r, c), box in table.get_celld().items():
        if r == 0 and c == 0:
            box.set_visible(False)
        elif r == 0 or c == 0:
            box.set_text_props(fontweight="bold")
            box.set_facecolor("#e8eef7")
        elif (r, c) in diverged:
            box.set_facecolor(DIVERGED_FILL)
            box.set_text_props(color=DIVERGED_COLOR, fontweight="bold", fontsize=11)
    title = "Final test accuracy" + _quick_suffix(doc)
    ax.set_title(title, fontsize=15, fontweight="bold")
    p = doc["protocol"]
    fig.text(0.99, 0.01, f"protocol {p['name']} (hash {p['hash']}), seed {p['seed']}",
             ha="right", va="bottom", fontsize=8, color="grey")
    fig.subplots_adjust(left=0.03, right=0.97, top=0.86, bottom=0.08)
    return fig
