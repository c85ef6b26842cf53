"""The reproduce figures, drawn from a results document (the content of results.json), and the
style every numnet figure shares.

- :func:`learning_curves_figure`: 3 rows (settings) x 4 columns (models), 22 x 12 inches;
  each panel plots train and test accuracy against "Number of samples processed" (x in
  scientific notation) on one shared y-range (0 to 1, so a run at chance looks like one), the
  chance level (0.1, dashed) and a dotted line at each epoch's sample count; y label "Epochs:
  E, Learning rate: LR", title "Model N", "(E, LR)" and the diagnosis in a corner, a legend;
  the figure's title "Learning Curves for all Tasks and Hyper-parameter settings". A diverged
  run's panel is tinted red with a "DIVERGED at update N" note, a run that did not learn
  tinted purple with "NOT LEARNING"; a run not made is marked as such.
- :func:`summary_table_figure`: rows "Model 1".."Model 4", columns "Setting 1".."Setting 3",
  each cell the test accuracy of the final weights (the last curve point, starred, for records
  without that evaluation) and (epochs, lr); diverged cells red, not-learning cells purple.

The diagnosis labels come from the caller (``{run_id: [labels]}``, the report's) or from each
run's ``diagnosis`` field in results.json. Quick runs carry "QUICK" in both titles. Figures are
built on ``matplotlib.figure.Figure`` with the Agg canvas (:func:`new_figure`), never through
pyplot, so no GUI backend or global state is involved; matplotlib is imported only when a
figure is drawn.
"""

from __future__ import annotations

from typing import Any

from numnet.lab.results import final_test, grid_table, run_grid
from numnet.lab.training import expected_updates

LEARNING_CURVES_TITLE = "Learning Curves for all Tasks and Hyper-parameter settings"
LEARNING_CURVES_SIZE = (22, 12)  # inches
SUMMARY_TABLE_SIZE = (9, 3.2)
DPI = 100
TRAIN_COLOR = "#1f77b4"
TEST_COLOR = "#ff7f0e"
DIVERGED_COLOR = "#c62828"
DIVERGED_FILL = "#fde0e0"
NOT_LEARNING_COLOR = "#6a1b9a"
NOT_LEARNING_FILL = "#f1e4f7"
FAILURE_COLORS = {"diverged": (DIVERGED_COLOR, DIVERGED_FILL),
                  "not learning": (NOT_LEARNING_COLOR, NOT_LEARNING_FILL)}
CHANCE = 0.1  # accuracy of a uniform guess over the 10 classes
Y_RANGE = (0.0, 1.0)
Labels = dict[str, list[str]]


def new_figure(size: tuple[float, float]) -> Any:
    """A ``matplotlib.figure.Figure`` of ``size`` inches at :data:`DPI`, on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def quick_suffix(doc: dict[str, Any]) -> str:
    """The figures' title suffix of a quick run (``doc["label"]`` "QUICK"), else ""."""
    return " — QUICK (reduced smoke-test variant)" if doc.get("label") == "QUICK" else ""


def grid_axes(fig: Any, models: list[str], rows: int) -> dict[tuple[str, int], Any]:
    """The panels of a learning-curve grid, rows = settings and columns = models:
    ``{(model, setting): axes}``."""
    axes = fig.subplots(rows, max(1, len(models)), squeeze=False)
    return {(model, row + 1): axes[row][col] for col, model in enumerate(models)
            for row in range(rows)}


def label_panel(ax: Any, epochs: int, lr: float, fontsize: float | None = None) -> None:
    """A learning-curve panel's axes: "Number of samples processed" (x, scientific notation)
    against "Epochs: E, Learning rate: LR"."""
    size = {} if fontsize is None else {"fontsize": fontsize}
    ax.set_xlabel("Number of samples processed", **size)
    ax.set_ylabel(f"Epochs: {epochs}, Learning rate: {lr:g}", **size)
    ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))


def not_run_panel(ax: Any, planned: list[Any], setting: int, fontsize: float = 14) -> None:
    """The panel of a run not made: "not run" with its planned (epochs, lr) when the model
    has that setting (``planned``: its ``[(epochs, lr)]``), else "no such setting"."""
    if setting <= len(planned):
        e, lr = planned[setting - 1]
        ax.set_ylabel(f"Epochs: {e}, Learning rate: {lr:g}", fontsize=12)
        note = f"not run\n({e}, {lr:g})"
    else:
        note = "no such setting"
    ax.text(0.5, 0.5, note, ha="center", va="center", color="grey", transform=ax.transAxes,
            fontsize=fontsize)
    ax.set_xticks([])
    ax.set_yticks([])


def run_labels(run: dict[str, Any], labels: Labels | None) -> list[str]:
    """A run's diagnosis labels: from ``labels`` when given, else its results.json record,
    else just "diverged" for a diverged run."""
    if labels is not None and run["run_id"] in labels:
        return list(labels[run["run_id"]])
    if run.get("diagnosis"):
        return list(run["diagnosis"].get("labels", []))
    return ["diverged"] if run["status"] == "diverged" else []


def failure(run: dict[str, Any], labels: Labels | None) -> str | None:
    """"diverged", "not learning" or None: how a panel or cell is marked."""
    found = run_labels(run, labels)
    if run["status"] == "diverged" or "diverged" in found:
        return "diverged"
    return "not learning" if "not learning" in found else None


def learning_curves_figure(doc: dict[str, Any], labels: Labels | None = None) -> Any:
    """The learning-curve figure for the runs of ``doc`` (a results.json document);
    ``labels``: the diagnosis labels per run id (see :func:`run_labels`)."""
    models, rows, runs = run_grid(doc)
    fig = new_figure(LEARNING_CURVES_SIZE)
    settings = doc["protocol"].get("settings", {})
    for (model, setting), ax in grid_axes(fig, models, rows).items():
        ax.set_title(f"Model {model.removeprefix('model')}", fontsize=15, fontweight="bold")
        if (model, setting) in runs:
            _panel(ax, runs[(model, setting)], doc.get("data", {}).get("train_examples"),
                   labels)
        else:
            not_run_panel(ax, settings.get(model, []), setting)
    fig.suptitle(LEARNING_CURVES_TITLE + quick_suffix(doc), fontsize=20)
    p = doc["protocol"]
    fig.text(0.995, 0.005, f"numnet — protocol {p['name']} (hash {p['hash']}), seed {p['seed']}"
             " — dashed: chance (0.1); dotted: epochs", ha="right", va="bottom", fontsize=10,
             color="grey")
    # Fixed margins: tight_layout would draw the whole figure once more just to measure it.
    fig.subplots_adjust(left=0.045, right=0.99, top=0.91, bottom=0.065, hspace=0.42,
                        wspace=0.2)
    return fig


def _panel(ax: Any, run: dict[str, Any], train_examples: int | None,
           labels: Labels | None) -> None:
    spec = run["spec"]
    x = run["samples"]
    ax.set_ylim(*Y_RANGE)
    if x:
        marker = "o" if len(x) <= 30 else None
        ax.plot(x, run["train_accuracy"], color=TRAIN_COLOR, marker=marker, markersize=3.5,
                linewidth=1.8, label="Train accuracy")
        ax.plot(x, run["test_accuracy"], color=TEST_COLOR, marker=marker, markersize=3.5,
                linewidth=1.8, label="Test accuracy")
    ax.axhline(CHANCE, color="grey", linestyle="--", linewidth=1.2, label="Chance (0.1)",
               gid="chance")
    if train_examples:  # the whole planned run on the x axis, so an early stop shows
        planned = expected_updates(train_examples, spec["batch_size"], spec["epochs"])
        ax.set_xlim(0, planned * spec["batch_size"] * 1.02)
        for epoch in range(1, spec["epochs"] + 1):
            ax.axvline(epoch * train_examples, color="#9e9e9e", linestyle=":",
                       linewidth=0.8, zorder=0, gid="epoch")
    # Layout of a panel on the 0..1 scale: good curves near the top, chance-level ones at the
    # bottom; the legend (lower right, above chance), the setting and diagnosis (middle left)
    # and a failure label (upper middle) sit in the band between.
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 0.14), fontsize=10.5)
    label_panel(ax, spec["epochs"], spec["lr"], fontsize=12)
    ax.tick_params(labelsize=11)
    ax.xaxis.get_offset_text().set_fontsize(11)
    ax.grid(True, axis="y", alpha=0.3)
    found = run_labels(run, labels)
    ax.text(0.02, 0.5, f"({spec['epochs']}, {spec['lr']:g})" + (
        f" · {', '.join(found)}" if found else ""), transform=ax.transAxes, ha="left",
        va="center", fontsize=12, gid="setting",
        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 2})
    failed = failure(run, labels)
    if failed is None:
        return
    color, fill = FAILURE_COLORS[failed]
    for spine in ax.spines.values():
        spine.set_color(color)
        spine.set_linewidth(2.5)
    ax.set_facecolor(fill)
    if failed == "not learning":
        tr = run["train_accuracy"]
        where = "NOT LEARNING" + (f"\ntrain accuracy {tr[-1]:.3f} ≈ chance" if tr else "")
    elif run["diverged_at_update"] is None:  # NaN accuracies, the run not stopped
        where = "DIVERGED\n(non-finite accuracy)"
    else:
        at = run["diverged_at_update"] * spec["batch_size"]
        ax.axvline(at, color=DIVERGED_COLOR, linestyle="--", linewidth=1.5)
        where = f"DIVERGED at update {run['diverged_at_update']}\n({at:.3g} samples)"
        if not x:
            where += "\nbefore the first evaluation"
    ax.text(0.5, 0.74, where, ha="center", va="center", color=color, fontsize=15,
            fontweight="bold", transform=ax.transAxes, gid="failure",
            bbox={"facecolor": "white", "edgecolor": color, "alpha": 0.85})


SUMMARY_TITLE = "Final test accuracy (final weights, after the last update)"


def table_figure(text: list[list[str]], marks: dict[tuple[int, int], str | None],
                 size: tuple[float, float], fontsize: float = 12) -> tuple[Any, Any]:
    """``(figure, axes)`` of a summary table: ``text`` rows, the header row and column first
    (:func:`numnet.lab.results.grid_table`'s layout) in bold on blue; the cells of ``marks``
    (``{(row, column): "diverged" or "not learning"}``) in :data:`FAILURE_COLORS`."""
    fig = new_figure(size)
    ax = fig.add_subplot(1, 1, 1)
    ax.axis("off")
    label_width, columns = 0.16, len(text[0]) - 1
    table = ax.table(
        cellText=text,
        colWidths=[label_width] + [(1 - label_width) / columns] * columns,
        cellLoc="center",
        bbox=(0.0, 0.02, 1.0, 0.86),  # fill the axes below the title
    )
    table.auto_set_font_size(False)
    table.set_fontsize(fontsize)
    for (r, c), box in table.get_celld().items():
        if r == 0 and c == 0:
            box.set_visible(False)
        elif r == 0 or c == 0:
            box.set_text_props(fontweight="bold")
            box.set_facecolor("#e8eef7")
        elif marks.get((r, c)) in FAILURE_COLORS:
            color, fill = FAILURE_COLORS[marks[(r, c)]]
            box.set_facecolor(fill)
            box.set_text_props(color=color, fontweight="bold", fontsize=fontsize - 1)
    return fig, ax


def summary_table_figure(doc: dict[str, Any], labels: Labels | None = None) -> Any:
    """The summary table: per (model, setting) the test accuracy of the final weights and
    (epochs, lr); diverged cells red, not-learning cells purple (``labels`` as for
    :func:`learning_curves_figure`)."""
    older = False

    def cell(model: str, setting: int, run: dict[str, Any] | None) -> str:
        nonlocal older
        if run is None:
            return "—"
        sub = f"({run['spec']['epochs']}, {run['spec']['lr']:g})"
        acc, what = final_test(run)
        if run["status"] == "diverged":
            last = f", last point {acc:.4f}" if acc is not None else ""
            return f"DIVERGED @ {run['diverged_at_update']}\n{sub}{last}"
        star = "" if what == "final weights" else "*"
        older = older or bool(star)
        text = f"{acc:.4f}{star}" if acc is not None else "no evaluation"
        if failure(run, labels) == "not learning":
            return f"NOT LEARNING {text}\n{sub}"
        return f"{text}\n{sub}"

    models, rows, runs = run_grid(doc)
    text = grid_table(doc, cell)
    marks = {(row, s): failure(runs[(model, s)], labels)
             for row, model in enumerate(models, start=1) for s in range(1, rows + 1)
             if (model, s) in runs}
    fig, ax = table_figure(text, marks, SUMMARY_TABLE_SIZE)
    # the quick label on a line of its own: one line would not fit the 9-inch width
    quick = quick_suffix(doc).removeprefix(" — ")
    ax.set_title(SUMMARY_TITLE + (f"\n{quick}" if quick else ""), fontsize=14,
                 fontweight="bold")
    p = doc["protocol"]
    note = "(epochs, learning rate) under each accuracy"
    if older:
        note += "; * last curve point (no final-weights evaluation)"
    fig.text(0.01, 0.01, note, ha="left", va="bottom", fontsize=8, color="grey")
    fig.text(0.99, 0.01, f"protocol {p['name']} ({p['hash'][:8]}), seed {p['seed']}",
             ha="right", va="bottom", fontsize=8, color="grey")
    fig.subplots_adjust(left=0.03, right=0.97, top=0.80 if quick else 0.86, bottom=0.08)
    return fig
