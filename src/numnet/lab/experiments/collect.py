"""The results of any folder of runs, for ``numnet report DIR``: a reproduce output
(``results.json``), an interrupted one or a ``numnet train`` output (``runs/*.json``), or a
folder of run records itself (``*.json`` of format ``numnet.run/1``).

Without results.json the results document is assembled from the records: the runs, the
protocol when the folder's ``protocol.toml`` is the one the runs were made with (same hash;
else its name and text only, and what the runs' specs tell), and the data fingerprint. What the
records do not hold (the environment, the start and end times) is left out; the report shows
what it has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from numnet.core.errors import NumnetError
from numnet.core.io import read_json
from numnet.core.names import MODEL_NAMES
from numnet.lab import protocol as protocol_mod
from numnet.lab.experiments.store import RUN_FORMAT
from numnet.lab.results import QUICK_LABEL, RESULTS_FORMAT, load_results

#: Spec fields the report shows per protocol; taken from the runs when they all agree.
SHARED_FIELDS = ("batch_size", "eval_every", "eval_train_examples", "eval_test_examples",
                 "dtype")


def run_records(folder: Path) -> list[dict[str, Any]]:
    """The run records (format ``numnet.run/1``) in ``folder/runs/`` or else in ``folder``
    itself, in file-name order; other or unreadable JSON files are skipped."""
    for where in (folder / "runs", folder):
        records = []
        for path in sorted(where.glob("*.json")) if where.is_dir() else ():
            try:
                record = read_json(path)
            except NumnetError:
                continue
            if isinstance(record, dict) and record.get("format") == RUN_FORMAT \
                    and isinstance(record.get("result"), dict):
                records.append(record)
        if records:
            return records
    return []


def folder_results(folder: str | Path) -> dict[str, Any]:
    """The results document of ``folder``: its results.json when there is one, else one
    assembled from its run records (see the module docstring). A NumnetError saying what was
    looked for when the folder holds neither."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NumnetError(f"{folder} is not a directory; give a folder of runs (the --out DIR "
                          "of numnet reproduce or numnet train)")
    if (folder / "results.json").is_file():
        return load_results(folder)
    records = run_records(folder)
    if not records:
        raise NumnetError(f"{folder}: no results.json and no run records (runs/*.json or "
                          "*.json of format numnet.run/1); give the --out DIR of numnet "
                          "reproduce or numnet train")
    return records_document(folder, records)


def _number_settings(runs: list[dict[str, Any]]) -> None:
    """Give ad hoc runs (``numnet train``: no setting) a place in the report's grid: per
    model, the next free setting numbers in (epochs, lr, seed) order. Their run ids stay."""
    for model in {r["spec"]["model"] for r in runs}:
        mine = [r for r in runs if r["spec"]["model"] == model]
        taken = {r["spec"]["setting"] for r in mine}
        free = (k for k in range(1, len(mine) + len(taken) + 1) if k not in taken)
        for r in sorted((r for r in mine if r["spec"]["setting"] is None),
                        key=lambda r: (r["spec"]["epochs"], r["spec"]["lr"], r["spec"]["seed"],
                                       r["run_id"])):
            r["spec"] = {**r["spec"], "setting": next(free)}


def _model_order(name: str) -> tuple[int, str]:
    return (MODEL_NAMES.index(name) if name in MODEL_NAMES else len(MODEL_NAMES), name)


def records_document(folder: Path, records: list[dict[str, Any]]) -> dict[str, Any]:
    """A results document (format ``numnet.results/1``) from run records of ``folder``."""
    runs = [dict(r["result"]) for r in records]
    _number_settings(runs)
    runs.sort(key=lambda r: (_model_order(r["spec"]["model"]), r["spec"]["setting"]))
    hashes = {r.get("protocol_hash") or "" for r in records}
    phash = hashes.pop() if len(hashes) == 1 else ""
    models = sorted({r["spec"]["model"] for r in runs}, key=_model_order)
    specs = [r["spec"] for r in runs]
    meta: dict[str, Any] = {
        "name": folder.resolve().name,
        "description": f"{len(runs)} runs collected from the run records of {folder} (no "
                       "results.json)",
        "source": str(folder),
        "hash": phash or "-",  # ad hoc runs (numnet train) have none
        "seed": seeds.pop() if len(seeds := {s["seed"] for s in specs}) == 1 else None,
        "quick": False,
        "quick_options": None,
        "models": models,
        "settings": {m: [[s["epochs"], s["lr"]] for s in specs if s["model"] == m]
                     for m in models},
        **{k: (vals.pop() if len(vals := {s.get(k) for s in specs}) == 1 else None)
           for k in SHARED_FIELDS},
        "text": "",
    }
    toml = folder / "protocol.toml"
    if toml.is_file():
        try:
            proto = protocol_mod.load(toml)
        except NumnetError:
            proto = None
        if proto is not None:
            meta.update(name=proto.name, text=proto.text)
            for candidate in (proto, proto.quick_variant()):
                if phash and candidate.hash == phash:
                    meta = candidate.metadata()
                    break
    fingerprints = {r.get("data_fingerprint") for r in records}
    results: dict[str, list[Any]] = {}
    for r in runs:
        s = r["spec"]
        results.setdefault(s["model"], []).append(
            [[s["epochs"], s["lr"]], list(r["train_accuracy"]), list(r["test_accuracy"])])
    return {
        "format": RESULTS_FORMAT,
        "label": QUICK_LABEL if meta["quick"] else None,
        "protocol": meta,
        "data": {"fingerprint": fingerprints.pop()} if len(fingerprints) == 1 else {},
        "environment": {},
        "results": results,
        "runs": runs,
        "timing": {"training_time": sum(float(r.get("wall_time", 0.0)) for r in runs)},
    }
