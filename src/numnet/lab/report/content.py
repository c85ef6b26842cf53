"""What the report says, before it is rendered as HTML or Markdown: its title, the best setting
of each model and the environment rows."""

from __future__ import annotations

from typing import Any

from numnet.lab.environment import machine_text
from numnet.lab.render import fmt_time
from numnet.lab.results import final_test


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
    machine = env.get("machine", {})
    timing = doc.get("timing", {})
    data = doc.get("data", {})
    return [
        ("numnet / NumPy / Python",
         f"{env.get('numnet')} / {env.get('numpy')} / {env.get('python')}"),
        ("BLAS", blas_text or "unknown"),
        ("Machine", machine_text(machine)),
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
