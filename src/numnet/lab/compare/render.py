"""compare's outputs from compare.json alone: compare_curves.png (the learning-curve grid with
both implementations in each panel), the training internals of both side by side (a panel per
run under ``figures/`` and a table), compare.html (a self-contained page: the Q2 section, the
internals, environment, protocol file), compare.md, the terminal table, and the writing of
them all."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from numnet.core.io import write_bytes, write_text
from numnet.core.names import MODEL_NAMES
from numnet.lab import plots
from numnet.lab.compare.answers import model_title, q2_answers, side_by_side_rows
from numnet.lab.compare.record import save_document
from numnet.lab.environment import machine_text
from numnet.lab.evidence_plots import internals_figure
from numnet.lab.render import (
    CSS,
    Html,
    html,
    img,
    join,
    kv_rows,
    markdown_table,
    page,
    png_bytes,
    text_table,
)
from numnet.lab.report.evidence import combined, has_internals
from numnet.lab.results import run_grid

IMPLS = (("numnet", "numnet"), ("pytorch", "PyTorch"))

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


# ------------------------------------------------------------------------------ internals

INTERNALS_TITLE = "Training internals, both implementations"
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


# ------------------------------------------------------------------------------ HTML

Q2_CSS = """
table.side { border-collapse:collapse; font-size:13px; margin:8px 0 14px; }
table.side th, table.side td { padding:5px 9px; border-bottom:1px solid var(--line);
  text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
table.side th { background:#eef2f9; text-align:center; }
table.side td:first-child { text-align:left; font-weight:600; }
table.side td.fail { color:#c62828; font-weight:700; }
.q2 h3 { margin:16px 0 6px; }
.q2 ul { margin:4px 0 10px; padding-left:20px; }
.q2 li { margin:3px 0; }
.q2 li.rule { color:var(--muted); list-style:none; margin-left:-16px; font-size:13px; }
.q2 li.sub { margin-left:22px; list-style:circle; font-size:13.5px; }
"""

Q2_HEADINGS = (
    ("runtime", "Runtime"),
    ("performance", "Final performance"),
    ("stability", "Stability of training"),
    ("fit", "Which runs under-fit, which over-fit"),
    ("agreement", "Float64 agreement (numnet and PyTorch are the same computation)"),
)


def _html_table(rows: list[list[str]], cls: str) -> Html:
    """``<table class=cls>`` of ``rows`` (header first); a last cell saying FAIL is marked."""
    head = join(html("<th>{}</th>", c) for c in rows[0])
    body = join(html("<tr>{}</tr>", join(
        html('<td class="fail">{}</td>' if k == len(row) - 1 and "FAIL" in c
             else "<td>{}</td>", c) for k, c in enumerate(row))) for row in rows[1:])
    return html('<table class="{}"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>',
                cls, head, body)


def _item(statement: str) -> Html:
    """One answer as a list item: rules muted, indented details as sub-items."""
    if statement.startswith("Rule"):
        return html('<li class="rule">{}</li>', statement)
    if statement.startswith("  "):
        return html('<li class="sub">{}</li>', statement.strip())
    return html("<li>{}</li>", statement)


def q2_section_html(doc: dict[str, Any], overlay_png: bytes | None = None) -> str:
    """The Q2 section as an HTML fragment (``<section class="q2">``), for compare.html and
    for embedding in another report (its styles: :data:`Q2_CSS` on top of the report's)."""
    answers = q2_answers(doc)
    parts = [Html('<section class="q2" id="q2"><h2>Q2 — numnet vs PyTorch (torch.nn + '
                  "torch.optim.SGD): same weights, same batches</h2>")]
    if doc.get("label"):
        parts.append(Html('<p><span class="quick">QUICK</span> reduced smoke-test variant: '
                          "these are not the protocol's results.</p>"))
    if not doc.get("complete", True):
        parts.append(Html("<p><strong>Incomplete:</strong> not every run has finished.</p>"))
    parts.append(_html_table(side_by_side_rows(doc), "side"))
    for key, title in Q2_HEADINGS:
        if answers[key]:
            parts.append(html("<h3>{}</h3><ul>{}</ul>", title, join(map(_item, answers[key]))))
    if overlay_png is not None:
        parts.append(html(
            "<h3>Learning curves, both implementations</h3><figure>{}"
            "<figcaption>Thick light lines: numnet; dark dashes: PyTorch. Train accuracy (blue) "
            "on the first {} train examples, test accuracy (orange).</figcaption></figure>",
            img(overlay_png, "numnet vs PyTorch learning curves"),
            doc["protocol"]["eval_train_examples"]))
    parts.append(Html("</section>"))
    return join(parts, "\n")


def internals_section_html(doc: dict[str, Any], images: dict[str, bytes]) -> Html:
    """The internals section (empty without internals): the table, then the panels."""
    rows = internals_rows(doc)
    if len(rows) == 1:
        return Html("")
    figs = join(html("<figure>{}</figure>", img(images[figure_name(r)], r["run_id"]))
                for r in doc["runs"] if figure_name(r) in images)
    return html('<section id="internals"><h2>{}</h2>'
                '<p class="muted">Recorded at each evaluation on the same 256-example probe by '
                "both steppers (numnet's and PyTorch's): dead ReLU fraction, update/weight ratio "
                "lr·|g|/|w| per layer (the first step included), logit scale and top-class "
                "probability. Where both say the same, the failure is the protocol's, not "
                "numnet's.</p>{}{}</section>", INTERNALS_TITLE, _html_table(rows, "rules"), figs)


BODY = """<header><h1>numnet compare: {name}{quick}</h1>
<p>Protocol <code>{source}</code> · hash <code>{hash}</code> · seed
<code>{seed}</code> · {n_runs} runs, each trained by numnet and by PyTorch</p>
</header>
<main>
{q2}
<section><h2>Environment</h2><table class="kv">{environment}</table></section>
<section><h2>Protocol file</h2><pre>{text}</pre></section>
</main>
<footer>numnet compare · compare.json holds every number shown here</footer>"""


def render_html(doc: dict[str, Any], overlay_png: bytes | None = None,
                images: dict[str, bytes] | None = None) -> str:
    """compare.html: a self-contained page holding the Q2 section, the training internals of
    both implementations (``images``: :func:`internals_images`) and the environment."""
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
    body = html(BODY, name=p["name"],
                quick=Html(' <span class="quick">QUICK</span>') if doc.get("label") else "",
                source=p["source"], hash=p["hash"], seed=p["seed"], n_runs=len(doc["runs"]),
                q2=Html(q2_section_html(doc, overlay_png)
                        + internals_section_html(doc, images or internals_images(doc))),
                environment=kv_rows(env_rows),
                text=p.get("text") or "")
    return page(f"numnet compare: {p['name']}", CSS + Q2_CSS, body)


# ------------------------------------------------------------------------------ Markdown, text


def render_markdown(doc: dict[str, Any]) -> str:
    """compare.md: the Q2 section and the internals table as Markdown (the figures linked as
    the files next to it)."""
    p = doc["protocol"]
    lines = [f"# numnet compare: {p['name']}" + (" — QUICK" if doc.get("label") else ""), "",
             f"Protocol `{p['source']}` (hash `{p['hash']}`), seed {p['seed']}; "
             f"{len(doc['runs'])} runs, each trained by numnet and by PyTorch from the same "
             "weights on the same batches.", ""]
    rows = side_by_side_rows(doc)
    lines += [*markdown_table(rows[0], rows[1:]), ""]
    answers = q2_answers(doc)
    for key, title in Q2_HEADINGS:
        if answers[key]:
            lines += [f"## {title}", ""]
            lines.extend(f"  - {s.strip()}" if s.startswith("  ")
                         else f"- {'*' + s + '*' if s.startswith('Rule') else s}"
                         for s in answers[key])
            lines.append("")
    lines += ["![numnet vs PyTorch learning curves](compare_curves.png)", ""]
    rows = internals_rows(doc)
    if len(rows) > 1:
        lines += [f"## {INTERNALS_TITLE}", "", *markdown_table(rows[0], rows[1:]), ""]
        for record in doc["runs"]:
            if _internals_runs(record):
                lines += [f"![internals of {record['run_id']}]({figure_name(record)})", ""]
    return "\n".join(lines)


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
    write_text(out / "compare.html", render_html(doc, png, images))
    write_text(out / "compare.md", render_markdown(doc))
