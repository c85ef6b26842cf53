"""report.md (the report as Markdown, figures linked as files next to it) and the summary
table as aligned text for the terminal."""

from __future__ import annotations

from typing import Any

from numnet.lab.render import fmt_acc, fmt_time, markdown_table, text_table
from numnet.lab.report.content import env_rows, shared_text, title
from numnet.lab.report.diagnosis import RULES, Diagnosis, diagnose_all
from numnet.lab.report.internals_section import evidence_markdown
from numnet.lab.report.remedies import remedies_markdown
from numnet.lab.results import final_test, grid_table


def render_markdown(doc: dict[str, Any], diagnoses: dict[str, Diagnosis]) -> str:
    """The same report as Markdown (figures linked as files next to it)."""
    p = doc["protocol"]
    lines = [f"# {title(doc)}", ""]
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
              + (f", wall time {fmt_time(float(total))}." if total is not None else "."), ""]
    if shared_text(doc):
        lines += [shared_text(doc), ""]
    lines += ["## Summary: final test accuracy", ""]
    table = grid_table(doc, lambda m, s, run: _cell(run, "**diverged** @ {}", diagnoses))
    lines += markdown_table(table[0], table[1:])
    lines += ["", FINAL_NOTE, ""]
    lines += remedies_markdown(doc, diagnoses)
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
        fw = run.get("final_weights")
        if fw:
            lines.append(f"- final weights (after update {fw['update']}): train / test accuracy "
                         f"{fmt_acc(fw['train_accuracy'])} / {fmt_acc(fw['test_accuracy'])}")
        last = run["samples"][-1] // spec["batch_size"] if run["samples"] else None
        lines.append(f"- last curve point (update {last}): train / test accuracy "
                     f"{fmt_acc(run['final_train_accuracy'])} / "
                     f"{fmt_acc(run['final_test_accuracy'])}; {run['updates']} updates, "
                     f"{run['evaluations']} evaluations, {fmt_time(run['wall_time'])}")
        if run.get("shared_with"):
            lines.append(f"- taken from {run['shared_with']} at its update {run['updates']} "
                         "(shared start)")
        lines.extend(f"- {f}" for f in d.findings)
        lines.append("")
    lines += evidence_markdown(doc, diagnoses)
    lines += ["## How the diagnosis works", "",
              "With n evaluations, w = max(2, ceil(0.1 n)); \"end\" is the mean of the last w "
              "evaluations, \"at 50%\" / \"at 75%\" the mean of the w evaluations ending there; "
              "differences in accuracy points. First verdict that applies:", ""]
    lines.extend(f"- **{name}**: {text}" for name, text in RULES)
    lines += ["", "## Environment", ""]
    lines.extend(f"- {k}: {v}" for k, v in env_rows(doc))
    lines += ["", "## Protocol file", "", "```toml", (p.get("text") or "").rstrip(), "```", ""]
    return "\n".join(lines)


FINAL_NOTE = ("Each cell: the test accuracy of the final weights (evaluated once after the last "
              "update; they are the saved weights), then the diagnosis. The learning curves' "
              "last point comes earlier, at the last multiple of the evaluation interval.")


def _cell(run: dict[str, Any] | None, diverged: str,
          diagnoses: dict[str, Diagnosis] | None = None) -> str:
    """A summary cell: a dash (no run), ``diverged`` with the update, or the final test
    accuracy (the final weights', else the last curve point's, marked ``*``) and, given the
    diagnoses, the verdict labels under it (upper case when the run failed)."""
    if run is None:
        return "—"
    if run["status"] == "diverged":
        return diverged.format(run["diverged_at_update"])
    acc, what = final_test(run)
    # a dash for a run with no evaluation
    text = fmt_acc(acc) + ("" if what == "final weights" or acc is None else "*")
    if not diagnoses:
        return text
    d = diagnoses[run["run_id"]]
    return f"{text}\n{d.summary().upper() if d.failed else d.summary()}"


def summary_rows(doc: dict[str, Any]) -> list[list[str]]:
    """The summary table as text rows (header first), with each run's diagnosis on a second
    line of its cell (``render.text_table``), so that three settings fit in 80 columns: for
    terminals and the closing log."""
    diagnoses = diagnose_all(doc["runs"])
    return grid_table(doc, lambda m, s, run: _cell(run, "diverged@{}", diagnoses))


def format_summary(doc: dict[str, Any]) -> str:
    """The summary table as aligned text, with a line saying which accuracy it shows."""
    note = "test accuracy of the final weights (after the last update)"
    if any(not r.get("final_weights") and r["status"] != "diverged" for r in doc["runs"]):
        note += "; * last curve point (record without a final-weights evaluation)"
    return text_table(summary_rows(doc), rstrip=True) + "\n" + note


__all__ = ["FINAL_NOTE", "format_summary", "render_markdown", "summary_rows"]
