"""Writing the report into a reproduce output folder: the two figures, report.html and
report.md, all atomic; and rebuilding them from results.json alone (``numnet report DIR``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from numnet.core.io import relative_child, write_bytes, write_text
from numnet.lab.plots import learning_curves_figure, summary_table_figure
from numnet.lab.render import png_bytes, to_html, to_markdown
from numnet.lab.report.content import report_doc
from numnet.lab.report.diagnosis import Diagnosis, diagnose_all
from numnet.lab.report.evidence import add_evidence
from numnet.lab.report.internals_section import evidence_images
from numnet.lab.results import load_results

FILES = ("learning_curves.png", "summary_table.png", "report.html", "report.md")


def figure_pngs(doc: dict[str, Any], diagnoses: dict[str, Diagnosis] | None = None,
                drawn: Mapping[str, dict[str, bytes]] | None = None) -> dict[str, bytes]:
    """``{file name: PNG bytes}`` of the two figures, marked with ``diagnoses`` (default:
    :func:`diagnose_all` of the document's runs), and of every run's evidence figures
    (``figures/<run_id>.*.png``; ``drawn``: those already drawn, by run id, see
    :func:`~numnet.lab.report.internals_section.evidence_images`); the report embeds the same
    bytes."""
    if diagnoses is None:
        diagnoses = diagnose_all(doc["runs"])
    labels = {rid: d.labels for rid, d in diagnoses.items()}
    return {
        "learning_curves.png": png_bytes(learning_curves_figure(doc, labels)),
        "summary_table.png": png_bytes(summary_table_figure(doc, labels)),
        **evidence_images(doc, drawn),
    }


def write_report(out_dir: str | Path, doc: dict[str, Any],
                 drawn: Mapping[str, dict[str, bytes]] | None = None) -> dict[str, Path]:
    """Draw the figures and write report.html and report.md into ``out_dir`` (atomically);
    ``drawn``: runs' evidence figures drawn already (``{run_id: {file name: PNG bytes}}``).

    Returns ``{name: path}`` of the four files and the evidence figures."""
    out = Path(out_dir)
    diagnoses = add_evidence(doc["runs"], diagnose_all(doc["runs"]))
    images = figure_pngs(doc, diagnoses, drawn)
    # every name is made of safe parts (run ids come from the document): no file can land
    # outside out_dir, whatever the document holds
    paths = {name: relative_child(out, name, "figure name") for name in images}
    for name, data in images.items():
        write_bytes(paths[name], data)
    page = report_doc(doc, diagnoses)
    write_text(out / "report.html", to_html(page, images))
    write_text(out / "report.md", to_markdown(page))
    return {name: paths.get(name, out / name)
            for name in (*FILES, *(n for n in images if n not in FILES))}


def rebuild(out_dir: str | Path) -> dict[str, Path]:
    """``numnet report DIR``: figures and report again from ``DIR/results.json``."""
    return write_report(out_dir, load_results(out_dir))
