"""summary.md, summary.csv and the figures of a sweep, written from summary.json alone."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from numnet.core.io import write_bytes, write_json, write_text
from numnet.lab.render import markdown_table, png_bytes
from numnet.lab.sweep.aggregate import cell_text, ci_text, pct
from numnet.lab.sweep.figures import learning_curves_bands_figure, sweep_table_figure


def summary_markdown(summary: dict[str, Any]) -> str:
    """summary.md: the mean ± std table (the reproduce table's layout) then one row per
    cell in detail."""
    cells = summary["cells"]
    models = list(dict.fromkeys(c["model"] for c in cells))
    rows = max((c["setting"] for c in cells), default=0)
    grid = {(c["model"], c["setting"]): c for c in cells}
    p = summary["protocol"]
    quick = " — QUICK (reduced smoke-test variant)" if p["quick"] else ""
    lines = [f"# Sweep: {p['name']}{quick}, {summary['seeds']} seeds per cell", "",
             f"Protocol hash {p['hash']}, base seed {p['seed']}"
             + (f", grid {summary['grid']}" if summary["grid"] else "")
             + f"; executed on {summary['executor']}, device {summary['device']}.", "",
             "Final test accuracy (%), mean ± sample std over seeds (runs with status ok):", ""]
    lines += markdown_table(
        ["", *[f"Setting {k}" for k in range(1, rows + 1)]],
        [[f"Model {m.removeprefix('model')}",
          *[cell_text(grid[(m, k)]) if (m, k) in grid else "" for k in range(1, rows + 1)]]
         for m in models])
    lines.append("")
    lines += markdown_table(
        ["cell", "setting", "n ok", "mean %", "std %", "min %", "max %",
         "95% CI % (t, within 0-100)", "diverged", "failed"],
        [[c["cell_id"], c["label"], f"{c['n_ok']}/{c['n_tasks']}",
          *[pct(c["final_test_accuracy"][k]) for k in ("mean", "std", "min", "max")],
          ci_text(c["final_test_accuracy"]), str(c["n_diverged"]), str(c["n_error"])]
         for c in cells])
    if summary["failures"]:
        lines += ["", "## Failed tasks", ""]
        lines += [f"- {f['task_id']}: {f['error']}" for f in summary["failures"]]
    t = summary["timing"]
    lines += ["", f"Wall time of this invocation {t['wall_time']:.1f} s ({t['tasks_run']} tasks "
              f"run, {t['tasks_reused']} reused); sum of the runs' own times "
              f"{t['task_time_total']:.1f} s ({t['task_time_run_now']:.1f} s run now).", ""]
    return "\n".join(lines)


SUMMARY_CSV_COLUMNS = ("cell_id", "model", "setting", "epochs", "lr", "reduction", "n_tasks",
                       "n_ok", "n_diverged", "n_error", "mean", "std", "min", "max", "ci95_low",
                       "ci95_high", "train_mean", "train_std")


def summary_csv(summary: dict[str, Any]) -> str:
    """summary.csv: one row per cell (final test accuracy statistics as fractions)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(SUMMARY_CSV_COLUMNS)
    for c in summary["cells"]:
        d, tr = c["final_test_accuracy"], c["final_train_accuracy"]
        ci = d["ci95"] or [None, None]
        row = [c["cell_id"], c["model"], c["setting"], c["epochs"], repr(c["lr"]),
               c["reduction"], c["n_tasks"], c["n_ok"], c["n_diverged"], c["n_error"],
               d["mean"], d["std"], d["min"], d["max"], ci[0], ci[1], tr["mean"], tr["std"]]
        writer.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def write_outputs(out_dir: str | Path, summary: dict[str, Any]) -> None:
    """summary.json, summary.csv, summary.md and the two figures (all atomic)."""
    out = Path(out_dir)
    write_json(out / "summary.json", summary)
    write_text(out / "summary.csv", summary_csv(summary))
    write_text(out / "summary.md", summary_markdown(summary))
    write_bytes(out / "summary_table.png", png_bytes(sweep_table_figure(summary)))
    write_bytes(out / "learning_curves.png", png_bytes(learning_curves_bands_figure(summary)))
