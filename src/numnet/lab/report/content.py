"""What the report says, written once as a :class:`numnet.lab.render.Doc` that
:func:`numnet.lab.render.to_html` (report.html) and :func:`~numnet.lab.render.to_markdown`
(report.md) serialize; and the summary table as aligned text for the terminal."""

from __future__ import annotations

from collections import Counter
from typing import Any

from numnet.lab.environment import machine_text
from numnet.lab.render import (
    CSS,
    Box,
    Bullets,
    Cell,
    Doc,
    Figure,
    Html,
    P,
    Pre,
    Raw,
    Section,
    Span,
    Table,
    fmt_acc,
    fmt_time,
    html,
    join,
    text_table,
    to_html,
    to_markdown,
)
from numnet.lab.report import internals_section, remedies
from numnet.lab.report.diagnosis import RULES, VERDICT_ORDER, Diagnosis, diagnose_all
from numnet.lab.results import final_test, final_train, grid_table, run_grid

VERDICT_COLORS = {
    "diverged": ("#c62828", "#fde0e0"),
    "not learning": ("#6a1b9a", "#f1e4f7"),
    "over-fitting": ("#b25e00", "#fff0d9"),
    "under-fitting": ("#1565c0", "#e3eefc"),
    "still improving": ("#00695c", "#e0f2ef"),
    "unstable": ("#8d6e00", "#fff8d1"),
    "good fit": ("#2e7d32", "#e3f3e4"),
}


def badge(label: str) -> Span:
    """A verdict as a coloured badge."""
    fg, bg = VERDICT_COLORS.get(label, ("#333", "#eee"))
    return Span("badge", label, f"color:{fg};background:{bg}")


def badges(labels: list[str]) -> list[Span | str]:
    """The badges of ``labels``, a space between two."""
    return [part for label in labels for part in (" ", badge(label))][1:]


def title(doc: dict[str, Any]) -> str:
    """``numnet reproduce: <protocol>`` (``— QUICK`` appended for a quick run)."""
    quick = " — QUICK" if doc.get("label") == "QUICK" else ""
    return f"numnet reproduce: {doc['protocol']['name']}{quick}"


def best_setting(runs: dict[tuple[str, int], dict[str, Any]], model: str) -> int | None:
    """The setting of ``model`` whose run (not diverged) ends with the best test accuracy (of
    its final weights, :func:`numnet.lab.results.final_test`)."""
    best, best_acc = None, -1.0
    for (m, s), r in runs.items():
        acc = final_test(r)[0]
        if m == model and r["status"] == "ok" and acc is not None and acc > best_acc:
            best, best_acc = s, acc
    return best


def shared_text(doc: dict[str, Any]) -> str:
    """The protocol's shared starts in one sentence ("" without them), naming the runs that
    were taken from a longer run."""
    if not doc["protocol"].get("shared_start"):
        return ""
    taken = [f"{r['run_id']} from {r['shared_with']}" for r in doc["runs"]
             if r.get("shared_with")]
    return ("Shared starts: every setting of a model starts from the same initial weights and "
            "sees the same batches, so the settings differ only in their hyper-parameters (a "
            "paired comparison)" + ("; a run that is a prefix of a longer one is taken from it "
                                    f"at its last update: {', '.join(taken)}." if taken else "."))


def env_rows(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """``(label, text)`` rows: versions, BLAS and its threads, machine, device, data, timing."""
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
    timing = doc.get("timing", {})
    data = doc.get("data", {})
    return [
        ("numnet / NumPy / Python",
         f"{env.get('numnet')} / {env.get('numpy')} / {env.get('python')}"),
        ("BLAS", blas_text or "unknown"),
        ("Machine", machine_text(env.get("machine", {}))),
        ("Device", str(doc.get("device", "cpu"))),
        ("Data", f"{data.get('dataset')}: train {data.get('train_examples')}, validation "
                 f"{data.get('validation_examples')}, test {data.get('test_examples')} "
                 f"(fingerprint {data.get('fingerprint')})"),
        ("Started / finished", f"{timing.get('started_at')} / {timing.get('finished_at')}"),
        ("Wall time", fmt_time(float(timing.get("wall_time", 0.0)))
         + (f" (CPU time {fmt_time(float(timing['cpu_time']))})" if "cpu_time" in timing
            else "")
         + (f" (reused runs: {', '.join(timing['reused_runs'])})"
            if timing.get("reused_runs") else "")),
    ]


# ------------------------------------------------------------------------------ summary


def summary_cell(run: dict[str, Any] | None, best: bool, d: Diagnosis | None) -> Cell:
    """A summary cell: the final weights' test accuracy (or ``diverged`` at its update; the
    last curve point's, marked so, for records without that evaluation), below it the train
    accuracy and (epochs, lr), then the diagnosis; ★ the best setting of the model."""
    if run is None:
        return Cell("—", "missing")
    spec = run["spec"]
    sub = f"({spec['epochs']}, {spec['lr']:g})"
    marks = [" "] + badges(d.labels) if d else []
    if run["status"] == "diverged":
        return Cell([Span("acc", "diverged"),
                     Span("sub", f"at update {run['diverged_at_update']} · {sub}"), *marks],
                    "diverged")
    acc, what = final_test(run)
    star = "" if what == "final weights" else " (last curve point)"
    classes = ["best"] * best + ["failed"] * bool(d and d.failed)
    return Cell([Span("acc", fmt_acc(acc) + (" ★" if best else "")),
                 Span("sub", f"train {fmt_acc(final_train(run))} · {sub}{star}"), *marks],
                " ".join(classes))


def summary_section(doc: dict[str, Any], diagnoses: dict[str, Diagnosis]) -> Section:
    _, _, runs = run_grid(doc)
    table = grid_table(doc, lambda m, s, run: summary_cell(
        run, run is not None and s == best_setting(runs, m),
        diagnoses[run["run_id"]] if run else None))
    counts = Counter(d.verdict for d in diagnoses.values())
    overview: list[Any] = ["Diagnoses:"]
    for v in VERDICT_ORDER:
        if v in counts:
            overview += [" ", badge(v), f"×{counts[v]}"]
    return Section("Summary: final test accuracy", [
        Table(table[1:], table[0], "summary"),
        P(["Each cell: the final test accuracy of the run (the protocol's table), measured on "
           "the ", Span("b", "final weights"), " (one evaluation after the last update; they "
           "are the saved weights that ", Span("code", "numnet predict"), " uses), below it "
           "their train accuracy and (epochs, learning rate), then the diagnosis. The learning "
           "curves' last point comes earlier (the last multiple of the evaluation interval); "
           "each run's details give both. ★ best setting of the model."], muted=True),
        P(overview)])


def _text_cell(run: dict[str, Any] | None, d: Diagnosis) -> str:
    if run is None:
        return "—"
    if run["status"] == "diverged":
        return f"diverged@{run['diverged_at_update']}"
    acc, what = final_test(run)
    text = fmt_acc(acc) + ("" if what == "final weights" or acc is None else "*")
    return f"{text}\n{d.summary().upper() if d.failed else d.summary()}"


def summary_rows(doc: dict[str, Any]) -> list[list[str]]:
    """The summary table as text rows (header first), with each run's diagnosis on a second
    line of its cell (``render.text_table``), so that three settings fit in 80 columns: for
    terminals and the closing log."""
    diagnoses = diagnose_all(doc["runs"])
    return grid_table(doc, lambda m, s, run: _text_cell(
        run, diagnoses[run["run_id"]] if run else None))


def format_summary(doc: dict[str, Any]) -> str:
    """The summary table as aligned text, with a line saying which accuracy it shows."""
    note = "test accuracy of the final weights (after the last update)"
    if any(not r.get("final_weights") and r["status"] != "diverged" for r in doc["runs"]):
        note += "; * last curve point (record without a final-weights evaluation)"
    return text_table(summary_rows(doc), rstrip=True) + "\n" + note


# ------------------------------------------------------------------------------ runs

NO_EVALUATION_SVG = (
    '<svg width="{w}" height="{h}" role="img" aria-label="no evaluation">'
    '<rect width="{w}" height="{h}" fill="#f7f7f9"/>'
    '<text x="{cx}" y="{cy}" text-anchor="middle" fill="#999" '
    'font-size="12">no evaluation</text></svg>')
SPARKLINE_SVG = (
    '<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
    'aria-label="learning curves of {run_id}">'
    '<rect x="{left}" y="{top}" width="{inner_w}" '
    'height="{inner_h}" fill="#fafbfd" stroke="#e3e7ee"/>'
    '<text x="{label_x}" y="{hi_y}" text-anchor="end" font-size="10" '
    'fill="#5f6b7a">{hi:.3f}</text>'
    '<text x="{label_x}" y="{lo_y}" text-anchor="end" font-size="10" '
    'fill="#5f6b7a">{lo:.3f}</text>'
    '<text x="{right_x}" y="{samples_y}" text-anchor="end" font-size="10" '
    'fill="#5f6b7a">{samples:.3g} samples</text>'
    '<polyline fill="none" stroke="#1f77b4" stroke-width="1.6" points="{train}"/>'
    '<polyline fill="none" stroke="#ff7f0e" stroke-width="1.6" points="{test}"/>'
    "</svg>")
LEGEND = Html('<div class="legend"><i style="background:#1f77b4"></i>train'
              '<i style="background:#ff7f0e"></i>test</div>')


def sparkline_svg(run: dict[str, Any], width: int = 300, height: int = 90) -> Html:
    """Train (blue) and test (orange) accuracy of a run as an inline SVG polyline chart."""
    tr, te, xs = run["train_accuracy"], run["test_accuracy"], run["samples"]
    if not xs:
        return html(NO_EVALUATION_SVG, w=width, h=height, cx=width / 2, cy=height / 2)
    lo, hi = min(tr + te), max(tr + te)
    if hi - lo < 1e-6:
        lo, hi = lo - 0.005, hi + 0.005
    pad_l, pad_r, pad_t, pad_b = 40, 6, 6, 14
    x0, x1 = xs[0], xs[-1] if xs[-1] > xs[0] else xs[0] + 1

    def pts(values: list[float]) -> str:
        return " ".join(f"{pad_l + (x - x0) / (x1 - x0) * (width - pad_l - pad_r):.1f},"
                        f"{pad_t + (hi - v) / (hi - lo) * (height - pad_t - pad_b):.1f}"
                        for x, v in zip(xs, values, strict=True))

    return html(SPARKLINE_SVG, w=width, h=height, run_id=run["run_id"], left=pad_l, top=pad_t,
                inner_w=width - pad_l - pad_r, inner_h=height - pad_t - pad_b,
                label_x=pad_l - 4, hi_y=pad_t + 9, lo_y=height - pad_b, hi=hi, lo=lo,
                right_x=width - pad_r, samples_y=height - 2, samples=xs[-1],
                train=pts(tr), test=pts(te))


def card(run: dict[str, Any], diag: Diagnosis) -> Box:
    """One run: sparkline, setting, status, accuracies, losses, counts, time, seeds, findings."""
    spec = run["spec"]
    best_test = max(run["test_accuracy"]) if run["test_accuracy"] else None
    last = f" (update {run['samples'][-1] // spec['batch_size']})" if run["samples"] else ""
    fw = run.get("final_weights")
    if fw:
        final = (f"{fmt_acc(fw['train_accuracy'])} / {fmt_acc(fw['test_accuracy'])} (loss "
                 f"{fw['train_loss']:.4f} / {fw['test_loss']:.4f})")
    else:
        final = ("not evaluated (diverged)" if run["status"] == "diverged"
                 else "not recorded (older record)")
    rows = [
        ("Setting", f"{spec['epochs']} epochs, lr {spec['lr']:g}, {spec['reduction']} loss"),
        ("Status", run["status"] + (f" at update {run['diverged_at_update']}"
                                    if run["status"] == "diverged" else "")),
        ("Final weights" + (f" (after update {fw['update']})" if fw else "") + " train / test",
         final),
        (f"Last curve point{last} train / test", f"{fmt_acc(run['final_train_accuracy'])} / "
                                                 f"{fmt_acc(run['final_test_accuracy'])}"),
        ("Best test (curve)", fmt_acc(best_test)),
        ("Last curve point loss train / test",
         f"{run['train_loss'][-1]:.4f} / {run['test_loss'][-1]:.4f}" if run["train_loss"]
         else "—"),
        ("Updates / evaluations", f"{run['updates']} / {run['evaluations']}"),
        ("Wall time", f"{fmt_time(run['wall_time'])} ({run['updates_per_second']:.0f} upd/s)"),
        ("Seed (init, shuffle)", f"{spec['seed']} ({run['init_seed']}, {run['shuffle_seed']})"),
        *([("Trained", f"taken from {run['shared_with']} at its update {run['updates']} "
                       "(shared start)")] if run.get("shared_with") else []),
        ("Init", f"{spec['weight_init']}, biases {spec['bias_init']}; conv activation "
                 f"{spec['conv_activation']}"),
    ]
    return Box(f"Model {spec['model'].removeprefix('model')} · setting {spec['setting']}",
               [Raw(join([sparkline_svg(run), LEGEND])), Table(rows, cls="kv"),
                Bullets(diag.findings)],
               "card diverged" if run["status"] == "diverged" else "card", run["run_id"],
               badges(diag.labels))


# ------------------------------------------------------------------------------ the page


def protocol_statement(doc: dict[str, Any]) -> str:
    """The protocol in two sentences, from the results document."""
    p = doc["protocol"]
    counts = {m: len(v) for m, v in (p.get("settings") or {}).items()}
    n_models = len(p.get("models") or counts)
    n_settings = max(counts.values()) if counts else 0
    return (f"Each of {n_models} models is trained with {n_settings} settings (epochs, learning "
            f"rate) by mini-batch SGD (batch {p['batch_size']}) from seed {p['seed']}; every "
            f"{p['eval_every']} updates the model is evaluated on the first "
            f"{p['eval_train_examples']} train examples and {p['eval_test_examples']} test "
            "examples, which gives the learning curves, and the summary table reports each "
            "run's final test accuracy. numnet evaluates the final weights (after the last "
            "update, the saved ones) once more on the same examples: that is the final "
            "accuracy shown here; the curves' last point comes up to "
            f"{p['eval_every'] - 1} updates earlier.")


# Failed (not learning) cells tinted as in the figure; a figure opens full size on click
# (render.Figure's zoom) and closes on the next.
REPORT_CSS = """
table.summary td.failed { background:#f1e4f7; color:#6a1b9a; }
figure.table { max-width:760px; }
input.zoom { display:none; }
label.zoom img { cursor:zoom-in; }
input.zoom:checked + label.zoom { position:fixed; inset:0; z-index:10; overflow:auto;
  background:rgba(255,255,255,.97); cursor:zoom-out; }
input.zoom:checked + label.zoom img { width:auto; max-width:none; cursor:zoom-out; }
"""


def report_doc(doc: dict[str, Any], diagnoses: dict[str, Diagnosis]) -> Doc:
    """The whole report: header, summary, remedies, figures, runs, evidence, rules, protocol
    and environment."""
    p = doc["protocol"]
    quick = doc.get("label") == "QUICK"
    total = doc.get("timing", {}).get("wall_time")
    header: list[Any] = [
        *([P(p["description"])] if p.get("description") else []),
        P(["Protocol ", Span("code", p["source"]), " · hash ", Span("code", p["hash"]),
           " · seed ", Span("code", str(p["seed"])),
           f" · {len(doc['runs'])} runs · batch {p['batch_size']}, evaluation every "
           f"{p['eval_every']} updates on {p['eval_train_examples']} train / "
           f"{p['eval_test_examples']} test examples"
           + (f" · wall time {fmt_time(float(total))}" if total is not None else "")]),
        *([P(shared_text(doc))] if shared_text(doc) else []),
    ]
    if quick:
        q = p.get("quick_options") or {}
        header.insert(0, P([Span("b", "QUICK run"), f": the reduced smoke-test variant, every "
                            f"setting ran {q.get('epochs')} epoch(s) with evaluations every "
                            f"{q.get('eval_every')} updates on {p['eval_train_examples']} train "
                            f"and {p['eval_test_examples']} test examples. Its numbers are not "
                            "the protocol's results."]))
    sections = [
        summary_section(doc, diagnoses),
        *filter(None, [remedies.section(doc, diagnoses)]),
        Section("Learning curves", [Figure(
            "learning_curves.png", "Learning curves",
            f"Train accuracy (first {p['eval_train_examples']} train examples) and test "
            "accuracy against the number of samples processed, all panels on the same 0–1 "
            "scale; the dashed line is chance (0.1), dotted lines mark the epochs; a red panel "
            "marks a diverged run, a purple one a run that did not learn. In report.html, "
            "click the figure to see it full size (click again to close).",
            zoom="zoom-curves")]),
        Section("Runs", [Box("", [card(r, diagnoses[r["run_id"]]) for r in doc["runs"]],
                             "cards")]),
        *filter(None, [internals_section.section(doc, diagnoses)]),
        Section("How the diagnosis works", [
            P('With n evaluations, w = max(2, ceil(0.1 n)); "end" is the mean of the last w '
              'evaluations, "at 50%" / "at 75%" the mean of the w evaluations ending there. '
              "Differences are in accuracy points (0.01 = 1 point). The first verdict that "
              "applies, in this order:", muted=True),
            Table([[badge(name), text] for name, text in RULES], cls="rules")]),
        Section("Summary table (figure)", [Figure(
            "summary_table.png", "Summary table", cls="table", zoom="zoom-table")]),
        Section("The protocol", [
            P(protocol_statement(doc)),
            P("The protocol is described in docs/protocol.md in the numnet repository; the "
              "protocol file this run used follows.", muted=True),
            Pre(p.get("text") or "", "toml")]),
        Section("Environment", [Table(env_rows(doc), cls="kv")]),
    ]
    heading: list[Any] = [title(doc).removesuffix(" — QUICK")]
    return Doc(title(doc), header, sections,
               footer=f"numnet {doc.get('environment', {}).get('numnet', '')} · results.json "
                      "holds every number shown here",
               css=CSS + REPORT_CSS + internals_section.CSS,
               heading=heading + [Span("quick", "QUICK")] * quick)


def render_html(doc: dict[str, Any], diagnoses: dict[str, Diagnosis],
                images: dict[str, bytes]) -> str:
    """The self-contained HTML report (figures as data: URIs, no external resources)."""
    return to_html(report_doc(doc, diagnoses), images)


def render_markdown(doc: dict[str, Any], diagnoses: dict[str, Diagnosis]) -> str:
    """The same report as Markdown (figures linked as files next to it)."""
    return to_markdown(report_doc(doc, diagnoses))
