"""compare.html (a self-contained page: the Q2 section, environment, protocol file),
compare.md, the terminal table, and the writing of every compare output."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from numnet.core.io import write_bytes, write_text
from numnet.lab.compare.answers import q2_answers, side_by_side_rows
from numnet.lab.compare.evidence import internals_images, internals_markdown, internals_section_html
from numnet.lab.compare.figure import overlay_figure
from numnet.lab.compare.record import refresh_diagnoses, save_document
from numnet.lab.environment import machine_text
from numnet.lab.render import (
    CSS,
    Html,
    html,
    img,
    join,
    kv_rows,
    markdown_table,
    page,
    png_bytes,
    text_table,
)

FILES = ("compare.json", "compare_curves.png", "compare.html", "compare.md")

Q2_CSS = """
table.side { border-collapse:collapse; font-size:13px; margin:8px 0 14px; }
table.side th, table.side td { padding:5px 9px; border-bottom:1px solid var(--line);
  text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
table.side th { background:#eef2f9; text-align:center; }
table.side td:first-child { text-align:left; font-weight:600; }
table.side td.fail { color:#c62828; font-weight:700; }
.q2 h3 { margin:16px 0 6px; }
.q2 ul { margin:4px 0 10px; padding-left:20px; }
.q2 li { margin:3px 0; }
.q2 li.rule { color:var(--muted); list-style:none; margin-left:-16px; font-size:13px; }
.q2 li.sub { margin-left:22px; list-style:circle; font-size:13.5px; }
"""

Q2_HEADINGS = (
    ("runtime", "Runtime"),
    ("performance", "Final performance"),
    ("stability", "Stability of training"),
    ("fit", "Which runs under-fit, which over-fit"),
    ("agreement", "Float64 agreement (numnet and PyTorch are the same computation)"),
)




def _item(statement: str) -> Html:
    """One answer as a list item: rules muted, indented details as sub-items."""
    if statement.startswith("Rule"):
        return html('<li class="rule">{}</li>', statement)
    if statement.startswith("  "):
        return html('<li class="sub">{}</li>', statement.strip())
    return html("<li>{}</li>", statement)


def q2_section_html(doc: dict[str, Any], overlay_png: bytes | None = None) -> str:
    """The Q2 section as an HTML fragment (``<section class="q2">``), for compare.html and
    for embedding in another report (its styles: :data:`Q2_CSS` on top of the report's)."""
    answers = q2_answers(doc)
    parts = [Html('<section class="q2" id="q2"><h2>Q2 — numnet vs PyTorch (torch.nn + '
                  "torch.optim.SGD): same weights, same batches</h2>")]
    if doc.get("label"):
        parts.append(Html('<p><span class="quick">QUICK</span> reduced smoke-test variant: '
                          "these are not the protocol's results.</p>"))
    if not doc.get("complete", True):
        parts.append(Html("<p><strong>Incomplete:</strong> not every run has finished.</p>"))
    rows = side_by_side_rows(doc)
    head = join(html("<th>{}</th>", c) for c in rows[0])
    body = join(
        html("<tr>{}</tr>", join(
            html('<td class="fail">{}</td>' if k == len(row) - 1 and "FAIL" in c
                 else "<td>{}</td>", c)
            for k, c in enumerate(row)))
        for row in rows[1:])
    parts.append(html('<table class="side"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>',
                      head, body))
    for key, title in Q2_HEADINGS:
        if answers[key]:
            parts.append(html("<h3>{}</h3><ul>{}</ul>", title, join(map(_item, answers[key]))))
    if overlay_png is not None:
        parts.append(html(
            "<h3>Learning curves, both implementations</h3><figure>{}"
            "<figcaption>Thick light lines: numnet; dark dashes: PyTorch. Train accuracy (blue) "
            "on the first {} train examples, test accuracy (orange).</figcaption></figure>",
            img(overlay_png, "numnet vs PyTorch learning curves"),
            doc["protocol"]["eval_train_examples"]))
    parts.append(Html("</section>"))
    return join(parts, "\n")


BODY = """<header><h1>numnet compare: {name}{quick}</h1>
<p>Protocol <code>{source}</code> · hash <code>{hash}</code> · seed
<code>{seed}</code> · {n_runs} runs, each trained by numnet and by PyTorch</p>
</header>
<main>
{q2}
<section><h2>Environment</h2><table class="kv">{environment}</table></section>
<section><h2>Protocol file</h2><pre>{text}</pre></section>
</main>
<footer>numnet compare · compare.json holds every number shown here</footer>"""


def render_html(doc: dict[str, Any], overlay_png: bytes | None = None,
                images: dict[str, bytes] | None = None) -> str:
    """compare.html: a self-contained page holding the Q2 section, the training internals of
    both implementations (``images``: :func:`internals_images`) and the environment."""
    p = doc["protocol"]
    env = doc.get("environment", {})
    torch_env = env.get("torch", {})
    env_rows = [
        ("numnet / NumPy / PyTorch", f"{env.get('numnet')} / {env.get('numpy')} / "
                                     f"{torch_env.get('version')}"),
        ("Threads", f"setting {env.get('threads_setting')}; PyTorch "
                    f"{torch_env.get('threads')}, mkldnn {torch_env.get('mkldnn')}"),
        ("Machine", machine_text(env.get("machine", {}))),
        ("Data", f"{doc['data'].get('dataset')} (fingerprint {doc['data'].get('fingerprint')})"),
        ("Started / wall time", f"{doc['timing'].get('started_at')} / "
                                f"{doc['timing'].get('wall_time', 0):.1f} s"),
    ]
    body = html(BODY, name=p["name"],
                quick=Html(' <span class="quick">QUICK</span>') if doc.get("label") else "",
                source=p["source"], hash=p["hash"], seed=p["seed"], n_runs=len(doc["runs"]),
                q2=Html(q2_section_html(doc, overlay_png)
                        + internals_section_html(doc, images or internals_images(doc))),
                environment=kv_rows(env_rows),
                text=p.get("text") or "")
    return page(f"numnet compare: {p['name']}", CSS + Q2_CSS, body)


def render_markdown(doc: dict[str, Any]) -> str:
    """compare.md: the Q2 section as Markdown (the figure linked as a file next to it)."""
    p = doc["protocol"]
    lines = [f"# numnet compare: {p['name']}" + (" — QUICK" if doc.get("label") else ""), "",
             f"Protocol `{p['source']}` (hash `{p['hash']}`), seed {p['seed']}; "
             f"{len(doc['runs'])} runs, each trained by numnet and by PyTorch from the same "
             "weights on the same batches.", ""]
    rows = side_by_side_rows(doc)
    lines += markdown_table(rows[0], rows[1:])
    lines.append("")
    answers = q2_answers(doc)
    for key, title in Q2_HEADINGS:
        if answers[key]:
            lines += [f"## {title}", ""]
            lines.extend(f"  - {s.strip()}" if s.startswith("  ")
                         else f"- {'*' + s + '*' if s.startswith('Rule') else s}"
                         for s in answers[key])
            lines.append("")
    lines += ["![numnet vs PyTorch learning curves](compare_curves.png)", ""]
    lines += internals_markdown(doc)
    return "\n".join(lines)


#: The width the terminal table fits in.
TERMINAL_COLUMNS = 100
TERMINAL_LEGEND = (
    "test: final test accuracy, numnet/PyTorch; gap: the largest test-accuracy gap over the "
    "curves, in points; time: training, numnet/PyTorch; x: PyTorch's time over numnet's "
    "(channels_last in brackets); status: numnet/PyTorch (one word when both agree); f64: "
    "float64 agreement of the losses. Best accuracies and details: compare.md."
)


def _short_status(stab: dict[str, Any] | None) -> str:
    if not stab:
        return "-"
    return f"div@{stab['diverged_at_update']}" if stab["status"] == "diverged" else "ok"


def terminal_rows(doc: dict[str, Any]) -> list[list[str]]:
    """The per-run table for a terminal (header first): the side-by-side table's key numbers
    in short cells, so that it fits :data:`TERMINAL_COLUMNS` columns."""
    rows = [["run", "(E, lr)", "test", "gap pt", "time s", "x", "status", "f64"]]

    def secs(x: float | None) -> str:
        return "-" if x is None else f"{x:.1f}" if x < 100 else f"{x:.0f}"

    def acc(x: float | None) -> str:
        return "-" if x is None else f"{x:.4f}"

    for r in doc["runs"]:
        a, t, st, ag = r["accuracy"], r["time"], r["stability"], r["agreement"]
        ratio = "-" if t["ratio_pytorch_over_numnet"] is None else (
            f"{t['ratio_pytorch_over_numnet']:.2f}")
        if t.get("ratio_channels_last_over_numnet") is not None:
            ratio += f" ({t['ratio_channels_last_over_numnet']:.1f})"
        status = {_short_status(st["numnet"]), _short_status(st["pytorch"])}
        agree = "-" if not ag else (f"{ag['max_rel_loss_diff']:.0e} "
                                    f"{'PASS' if ag['passed'] else 'FAIL'}")
        rows.append([
            r["run_id"].replace("-setting", "-s"), f"({r['epochs']}, {r['lr']:.3g})",
            f"{acc(a['numnet_final_test'])}/{acc(a['pytorch_final_test'])}",
            "-" if a["max_gap_test"] is None else f"{100 * a['max_gap_test']:.1f}",
            f"{secs(t['numnet_s'])}/{secs(t['pytorch_s'])}", ratio,
            status.pop() if len(status) == 1 else
            f"{_short_status(st['numnet'])}/{_short_status(st['pytorch'])}", agree,
        ])
    return rows


def format_table(doc: dict[str, Any]) -> str:
    """The per-run comparison as aligned text for the terminal, within
    :data:`TERMINAL_COLUMNS` columns, with a legend (the full table is in compare.md)."""
    return "\n".join([text_table(terminal_rows(doc), rstrip=True),
                      *textwrap.wrap(TERMINAL_LEGEND, TERMINAL_COLUMNS)])


def write_outputs(out_dir: str | Path, doc: dict[str, Any]) -> dict[str, Path]:
    """Write compare.json, compare_curves.png, compare.html and compare.md (atomically), the
    diagnoses recomputed with the current rules first."""
    out = Path(out_dir)
    refresh_diagnoses(doc)
    save_document(out, doc)
    png = png_bytes(overlay_figure(doc))
    write_bytes(out / "compare_curves.png", png)
    images = internals_images(doc)
    for name, data in images.items():
        write_bytes(out / name, data)
    write_text(out / "compare.html", render_html(doc, png, images))
    write_text(out / "compare.md", render_markdown(doc))
    return {name: out / name for name in (*FILES, *images)}
