"""The report of a reproduce run: ``report.html`` (one self-contained file) and ``report.md``.

Both are built from results.json alone (``numnet report DIR`` rebuilds them and the figures):
the summary table, the learning-curve figure, an automatic diagnosis per run, per-run details,
the protocol file used and the environment. The HTML embeds its figures as base64 PNG and its
sparklines as inline SVG; it loads nothing from the network.

The diagnosis (:mod:`~numnet.lab.report.diagnosis`) applies fixed rules to each run's learning
curves; :mod:`~numnet.lab.report.content` writes the report once as a document that
:mod:`numnet.lab.render` serializes to HTML and Markdown (and the terminal table);
:mod:`~numnet.lab.report.write` writes the files.
"""

from numnet.lab.report.content import (
    VERDICT_COLORS,
    format_summary,
    render_html,
    render_markdown,
    sparkline_svg,
    summary_rows,
)
from numnet.lab.report.diagnosis import (
    MIN_EVALS_FOR_TRENDS,
    RULES,
    VERDICT_ORDER,
    Diagnosis,
    diagnose,
    diagnose_all,
    diagnosis_records,
)
from numnet.lab.report.write import figure_pngs, rebuild, write_report

__all__ = [
    "MIN_EVALS_FOR_TRENDS",
    "RULES",
    "VERDICT_COLORS",
    "VERDICT_ORDER",
    "Diagnosis",
    "diagnose",
    "diagnose_all",
    "diagnosis_records",
    "figure_pngs",
    "format_summary",
    "rebuild",
    "render_html",
    "render_markdown",
    "sparkline_svg",
    "summary_rows",
    "write_report",
]
