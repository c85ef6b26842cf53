"""report.html: one self-contained page (figures as data URIs, sparklines as inline SVG, no
external resource), every value escaped by :func:`numnet.lab.render.html`."""

from __future__ import annotations

from typing import Any

from numnet.lab.render import CSS, Html, fmt_acc, fmt_time, html, img, join, kv_rows, page
from numnet.lab.report.content import best_setting, env_rows, shared_text, title
from numnet.lab.report.diagnosis import RULES, VERDICT_ORDER, Diagnosis
from numnet.lab.report.internals_section import CSS as EVIDENCE_CSS
from numnet.lab.report.internals_section import evidence_html
from numnet.lab.report.remedies import pct as remedy_pct
from numnet.lab.report.remedies import remedy_rows
from numnet.lab.report.remedies import sentences as remedy_sentences
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


def badge(label: str) -> Html:
    """A verdict as a coloured badge."""
    fg, bg = VERDICT_COLORS.get(label, ("#333", "#eee"))
    return html('<span class="badge" style="color:{};background:{}">{}</span>', fg, bg, label)


def badges(labels: list[str]) -> Html:
    return join(badge(label) for label in labels)


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
        out = []
        for x, v in zip(xs, values, strict=True):
            px = pad_l + (x - x0) / (x1 - x0) * (width - pad_l - pad_r)
            py = pad_t + (hi - v) / (hi - lo) * (height - pad_t - pad_b)
            out.append(f"{px:.1f},{py:.1f}")
        return " ".join(out)

    return html(SPARKLINE_SVG, w=width, h=height, run_id=run["run_id"], left=pad_l, top=pad_t,
                inner_w=width - pad_l - pad_r, inner_h=height - pad_t - pad_b,
                label_x=pad_l - 4, hi_y=pad_t + 9, lo_y=height - pad_b, hi=hi, lo=lo,
                right_x=width - pad_r, samples_y=height - 2, samples=xs[-1],
                train=pts(tr), test=pts(te))


def summary_table(doc: dict[str, Any], diagnoses: dict[str, Diagnosis]) -> Html:
    """The summary table: test accuracy of the final weights per (model, setting) (of the last
    curve point, marked so, for records without that evaluation), badges, best starred."""
    _, _, runs = run_grid(doc)

    def cell(model: str, setting: int, run: dict[str, Any] | None) -> Html:
        if run is None:
            return Html('<td class="missing">—</td>')
        spec = run["spec"]
        sub = f"({spec['epochs']}, {spec['lr']:g})"
        marks = badges(diagnoses[run["run_id"]].labels)
        if run["status"] == "diverged":
            return html('<td class="diverged"><span class="acc">diverged</span>'
                        '<span class="sub">at update {} · {}</span>{}</td>',
                        run["diverged_at_update"], sub, marks)
        classes = (["best"] if setting == best_setting(runs, model) else []) + (
            ["failed"] if diagnoses[run["run_id"]].failed else [])
        cls = html(' class="{}"', " ".join(classes)) if classes else ""
        acc, what = final_test(run)
        star = "" if what == "final weights" else " (last curve point)"
        return html('<td{}><span class="acc">{}</span><span class="sub">train {} · {}{}'
                    "</span>{}</td>", cls, fmt_acc(acc), fmt_acc(final_train(run)), sub, star,
                    marks)

    table = grid_table(doc, cell)
    head = join(html("<th>{}</th>", c) for c in table[0][1:])
    body = join(html("<tr><th>{}</th>{}</tr>", row[0], join(row[1:])) for row in table[1:])
    return html('<table class="summary"><thead><tr><th></th>{}</tr></thead>'
                "<tbody>{}</tbody></table>", head, body)


CARD = ('<div class="card{cls}" id="{run_id}"><div class="head">'
        "<h3>Model {number} · setting {setting}</h3>"
        "<div>{badges}</div></div>"
        "{sparkline}"
        '<div class="legend"><i style="background:#1f77b4"></i>train'
        '<i style="background:#ff7f0e"></i>test</div>'
        "<dl>{dl}</dl><ul>{findings}</ul></div>")


def card(run: dict[str, Any], diag: Diagnosis) -> Html:
    """One run: sparkline, setting, status, accuracies, losses, counts, time, seeds, findings."""
    spec = run["spec"]
    best_test = max(run["test_accuracy"]) if run["test_accuracy"] else None
    last = (f" (update {run['samples'][-1] // spec['batch_size']})" if run["samples"] else "")
    rows = [
        ("Setting", f"{spec['epochs']} epochs, lr {spec['lr']:g}, {spec['reduction']} loss"),
        ("Status", run["status"] + (f" at update {run['diverged_at_update']}"
                                    if run["status"] == "diverged" else "")),
        ("Final weights train / test", _final_weights_text(run)),
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
    return html(CARD, cls=" diverged" if run["status"] == "diverged" else "",
                run_id=run["run_id"], number=spec["model"].removeprefix("model"),
                setting=spec["setting"], badges=badges(diag.labels), sparkline=sparkline_svg(run),
                dl=join(html("<dt>{}</dt><dd>{}</dd>", k, v) for k, v in rows),
                findings=join(html("<li>{}</li>", f) for f in diag.findings))


def _final_weights_text(run: dict[str, Any]) -> str:
    fw = run.get("final_weights")
    if not fw:
        return ("not evaluated (diverged)" if run["status"] == "diverged"
                else "not recorded (older record)")
    return (f"{fmt_acc(fw['train_accuracy'])} / {fmt_acc(fw['test_accuracy'])} (after the last "
            f"update, {fw['update']}; loss {fw['train_loss']:.4f} / {fw['test_loss']:.4f})")


QUICK_NOTE = (
    '<section style="border-color:#ffcc00;background:#fffbe6"><h2>QUICK run</h2>'
    "<p>This is the reduced smoke-test variant: every setting ran {epochs} "
    "epoch(s) with evaluations every {eval_every} updates on "
    "{eval_train} train and {eval_test} test examples. "
    "Its numbers are not the protocol's results.</p></section>")

BODY = """<header>
<h1>{heading}{quick_badge}</h1>
<p>{description}</p>
<p>Protocol <code>{source}</code> · hash <code>{hash}</code> · seed
<code>{seed}</code> · {n_runs} runs · batch {batch_size}, evaluation every
{eval_every} updates on {eval_train} train / {eval_test} test
examples{wall}</p>
<p>{shared}</p>
</header>
<main>
{quick_note}
<section><h2>Summary: final test accuracy</h2>
{summary}
<p class="muted">Each cell: the final test accuracy of the run (the protocol's table), measured on
the <b>final weights</b> (one evaluation after the last update; they are the saved weights that
<code>numnet predict</code> uses), below it their train accuracy and (epochs, learning rate), then
the diagnosis. The learning curves' last point comes earlier (the last multiple of the evaluation
interval); each run's card gives both. ★ best setting of the model.</p>
<p>Diagnoses: {overview}</p>
</section>
{remedies}
<section><h2>Learning curves</h2>
<figure>{curves}
<figcaption>Train accuracy (first {eval_train} train examples) and test accuracy
against the number of samples processed, all panels on the same 0–1 scale; the dashed line is
chance (0.1), dotted lines mark the epochs; a red panel marks a diverged run, a purple one a run
that did not learn. Click the figure to see it full size (click again to close).</figcaption>
</figure>
</section>
<section><h2>Runs</h2><div class="cards">{cards}</div></section>
{evidence}
<section><h2>How the diagnosis works</h2>
<p class="muted">With n evaluations, w = max(2, ceil(0.1 n)); "end" is the mean of the last w
evaluations, "at 50%" / "at 75%" the mean of the w evaluations ending there. Differences are in
accuracy points (0.01 = 1 point). The first verdict that applies, in this order:</p>
<table class="rules">{rules}</table>
</section>
<section><h2>Summary table (figure)</h2>
<figure style="max-width:760px">{table}
</figure>
</section>
<section><h2>The protocol</h2>
<p>{statement}</p>
<p class="muted">The protocol is described in docs/protocol.md in the numnet repository; the
protocol file this run used follows.</p>
<pre>{text}</pre></section>
<section><h2>Environment</h2><table class="kv">{environment}</table></section>
</main>
<footer>numnet {version} · results.json holds every
number shown here</footer>"""


# Failed (not learning) cells tinted as in the figure. Click to see a figure full size, click
# again to close: a hidden checkbox and its label, no
# script (the page stays a static file) and no second copy of the image.
ZOOM_CSS = """
table.summary td.failed { background:#f1e4f7; color:#6a1b9a; }
input.zoom { display:none; }
label.zoom img { cursor:zoom-in; }
input.zoom:checked + label.zoom { position:fixed; inset:0; z-index:10; overflow:auto;
  background:rgba(255,255,255,.97); cursor:zoom-out; }
input.zoom:checked + label.zoom img { width:auto; max-width:none; cursor:zoom-out; }
"""


def zoomable(png: bytes, alt: str, key: str) -> Html:
    """A figure that opens full size (its pixel size) on click and closes on the next."""
    return html('<input type="checkbox" class="zoom" id="{}"><label class="zoom" for="{}">{}'
                "</label>", key, key, img(png, alt))


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


def render_html(doc: dict[str, Any], diagnoses: dict[str, Diagnosis],
                images: dict[str, bytes]) -> str:
    """The self-contained HTML report (figures as data: URIs, no external resources)."""
    p = doc["protocol"]
    quick = doc.get("label") == "QUICK"
    counts: dict[str, int] = {}
    for d in diagnoses.values():
        counts[d.verdict] = counts.get(d.verdict, 0) + 1
    quick_note = ""
    if quick:
        q = p.get("quick_options") or {}
        quick_note = html(QUICK_NOTE, epochs=q.get("epochs"), eval_every=q.get("eval_every"),
                          eval_train=p["eval_train_examples"], eval_test=p["eval_test_examples"])
    total = doc.get("timing", {}).get("wall_time")
    body = html(
        BODY,
        heading=title(doc).removesuffix(" — QUICK"),
        quick_badge=Html('<span class="quick">QUICK</span>') if quick else "",
        description=p.get("description") or "",
        source=p["source"], hash=p["hash"], seed=p["seed"], n_runs=len(doc["runs"]),
        batch_size=p["batch_size"], eval_every=p["eval_every"],
        eval_train=p["eval_train_examples"], eval_test=p["eval_test_examples"],
        wall=f" · wall time {fmt_time(float(total))}" if total is not None else "",
        shared=shared_text(doc),
        quick_note=quick_note,
        summary=summary_table(doc, diagnoses),
        remedies=remedies_html(doc, diagnoses),
        overview=join((html("{}×{}", badge(v), counts[v]) for v in VERDICT_ORDER if v in counts),
                      " "),
        curves=zoomable(images["learning_curves.png"], "Learning curves: 3 settings x 4 models",
                        "zoom-curves"),
        cards=join(card(r, diagnoses[r["run_id"]]) for r in doc["runs"]),
        evidence=evidence_html(doc, images, diagnoses),
        rules=join(html("<tr><td>{}</td><td>{}</td></tr>", badge(name), text)
                   for name, text in RULES),
        table=zoomable(images["summary_table.png"],
                       "Summary table (test accuracy of the final weights)", "zoom-table"),
        statement=protocol_statement(doc),
        text=p.get("text") or "",
        environment=kv_rows(env_rows(doc)),
        version=str(doc.get("environment", {}).get("numnet", "")),
    )
    return page(title(doc), CSS + ZOOM_CSS + EVIDENCE_CSS, body)


def remedies_html(doc: dict[str, Any], diagnoses: dict[str, Diagnosis]) -> Html:
    """The "what each change did" section (:mod:`numnet.lab.report.remedies`), or nothing."""
    by_model = remedy_rows(doc, diagnoses)
    if not by_model:
        return Html("")
    parts = [Html("<section><h2>What each change did</h2><p class=\"muted\">The settings of a "
                  "model start from the same weights and see the same batches; each changes "
                  "one thing. First step: the largest update/weight ratio of any layer at "
                  "update 1 (the usual heuristic is 0.1%). Dead: the largest fraction of a ReLU "
                  "layer's units that are 0 on every probe example.</p>")]
    for model, rows in by_model.items():
        body = join(html("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td></tr>",
                         r["label"], "n/a" if r["test"] is None else f"{r['test']:.4f}",
                         r["diagnosis"], remedy_pct(r["first_step"]),
                         remedy_pct(r["dead_first"]), remedy_pct(r["dead_end"]))
                    for r in rows)
        parts.append(html("<h3>{}</h3><table class=\"summary\"><tr><th>change</th><th>test "
                          "accuracy</th><th>diagnosis</th><th>first step</th><th>dead (first /"
                          " end)</th></tr>{}</table>{}", model, body,
                          join(html("<p>{}</p>", t) for t in remedy_sentences(model, rows))))
    parts.append(Html("</section>"))
    return join(parts)


__all__ = ["VERDICT_COLORS", "badge", "card", "protocol_statement", "render_html",
           "sparkline_svg", "summary_table", "zoomable"]
