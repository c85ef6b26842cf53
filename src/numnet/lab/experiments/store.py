"""The finished runs in an output folder: ``runs/<run_id>.json`` (the record) and
``weights/<run_id>.npz`` (the trained weights). A run counts as finished once its record exists;
it is written after the weights, so a killed process leaves no record of a half-saved run.
Its metrics, ``runs/<run_id>.metrics.csv`` (:mod:`numnet.lab.metrics`), are written before the
record too, and so is ``runs/<run_id>.internals.csv`` for a run with training internals (one row
per evaluation, ``numnet.lab.training.internals.internals_csv``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from numnet.core import serialize
from numnet.core.io import write_json, write_text
from numnet.lab.metrics import write_metrics
from numnet.lab.records import load_finished
from numnet.lab.report.diagnosis import diagnose
from numnet.lab.training import RunResult, RunSpec
from numnet.lab.training.internals import internals_csv

RUN_FORMAT = "numnet.run/1"


def run_paths(out_dir: Path, run_id: str) -> tuple[Path, Path]:
    """``(runs/<run_id>.json, weights/<run_id>.npz)`` inside ``out_dir``."""
    return out_dir / "runs" / f"{run_id}.json", out_dir / "weights" / f"{run_id}.npz"


def load_run(out_dir: Path, spec: RunSpec, protocol_hash: str,
             fingerprint: str) -> RunResult | None:
    """The saved result of ``spec`` in ``out_dir`` if it is finished *and* was made by the
    same protocol hash, the same spec and the same data; otherwise None (retrain)."""
    record_path, weights_path = run_paths(out_dir, spec.run_id)
    record = load_finished(record_path, {
        "format": RUN_FORMAT,
        "protocol_hash": protocol_hash,
        "data_fingerprint": fingerprint,
        "result.spec": spec.to_dict(),
    }, requires=[weights_path])
    if record is None:
        return None
    try:
        return RunResult.from_dict(record["result"])
    except (KeyError, TypeError, ValueError):
        return None  # a record of another shape: retrain


def save_run(out_dir: Path, result: RunResult, protocol_hash: str, fingerprint: str, *,
             train_examples: int | None = None,
             evaluation_times: Sequence[float] | None = None) -> None:
    """Save a finished run: its weights first, its metrics CSV (``train_examples``: the train
    split's size, for the epoch column; ``evaluation_times``: seconds at each evaluation, from
    :class:`numnet.lab.metrics.EvaluationClock`), then its record (the 'finished' marker)."""
    record_path, weights_path = run_paths(out_dir, result.run_id)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    if result.model is not None:  # serialize.save is atomic
        # status and diagnosis: numnet predict warns about weights of a failed run
        serialize.save(weights_path, result.model, metadata={
            "run_id": result.run_id, "spec": result.spec.to_dict(), "status": result.status,
            "diagnosis": diagnose(result.to_dict()).labels,
            "final_train_accuracy": result.final_train_accuracy,
            "final_test_accuracy": result.final_test_accuracy,
            "final_weights": result.final_weights,
        })
    if result.internals is not None:
        write_text(record_path.with_suffix(".internals.csv"), internals_csv(result.internals))
    write_metrics(record_path, result.to_dict(), train_examples, evaluation_times)
    write_json(record_path, {
        "format": RUN_FORMAT,
        "protocol_hash": protocol_hash,
        "data_fingerprint": fingerprint,
        "weights": str(weights_path.relative_to(out_dir)),
        "weights_format": serialize.FORMAT,
        "result": result.to_dict(),
    })
