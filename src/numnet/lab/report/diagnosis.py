"""The diagnosis of one run from its learning curves: fixed rules, no rendering.

The rules are :data:`RULES` (the report prints them), tried in the order of
:data:`VERDICT_ORDER`: the first that applies is the verdict, the others that apply are shown
beside it. With ``n`` evaluations, ``w = max(2, ceil(0.1 n))``; "end" is the mean of the last
``w`` evaluations, "at 50%" / "at 75%" the mean of the ``w`` evaluations ending there;
differences are in accuracy *points* (0.01 = 1 point). The "unstable" thresholds are raised to
what sampling noise alone gives on the ``m`` test examples evaluated (accuracy ``p`` at the
end: a difference of two evaluations has standard deviation ``s = sqrt(2 p (1 - p) / m)``), so
that a small evaluation set (a quick run) is not "unstable" by its own noise. Trend rules need
at least :data:`MIN_EVALS_FOR_TRENDS` evaluations; with fewer only the level rules apply, and
the diagnosis says so. Every finding states its rule's thresholds and the run's numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from numnet.lab.stats import window_mean

# Thresholds of the diagnosis (accuracy as a fraction; "points" = 0.01).
NOT_LEARNING_BELOW = 0.20
UNDERFIT_TRAIN_BELOW = 0.95
UNDERFIT_BELOW_BEST_POINTS = 3.0
IMPROVING_POINTS = 0.5
OVERFIT_TRAIN_RISE_POINTS = 0.2
OVERFIT_TEST_STALL_POINTS = 0.1
OVERFIT_GAP_WIDENING_POINTS = 0.5
OVERFIT_TEST_DROP_POINTS = 0.3
OVERFIT_GAP_POINTS = 1.0
UNSTABLE_JUMP_POINTS = 0.5
UNSTABLE_DROP_POINTS = 2.0
UNSTABLE_NOISE_JUMP = 1.5  # x the mean |change| sampling noise alone gives
UNSTABLE_NOISE_DROP = 3.0  # x the standard deviation of a change from sampling noise
MIN_EVALS_FOR_TRENDS = 4

RULES = [
    ("diverged", "the loss or a parameter became non-finite (the run stopped there), or a "
     "recorded accuracy is not a number."),
    ("not learning", f"end train accuracy < {NOT_LEARNING_BELOW:.0%} (chance is 10%)."),
    ("unstable", f"test accuracy goes up and down by > {UNSTABLE_JUMP_POINTS} points per "
     "evaluation on average beyond its net trend (mean |change| minus |net change| per "
     f"evaluation), or drops by > {UNSTABLE_DROP_POINTS:g} points between two consecutive "
     "evaluations in the second half; each threshold raised to what sampling noise alone "
     f"gives on the test examples evaluated ({UNSTABLE_NOISE_JUMP:g} x its mean |change|, "
     f"{UNSTABLE_NOISE_DROP:g} x its standard deviation)."),
    ("over-fitting", f"train accuracy rose by > {OVERFIT_TRAIN_RISE_POINTS} points over the "
     f"second half while test accuracy rose by < {OVERFIT_TEST_STALL_POINTS} points, or by at "
     f"least {OVERFIT_GAP_WIDENING_POINTS} points less than train (the gap widens), or ended "
     f"> {OVERFIT_TEST_DROP_POINTS} points below its best, with a train-test gap > "
     f"{OVERFIT_GAP_POINTS} point at the end; judged only when end train accuracy >= "
     f"{UNDERFIT_TRAIN_BELOW:.0%} and the run is not unstable."),
    ("under-fitting", "the model or learning rate cannot fit the training data: train "
     f"accuracy on a plateau (rose <= {IMPROVING_POINTS} points over the last quarter) below "
     f"{UNDERFIT_TRAIN_BELOW:.0%}, or ending > {UNDERFIT_BELOW_BEST_POINTS:g} points below the "
     "best end train accuracy of the same model with another setting."),
    ("still improving", f"train accuracy still rising by > {IMPROVING_POINTS} points over the "
     "last quarter, test accuracy rising too: more epochs would help."),
    ("good fit", "none of the above."),
]
VERDICT_ORDER = ("diverged", "not learning", "unstable", "over-fitting", "under-fitting",
                 "still improving", "good fit")
#: Verdicts that mean the run's weights are not worth using.
FAILED = ("diverged", "not learning")


@dataclass
class Diagnosis:
    """The verdict on one run and the findings (each states its rule and its numbers).

    ``reasons``: one line per label (verdict and flags), why it applies; ``findings``: those
    lines and any notes (e.g. too few evaluations for the trend rules), in report order."""

    verdict: str
    flags: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    numbers: dict[str, float] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        """The verdict followed by extra flags (e.g. ["under-fitting", "still improving"])."""
        return [self.verdict, *[f for f in self.flags if f != self.verdict]]

    @property
    def failed(self) -> bool:
        """True when the run diverged or did not learn."""
        return self.verdict in FAILED

    def summary(self) -> str:
        """The labels on one line: ``"under-fitting, still improving"``."""
        return ", ".join(self.labels)

    def to_record(self) -> dict[str, Any]:
        """The ``diagnosis`` field of a run in results.json: the labels, one reason per label
        (same order) and the other findings (notes)."""
        reasons = [self.reasons.get(label, "") for label in self.labels]
        return {"verdict": self.verdict, "labels": self.labels, "reasons": reasons,
                "notes": [f for f in self.findings if f not in reasons]}


def _pts(x: float) -> str:
    return f"{100 * x:+.2f}"


def _finite(values: list[float]) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def end_train_accuracy(run: dict[str, Any]) -> float | None:
    """The "end" train accuracy of a run (mean of its last ``w`` evaluations), None without
    evaluations or when it diverged."""
    tr = run["train_accuracy"]
    if run["status"] == "diverged" or not tr or not _finite(tr):
        return None
    return window_mean(tr, len(tr), max(2, math.ceil(0.1 * len(tr))))


def diagnose_all(runs: list[dict[str, Any]]) -> dict[str, Diagnosis]:
    """``{run_id: Diagnosis}`` of the runs of one protocol run; the under-fitting rule also
    compares each run with the best end train accuracy of the same model's other runs."""
    def model(r: dict[str, Any]) -> str | None:
        return (r.get("spec") or {}).get("model")

    ends = [(model(r), r["run_id"], end_train_accuracy(r)) for r in runs]
    out = {}
    for r in runs:
        others = [e for m, rid, e in ends
                  if m is not None and m == model(r) and rid != r["run_id"] and e is not None]
        out[r["run_id"]] = diagnose(r, best_train_elsewhere=max(others) if others else None)
    return out


def diagnose(run: dict[str, Any], best_train_elsewhere: float | None = None) -> Diagnosis:
    """Apply the rules of the module docstring to one run (a ``RunResult.to_dict()``).

    ``best_train_elsewhere``: the best end train accuracy of the same model with another
    setting (for the under-fitting rule); None when unknown."""
    tr, te = run["train_accuracy"], run["test_accuracy"]
    n = len(tr)
    if run["status"] == "diverged":
        reason = (f"Diverged at update {run['diverged_at_update']} "
                  f"({run['divergence_reason']}); the curves stop at the last good evaluation "
                  f"({n} evaluations).")
        d = Diagnosis("diverged", findings=[reason], reasons={"diverged": reason})
        if n:
            d.findings.append(f"Last good accuracies: train {tr[-1]:.4f}, test {te[-1]:.4f}.")
        return d
    if not (_finite(tr) and _finite(te)):
        bad = next(k for k in range(n) if not (_finite([tr[k]]) and _finite([te[k]])))
        reason = (f"Diverged: the accuracy at evaluation {bad + 1} of {n} is not a number "
                  "(NaN or infinite).")
        return Diagnosis("diverged", findings=[reason], reasons={"diverged": reason})
    fw = run.get("final_weights")
    if n == 0 and fw:
        # no curve point, but the final weights were evaluated: judge those (levels only)
        tr, te, n = [fw["train_accuracy"]], [fw["test_accuracy"]], 1
        first_notes = [f"No curve point (the run is shorter than the evaluation interval): "
                       f"the final weights (update {fw['update']}) are judged instead."]
    else:
        first_notes = []
    if n == 0:
        reason = "Not learning: no evaluation was made (run too short)."
        return Diagnosis("not learning", flags=["not learning"], findings=[reason],
                         reasons={"not learning": reason})

    w = max(2, math.ceil(0.1 * n))
    end_tr, end_te = window_mean(tr, n, w), window_mean(te, n, w)
    numbers = {"end_train": end_tr, "end_test": end_te, "gap": end_tr - end_te,
               "best_test": max(te), "window": float(w), "evaluations": float(n)}
    if best_train_elsewhere is not None:
        numbers["best_train_elsewhere"] = best_train_elsewhere
    reasons: dict[str, str] = {}
    notes: list[str] = first_notes
    trends = n >= MIN_EVALS_FOR_TRENDS
    if trends:
        half, q3 = n // 2, round(0.75 * n)
        numbers.update(
            train_rise_half=end_tr - window_mean(tr, half, w),
            test_rise_half=end_te - window_mean(te, half, w),
            train_rise_last_quarter=end_tr - window_mean(tr, q3, w),
            test_rise_last_quarter=end_te - window_mean(te, q3, w),
            test_drop_from_best=max(te) - end_te,
            # back-and-forth movement: mean |step| minus the part explained by the net trend
            test_jump=(sum(abs(te[k] - te[k - 1]) for k in range(1, n))
                       - abs(te[n - 1] - te[0])) / (n - 1),
            test_largest_drop=max(0.0, *(te[k - 1] - te[k] for k in range(half, n))),
        )
        # sampling noise of a change between two evaluations on m test examples
        m = int((run.get("spec") or {}).get("eval_test_examples") or 0)  # 0: unknown
        noise = math.sqrt(2 * end_te * (1 - end_te) / m) if m > 0 else 0.0
        numbers.update(
            unstable_jump_threshold=max(UNSTABLE_JUMP_POINTS / 100,
                                        UNSTABLE_NOISE_JUMP * noise * math.sqrt(2 / math.pi)),
            unstable_drop_threshold=max(UNSTABLE_DROP_POINTS / 100, UNSTABLE_NOISE_DROP * noise),
        )

    if end_tr < NOT_LEARNING_BELOW:
        loss = run["train_loss"][-1] if run.get("train_loss") else float("nan")
        reasons["not learning"] = (
            f"Not learning: end train accuracy {end_tr:.4f} < {NOT_LEARNING_BELOW:.2f} (chance "
            f"0.10); last train loss {loss:.4f} per example against ln 10 = "
            f"{math.log(10):.4f} for a uniform guess.")
    learning = "not learning" not in reasons
    unstable = False
    if trends and learning:
        jump, drop = numbers["test_jump"], numbers["test_largest_drop"]
        t_jump, t_drop = numbers["unstable_jump_threshold"], numbers["unstable_drop_threshold"]
        unstable = jump > t_jump or drop > t_drop
        if unstable:
            reasons["unstable"] = (
                f"Unstable: test accuracy went up and down by {100 * jump:.2f} points per "
                f"evaluation beyond its net trend (threshold {100 * t_jump:.2f}) and its "
                f"largest drop between two evaluations in the second half is {100 * drop:.2f} "
                f"points (threshold {100 * t_drop:.2f}); trends are noise, over-fitting not "
                "judged.")
    fits_train = end_tr >= UNDERFIT_TRAIN_BELOW
    if trends and fits_train and not unstable:
        rise_tr, rise_te = numbers["train_rise_half"], numbers["test_rise_half"]
        drop, gap = numbers["test_drop_from_best"], numbers["gap"]
        stalls = rise_te < OVERFIT_TEST_STALL_POINTS / 100
        widens = rise_tr - rise_te > OVERFIT_GAP_WIDENING_POINTS / 100
        falls = drop > OVERFIT_TEST_DROP_POINTS / 100
        if (rise_tr > OVERFIT_TRAIN_RISE_POINTS / 100 and (stalls or widens or falls)
                and gap > OVERFIT_GAP_POINTS / 100):
            why = []
            if stalls:
                why.append(f"test accuracy changed by {_pts(rise_te)} points "
                           f"(< +{OVERFIT_TEST_STALL_POINTS})")
            elif widens:
                why.append(f"test accuracy rose only {_pts(rise_te)} points, "
                           f"{100 * (rise_tr - rise_te):.2f} less than train "
                           f"(> {OVERFIT_GAP_WIDENING_POINTS}: the gap widens)")
            if falls:
                why.append(f"test accuracy ended {100 * drop:.2f} points below its best "
                           f"{max(te):.4f} (> {OVERFIT_TEST_DROP_POINTS})")
            reasons["over-fitting"] = (
                f"Over-fitting: over the second half train accuracy rose {_pts(rise_tr)} points "
                f"(> +{OVERFIT_TRAIN_RISE_POINTS}) while " + " and ".join(why)
                + f"; the end gap train - test is {100 * gap:.2f} points (> {OVERFIT_GAP_POINTS}).")
    improving = (trends and learning and "over-fitting" not in reasons
                 and numbers["train_rise_last_quarter"] > IMPROVING_POINTS / 100
                 and numbers["test_rise_last_quarter"] > 0)
    if learning:
        under = []
        if not fits_train and trends and not improving:
            under.append(f"train accuracy is on a plateau at {end_tr:.4f} "
                         f"({_pts(numbers['train_rise_last_quarter'])} points over the last "
                         f"quarter, <= +{IMPROVING_POINTS}), below {UNDERFIT_TRAIN_BELOW:.2f}")
        elif not fits_train and not trends:
            under.append(f"end train accuracy {end_tr:.4f} < {UNDERFIT_TRAIN_BELOW:.2f}")
        if (best_train_elsewhere is not None
                and best_train_elsewhere - end_tr > UNDERFIT_BELOW_BEST_POINTS / 100):
            under.append(f"end train accuracy {end_tr:.4f} is "
                         f"{100 * (best_train_elsewhere - end_tr):.2f} points below "
                         f"{best_train_elsewhere:.4f}, the best this model reaches with another "
                         f"setting (> {UNDERFIT_BELOW_BEST_POINTS:g})")
        if under:
            reasons["under-fitting"] = "Under-fitting: " + "; ".join(under) + "."
    if improving:
        reasons["still improving"] = (
            f"Still improving: train accuracy rose {_pts(numbers['train_rise_last_quarter'])} "
            f"points over the last quarter (> +{IMPROVING_POINTS}) and test accuracy "
            f"{_pts(numbers['test_rise_last_quarter'])}; more epochs would help.")
    if not trends:
        notes.append(f"Only {n} evaluation(s): the trend rules (unstable, over-fitting, "
                     f"still improving, plateau) need at least {MIN_EVALS_FOR_TRENDS}.")
    flags = [v for v in VERDICT_ORDER if v in reasons]
    verdict = flags[0] if flags else "good fit"
    if verdict == "good fit":
        reasons["good fit"] = (f"Good fit: end train {end_tr:.4f}, test {end_te:.4f}, gap "
                               f"{100 * (end_tr - end_te):.2f} points; no rule fired.")
    findings = [reasons[v] for v in VERDICT_ORDER if v in reasons] + notes
    return Diagnosis(verdict, flags=flags, findings=findings, numbers=numbers, reasons=reasons)


def diagnosis_records(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{run_id: Diagnosis.to_record()}`` of the runs of one protocol run (results.json's
    ``diagnosis`` fields), by :func:`diagnose_all`."""
    return {rid: d.to_record() for rid, d in diagnose_all(runs).items()}
