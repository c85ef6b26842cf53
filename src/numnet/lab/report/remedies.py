"""What one change did: when a protocol labels the settings of a model (``assignment-remedies``:
"as written", "mean loss", "lr / 100", ...), the report compares them, model by model, from
the evidence each run recorded.

For every labelled run: its final test accuracy and diagnosis; the size of its first update
(the largest update/weight ratio of any layer at update 1, ``internals["start"]``: the step
that breaks a run that does not learn); and its dead ReLUs (the largest fraction of a ReLU
layer's units that are 0 on every probe example, at the first evaluation and at the end).
Then one sentence per run says whether the change rescued the run and why, by these rules:

- a run *learns* unless its diagnosis is "not learning" or "diverged";
- a step is *large* when it moves a layer by more than :data:`LARGE_STEP` of its weights
  (the usual heuristic is 1e-3);
- a ReLU layer is *dead* when at least
  :data:`~numnet.lab.report.evidence.DEAD_NOTABLE` of its units are.
"""

from __future__ import annotations

from typing import Any

from numnet.lab.render import Box, P, Section, Table
from numnet.lab.report.diagnosis import FAILED, Diagnosis
from numnet.lab.report.evidence import DEAD_NOTABLE
from numnet.lab.results import final_test
from numnet.lab.training import RunSpec

LARGE_STEP = 0.1


def _first_step(run: dict[str, Any]) -> float | None:
    start = (run.get("internals") or {}).get("start") or {}
    ratios = [series[1] for series in start.get("update_ratio", {}).values()
              if len(series) > 1 and series[1] is not None]
    return max(ratios) if ratios else None


def _dead(run: dict[str, Any], k: int) -> float | None:
    series = (run.get("internals") or {}).get("dead_fraction", {}).values()
    values = [s[k] for s in series if s and s[k] is not None]
    return max(values) if values else None


def remedy_rows(doc: dict[str, Any], diagnoses: dict[str, Diagnosis]
                ) -> dict[str, list[dict[str, Any]]]:  # fmt: skip
    """``{model: one row per labelled run}``: label, run id, final test accuracy, diagnosis,
    whether it learns, its first step, its dead ReLUs (first evaluation, end), whether it has
    batch normalisation and which optimiser it used."""
    out: dict[str, list[dict[str, Any]]] = {}
    for model, labels in (doc["protocol"].get("labels") or {}).items():
        if not any(labels):
            continue
        rows = []
        for run in doc["runs"]:
            spec = run["spec"]
            if spec["model"] != model or not spec.get("setting"):
                continue
            k = spec["setting"] - 1
            label = labels[k] if k < len(labels) and labels[k] else f"setting {k + 1}"
            diag = diagnoses.get(run["run_id"])
            run_spec = RunSpec.from_dict(spec)  # a checked record (results.validate)
            optimizer = (run_spec.optimizer_spec() or {"type": "sgd"})["type"]
            rows.append({
                "label": label, "run_id": run["run_id"], "lr": spec["lr"],
                "batch_size": spec["batch_size"],
                "reduction": spec["reduction"], "optimizer": optimizer,
                "batchnorm": "batchnorm" in run_spec.layer_types(),
                "test": final_test(run)[0],
                "diagnosis": ", ".join(diag.labels) if diag else run["status"],
                "learns": run["status"] == "ok" and not (diag and diag.verdict in FAILED),
                "first_step": _first_step(run), "dead_first": _dead(run, 0),
                "dead_end": _dead(run, -1),
            })
        if rows:
            out[model] = rows
    return out


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.3g}%"


def _acc(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def why(row: dict[str, Any]) -> str:
    """Why this run did (or did not) learn, from its numbers (the module's rules)."""
    step, dead = row["first_step"], row["dead_first"]
    step_text = f"its first update moves a layer by {pct(step)} of its weights"
    dead_text = (f"{pct(dead)} of a ReLU layer's units are dead at the first evaluation"
                 if dead is not None else "")
    if not row["learns"]:
        parts = [step_text + (" (a large step)" if step and step > LARGE_STEP else "")]
        if dead is not None and dead >= DEAD_NOTABLE:
            parts.append(dead_text + ", so no gradient reaches the layers below")
        return "; ".join(parts)
    if row["batchnorm"] and step is not None and step > LARGE_STEP:
        return (f"{step_text}, yet batch normalisation re-centres and re-scales each layer's "
                f"outputs, so the units stay alive ({dead_text or 'no ReLU measured'})")
    if row["optimizer"] in ("adam", "adamw", "rmsprop"):
        return (f"{row['optimizer'].capitalize()} divides each step by the gradient's running "
                f"scale, so the step is about lr per weight whatever the loss's scale: "
                f"{step_text}")
    return step_text + (f"; {dead_text}" if dead_text else "")


def sentences(model: str, rows: list[dict[str, Any]]) -> list[str]:
    """The comparison of one model's labelled runs in words: the first row is the reference
    (the run as written), each other row one change."""
    if not rows:
        return []
    base, others = rows[0], rows[1:]
    out = [f"{model} {base['label']} (lr {base['lr']:g}, {base['reduction']} loss): "
           f"{base['diagnosis']}, test accuracy {_acc(base['test'])}: {why(base)}."]
    rescued = [r for r in others if r["learns"]]
    failed = [r for r in others if not r["learns"]]
    if base["learns"]:
        out.append("It learns as written; with each change: " + "; ".join(
            f"{r['label']} ({_acc(r['test'])}, {r['diagnosis']}): {why(r)}" for r in others)
            + ".")
        return out
    same_steps = [r for r in others if r["optimizer"] == base["optimizer"] == "sgd"
                  and r["reduction"] == "mean" and base["reduction"] == "sum"]
    if same_steps:
        b = base["batch_size"]
        out.append(f"With plain SGD a loss averaged over batches of {b} ({same_steps[0]['label']})"
                   f" takes exactly the steps of the summed loss at lr / {b}.")
    if rescued:
        out.append("Rescued by: " + "; ".join(
            f"{r['label']} ({r['test']:.4f}, {r['diagnosis']}): {why(r)}" for r in rescued)
            + ".")
    if failed:
        out.append("Not rescued by: " + "; ".join(
            f"{r['label']} ({r['diagnosis']}): {why(r)}" for r in failed) + ".")
    return out


def section(doc: dict[str, Any], diagnoses: dict[str, Diagnosis]) -> Section | None:
    """The report's "What each change did" section (None when no model's settings are
    labelled): per model a table of its runs and the comparison in words."""
    by_model = remedy_rows(doc, diagnoses)
    if not by_model:
        return None
    header = ["change", "test accuracy", "diagnosis", "first step", "dead (first / end)"]
    return Section("What each change did", [
        P("The settings of a model start from the same weights and see the same batches; each "
          "changes one thing. First step: the largest update/weight ratio of any layer at "
          "update 1 (the usual heuristic is 0.1%). Dead: the largest fraction of a ReLU "
          "layer's units that are 0 on every probe example.", muted=True),
        *(Box(model, [Table([[r["label"], _acc(r["test"]), r["diagnosis"], pct(r["first_step"]),
                              f"{pct(r['dead_first'])} / {pct(r['dead_end'])}"] for r in rows],
                            header, "summary"),
                      *(P(t) for t in sentences(model, rows))])
          for model, rows in by_model.items())])
