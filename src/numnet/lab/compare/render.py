"""compare's outputs from compare.json alone: compare_curves.png (the learning-curve grid with
both implementations in each panel), the training internals of both side by side (a panel per
run under ``figures/`` and a table), compare.html and compare.md (one
:class:`numnet.lab.render.Doc`: the Q2 section, the internals, environment, protocol file), the
terminal table, and the writing of them all."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from numnet.core.io import write_bytes, write_text
from numnet.core.names import MODEL_NAMES
from numnet.lab import plots
from numnet.lab.compare.answers import IMPLS, model_title, q2_answers, side_by_side_rows
from numnet.lab.compare.record import save_document
from numnet.lab.environment import machine_text
from numnet.lab.evidence_plots import internals_figure
from numnet.lab.render import (
    CSS,
    Box,
    Bullets,
    Cell,
    Doc,
    Figure,
    P,
    Pre,
    Section,
    Span,
    Table,
    block_html,
    png_bytes,
    text_table,
    to_html,
    to_markdown,
)
from numnet.lab.report.evidence import combined, has_internals
from numnet.lab.results import run_grid

# ------------------------------------------------------------------------------ the figure

# numnet: thick, light solid lines; PyTorch: thin, dark dashes drawn on top, so that where the
# two curves coincide (they usually do) both stay visible.
NUMNET_STYLE = {"linestyle": "-", "linewidth": 3.2, "alpha": 0.45}
PYTORCH_STYLE = {"linestyle": "--", "linewidth": 1.3}
NUMNET_COLORS = ("#1f77b4", "#ff7f0e")  # train, test (the reproduce figure's colours)
PYTORCH_COLORS = ("#0b2f5c", "#9c3d00")  # darker shades of the same


def overlay_figure(doc: dict[str, Any]) -> Any:
    """The 3x4 learning-curve grid with both implementations in each panel: numnet solid,
    PyTorch dashed (train blue, test orange); a diverged run is noted in its panel."""
    numnet_doc = {"protocol": doc["protocol"], "label": doc.get("label"),
                  "runs": [r["runs"]["numnet"] for r in doc["runs"]]}
    models, rows, runs = run_grid(numnet_doc)
    torch_runs = {(r["model"], r["setting"]): r["runs"]["pytorch"] for r in doc["runs"]}
    fig = plots.new_figure(plots.LEARNING_CURVES_SIZE)
    for (model, setting), ax in plots.grid_axes(fig, models, rows).items():
        ax.set_title(f"Task {model.removeprefix('model')}" if model in MODEL_NAMES else model)
        run = runs.get((model, setting))
        if run is None:
            plots.not_run_panel(ax, doc["protocol"].get("settings", {}).get(model, []),
                                setting, fontsize=10)
            continue
        notes = []
        for r, who, style, colors in ((run, "numnet", NUMNET_STYLE, NUMNET_COLORS),
                                      (torch_runs.get((model, setting)), "PyTorch",
                                       PYTORCH_STYLE, PYTORCH_COLORS)):
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
        plots.label_panel(ax, run["spec"]["epochs"], run["spec"]["lr"])
        ax.grid(True, alpha=0.3)
        if ax.get_lines():
            ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{plots.LEARNING_CURVES_TITLE}: numnet (solid) vs PyTorch (dashed)"
                 f"{plots.quick_suffix(doc)}", fontsize=17)
    p = doc["protocol"]
    fig.text(0.995, 0.005, f"numnet compare — protocol {p['name']} (hash {p['hash']}), "
             f"seed {p['seed']}; same initial weights and batch order in both",
             ha="right", va="bottom", fontsize=9, color="grey")
    fig.tight_layout(rect=(0, 0.015, 1, 0.96))
    return fig


# ------------------------------------------------------------------------------ internals

INTERNALS_DPI = 80


def _internals_runs(record: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``[(label, run dict)]`` of the implementations of a compare record with internals."""
    return [(label, record["runs"][impl]) for impl, label in IMPLS
            if record["runs"].get(impl) and has_internals(record["runs"][impl])]


def figure_name(record: dict[str, Any]) -> str:
    return f"figures/{record['run_id']}.internals.png"


def internals_images(doc: dict[str, Any]) -> dict[str, bytes]:
    """``{file name: PNG}``: per run with internals, numnet's and PyTorch's internals panel
    overlaid (PyTorch dashed, ``numnet.lab.evidence_plots.internals_figure``)."""
    out = {}
    for record in doc["runs"]:
        runs = _internals_runs(record)
        if runs:
            spec = runs[0][1]["spec"]
            title = (f"{model_title(spec['model'])} · setting {spec['setting']} "
                     f"(lr {spec['lr']:g}): numnet solid, PyTorch dashed")
            out[figure_name(record)] = png_bytes(internals_figure(runs, title), INTERNALS_DPI)
    return out


def internals_rows(doc: dict[str, Any]) -> list[list[str]]:
    """Header, then per run and implementation the numbers that explain a failure: dead ReLUs
    at the end, the largest update/weight ratio (where), the final mean top-class
    probability."""
    rows = [["run", "implementation", "dead ReLUs (end)", "largest update/weight ratio",
             "top-class prob. (end)"]]
    for record in doc["runs"]:
        for label, run in _internals_runs(record):
            i = run["internals"]
            dead = ", ".join(f"{n} {v[-1]:.0%}" for n, v in i.get("dead_fraction", {}).items()
                             if v and v[-1] is not None) or "—"
            ratios = [(v, n, u) for n, pts in combined(i, "update_ratio").items()
                      for u, v in pts]
            worst = max(ratios, default=None)
            ratio = "—" if worst is None else f"{worst[0]:.3g} ({worst[1]}, update {worst[2]})"
            top = (i.get("top_prob") or [None])[-1]
            rows.append([record["run_id"], label, dead, ratio,
                         "—" if top is None else f"{top:.3f}"])
    return rows


# ------------------------------------------------------------------------------ the page

Q2_CSS = """
table.side { border-collapse:collapse; font-size:13px; margin:8px 0 14px; }
table.side th, table.side td { padding:5px 9px; border-bottom:1px solid var(--line);
  text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
table.side th { background:#eef2f9; text-align:center; }
table.side td:first-child { text-align:left; font-weight:600; }
table.side td.fail { color:#c62828; font-weight:700; }
.q2 h3 { margin:16px 0 6px; }
.q2 p.muted { margin:4px 0; font-size:13px; }
.q2 ul { margin:4px 0 10px; padding-left:20px; }
.q2 li { margin:3px 0; }
.q2 ul ul { margin:2px 0; list-style:circle; font-size:13.5px; }
"""

Q2_HEADINGS = (
    ("runtime", "Runtime"),
    ("performance", "Final performance"),
    ("stability", "Stability of training"),
    ("fit", "Which runs under-fit, which over-fit"),
    ("agreement", "Float64 agreement (numnet and PyTorch are the same computation)"),
)


def _answer_blocks(statements: list[str]) -> list[Any]:
    """One answer's statements: its rules muted, the rest a list, an indented statement a
    sub-item of the one before."""
    items: list[Any] = []
    for s in statements:
        if s.startswith("  "):
            if not (items and isinstance(items[-1], Bullets)):
                items.append(Bullets([]))
            items[-1].items.append(s.strip())
        elif not s.startswith("Rule"):
            items.append(s)
    return [*(P(s, muted=True) for s in statements if s.startswith("Rule")), Bullets(items)]


def q2_section(doc: dict[str, Any]) -> Section:
    """The Q2 section: the side-by-side table, the answers, the learning curves of both."""
    rows = side_by_side_rows(doc)
    answers = q2_answers(doc)
    return Section(
        "Q2 — numnet vs PyTorch (torch.nn + torch.optim.SGD): same weights, same batches", [
            *([P([Span("quick", "QUICK"), " reduced smoke-test variant: these are not the "
                  "protocol's results."])] if doc.get("label") else []),
            *([] if doc.get("complete", True) else
              [P([Span("b", "Incomplete:"), " not every run has finished."])]),
            Table([[*row[:-1], Cell(row[-1], "fail" if "FAIL" in row[-1] else "")]
                   for row in rows[1:]], rows[0], "side"),
            *(Box(title, _answer_blocks(answers[key])) for key, title in Q2_HEADINGS
              if answers[key]),
            Box("Learning curves, both implementations", [Figure(
                "compare_curves.png", "numnet vs PyTorch learning curves",
                "Thick light lines: numnet; dark dashes: PyTorch. Train accuracy (blue) on the "
                f"first {doc['protocol']['eval_train_examples']} train examples, test accuracy "
                "(orange).")]),
        ], id="q2", cls="q2")


def q2_section_html(doc: dict[str, Any], overlay_png: bytes | None = None) -> str:
    """The Q2 section as an HTML fragment (``<section class="q2">``), for embedding in
    another page (its styles: :data:`Q2_CSS` on top of :data:`numnet.lab.render.CSS`)."""
    return block_html(q2_section(doc), {"compare_curves.png": overlay_png} if overlay_png else {})


def internals_section(doc: dict[str, Any]) -> Section | None:
    """The internals section (None without internals): the table, then the panels."""
    rows = internals_rows(doc)
    if len(rows) == 1:
        return None
    return Section("Training internals, both implementations", [
        P("Recorded at each evaluation on the same 256-example probe by both steppers (numnet's "
          "and PyTorch's): dead ReLU fraction, update/weight ratio lr·|g|/|w| per layer (the "
          "first step included), logit scale and top-class probability. Where both say the "
          "same, the failure is the protocol's, not numnet's.", muted=True),
        Table(rows[1:], rows[0], "rules"),
        *(Figure(figure_name(r), f"internals of {r['run_id']}") for r in doc["runs"]
          if _internals_runs(r)),
    ], id="internals")


def compare_doc(doc: dict[str, Any]) -> Doc:
    """compare.html and compare.md: the Q2 section, the training internals of both
    implementations, the environment and the protocol file."""
    p = doc["protocol"]
    env = doc.get("environment", {})
    torch_env = env.get("torch", {})
    env_rows = [
        ("numnet / NumPy / PyTorch", f"{env.get('numnet')} / {env.get('numpy')} / "
                                     f"{torch_env.get('version')}"),
        ("Threads", f"setting {env.get('threads_setting')}; PyTorch "
                    f"{torch_env.get('threads')}, mkldnn {torch_env.get('mkldnn')}"),
        ("Machine", machine_text(env.get("machine", {}))),
        ("Data", f"{doc['data'].get('dataset')} (fingerprint {doc['data'].get('fingerprint')})"),
        ("Started / wall time", f"{doc['timing'].get('started_at')} / "
                                f"{doc['timing'].get('wall_time', 0):.1f} s"),
    ]
    title = f"numnet compare: {p['name']}"
    return Doc(
        title + (" — QUICK" if doc.get("label") else ""),
        [P(["Protocol ", Span("code", p["source"]), " · hash ", Span("code", p["hash"]),
            " · seed ", Span("code", str(p["seed"])), f" · {len(doc['runs'])} runs, each "
            "trained by numnet and by PyTorch from the same weights on the same batches"])],
        [q2_section(doc), *filter(None, [internals_section(doc)]),
         Section("Environment", [Table(env_rows, cls="kv")]),
         Section("Protocol file", [Pre(p.get("text") or "", "toml")])],
        footer="numnet compare · compare.json holds every number shown here",
        css=CSS + Q2_CSS,
        heading=[title, *([" ", Span("quick", "QUICK")] if doc.get("label") else [])])


# ------------------------------------------------------------------------------ the terminal


#: The width the terminal table fits in.
TERMINAL_COLUMNS = 100
TERMINAL_LEGEND = (
    "test: final test accuracy, numnet/PyTorch; gap: the largest test-accuracy gap over the "
    "curves, in points; time: training, numnet/PyTorch; x: PyTorch's time over numnet's "
    "(channels_last in brackets); status: numnet/PyTorch (one word when both agree); f64: "
    "float64 agreement of the losses. Best accuracies and details: compare.md."
)


def _short_status(stab: dict[str, Any] | None) -> str:
    if not stab:
        return "-"
    return f"div@{stab['diverged_at_update']}" if stab["status"] == "diverged" else "ok"


def terminal_rows(doc: dict[str, Any]) -> list[list[str]]:
    """The per-run table for a terminal (header first): the side-by-side table's key numbers
    in short cells, so that it fits :data:`TERMINAL_COLUMNS` columns."""
    rows = [["run", "(E, lr)", "test", "gap pt", "time s", "x", "status", "f64"]]

    def secs(x: float | None) -> str:
        return "-" if x is None else f"{x:.1f}" if x < 100 else f"{x:.0f}"

    def acc(x: float | None) -> str:
        return "-" if x is None else f"{x:.4f}"

    for r in doc["runs"]:
        a, t, st, ag = r["accuracy"], r["time"], r["stability"], r["agreement"]
        ratio = "-" if t["ratio_pytorch_over_numnet"] is None else (
            f"{t['ratio_pytorch_over_numnet']:.2f}")
        if t.get("ratio_channels_last_over_numnet") is not None:
            ratio += f" ({t['ratio_channels_last_over_numnet']:.1f})"
        status = {_short_status(st["numnet"]), _short_status(st["pytorch"])}
        agree = "-" if not ag else (f"{ag['max_rel_loss_diff']:.0e} "
                                    f"{'PASS' if ag['passed'] else 'FAIL'}")
        rows.append([
            r["run_id"].replace("-setting", "-s"), f"({r['epochs']}, {r['lr']:.3g})",
            f"{acc(a['numnet_final_test'])}/{acc(a['pytorch_final_test'])}",
            "-" if a["max_gap_test"] is None else f"{100 * a['max_gap_test']:.1f}",
            f"{secs(t['numnet_s'])}/{secs(t['pytorch_s'])}", ratio,
            status.pop() if len(status) == 1 else
            f"{_short_status(st['numnet'])}/{_short_status(st['pytorch'])}", agree,
        ])
    return rows


def format_table(doc: dict[str, Any]) -> str:
    """The per-run comparison as aligned text for the terminal, within
    :data:`TERMINAL_COLUMNS` columns, with a legend (the full table is in compare.md)."""
    return "\n".join([text_table(terminal_rows(doc), rstrip=True),
                      *textwrap.wrap(TERMINAL_LEGEND, TERMINAL_COLUMNS)])


def write_outputs(out_dir: str | Path, doc: dict[str, Any]) -> None:
    """Write compare.json, compare_curves.png, the internals panels, compare.html and
    compare.md (atomically)."""
    out = Path(out_dir)
    save_document(out, doc)
    png = png_bytes(overlay_figure(doc))
    write_bytes(out / "compare_curves.png", png)
    images = internals_images(doc)
    for name, data in images.items():
        write_bytes(out / name, data)
    page = compare_doc(doc)
    write_text(out / "compare.html", to_html(page, {"compare_curves.png": png, **images}))
    write_text(out / "compare.md", to_markdown(page))
