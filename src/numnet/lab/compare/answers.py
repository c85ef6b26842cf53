"""The answers to Q2 (runtime, final performance, stability, under- and over-fitting, the
float64 agreement) as plain-text statements, each with its numbers and its rule, and the
side-by-side table of the runs; computed from compare.json alone."""

from __future__ import annotations

from typing import Any

from numnet.core.names import MODEL_NAMES
from numnet.lab.compare.agreement import CONTROL_TOLERANCE, describe_agreement
from numnet.lab.render import fmt_acc
from numnet.lab.report.diagnosis import RULES
from numnet.lab.stats import ratio

IMPLS = (("numnet", "numnet"), ("pytorch", "PyTorch"))  # (key in a record, name shown)


def _secs(x: float | None) -> str:
    return "—" if x is None else f"{x:.1f} s"


def _x(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}x"


def _status(stab: dict[str, Any] | None) -> str:
    if not stab:
        return "—"
    if stab["status"] == "diverged":
        return f"diverged @ {stab['diverged_at_update']}"
    return "ok"


def model_title(model: str) -> str:
    """"Model 3" for a built-in model, a custom model's own name ("cnn-bn") otherwise."""
    return f"Model {model.removeprefix('model')}" if model in MODEL_NAMES else model


def model_short(model: str) -> str:
    """"M3" for a built-in model, a custom model's own name otherwise."""
    return f"M{model.removeprefix('model')}" if model in MODEL_NAMES else model


def _label(r: dict[str, Any]) -> str:
    return f"{model_short(r['model'])} s{r['setting']} ({r['epochs']}, {r['lr']:g})"


def q2_answers(doc: dict[str, Any]) -> dict[str, list[str]]:
    """The Q2 answers as plain-text statements, each with its numbers and its rule:
    ``{"runtime": [...], "performance": [...], "stability": [...], "fit": [...],
    "agreement": [...]}``."""
    runs = doc["runs"]
    env = doc.get("environment", {})
    threads = env.get("threads_setting")
    out: dict[str, list[str]] = {k: [] for k in
                                 ("runtime", "performance", "stability", "fit", "agreement")}
    if not runs:
        return out

    # Runtime.
    s = doc["summary"]
    thread_text = (f"{threads} thread(s) each for numnet's BLAS and PyTorch" if threads
                   else "each library's default threads")
    out["runtime"].append(
        f"Rule: ratio = PyTorch wall time / numnet wall time of the same run (same updates, "
        f"same evaluations, {thread_text}); > 1 means numnet is faster. Wall times on a "
        f"shared machine are noisy.")
    out["runtime"].append(
        f"All {len(runs)} runs: numnet {_secs(s['numnet_s'])}, PyTorch {_secs(s['pytorch_s'])}"
        f" (ratio {_x(s['ratio_pytorch_over_numnet'])}).")
    by_model: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by_model.setdefault(r["model"], []).append(r)
    for model, rs in by_model.items():
        tn = sum(r["time"]["numnet_s"] for r in rs)
        tp = sum(r["time"]["pytorch_s"] for r in rs)
        text = (f"{model_title(model)}: numnet {_secs(tn)}, PyTorch "
                f"{_secs(tp)} (ratio {_x(ratio(tp, tn))})")
        cl = [r["time"]["pytorch_channels_last_s"] for r in rs]
        if all(c is not None for c in cl):
            tcl = sum(cl)
            text += (f"; PyTorch channels_last {_secs(tcl)} (ratio {_x(ratio(tcl, tn))})")
        out["runtime"].append(text + ".")

    # Final performance.
    out["performance"].append(
        "Rule: both start from the same weights and see the same batches, so any difference "
        f"comes from {doc['protocol'].get('dtype', 'float32')} rounding (amplified in runs "
        "that amplify rounding, see the agreement). Final = last evaluation; gap = largest "
        "|numnet - PyTorch| test accuracy over the evaluations both made.")
    diffs = [(abs(r["accuracy"]["final_test_diff"]), r) for r in runs
             if r["accuracy"]["final_test_diff"] is not None]
    if diffs and max(t[0] for t in diffs) == 0:
        out["performance"].append(
            f"The final test accuracies are identical in all {len(diffs)} runs.")
    elif diffs:
        d, r = max(diffs, key=lambda t: t[0])
        out["performance"].append(
            f"Largest difference of final test accuracy: {100 * d:.2f} points "
            f"({_label(r)}: numnet {fmt_acc(r['accuracy']['numnet_final_test'])}, PyTorch "
            f"{fmt_acc(r['accuracy']['pytorch_final_test'])}); mean over {len(diffs)} runs "
            f"{100 * sum(t[0] for t in diffs) / len(diffs):.2f} points.")
    gaps = [(r["accuracy"]["max_gap_test"], r) for r in runs
            if r["accuracy"]["max_gap_test"] is not None]
    if gaps:
        g, r = max(gaps, key=lambda t: t[0])
        out["performance"].append(
            f"Largest gap along the test curves: {100 * g:.2f} points ({_label(r)}, at "
            f"{r['accuracy']['max_gap_test_at_samples']:.3g} samples).")
    for model, rs in by_model.items():
        parts = []
        for impl, name in IMPLS:
            ok = [r for r in rs if r["runs"][impl]["status"] == "ok"
                  and r["runs"][impl]["final_test_accuracy"] is not None]
            if ok:
                best = max(ok, key=lambda r, impl=impl: r["runs"][impl]["final_test_accuracy"])
                parts.append(f"{name} {fmt_acc(best['runs'][impl]['final_test_accuracy'])} "
                             f"(setting {best['setting']})")
        if parts:
            out["performance"].append(
                f"{model_title(model)} best final test accuracy: "
                + ", ".join(parts) + ".")

    # Stability.
    out["stability"].append(
        "Rule (the runner's): a run diverges when its batch loss or its parameters become "
        "non-finite; it stops there.")
    for impl, name in IMPLS:
        div = [r for r in runs if r["stability"][impl]["status"] == "diverged"]
        if div:
            out["stability"].append(
                f"Diverged in {name}: " + ", ".join(
                    f"{_label(r)} at update {r['stability'][impl]['diverged_at_update']}"
                    for r in div) + ".")
        else:
            out["stability"].append(f"Diverged in {name}: none of the {len(runs)} runs.")
    same = all(r["stability"]["same"] for r in runs)
    out["stability"].append(
        "numnet and PyTorch diverge in the same runs at the same update." if same else
        "numnet and PyTorch differ in divergence: " + ", ".join(
            f"{_label(r)} (numnet {_status(r['stability']['numnet'])}, PyTorch "
            f"{_status(r['stability']['pytorch'])})" for r in runs
            if not r["stability"]["same"]) + ".")
    sensitive = [r for r in runs if r["agreement"] and "control_max_rel_loss_diff" in
                 r["agreement"]]
    if sensitive:
        out["stability"].append(
            "Rounding-sensitive (chaotic) runs, where a 1e-16 difference grows to > "
            f"{CONTROL_TOLERANCE:g} within the first updates (numnet against itself with "
            "each batch's rows reversed): " + ", ".join(
                f"{_label(r)} (control {r['agreement']['control_max_rel_loss_diff']:.1e} after "
                f"{r['agreement']['compared_updates']} updates, horizon "
                f"{r['agreement']['horizon']})" for r in sensitive)
            + ". Their learning rate is past the stable range; the two implementations "
            "separate there just as numnet separates from itself.")
    unstable = [r for r in runs if "unstable" in r["diagnosis"]["numnet"]["labels"]]
    if unstable:
        out["stability"].append(
            "Flagged unstable by the report's rule (" + dict(RULES)["unstable"].rstrip(".")
            + "): "
            + ", ".join(f"{_label(r)} (numnet)" for r in unstable) + ".")

    # Under- and over-fitting.
    rules = dict(RULES)
    out["fit"].append("Rules (numnet.report.diagnose, as in the reproduce report): "
                      f"over-fitting: {rules['over-fitting']} Under-fitting: "
                      f"{rules['under-fitting']}")
    for verdict in ("over-fitting", "under-fitting", "not learning", "diverged", "good fit"):
        hit = [r for r in runs if verdict in r["diagnosis"]["numnet"]["labels"]
               or verdict in r["diagnosis"]["pytorch"]["labels"]]
        if not hit:
            if verdict in ("over-fitting", "under-fitting"):
                out["fit"].append(f"{verdict.capitalize()}: no run.")
            continue
        out["fit"].append(f"{verdict.capitalize()}: {len(hit)} run(s): "
                          + ", ".join(_label(r) for r in hit) + ".")
        for r in hit:
            dn, dp = r["diagnosis"]["numnet"], r["diagnosis"]["pytorch"]
            both = verdict in dn["labels"] and verdict in dp["labels"]
            who = "numnet and PyTorch" if both else ("numnet only" if verdict in dn["labels"]
                                                     else "PyTorch only")
            finding = next((f for f in (dn if verdict in dn["labels"] else dp)["findings"]
                            if f.lower().startswith(verdict.split()[0])), "")
            out["fit"].append(f"  {_label(r)} ({who}): {finding}".rstrip())

    # Float64 agreement.
    st = doc["agreement_settings"]
    out["agreement"].append(
        f"Rule: float64, the same weights and batches, the first {st['updates']} updates of "
        f"each run; the largest relative difference of the batch loss must be < "
        f"{st['tolerance']:g}. Where a run amplifies rounding (numnet vs itself with reversed "
        f"batch rows exceeds {st['control_tolerance']:g}), the check applies over the updates "
        f"before that point, and a lockstep check (PyTorch restarted from numnet's weights at "
        "every update) must agree to the same tolerance at every update.")
    ag = [r for r in runs if r["agreement"]]
    if ag:
        worst = max(ag, key=lambda r: r["agreement"]["max_rel_loss_diff"])
        failed = [r for r in ag if not r["agreement"]["passed"]]
        out["agreement"].append(
            f"{len(ag) - len(failed)} of {len(ag)} runs pass. Largest trajectory difference "
            f"{worst['agreement']['max_rel_loss_diff']:.2e} ({_label(worst)}).")
        for r in failed:
            out["agreement"].append(f"FAIL {_label(r)}: {describe_agreement(r['agreement'])}")
    return out


def side_by_side_rows(doc: dict[str, Any]) -> list[list[str]]:
    """The per-run table (header first), shared by the terminal, Markdown and HTML."""
    rows = [["run", "(epochs, lr)", "numnet final/best test", "PyTorch final/best test",
             "max gap", "numnet time", "PyTorch time", "ratio", "channels_last (ratio)",
             "status numnet / PyTorch", "float64 max rel diff"]]
    for r in doc["runs"]:
        a, t, st, ag = r["accuracy"], r["time"], r["stability"], r["agreement"]
        cl = (f"{_secs(t['pytorch_channels_last_s'])} ({_x(t['ratio_channels_last_over_numnet'])})"
              if t["pytorch_channels_last_s"] is not None else "—")
        agree = "—"
        if ag:
            agree = f"{ag['max_rel_loss_diff']:.1e} {'PASS' if ag['passed'] else 'FAIL'}"
            if "horizon" in ag:
                agree += f" (chaotic; lockstep {max(ag['lockstep_max_rel_loss_diff'], ag['lockstep_max_rel_param_diff']):.0e})"  # noqa: E501
        rows.append([
            r["run_id"], f"({r['epochs']}, {r['lr']:g})",
            f"{fmt_acc(a['numnet_final_test'])} / {fmt_acc(a['numnet_best_test'])}",
            f"{fmt_acc(a['pytorch_final_test'])} / {fmt_acc(a['pytorch_best_test'])}",
            "—" if a["max_gap_test"] is None else f"{100 * a['max_gap_test']:.2f} pt",
            _secs(t["numnet_s"]), _secs(t["pytorch_s"]), _x(t["ratio_pytorch_over_numnet"]),
            cl, f"{_status(st['numnet'])} / {_status(st['pytorch'])}", agree,
        ])
    return rows
