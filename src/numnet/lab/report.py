"""The report of a reproduce run: ``report.html`` (one self-contained file) and ``report.md``.

Both are built from results.json alone (``numnet report DIR`` rebuilds them and the figures):
the summary table, the learning-curve figure, an automatic diagnosis per run, per-run details,
the protocol file used and the environment. The HTML embeds its figures as base64 PNG and its
sparklines as inline SVG; it loads nothing from the network.

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

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
VERDICT_COLORS = {
    "diverged": ("#c62828", "#fde0e0"),
    "not learning": ("#6a1b9a", "#f1e4f7"),
    "over-fitting": ("#b25e00", "#fff0d9"),
    "under-fitting": ("#1565c0", "#e3eefc"),
    "unstable": ("#8d6e00", "#fff8d1"),
    "good fit": ("#2e7d32", "#e3f3e4"),
}


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


def _window_mean(values: list[float], end: int, w: int) -> float:
    """Mean of the ``w`` values ending at index ``end`` (exclusive), clipped at the start."""
    end = max(1, end)
    chunk = values[max(0, end - w) : end]
    return sum(chunk) / len(chunk)


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
    end_tr, end_te = _window_mean(tr, n, w), _window_mean(te, n, w)
    numbers = {"end_train": end_tr, "end_test": end_te, "gap": end_tr - end_te,
               "best_test": max(te), "window": float(w), "evaluations": float(n)}
    flags: list[str] = []
    findings: list[str] = []
    trends = n >= MIN_EVALS_FOR_TRENDS
    if trends:
        half, q3 = n // 2, round(0.75 * n)
        numbers.update(
            train_rise_half=end_tr - _window_mean(tr, half, w),
            test_rise_half=end_te - _window_mean(te, half, w),
            train_rise_last_quarter=end_tr - _window_mean(tr, q3, w),
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
            and end_te - _window_mean(te, round(0.75 * n), w) > 0):
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


# ------------------------------------------------------------------------------ writing


def write_report(out_dir: str | Path, doc: dict[str, Any]) -> dict[str, Path]:
    """Draw the figures and write report.html and report.md into ``out_dir`` (atomically).

    Returns ``{name: path}`` of the four files."""
    from numnet.lab.experiments import write_text
    from numnet.lab.plots import save_figures

    out = Path(out_dir)
    images = save_figures(doc, out)
    diagnoses = {r["run_id"]: diagnose(r) for r in doc["runs"]}
    write_text(out / "report.html", render_html(doc, diagnoses, images))
    write_text(out / "report.md", render_markdown(doc, diagnoses))
    names = ("learning_curves.png", "summary_table.png", "report.html", "report.md")
    return {name: out / name for name in names}


def rebuild(out_dir: str | Path) -> dict[str, Path]:
    """``numnet report DIR``: figures and report again from ``DIR/results.json``."""
    from numnet.lab.experiments import load_results

    return write_report(out_dir, load_results(out_dir))


def _grid(doc: dict[str, Any]) -> tuple[list[str], int, dict[tuple[str, int], dict[str, Any]]]:
    from numnet.lab.plots import run_grid

    return run_grid(doc)


def _fmt_acc(x: float | None) -> str:
    return "—" if x is None else f"{x:.4f}"


def _fmt_time(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


def _title(doc: dict[str, Any]) -> str:
    quick = " — QUICK" if doc.get("label") == "QUICK" else ""
    return f"numnet reproduce: {doc['protocol']['name']}{quick}"


def _best_setting(runs: dict[tuple[str, int], dict[str, Any]], model: str) -> int | None:
    best, best_acc = None, -1.0
    for (m, s), r in runs.items():
        if m == model and r["status"] == "ok" and r["final_test_accuracy"] is not None:
            if r["final_test_accuracy"] > best_acc:
                best, best_acc = s, r["final_test_accuracy"]
    return best


# ------------------------------------------------------------------------------ HTML

CSS = """
:root { --ink:#1d2330; --muted:#5f6b7a; --line:#e3e7ee; --bg:#f6f8fb; --card:#ffffff;
        --accent:#2f5fb3; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
       sans-serif; color:var(--ink); background:var(--bg); }
header { background:linear-gradient(120deg,#1d3c78,#2f5fb3); color:#fff; padding:28px 40px; }
header h1 { margin:0 0 6px; font-size:26px; font-weight:650; }
header p { margin:2px 0; opacity:.9; }
header code { background:rgba(255,255,255,.15); padding:1px 6px; border-radius:4px; }
.quick { display:inline-block; background:#ffcc00; color:#332b00; font-weight:700;
         padding:2px 10px; border-radius:12px; margin-left:8px; font-size:14px; }
main { max-width:1480px; margin:0 auto; padding:24px 40px 60px; }
section { background:var(--card); border:1px solid var(--line); border-radius:10px;
          padding:20px 24px; margin:0 0 22px; box-shadow:0 1px 2px rgba(20,30,50,.04); }
h2 { margin:0 0 14px; font-size:20px; }
h3 { margin:0; font-size:16px; }
.muted { color:var(--muted); }
table.summary { border-collapse:separate; border-spacing:0; margin:6px 0 10px; }
table.summary th, table.summary td { padding:10px 18px; text-align:center;
  border-bottom:1px solid var(--line); }
table.summary th { background:#eef2f9; font-weight:600; }
table.summary td .acc { font-size:20px; font-weight:650; font-variant-numeric:tabular-nums; }
table.summary td .sub { display:block; font-size:12px; color:var(--muted); }
table.summary td.best .acc { color:#1b5e20; }
table.summary td.best .acc::after { content:" ★"; font-size:13px; color:#c49000; }
table.summary td.diverged { background:#fde0e0; color:#c62828; }
table.summary td.missing { color:#aaa; }
.badge { display:inline-block; padding:1px 9px; border-radius:11px; font-size:12px;
         font-weight:600; margin:2px 3px 2px 0; white-space:nowrap; }
figure { margin:0; }
figure img { width:100%; height:auto; border:1px solid var(--line); border-radius:6px; }
figcaption { color:var(--muted); font-size:13px; margin-top:6px; }
.cards { display:grid; grid-template-columns:repeat(auto-fill,minmax(330px,1fr)); gap:16px; }
.card { border:1px solid var(--line); border-radius:9px; padding:14px 16px; background:#fff; }
.card.diverged { border-color:#e9a3a3; background:#fff8f8; }
.card .head { display:flex; justify-content:space-between; align-items:baseline; gap:8px; }
.card dl { display:grid; grid-template-columns:auto 1fr; gap:2px 12px; margin:10px 0;
           font-size:13px; }
.card dt { color:var(--muted); }
.card dd { margin:0; font-variant-numeric:tabular-nums; }
.card ul { margin:8px 0 0; padding-left:18px; font-size:13px; }
.card svg { display:block; margin-top:8px; }
.legend { font-size:12px; color:var(--muted); }
.legend i { display:inline-block; width:14px; height:3px; vertical-align:middle;
            margin:0 4px 0 8px; }
table.rules td { padding:4px 10px; vertical-align:top; border-bottom:1px solid var(--line); }
table.kv td { padding:3px 12px 3px 0; vertical-align:top; font-size:13px; }
pre { background:#0f1624; color:#d6e2ff; padding:14px 16px; border-radius:8px;
      overflow-x:auto; font-size:12.5px; line-height:1.45; }
footer { color:var(--muted); font-size:12px; text-align:center; padding:10px; }
"""


def _badge(label: str) -> str:
    fg, bg = VERDICT_COLORS.get(label, ("#333", "#eee"))
    return f'<span class="badge" style="color:{fg};background:{bg}">{html.escape(label)}</span>'


def sparkline_svg(run: dict[str, Any], width: int = 300, height: int = 90) -> str:
    """Train (blue) and test (orange) accuracy of a run as an inline SVG polyline chart."""
    tr, te, xs = run["train_accuracy"], run["test_accuracy"], run["samples"]
    if not xs:
        return (f'<svg width="{width}" height="{height}" role="img" aria-label="no evaluation">'
                f'<rect width="{width}" height="{height}" fill="#f7f7f9"/>'
                f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#999" '
                'font-size="12">no evaluation</text></svg>')
    lo, hi = min(tr + te), max(tr + te)
    if hi - lo < 1e-6:
        lo, hi = lo - 0.005, hi + 0.005
    pad_l, pad_r, pad_t, pad_b = 40, 6, 6, 14
    x0, x1 = xs[0], xs[-1] if xs[-1] > xs[0] else xs[0] + 1

    def pts(values: list[float]) -> str:
        out = []
        for x, v in zip(xs, values, strict=True):
            px = pad_l + (x - x0) / (x1 - x0) * (width - pad_l - pad_r)
            py = pad_t + (hi - v) / (hi - lo) * (height - pad_t - pad_b)
            out.append(f"{px:.1f},{py:.1f}")
        return " ".join(out)

    return (
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="learning curves of {html.escape(run["run_id"])}">'
        f'<rect x="{pad_l}" y="{pad_t}" width="{width - pad_l - pad_r}" '
        f'height="{height - pad_t - pad_b}" fill="#fafbfd" stroke="#e3e7ee"/>'
        f'<text x="{pad_l - 4}" y="{pad_t + 9}" text-anchor="end" font-size="10" '
        f'fill="#5f6b7a">{hi:.3f}</text>'
        f'<text x="{pad_l - 4}" y="{height - pad_b}" text-anchor="end" font-size="10" '
        f'fill="#5f6b7a">{lo:.3f}</text>'
        f'<text x="{width - pad_r}" y="{height - 2}" text-anchor="end" font-size="10" '
        f'fill="#5f6b7a">{xs[-1]:.3g} samples</text>'
        f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.6" points="{pts(tr)}"/>'
        f'<polyline fill="none" stroke="#ff7f0e" stroke-width="1.6" points="{pts(te)}"/>'
        "</svg>"
    )


def _summary_html(doc: dict[str, Any], diagnoses: dict[str, Diagnosis]) -> str:
    models, rows, runs = _grid(doc)
    head = "".join(f"<th>Setting {s}</th>" for s in range(1, rows + 1))
    body = []
    for model in models:
        best = _best_setting(runs, model)
        cells = []
        for s in range(1, rows + 1):
            run = runs.get((model, s))
            if run is None:
                cells.append('<td class="missing">—</td>')
                continue
            spec = run["spec"]
            sub = f"({spec['epochs']}, {spec['lr']:g})"
            badges = "".join(_badge(lbl) for lbl in diagnoses[run["run_id"]].labels)
            if run["status"] == "diverged":
                cells.append(
                    f'<td class="diverged"><span class="acc">diverged</span>'
                    f'<span class="sub">at update {run["diverged_at_update"]} · {sub}</span>'
                    f"{badges}</td>")
            else:
                cls = ' class="best"' if s == best else ""
                cells.append(
                    f'<td{cls}><span class="acc">{_fmt_acc(run["final_test_accuracy"])}</span>'
                    f'<span class="sub">train {_fmt_acc(run["final_train_accuracy"])} · {sub}'
                    f"</span>{badges}</td>")
        body.append(f"<tr><th>Model {model.removeprefix('model')}</th>{''.join(cells)}</tr>")
    return (f'<table class="summary"><thead><tr><th></th>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def _card_html(run: dict[str, Any], diag: Diagnosis) -> str:
    spec = run["spec"]
    cls = " diverged" if run["status"] == "diverged" else ""
    best_test = max(run["test_accuracy"]) if run["test_accuracy"] else None
    rows = [
        ("Setting", f"{spec['epochs']} epochs, lr {spec['lr']:g}, {spec['reduction']} loss"),
        ("Status", run["status"] + (f" at update {run['diverged_at_update']}"
                                    if run["status"] == "diverged" else "")),
        ("Final train / test", f"{_fmt_acc(run['final_train_accuracy'])} / "
                               f"{_fmt_acc(run['final_test_accuracy'])}"),
        ("Best test", _fmt_acc(best_test)),
        ("Final loss train / test",
         f"{run['train_loss'][-1]:.4f} / {run['test_loss'][-1]:.4f}" if run["train_loss"]
         else "—"),
        ("Updates / evaluations", f"{run['updates']} / {run['evaluations']}"),
        ("Wall time", f"{_fmt_time(run['wall_time'])} ({run['updates_per_second']:.0f} upd/s)"),
        ("Seed (init, shuffle)", f"{spec['seed']} ({run['init_seed']}, {run['shuffle_seed']})"),
        ("Init", f"{spec['weight_init']}, biases {spec['bias_init']}; conv activation "
                 f"{spec['conv_activation']}"),
    ]
    dl = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in rows)
    findings = "".join(f"<li>{html.escape(f)}</li>" for f in diag.findings)
    return (
        f'<div class="card{cls}" id="{html.escape(run["run_id"])}"><div class="head">'
        f"<h3>Model {spec['model'].removeprefix('model')} · setting {spec['setting']}</h3>"
        f"<div>{''.join(_badge(lbl) for lbl in diag.labels)}</div></div>"
        f"{sparkline_svg(run)}"
        '<div class="legend"><i style="background:#1f77b4"></i>train'
        '<i style="background:#ff7f0e"></i>test</div>'
        f"<dl>{dl}</dl><ul>{findings}</ul></div>"
    )


def _env_rows(doc: dict[str, Any]) -> list[tuple[str, str]]:
    env = doc.get("environment", {})
    blas = env.get("blas", {})
    blas_text = ", ".join(
        f"{k}: {v.get('name', '')} {v.get('version', '')}".strip()
        for k, v in blas.items() if k in ("blas", "lapack") and isinstance(v, dict)
    )
    pools = blas.get("threadpools") or []
    if pools:
        blas_text += "; threads: " + ", ".join(
            f"{p.get('internal_api')} {p.get('num_threads')} ({p.get('architecture')})"
            for p in pools)
    machine = env.get("machine", {})
    timing = doc.get("timing", {})
    data = doc.get("data", {})
    return [
        ("numnet / NumPy / Python",
         f"{env.get('numnet')} / {env.get('numpy')} / {env.get('python')}"),
        ("BLAS", blas_text or "unknown"),
        ("Machine", f"{machine.get('processor', '')} · {machine.get('cpu_count')} CPUs · "
                    f"{machine.get('platform', '')}"),
        ("Device", str(doc.get("device", "cpu"))),
        ("Data", f"{data.get('dataset')}: train {data.get('train_examples')}, validation "
                 f"{data.get('validation_examples')}, test {data.get('test_examples')} "
                 f"(fingerprint {data.get('fingerprint')})"),
        ("Started / finished", f"{timing.get('started_at')} / {timing.get('finished_at')}"),
        ("Wall time", _fmt_time(float(timing.get("wall_time", 0.0)))
         + (f" (CPU time {_fmt_time(float(timing['cpu_time']))})" if "cpu_time" in timing
            else "")
         + (f" (reused runs: {', '.join(timing['reused_runs'])})"
            if timing.get("reused_runs") else "")),
    ]


def render_html(doc: dict[str, Any], diagnoses: dict[str, Diagnosis],
                images: dict[str, bytes]) -> str:
    """The self-contained HTML report (figures as data: URIs, no external resources)."""
    p = doc["protocol"]
    quick = doc.get("label") == "QUICK"
    esc = html.escape

    def img(name: str, alt: str) -> str:
        data = base64.b64encode(images[name]).decode("ascii")
        return f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}">'

    counts: dict[str, int] = {}
    for d in diagnoses.values():
        counts[d.verdict] = counts.get(d.verdict, 0) + 1
    overview = " ".join(f"{_badge(v)}×{counts[v]}" for v in VERDICT_ORDER if v in counts)
    quick_note = ""
    if quick:
        q = p.get("quick_options") or {}
        quick_note = (
            '<section style="border-color:#ffcc00;background:#fffbe6"><h2>QUICK run</h2>'
            f"<p>This is the reduced smoke-test variant: every setting ran {q.get('epochs')} "
            f"epoch(s) with evaluations every {q.get('eval_every')} updates on "
            f"{p['eval_train_examples']} train and {p['eval_test_examples']} test examples. "
            "Its numbers are not the protocol's results.</p></section>")
    rules = "".join(f"<tr><td>{_badge(name)}</td><td>{esc(text)}</td></tr>"
                    for name, text in RULES)
    env = "".join(f"<tr><td class='muted'>{esc(k)}</td><td>{esc(v)}</td></tr>"
                  for k, v in _env_rows(doc))
    cards = "".join(_card_html(r, diagnoses[r["run_id"]]) for r in doc["runs"])
    total = doc.get("timing", {}).get("wall_time")
    quick_badge = '<span class="quick">QUICK</span>' if quick else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(_title(doc))}</title>
<style>{CSS}</style></head>
<body>
<header>
<h1>{esc(_title(doc).removesuffix(" — QUICK"))}{quick_badge}</h1>
<p>{esc(p.get('description') or '')}</p>
<p>Protocol <code>{esc(p['source'])}</code> · hash <code>{esc(p['hash'])}</code> · seed
<code>{p['seed']}</code> · {len(doc['runs'])} runs · batch {p['batch_size']}, evaluation every
{p['eval_every']} updates on {p['eval_train_examples']} train / {p['eval_test_examples']} test
examples{f" · wall time {_fmt_time(float(total))}" if total is not None else ""}</p>
</header>
<main>
{quick_note}
<section><h2>Summary: final test accuracy</h2>
{_summary_html(doc, diagnoses)}
<p class="muted">Each cell: the final test accuracy of the run (SPEC's table), below it the final
train accuracy and (epochs, learning rate), then the diagnosis. ★ best setting of the model.</p>
<p>Diagnoses: {overview}</p>
</section>
<section><h2>Learning curves</h2>
<figure>{img('learning_curves.png', 'Learning curves: 3 settings x 4 models')}
<figcaption>Train accuracy (first {p['eval_train_examples']} train examples) and test accuracy
against the number of samples processed; a red panel marks a diverged run.</figcaption></figure>
</section>
<section><h2>Runs</h2><div class="cards">{cards}</div></section>
<section><h2>How the diagnosis works</h2>
<p class="muted">With n evaluations, w = max(2, ceil(0.1 n)); "end" is the mean of the last w
evaluations, "at 50%" / "at 75%" the mean of the w evaluations ending there. Differences are in
accuracy points (0.01 = 1 point). The first verdict that applies, in this order:</p>
<table class="rules">{rules}</table>
</section>
<section><h2>Summary table (figure)</h2>
<figure style="max-width:760px">{img('summary_table.png', 'Summary table (final test accuracy)')}
</figure>
</section>
<section><h2>Protocol file</h2><pre>{esc(p.get('text') or '')}</pre></section>
<section><h2>Environment</h2><table class="kv">{env}</table></section>
</main>
<footer>numnet {esc(str(doc.get('environment', {}).get('numnet', '')))} · results.json holds every
number shown here</footer>
</body></html>
"""


# ------------------------------------------------------------------------------ Markdown


def render_markdown(doc: dict[str, Any], diagnoses: dict[str, Diagnosis]) -> str:
    """The same report as Markdown (figures linked as files next to it)."""
    p = doc["protocol"]
    models, rows, runs = _grid(doc)
    lines = [f"# {_title(doc)}", ""]
    if doc.get("label") == "QUICK":
        q = p.get("quick_options") or {}
        lines += [f"> **QUICK run**: the reduced smoke-test variant ({q.get('epochs')} epoch(s) "
                  f"per setting, evaluation every {q.get('eval_every')} updates on "
                  f"{p['eval_train_examples']} train / {p['eval_test_examples']} test "
                  "examples). Not the protocol's results.", ""]
    if p.get("description"):
        lines += [p["description"], ""]
    total = doc.get("timing", {}).get("wall_time")
    lines += [f"Protocol `{p['source']}` (hash `{p['hash']}`), seed {p['seed']}, "
              f"{len(doc['runs'])} runs"
              + (f", wall time {_fmt_time(float(total))}." if total is not None else "."), ""]
    lines += ["## Summary: final test accuracy", ""]
    lines.append("| | " + " | ".join(f"Setting {s}" for s in range(1, rows + 1)) + " |")
    lines.append("|---|" + "---|" * rows)
    for model in models:
        cells = []
        for s in range(1, rows + 1):
            run = runs.get((model, s))
            if run is None:
                cells.append("—")
            elif run["status"] == "diverged":
                cells.append(f"**diverged** @ {run['diverged_at_update']}")
            else:
                cells.append(f"{run['final_test_accuracy']:.4f} "
                             f"({diagnoses[run['run_id']].verdict})")
        lines.append(f"| Model {model.removeprefix('model')} | " + " | ".join(cells) + " |")
    lines += ["", "![Learning curves](learning_curves.png)", "",
              "![Summary table](summary_table.png)", "", "## Runs", ""]
    for run in doc["runs"]:
        spec, d = run["spec"], diagnoses[run["run_id"]]
        lines.append(f"### Model {spec['model'].removeprefix('model')}, setting "
                     f"{spec['setting']}: {', '.join(d.labels)}")
        lines.append("")
        lines.append(f"- {spec['epochs']} epochs, lr {spec['lr']:g}, {spec['reduction']} loss; "
                     f"status {run['status']}"
                     + (f" at update {run['diverged_at_update']}"
                        if run["status"] == "diverged" else ""))
        lines.append(f"- final train / test accuracy {_fmt_acc(run['final_train_accuracy'])} / "
                     f"{_fmt_acc(run['final_test_accuracy'])}; {run['updates']} updates, "
                     f"{run['evaluations']} evaluations, {_fmt_time(run['wall_time'])}")
        lines.extend(f"- {f}" for f in d.findings)
        lines.append("")
    lines += ["## How the diagnosis works", "",
              "With n evaluations, w = max(2, ceil(0.1 n)); \"end\" is the mean of the last w "
              "evaluations, \"at 50%\" / \"at 75%\" the mean of the w evaluations ending there; "
              "differences in accuracy points. First verdict that applies:", ""]
    lines.extend(f"- **{name}**: {text}" for name, text in RULES)
    lines += ["", "## Environment", ""]
    lines.extend(f"- {k}: {v}" for k, v in _env_rows(doc))
    lines += ["", "## Protocol file", "", "```toml", (p.get("text") or "").rstrip(), "```", ""]
    return "\n".join(lines)


def summary_rows(doc: dict[str, Any]) -> list[list[str]]:
    """SPEC's table as text rows (header first): for terminals and the closing log line."""
    models, rows, runs = _grid(doc)
    table = [["", *[f"Setting {s}" for s in range(1, rows + 1)]]]
    for model in models:
        row = [f"Model {model.removeprefix('model')}"]
        for s in range(1, rows + 1):
            run = runs.get((model, s))
            if run is None:
                row.append("—")
            elif run["status"] == "diverged":
                row.append(f"diverged@{run['diverged_at_update']}")
            else:
                row.append(f"{run['final_test_accuracy']:.4f}")
        table.append(row)
    return table


def format_summary(doc: dict[str, Any]) -> str:
    """SPEC's table as aligned text."""
    rows = summary_rows(doc)
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True))
                     for r in rows)


__all__ = ["Diagnosis", "RULES", "diagnose", "format_summary", "rebuild", "render_html",
           "render_markdown", "sparkline_svg", "summary_rows", "write_report"]
