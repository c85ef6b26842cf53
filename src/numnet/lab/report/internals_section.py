"""The report's "Why: training internals and final models" section: per run, the internals
panel, the confusion matrix with the most confused test images and, for the CNN, its filters
and feature maps -- as PNG files under ``figures/`` (linked from report.md) and embedded in
report.html. Runs recorded without internals are simply left out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from numnet.core.io import check_safe_name
from numnet.lab.evidence_plots import cnn_figure, confusion_figure, internals_figure
from numnet.lab.render import Html, html, img, join, png_bytes
from numnet.lab.report.diagnosis import Diagnosis
from numnet.lab.report.evidence import EVIDENCE_RULES, evidence_findings, has_internals
from numnet.lab.training.internals import PROBE_EXAMPLES, USUAL_UPDATE_RATIO

FIGURE_DIR = "figures"
DPI = 80  # 12 runs x 3 figures stay a few MB inside the page


def _label(run: dict[str, Any]) -> str:
    s = run["spec"]
    return (f"Model {s['model'].removeprefix('model')} · setting {s['setting']} "
            f"({s['epochs']} epochs, lr {s['lr']:g}, {s['reduction']} loss)")


def figure_names(run: dict[str, Any]) -> dict[str, str]:
    """``{kind: file name}`` of the evidence figures a run has ("internals", "confusion",
    "cnn"), relative to the output folder."""
    # the run id comes from a document: it names a file only once it is a safe name
    rid = check_safe_name(run["run_id"], "run id")
    names = {}
    if has_internals(run):
        names["internals"] = f"{FIGURE_DIR}/{rid}.internals.png"
    final = run.get("final_model") or {}
    if "confusion" in final:
        names["confusion"] = f"{FIGURE_DIR}/{rid}.confusion.png"
    if "filters" in final:
        names["cnn"] = f"{FIGURE_DIR}/{rid}.cnn.png"
    return names


def run_evidence_images(run: dict[str, Any]) -> dict[str, bytes]:
    """``{file name: PNG bytes}`` of one run's evidence figures (they depend on its record
    alone, so ``reproduce`` draws them as soon as the run is done and a core is free)."""
    names = figure_names(run)
    label = _label(run)
    out: dict[str, bytes] = {}
    if "internals" in names:
        out[names["internals"]] = png_bytes(internals_figure([("numnet", run)], label), DPI)
    if "confusion" in names:
        out[names["confusion"]] = png_bytes(confusion_figure(run["final_model"], label), DPI)
    if "cnn" in names:
        out[names["cnn"]] = png_bytes(cnn_figure(run["final_model"], label), DPI)
    return out


def evidence_images(doc: dict[str, Any],
                    drawn: Mapping[str, dict[str, bytes]] | None = None) -> dict[str, bytes]:
    """``{file name: PNG bytes}`` of every run's evidence figures; ``drawn``: ``{run_id:
    run_evidence_images(run)}`` already drawn (those runs are not drawn again)."""
    out: dict[str, bytes] = {}
    for run in doc["runs"]:
        done = drawn.get(run["run_id"]) if drawn else None
        out.update(done if done is not None else run_evidence_images(run))
    return out


INTRO = (f"At every evaluation each run records, on a fixed probe of the first {PROBE_EXAMPLES} "
         "train examples: the fraction of dead units (0 for every probe example) of each ReLU "
         "layer, the update/weight ratio lr·|g|/|w| of each layer (|g| the gradient of the last "
         f"step; the usual heuristic wants about {USUAL_UPDATE_RATIO:g}), the logit scale "
         "(mean max |z|) and the mean top-class probability (0.1 is a uniform guess), beside the "
         "losses. The final model of each run that did not diverge is shown by its test "
         "confusion matrix and the test images it got most confidently wrong; the CNN also "
         "by its first-layer filters and the feature maps of one test digit.")


def _findings(run: dict[str, Any], diagnoses: dict[str, Diagnosis]) -> list[str]:
    d = diagnoses.get(run["run_id"])
    return evidence_findings(run, d.verdict if d is not None else "")


def evidence_html(doc: dict[str, Any], images: dict[str, bytes],
                  diagnoses: dict[str, Diagnosis]) -> Html:
    """The section as HTML (empty when no run has evidence): per run its evidence findings
    (:func:`numnet.lab.report.evidence.evidence_findings`, given its verdict) and figures."""
    blocks = []
    for run in doc["runs"]:
        names = figure_names(run)
        if not names:
            continue
        figs = join(html('<figure class="evidence {}">{}</figure>', kind,
                         img(images[name], f"{kind} of {run['run_id']}"))
                    for kind, name in names.items() if name in images)
        items = join(html("<li>{}</li>", f) for f in _findings(run, diagnoses))
        blocks.append(html('<div class="evidence-run" id="evidence-{}"><h3>{}</h3>'
                           "<ul>{}</ul>{}</div>", run["run_id"], _label(run), items, figs))
    if not blocks:
        return Html("")
    rules = join(html("<tr><td><b>{}</b></td><td>{}</td></tr>", n, t) for n, t in EVIDENCE_RULES)
    return html('<section id="internals"><h2>Why: training internals and final models</h2>'
                '<p class="muted">{}</p><table class="rules">{}</table>{}</section>',
                INTRO, rules, join(blocks))


def evidence_markdown(doc: dict[str, Any], diagnoses: dict[str, Diagnosis]) -> list[str]:
    """The section as Markdown lines (figures linked under ``figures/``); [] without
    evidence."""
    runs = [r for r in doc["runs"] if figure_names(r)]
    if not runs:
        return []
    lines = ["## Why: training internals and final models", "", INTRO, ""]
    lines.extend(f"- **{n}**: {t}" for n, t in EVIDENCE_RULES)
    lines.append("")
    for run in runs:
        lines += [f"### {_label(run)}", ""]
        lines.extend(f"- {f}" for f in _findings(run, diagnoses))
        lines.append("")
        for kind, name in figure_names(run).items():
            lines += [f"![{kind} of {run['run_id']}]({name})", ""]
    return lines


CSS = """
.evidence-run { border-top:1px solid var(--line); padding:14px 0 6px; }
.evidence-run ul { font-size:13px; margin:6px 0 10px; }
figure.evidence { margin:8px 0; }
figure.evidence.internals img { max-width:1200px; }
figure.evidence.confusion img, figure.evidence.cnn img { max-width:900px; }
"""
