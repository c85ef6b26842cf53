"""The report's "Why: training internals and final models" section: per run, the internals
panel, the confusion matrix with the most confused test images and, for the CNN, its filters
and feature maps -- as PNG files under ``figures/`` (linked from report.md) and embedded in
report.html. Runs recorded without internals are simply left out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from numnet.core.io import check_safe_name
from numnet.lab.evidence_plots import cnn_figure, confusion_figure, internals_figure
from numnet.lab.render import Box, Bullets, Figure, P, Section, Span, Table, png_bytes
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


def section(doc: dict[str, Any], diagnoses: dict[str, Diagnosis]) -> Section | None:
    """The section (None when no run has evidence): per run its evidence findings
    (:func:`numnet.lab.report.evidence.evidence_findings`, given its verdict) and figures."""
    boxes = []
    for run in doc["runs"]:
        names = figure_names(run)
        if names:
            d = diagnoses.get(run["run_id"])
            findings = evidence_findings(run, d.verdict if d is not None else "")
            boxes.append(Box(_label(run), [Bullets(findings), *(
                Figure(name, f"{kind} of {run['run_id']}", cls=f"evidence {kind}")
                for kind, name in names.items())], "evidence-run", f"evidence-{run['run_id']}"))
    if not boxes:
        return None
    rules = Table([[Span("b", n), t] for n, t in EVIDENCE_RULES], cls="rules")
    return Section("Why: training internals and final models", [P(INTRO, muted=True), rules,
                                                                *boxes], id="internals")


CSS = """
.evidence-run { border-top:1px solid var(--line); padding:14px 0 6px; }
.evidence-run ul { font-size:13px; margin:6px 0 10px; }
figure.evidence { margin:8px 0; }
figure.evidence.internals img { max-width:1200px; }
figure.evidence.confusion img, figure.evidence.cnn img { max-width:900px; }
"""
