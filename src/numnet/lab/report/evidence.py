"""Why a run did what it did: findings from its training internals (``run["internals"]``,
see ``numnet.lab.training.internals``), added to the diagnosis of its learning curves. Each
finding states its numbers and the rule that made it (:data:`EVIDENCE_RULES`: dead ReLUs, step
size, weights that blew up, saturated or uniform logits, the summed loss's step); the first
step counts, as ``internals["start"]`` holds updates 0 and 1.
"""

from __future__ import annotations

import math
from typing import Any

from numnet.lab.report.diagnosis import FAILED, Diagnosis
from numnet.lab.training.internals import USUAL_UPDATE_RATIO

DEAD_NOTABLE = 0.5
RATIO_FACTOR = 10.0
CERTAIN = 0.99
UNIFORM = 0.15

EVIDENCE_RULES = [
    ("dead ReLUs", f"a ReLU layer with >= {DEAD_NOTABLE:.0%} of its units 0 on every one of the "
     "probe's examples; a dead unit passes no gradient and does not recover."),
    ("step size", f"the largest update/weight ratio lr·|g|/|w| of any layer is more than "
     f"{RATIO_FACTOR:g}x the usual {USUAL_UPDATE_RATIO:g} (or less than 1/{RATIO_FACTOR:g} of "
     "it)."),
    ("weights blew up", f"a layer's weight norm grew more than {RATIO_FACTOR:g}x its value "
     "at initialisation."),
    ("logits", f"mean top-class probability > {CERTAIN} on the probe while not learning "
     f"(exploded logits), or < {UNIFORM} (a near-uniform output)."),
    ("summed loss", "with the summed loss each step is batch-size times the step of the mean "
     "loss at the same learning rate; said where the steps are too large or the run fails."),
]


def _values(series: list[float | None]) -> list[tuple[int, float]]:
    return [(k, v) for k, v in enumerate(series) if v is not None and math.isfinite(v)]


def combined(internals: dict[str, Any], group: str) -> dict[str, list[tuple[int, float]]]:
    """``{layer: [(update, value), ...]}`` of a per-layer group ("weight_norm", ...), the
    start snapshots (updates 0 and 1) first, then the evaluations; missing values left out."""
    start = internals.get("start") or {}
    out: dict[str, list[tuple[int, float]]] = {}
    for part in (start, internals):
        for name, series in part.get(group, {}).items():
            out.setdefault(name, []).extend(
                (part["update"][k], v) for k, v in _values(series))
    return out


def growth_finding(internals: dict[str, Any]) -> str | None:
    """The layer whose weight norm grew the most from its initial value (update 0), when it
    grew more than :data:`RATIO_FACTOR` times."""
    best: tuple[float, str, float, float, int] | None = None
    for name, pts in combined(internals, "weight_norm").items():
        if not pts or pts[0][0] != 0 or pts[0][1] <= 0:
            continue
        w0 = pts[0][1]
        top = max(v for _, v in pts)
        if top / w0 > RATIO_FACTOR and (best is None or top / w0 > best[0]):
            at = next(u for u, v in pts if v > RATIO_FACTOR * w0)
            best = (top / w0, name, w0, top, at)
    if best is None:
        return None
    factor, name, w0, top, at = best
    return (f"Weights blew up: {name}'s weight norm went from {w0:.3g} at initialisation to "
            f"{top:.3g} ({factor:.3g}x); it passed {RATIO_FACTOR:g}x by update {at}.")


def dead_findings(internals: dict[str, Any]) -> list[str]:
    """One finding per ReLU layer that ends (or ended before the run stopped) with at least
    :data:`DEAD_NOTABLE` of its units dead."""
    out = []
    updates = internals["update"]
    for name, series in internals.get("dead_fraction", {}).items():
        vals = _values(series)
        if not vals or vals[-1][1] < DEAD_NOTABLE:
            continue
        end = vals[-1][1]
        since = vals[-1][0]
        for k, v in reversed(vals):  # the earliest evaluation from which it stays >= end
            if v < end:
                break
            since = k
        what = "all" if end >= 1.0 else f"{end:.0%} of"
        tail = (": the layer passes no gradient, so the layers below it stop learning"
                if end >= 1.0 else "")
        out.append(f"Dead ReLUs: {what} {name}'s units are 0 on every probe example from update "
                   f"{updates[since]} on{tail}.")
    return out


def ratio_finding(internals: dict[str, Any]) -> tuple[str | None, float]:
    """``(finding or None, largest ratio)``: the largest update/weight ratio over layers and
    evaluations, against :data:`USUAL_UPDATE_RATIO`."""
    best = (-1.0, "", 0)
    for name, pts in combined(internals, "update_ratio").items():
        for u, v in pts:
            if v > best[0]:
                best = (v, name, u)
    ratio, name, u = best
    if ratio < 0:
        return None, math.nan
    factor = ratio / USUAL_UPDATE_RATIO
    at = f"{name} at update {u}"
    if factor > RATIO_FACTOR:
        how = ("each step moves the weights by a large part of their size" if ratio > 0.1
               else "steps far larger than the heuristic's")
        return (f"Step size: update/weight ratio up to {ratio:.3g} ({at}), {factor:.3g}x the "
                f"usual {USUAL_UPDATE_RATIO:g}: {how}."), ratio
    if 0 < factor < 1 / RATIO_FACTOR:
        return (f"Step size: update/weight ratio at most {ratio:.3g} ({at}), "
                f"{1 / factor:.3g}x below the usual {USUAL_UPDATE_RATIO:g}: the weights barely "
                "move."), ratio
    return None, ratio


def logit_finding(internals: dict[str, Any], verdict: str) -> str | None:
    """Exploded or uniform logits at the last evaluation (see the module docstring)."""
    top, scale = _values(internals.get("top_prob", [])), _values(internals.get("logit_absmax",
                                                                               []))
    if not top or not scale:
        return None
    p, z = top[-1][1], scale[-1][1]
    if p > CERTAIN and verdict in FAILED:
        return (f"Logits: mean max |z| {z:.3g} and top-class probability {p:.3f} on the probe: "
                "the softmax is saturated (certain and wrong), so its gradient is 0 for most "
                "examples.")
    if p < UNIFORM:
        return (f"Logits: top-class probability {p:.3f} (uniform is 0.100), mean max |z| "
                f"{z:.3g}: the output says almost nothing about the input.")
    return None


def summed_loss_note(run: dict[str, Any]) -> str:
    """The summed loss's effective step, as a sentence."""
    spec = run["spec"]
    b, lr = spec["batch_size"], spec["lr"]
    return (f"Summed loss: the gradient is summed over the batch of {b}, so lr {lr:g} takes "
            f"steps {b}x as large as the mean loss would (the same as lr {lr * b:g} with the "
            "mean).")


def evidence_findings(run: dict[str, Any], verdict: str) -> list[str]:
    """The findings of a run's internals (empty when it has none): dead ReLUs, step size,
    logits and, where the steps are too large or the run fails, the summed-loss note."""
    if not has_internals(run):
        return []
    internals = run["internals"]
    out = dead_findings(internals)
    ratio_text, ratio = ratio_finding(internals)
    if ratio_text:
        out.append(ratio_text)
    growth = growth_finding(internals)
    if growth:
        out.append(growth)
    logits = logit_finding(internals, verdict)
    if logits:
        out.append(logits)
    large = math.isfinite(ratio) and ratio > RATIO_FACTOR * USUAL_UPDATE_RATIO
    if run["spec"].get("reduction") == "sum" and run["spec"].get("batch_size", 1) > 1 and (
            large or verdict in FAILED):
        out.append(summed_loss_note(run))
    return out


def has_internals(run: dict[str, Any]) -> bool:
    """True when the run recorded internals at one evaluation or more."""
    return bool((run.get("internals") or {}).get("update"))


def add_evidence(runs: list[dict[str, Any]],
                 diagnoses: dict[str, Diagnosis]) -> dict[str, Diagnosis]:
    """``diagnoses`` (``{run_id: Diagnosis}``, e.g. ``diagnose_all(runs)``) with each run's
    :func:`evidence_findings` appended to its findings (in place; returned for chaining)."""
    for run in runs:
        d = diagnoses.get(run["run_id"])
        if d is not None:
            d.findings.extend(evidence_findings(run, d.verdict))
    return diagnoses
