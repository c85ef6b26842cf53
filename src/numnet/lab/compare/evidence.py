"""The training internals of both implementations side by side, for ``numnet compare``: per
run, numnet's and PyTorch's internals panel overlaid (PyTorch dashed,
``numnet.lab.evidence_plots.internals_figure``) and a table of the numbers that explain a
failure (dead ReLUs at the end, the largest update/weight ratio, the final top-class
probability) for each implementation."""

from __future__ import annotations

from typing import Any

from numnet.lab.compare.answers import model_title
from numnet.lab.evidence_plots import internals_figure
from numnet.lab.render import Html, html, img, join, markdown_table, png_bytes
from numnet.lab.report.evidence import combined, has_internals

FIGURE_DIR = "figures"
DPI = 80
IMPLS = (("numnet", "numnet"), ("pytorch", "PyTorch"))


def _runs(record: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(label, record["runs"][impl]) for impl, label in IMPLS
            if record["runs"].get(impl) and has_internals(record["runs"][impl])]


def figure_name(record: dict[str, Any]) -> str:
    return f"{FIGURE_DIR}/{record['run_id']}.internals.png"


def internals_images(doc: dict[str, Any]) -> dict[str, bytes]:
    """``{file name: PNG}``: one overlaid internals panel per run that has internals."""
    out = {}
    for record in doc["runs"]:
        runs = _runs(record)
        if runs:
            spec = runs[0][1]["spec"]
            title = (f"{model_title(spec['model'])} · setting {spec['setting']} "
                     f"(lr {spec['lr']:g}): numnet solid, PyTorch dashed")
            out[figure_name(record)] = png_bytes(internals_figure(runs, title), DPI)
    return out


def _numbers(run: dict[str, Any]) -> tuple[str, str, str]:
    i = run["internals"]
    dead = ", ".join(f"{n} {v[-1]:.0%}" for n, v in i.get("dead_fraction", {}).items()
                     if v and v[-1] is not None) or "—"
    ratios = [(v, n, u) for n, pts in combined(i, "update_ratio").items() for u, v in pts]
    ratio = f"{max(ratios)[0]:.3g} ({max(ratios)[1]}, update {max(ratios)[2]})" if ratios else "—"
    top = i.get("top_prob") or [None]
    return dead, ratio, "—" if top[-1] is None else f"{top[-1]:.3f}"


def table_rows(doc: dict[str, Any]) -> list[list[str]]:
    """Header, then per run and implementation: dead ReLUs at the end, the largest
    update/weight ratio (where), the final mean top-class probability."""
    rows = [["run", "implementation", "dead ReLUs (end)", "largest update/weight ratio",
             "top-class prob. (end)"]]
    for record in doc["runs"]:
        for label, run in _runs(record):
            rows.append([record["run_id"], label, *_numbers(run)])
    return rows


def internals_section_html(doc: dict[str, Any], images: dict[str, bytes]) -> Html:
    """The section (empty without internals): the table, then the panels."""
    rows = table_rows(doc)
    if len(rows) == 1:
        return Html("")
    head = join(html("<th>{}</th>", c) for c in rows[0])
    body = join(html("<tr>{}</tr>", join(html("<td>{}</td>", c) for c in row))
                for row in rows[1:])
    figs = join(html("<figure>{}</figure>", img(images[figure_name(r)], r["run_id"]))
                for r in doc["runs"] if figure_name(r) in images)
    return html('<section id="internals"><h2>Training internals, both implementations</h2>'
                '<p class="muted">Recorded at each evaluation on the same 256-example probe by '
                "both steppers (numnet's and PyTorch's): dead ReLU fraction, update/weight ratio "
                "lr·|g|/|w| per layer (the first step included), logit scale and top-class "
                "probability. Where both say the same, the failure is the protocol's, not "
                "numnet's.</p><table class=\"rules\"><thead><tr>{}</tr></thead><tbody>{}"
                "</tbody></table>{}</section>", head, body, figs)


def internals_markdown(doc: dict[str, Any]) -> list[str]:
    """The section as Markdown lines (the panels linked under ``figures/``)."""
    rows = table_rows(doc)
    if len(rows) == 1:
        return []
    lines = ["## Training internals, both implementations", ""]
    lines += markdown_table(rows[0], rows[1:])
    lines.append("")
    for record in doc["runs"]:
        if _runs(record):
            lines += [f"![internals of {record['run_id']}]({figure_name(record)})", ""]
    return lines
