"""The diagnosis of one run from its learning curves: fixed rules, no rendering.

The diagnosis applies fixed rules (:data:`RULES`) to the learning curves. With ``n``
evaluations, ``w = max(2, ceil(0.1 n))``; "end" is the mean of the last ``w`` evaluations,
"at 50%" / "at 75%" the mean of the ``w`` evaluations ending there; differences are in
accuracy *points* (0.01 = 1 point). Verdicts, in priority order:

- **diverged**: the run stopped on a non-finite loss or parameters.
- **not learning**: end train accuracy < 20% (chance is 10%).
- **over-fitting**: train accuracy keeps rising over the second half (end - at 50% > 0.2
  points) while test accuracy stalls (end - at 50% < 0.1 points), lags behind (rose at least
  0.5 points less than train: the gap widens) or falls from its best (best - end > 0.3
  points), and the train-test gap at the end exceeds 1 point. Judged only for runs that fit
  their training data (end train accuracy >= 95%) and are not unstable.
- **under-fitting**: end train accuracy < 95%, or train accuracy still rising at the end
  (end - at 75% > 0.5 points) while test accuracy rises too.
- **unstable** (also a flag beside another verdict): over the second half, test accuracy
  goes up and down by > 1 point per evaluation on average, beyond its net trend (mean
  ``|change|`` between consecutive evaluations minus ``|net change|`` per evaluation: a
  steady rise scores 0); trends are then noise.
- **good fit**: none of the above.

Trend rules need at least :data:`MIN_EVALS_FOR_TRENDS` evaluations; with fewer only the level
rules apply, and the report says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from numnet.lab.stats import window_mean

# Thresholds of the diagnosis (accuracy as a fraction; "points" = 0.01).
NOT_LEARNING_BELOW = 0.20
UNDERFIT_TRAIN_BELOW = 0.95
UNDERFIT_RISING_POINTS = 0.5
OVERFIT_TRAIN_RISE_POINTS = 0.2
OVERFIT_TEST_STALL_POINTS = 0.1
OVERFIT_GAP_WIDENING_POINTS = 0.5
OVERFIT_TEST_DROP_POINTS = 0.3
OVERFIT_GAP_POINTS = 1.0
UNSTABLE_JUMP_POINTS = 1.0
MIN_EVALS_FOR_TRENDS = 4

RULES = [
    ("diverged", "the loss or a parameter became non-finite; the run stopped there."),
    ("not learning", f"end train accuracy < {NOT_LEARNING_BELOW:.0%} (chance is 10%)."),
    ("over-fitting", f"train accuracy rose by > {OVERFIT_TRAIN_RISE_POINTS} points over the "
     f"second half while test accuracy rose by < {OVERFIT_TEST_STALL_POINTS} points, or by at "
     f"least {OVERFIT_GAP_WIDENING_POINTS} points less than train (the gap widens), or ended "
     f"> {OVERFIT_TEST_DROP_POINTS} points below its best, with a train-test gap > "
     f"{OVERFIT_GAP_POINTS} point at the end; judged only when end train accuracy >= "
     f"{UNDERFIT_TRAIN_BELOW:.0%} and the run is not unstable."),
    ("under-fitting", f"end train accuracy < {UNDERFIT_TRAIN_BELOW:.0%}, or train accuracy "
     f"still rising by > {UNDERFIT_RISING_POINTS} points over the last quarter while test "
     "accuracy rises too."),
    ("unstable", f"over the second half, test accuracy goes up and down by > "
     f"{UNSTABLE_JUMP_POINTS} point per evaluation on average beyond its net trend (mean "
     "|change| minus |net change| per evaluation); also shown beside another verdict."),
    ("good fit", "none of the above."),
]
VERDICT_ORDER = ("diverged", "not learning", "over-fitting", "under-fitting", "unstable",
                 "good fit")
@dataclass
class Diagnosis:
    """The verdict on one run and the findings (each states its rule and its numbers)."""

    verdict: str
    flags: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    numbers: dict[str, float] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        """The verdict followed by extra flags (e.g. ["under-fitting", "unstable"])."""
        return [self.verdict, *[f for f in self.flags if f != self.verdict]]


def _pts(x: float) -> str:
    return f"{100 * x:+.2f}"


def diagnose(run: dict[str, Any]) -> Diagnosis:
    """Apply the rules of the module docstring to one run (a ``RunResult.to_dict()``)."""
    tr, te = run["train_accuracy"], run["test_accuracy"]
    n = len(tr)
    if run["status"] == "diverged":
        d = Diagnosis("diverged")
        d.findings.append(
            f"Diverged at update {run['diverged_at_update']} ({run['divergence_reason']}); "
            f"the curves stop at the last good evaluation ({n} evaluations)."
        )
        if n:
            d.findings.append(f"Last good accuracies: train {tr[-1]:.4f}, test {te[-1]:.4f}.")
        return d
    if n == 0:
        return Diagnosis("not learning", findings=["No evaluation was made (run too short)."])

    w = max(2, math.ceil(0.1 * n))
    end_tr, end_te = window_mean(tr, n, w), window_mean(te, n, w)
    numbers = {"end_train": end_tr, "end_test": end_te, "gap": end_tr - end_te,
               "best_test": max(te), "window": float(w), "evaluations": float(n)}
    flags: list[str] = []
    findings: list[str] = []
    trends = n >= MIN_EVALS_FOR_TRENDS
    if trends:
        half, q3 = n // 2, round(0.75 * n)
        numbers.update(
            train_rise_half=end_tr - window_mean(tr, half, w),
            test_rise_half=end_te - window_mean(te, half, w),
            train_rise_last_quarter=end_tr - window_mean(tr, q3, w),
            test_drop_from_best=max(te) - end_te,
            # back-and-forth movement: mean |step| minus the part explained by the net trend
            test_jump=(sum(abs(te[k] - te[k - 1]) for k in range(half, n))
                       - abs(te[n - 1] - te[half - 1])) / max(1, n - half),
        )

    if end_tr < NOT_LEARNING_BELOW:
        flags.append("not learning")
        loss = run["train_loss"][-1] if run.get("train_loss") else float("nan")
        findings.append(f"Not learning: end train accuracy {end_tr:.4f} < "
                        f"{NOT_LEARNING_BELOW:.2f} (chance 0.10); final train loss {loss:.4f} "
                        f"against ln 10 = {math.log(10):.4f} for a uniform guess.")
    unstable = trends and numbers["test_jump"] > UNSTABLE_JUMP_POINTS / 100
    fits_train = end_tr >= UNDERFIT_TRAIN_BELOW
    if trends and fits_train and not unstable:
        rise_tr, rise_te = numbers["train_rise_half"], numbers["test_rise_half"]
        drop, gap = numbers["test_drop_from_best"], numbers["gap"]
        stalls = rise_te < OVERFIT_TEST_STALL_POINTS / 100
        widens = rise_tr - rise_te > OVERFIT_GAP_WIDENING_POINTS / 100
        falls = drop > OVERFIT_TEST_DROP_POINTS / 100
        if (rise_tr > OVERFIT_TRAIN_RISE_POINTS / 100 and (stalls or widens or falls)
                and gap > OVERFIT_GAP_POINTS / 100):
            flags.append("over-fitting")
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
            findings.append(
                f"Over-fitting: over the second half train accuracy rose {_pts(rise_tr)} points "
                f"(> +{OVERFIT_TRAIN_RISE_POINTS}) while " + " and ".join(why)
                + f"; the end gap train - test is {100 * gap:.2f} points (> {OVERFIT_GAP_POINTS})."
            )
    under = []
    if not fits_train:
        under.append(f"end train accuracy {end_tr:.4f} < {UNDERFIT_TRAIN_BELOW:.2f}")
    if (trends and "over-fitting" not in flags
            and numbers["train_rise_last_quarter"] > UNDERFIT_RISING_POINTS / 100
            and end_te - window_mean(te, round(0.75 * n), w) > 0):
        under.append(f"train accuracy still rising: {_pts(numbers['train_rise_last_quarter'])} "
                     f"points over the last quarter (> +{UNDERFIT_RISING_POINTS}), test too")
    if under and "not learning" not in flags:
        flags.append("under-fitting")
        findings.append("Under-fitting: " + "; ".join(under) + ".")
    if unstable:
        flags.append("unstable")
        findings.append(f"Unstable: over the second half test accuracy went up and down by "
                        f"{100 * numbers['test_jump']:.2f} points per evaluation beyond its net "
                        f"trend (> {UNSTABLE_JUMP_POINTS}); trends are noise, over-fitting not "
                        "judged.")
    if not trends:
        findings.append(f"Only {n} evaluation(s): the trend rules (over-fitting, still rising, "
                        f"unstable) need at least {MIN_EVALS_FOR_TRENDS}.")
    verdict = next((v for v in VERDICT_ORDER if v in flags), "good fit")
    if verdict == "good fit":
        findings.insert(0, f"Good fit: end train {end_tr:.4f}, test {end_te:.4f}, gap "
                           f"{100 * (end_tr - end_te):.2f} points; no rule fired.")
    return Diagnosis(verdict, flags=flags, findings=findings, numbers=numbers)
