"""compare_curves.png: the 3x4 learning-curve grid with both implementations in each panel."""

from __future__ import annotations

from typing import Any

from numnet.core.names import MODEL_NAMES
from numnet.lab import plots
from numnet.lab.results import run_grid

# numnet: thick, light solid lines; PyTorch: thin, dark dashes drawn on top, so that where the
# two curves coincide (they usually do) both stay visible.
NUMNET_STYLE = {"linestyle": "-", "linewidth": 3.2, "alpha": 0.45}
PYTORCH_STYLE = {"linestyle": "--", "linewidth": 1.3}
NUMNET_COLORS = ("#1f77b4", "#ff7f0e")  # train, test (the reproduce figure's colours)
PYTORCH_COLORS = ("#0b2f5c", "#9c3d00")  # darker shades of the same


def _impl_doc(doc: dict[str, Any], impl: str) -> dict[str, Any]:
    """A results-document view (``protocol`` + ``runs``) of one implementation's runs."""
    return {"protocol": doc["protocol"], "label": doc.get("label"),
            "runs": [r["runs"][impl] for r in doc["runs"] if r["runs"].get(impl)]}


def overlay_figure(doc: dict[str, Any]) -> Any:
    """The 3x4 learning-curve grid with both implementations in each panel: numnet solid,
    PyTorch dashed (train blue, test orange); a diverged run is noted in its panel."""
    numnet_doc = _impl_doc(doc, "numnet")
    models, rows, runs = run_grid(numnet_doc)
    torch_runs = {(r["spec"]["model"], r["spec"]["setting"]): r
                  for r in _impl_doc(doc, "pytorch")["runs"]}
    fig = plots.new_figure(plots.LEARNING_CURVES_SIZE)
    axes = fig.subplots(rows, max(1, len(models)), squeeze=False)
    for col, model in enumerate(models):
        for row in range(rows):
            ax = axes[row][col]
            ax.set_title(f"Task {model.removeprefix('model')}" if model in MODEL_NAMES
                         else model)
            run, trun = runs.get((model, row + 1)), torch_runs.get((model, row + 1))
            if run is None:
                planned = doc["protocol"].get("settings", {}).get(model, [])
                note = "not run" if row < len(planned) else "no such setting"
                ax.text(0.5, 0.5, note, ha="center", va="center", color="grey",
                        transform=ax.transAxes)
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            notes = []
            for r, who, style, colors in ((run, "numnet", NUMNET_STYLE, NUMNET_COLORS),
                                          (trun, "PyTorch", PYTORCH_STYLE, PYTORCH_COLORS)):
                if r is None:
                    continue
                if r["samples"]:
                    ax.plot(r["samples"], r["train_accuracy"], color=colors[0],
                            label=f"{who} train", **style)
                    ax.plot(r["samples"], r["test_accuracy"], color=colors[1],
                            label=f"{who} test", **style)
                if r["status"] == "diverged":
                    notes.append(f"{who} DIVERGED at update {r['diverged_at_update']}")
            if notes:
                ax.text(0.5, 0.3, "\n".join(notes), ha="center", va="center", fontsize=11,
                        color=plots.DIVERGED_COLOR, fontweight="bold", transform=ax.transAxes)
            spec = run["spec"]
            ax.set_xlabel("Number of samples processed")
            ax.set_ylabel(f"Epochs: {spec['epochs']}, Learning rate: {spec['lr']:g}")
            ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
            ax.grid(True, alpha=0.3)
            if ax.get_lines():
                ax.legend(loc="lower right", fontsize=8)
    quick = " — QUICK (reduced smoke-test variant)" if doc.get("label") else ""
    fig.suptitle(f"{plots.LEARNING_CURVES_TITLE}: numnet (solid) vs PyTorch (dashed){quick}",
                 fontsize=17)
    p = doc["protocol"]
    fig.text(0.995, 0.005, f"numnet compare — protocol {p['name']} (hash {p['hash']}), "
             f"seed {p['seed']}; same initial weights and batch order in both",
             ha="right", va="bottom", fontsize=9, color="grey")
    fig.tight_layout(rect=(0, 0.015, 1, 0.96))
    return fig
