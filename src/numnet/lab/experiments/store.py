"""The one module that writes and reads run records, for ``train``, ``reproduce`` and
``sweep`` alike: ``runs/<run_id>.json`` (the record, format :data:`RUN_FORMAT`) and
``weights/<run_id>.npz`` (the trained weights); a sweep's failed runs in
``errors/<run_id>.json``. A run counts as finished once its record exists;
it is written after the weights, so a killed process leaves no record of a half-saved run.
Its metrics, ``runs/<run_id>.metrics.csv`` (:mod:`numnet.lab.metrics`), are written before the
record too (with the training internals as extra columns when the run has them). A record is
trusted only once its weights file passes ``serialize.verify`` (every array against its
SHA-256): a truncated or damaged file means the run is trained again.

:func:`claim_folder` takes a folder for one command: locked against a second process, refused
when it holds another configuration (unless ``force``), cleaned of a killed process's
temporary files."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from numnet.core import optim, serialize
from numnet.core.errors import FolderError, NumnetError
from numnet.core.io import (
    atomic_writer,
    child_path,
    folder_lock,
    read_json,
    remove_stale_parts,
    write_json,
)
from numnet.lab.executor import TaskFailure
from numnet.lab.metrics import write_metrics
from numnet.lab.report.diagnosis import diagnose
from numnet.lab.results import validate_run
from numnet.lab.training import RunResult, RunSpec

RUN_FORMAT = "numnet.run/1"


def run_paths(out_dir: Path, run_id: str) -> tuple[Path, Path]:
    """``(runs/<run_id>.json, weights/<run_id>.npz)`` inside ``out_dir`` (the run id a safe
    file name: ``numnet.core.io.child_path``)."""
    return (child_path(out_dir / "runs", run_id, ".json", "run id"),
            child_path(out_dir / "weights", run_id, ".npz", "run id"))


def optimizer_path(out_dir: Path, run_id: str) -> Path:
    """``weights/<run_id>.optimizer.npz``: the optimiser's state after the run's last update
    (momentum buffers, Adam's moments; ``numnet.core.optim.state_to_arrays``), beside its
    weights, so the run can be continued exactly (``Optimizer.load_state_dict``)."""
    return child_path(out_dir / "weights", run_id, ".optimizer.npz", "run id")


def load_record(out_dir: Path, spec: RunSpec, protocol_hash: str,
                fingerprint: str | None) -> dict[str, Any] | None:
    """The saved record of ``spec`` in ``out_dir`` if it is finished *and* made by the same
    computation: the same protocol hash, spec and data (``fingerprint``; None: not known here,
    a Dask sweep's, whose folder's configuration names the data), its run matching the schema
    (``numnet.lab.results.validate_run``: accuracies in [0, 1], curves as long as the counts
    say...) and its weights verified (every array against its SHA-256). Anything missing,
    unreadable, damaged or different gives None: the run is trained again."""
    record_path, weights_path = run_paths(out_dir, spec.run_id)
    if not record_path.is_file() or not weights_path.is_file():
        return None
    try:
        record = read_json(record_path)  # bounded: numnet.core.documents
        if (record["format"] != RUN_FORMAT or record["protocol_hash"] != protocol_hash
                or record["result"]["spec"] != spec.to_dict()
                or fingerprint not in (None, record["data_fingerprint"])):
            return None
        validate_run(record["result"], str(record_path))
        serialize.verify(weights_path)
        RunResult.from_dict(record["result"])
    except (NumnetError, KeyError, TypeError, ValueError):
        return None
    return record


def save_run(out_dir: Path, result: RunResult, protocol_hash: str, fingerprint: str, *,
             train_examples: int | None = None,
             worker: dict[str, Any] | None = None) -> dict[str, Any]:
    """Save a finished run: its weights first, its metrics CSV (``train_examples``: the train
    split's size, for the epoch column), then its record (the 'finished' marker), which it
    returns. ``worker``: where it ran (host, pid, threads), kept under the record's ``worker``
    key, which ``numnet.lab.records.strip_timing`` leaves out."""
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
    if result.optimizer_state is not None:
        with atomic_writer(optimizer_path(out_dir, result.run_id)) as f:
            np.savez(f, **optim.state_to_arrays(result.optimizer_state))
    write_metrics(record_path, result.to_dict(), train_examples,
                  result.evaluation_times or None)
    record = {
        "format": RUN_FORMAT,
        "protocol_hash": protocol_hash,
        "data_fingerprint": fingerprint,
        "weights": str(weights_path.relative_to(out_dir)),
        "weights_format": serialize.FORMAT,
        "result": result.to_dict(),
        **({"worker": worker} if worker is not None else {}),
    }
    write_json(record_path, record)
    error_path(out_dir, result.run_id).unlink(missing_ok=True)  # a sweep's earlier failure
    return record


def error_path(out_dir: Path, run_id: str) -> Path:
    """``errors/<run_id>.json``: a run that failed in a sweep (retried on the next one)."""
    return out_dir / "errors" / f"{run_id}.json"


def save_error(out_dir: Path, failure: TaskFailure) -> None:
    """Record a failed run (its error and traceback) in ``errors/<run_id>.json``."""
    write_json(error_path(out_dir, failure.task_id), failure.to_dict())


# ------------------------------------------------------------------------------ the folder

#: The folder's identity: which command wrote it and the configuration it holds. Written when
#: a command takes a folder; read by the next one, which refuses another configuration.
FOLDER_FILE = ".numnet-folder.json"
FOLDER_FORMAT = "numnet.folder/1"


@contextlib.contextmanager
def claim_folder(out_dir: Path, kind: str, configuration: dict[str, Any],
                 force: bool = False, entry: str | None = None) -> Iterator[Path]:
    """Take ``out_dir`` for a command of ``kind`` ("reproduce", "train", "sweep") making
    ``configuration`` (a JSON-able dict: the protocol's semantic fields, or a run spec).

    While the block runs the folder is locked (:func:`numnet.core.io.folder_lock`: a second
    process gets a FolderError naming this one's pid). First, a folder that holds the outputs
    of another kind or configuration is refused with a FolderError saying what differs, unless
    ``force``; then the temporary ``.*.part`` files a killed process left in it are removed
    (nobody else writes here while we hold the lock) and the folder's identity is recorded.

    ``entry``: the folder is a collection (``numnet train`` runs side by side, one per run id)
    and ``configuration`` is that of the entry ``entry``: only a different configuration under
    the same entry is refused; the others stay recorded.
    """
    configuration = json.loads(json.dumps(configuration))  # as it reads back (lists, not tuples)
    with folder_lock(out_dir, kind) as out:
        previous = _previous_configuration(out)
        entries: dict[str, Any] = {}
        if previous is not None and entry is not None and previous.get("kind") == kind:
            entries = previous.get("configuration") or {}
            entries = entries if isinstance(entries, dict) else {}
            previous = ({"kind": kind, "configuration": entries[entry]}
                        if entry in entries else None)
        if previous is not None and not force:
            differs = _differences(previous, {"kind": kind, "configuration": configuration})
            if differs:
                raise FolderError(
                    f"{out} holds the outputs of another configuration ({differs}); choose "
                    "another --out, or pass --force to replace them")
        for folder in (out, out / "runs", out / "weights", out / "errors"):
            with contextlib.suppress(OSError):
                remove_stale_parts(folder, older_than_s=0)
        recorded = configuration if entry is None else {**entries, entry: configuration}
        write_json(out / FOLDER_FILE, {"format": FOLDER_FORMAT, "kind": kind,
                                       "configuration": recorded})
        yield out


def _previous_configuration(out: Path) -> dict[str, Any] | None:
    """What the folder says it holds: its identity file, else (outputs of an older numnet)
    ``{"protocol_hash": ...}`` from results.json; None for a folder without numnet outputs."""
    marker = out / FOLDER_FILE
    if marker.is_file():
        try:
            doc = read_json(marker)
            if isinstance(doc, dict) and doc.get("format") == FOLDER_FORMAT:
                return {"kind": doc.get("kind"), "configuration": doc.get("configuration")}
        except NumnetError:
            pass
        return None  # unreadable identity: nothing to compare (it is rewritten)
    results = out / "results.json"
    if results.is_file():
        with contextlib.suppress(NumnetError, AttributeError, TypeError):
            return {"protocol_hash": read_json(results)["protocol"]["hash"]}
    return None


def _differences(previous: dict[str, Any], now: dict[str, Any]) -> str:
    """The differences between two identities as a short text ("" when they agree)."""
    if "protocol_hash" in previous:  # an older folder: only its protocol's hash is known
        config = now["configuration"]
        same = now["kind"] == "reproduce" and previous["protocol_hash"] == config.get("hash")
        return "" if same else f"protocol hash {previous['protocol_hash']}"
    if previous["kind"] != now["kind"]:
        return f"written by numnet {previous['kind']}, not {now['kind']}"
    old, new = _flat(previous.get("configuration") or {}), _flat(now["configuration"])
    parts = []
    for key in sorted(set(old) | set(new)):
        if key != "hash" and old.get(key, "(none)") != new.get(key, "(none)"):
            parts.append(f"{key}: {_short(old.get(key, '(none)'))} there, "
                         f"{_short(new.get(key, '(none)'))} now")
    return "; ".join(parts[:4]) + ("; ..." if len(parts) > 4 else "")


def _flat(value: Any, path: str = "") -> dict[str, Any]:
    """``{"models[0].settings[1].lr": 0.01, ...}``: every leaf of a JSON value by key path."""
    if isinstance(value, dict):
        items = [(f"{path}.{k}" if path else str(k), v) for k, v in value.items()]
    elif isinstance(value, list):
        items = [(f"{path}[{i}]", v) for i, v in enumerate(value)]
    else:
        return {path: value}
    flat: dict[str, Any] = {}
    for key, v in items:
        flat.update(_flat(v, key))
    return flat


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 40 else text[:37] + "..."
