"""``numnet reproduce``: every run of a protocol, resumable, with all its outputs.

:func:`reproduce` plans the runs of a protocol (:func:`plan_runs`), trains each one with
:func:`numnet.lab.training.train_run`, saves each finished run as it completes, then writes the
results and the report into the output folder::

    OUT/
      protocol.toml             the protocol file used (verbatim)
      runs/<run_id>.json        one finished run (curves, status, seeds, timing): resume markers
      weights/<run_id>.npz      its trained weights (numnet.core.serialize)
      results.json              SPEC's tuples per model + every run + metadata (versions, BLAS,
                                machine, protocol text and hash, data, quick flag)
      results.csv               one row per (run, evaluation)
      learning_curves.png       SPEC's 3x4 figure
      summary_table.png         SPEC's table of final test accuracies
      report.html, report.md    the report (numnet.lab.report)

Every file is written atomically. A run counts as finished once ``runs/<run_id>.json`` exists
(written after its weights); rerunning with the same ``--out`` reuses finished runs whose
protocol hash, run spec and data fingerprint match, and trains the rest. ``force=True`` retrains
everything. Interrupting (Ctrl-C) loses at most the run in progress.

Seeds: run ``(model, setting k)`` of a protocol with seed ``s`` gets
:func:`run_seed` ``(s, model, k)`` (numpy ``SeedSequence``), so a run's result does not depend
on which other runs are made (``--models 4`` gives the full run's model-4 results).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import hashlib
import io
import json
import os
import platform
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from numnet import __version__
from numnet.core.datasets import Datasets
from numnet.core.errors import NumnetError
from numnet.core.io import atomic_writer
from numnet.lab import protocol as protocol_mod
from numnet.lab.protocol import Protocol
from numnet.lab.training import Progress, RunResult, RunSpec, expected_updates, train_run

RESULTS_FORMAT = "numnet.results/1"
RUN_FORMAT = "numnet.run/1"
QUICK_LABEL = "QUICK"
#: Keys whose values depend on the clock; everything else in results.json is deterministic.
TIMING_KEYS = frozenset({"wall_time", "updates_per_second", "timing"})

Log = Callable[[str], None]


# ------------------------------------------------------------------------------ atomic files


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (creating parent folders)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path) as f:
        f.write(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    """Indented, strict JSON (NaN/inf would be an error, never silently written)."""
    write_text(path, json.dumps(obj, indent=1, allow_nan=False) + "\n")


def read_json(path: str | Path) -> Any:
    """Load a JSON file numnet wrote; a NumnetError naming the file when it is unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NumnetError(f"{path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise NumnetError(f"{path} is not a readable numnet JSON file: {exc}") from None


# ------------------------------------------------------------------------------ planning


def run_seed(protocol_seed: int, model: str, setting_index: int) -> int:
    """The seed of run ``(model, setting_index)`` (0-based) of a protocol seeded
    ``protocol_seed``: ``SeedSequence([protocol_seed, crc32(model), setting_index])``'s first
    uint32 word. Independent of the other runs, so subsets of a protocol reproduce exactly."""
    ss = np.random.SeedSequence([protocol_seed, zlib.crc32(model.encode()), setting_index])
    return int(ss.generate_state(1)[0])


def plan_runs(protocol: Protocol, models: list[str] | None = None) -> list[RunSpec]:
    """The :class:`RunSpec` of every run of ``protocol`` (models in protocol order, then
    settings), restricted to ``models`` (names like "model4") when given."""
    specs = []
    for plan in protocol.select_models(models):
        for k, setting in enumerate(plan.settings):
            specs.append(RunSpec(
                model=plan.name,
                epochs=setting.epochs,
                lr=setting.lr,
                reduction=plan.reduction,
                batch_size=protocol.batch_size,
                eval_every=protocol.eval_every,
                eval_train_examples=protocol.eval_train_examples,
                eval_test_examples=protocol.eval_test_examples,
                eval_batch_size=protocol.eval_batch_size,
                seed=run_seed(protocol.seed, plan.name, k),
                dtype=protocol.dtype,
                weight_init=plan.weight_init,
                bias_init=plan.bias_init,
                conv_activation=plan.conv_activation,
                setting=k + 1,
            ))
    return specs


def parse_models(text: str | None) -> list[str] | None:
    """``"1,4"`` or ``"model1,model4"`` -> ``["model1", "model4"]``; None stays None."""
    if text is None:
        return None
    names = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        name = f"model{part}" if part.isdigit() else part
        if name not in protocol_mod.MODEL_NAMES:
            raise NumnetError(
                f"--models: unknown model {part!r}; use numbers 1-4 or names model1..model4, "
                "comma-separated (e.g. --models 1,4)"
            )
        if name not in names:
            names.append(name)
    if not names:
        raise NumnetError("--models: no model given; e.g. --models 1,4")
    return names


def default_out_dir(protocol: Protocol, root: str | Path = "runs") -> Path:
    """``runs/<protocol>[-quick]-<YYYYmmdd-HHMMSS>`` (relative to the working directory)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    quick = "-quick" if protocol.quick else ""
    return Path(root) / f"{protocol.name}{quick}-{stamp}"


# ------------------------------------------------------------------------------ metadata


def blas_limit(threads: int | None) -> contextlib.AbstractContextManager[Any]:
    """Limit BLAS to ``threads`` threads inside the ``with`` block (None: leave it alone).

    The matrices of SPEC's models are small: one BLAS thread is about as fast as several on an
    idle machine, and many times faster when other processes share the cores (threaded BLAS
    spin-waits for its helper threads)."""
    if threads is None:
        return contextlib.nullcontext()
    if threads < 1:
        raise NumnetError(f"BLAS threads must be at least 1, got {threads}")
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads, user_api="blas")



def environment_info() -> dict[str, Any]:
    """Versions, BLAS and machine: what a reader needs to judge speed and reproducibility."""
    blas: dict[str, Any] = {}
    with contextlib.suppress(Exception):
        config = np.show_config(mode="dicts")
        deps = config.get("Build Dependencies", {})
        for key in ("blas", "lapack"):
            if key in deps:
                blas[key] = {k: deps[key].get(k) for k in ("name", "version",
                                                           "openblas configuration")
                             if deps[key].get(k) is not None}
        if "SIMD Extensions" in config:
            blas["simd"] = config["SIMD Extensions"]
    with contextlib.suppress(Exception):
        from threadpoolctl import threadpool_info

        blas["threadpools"] = [
            {k: pool.get(k) for k in ("internal_api", "version", "num_threads",
                                      "threading_layer", "architecture")}
            for pool in threadpool_info() if pool.get("user_api") == "blas"
        ]
    return {
        "numnet": __version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "blas": blas,
        "machine": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "processor": platform.processor() or _cpu_model(),
            "cpu_count": os.cpu_count(),
        },
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return ""


def data_info(dataset: str, data: Datasets) -> dict[str, Any]:
    """The data a run saw: dataset name, split sizes and a content fingerprint (BLAKE2 of the
    train and test arrays): resuming with other data retrains instead of reusing."""
    digest = hashlib.blake2b(digest_size=16)
    for split in (data.train, data.test):
        for array in (split.images, split.labels):
            a = np.ascontiguousarray(array)
            digest.update(str((a.dtype.str, a.shape)).encode())
            digest.update(memoryview(a).cast("B"))
    return {
        "dataset": dataset,
        "train_examples": int(data.train.num_examples),
        "validation_examples": int(data.validation.num_examples),
        "test_examples": int(data.test.num_examples),
        "fingerprint": digest.hexdigest(),
    }


# ------------------------------------------------------------------------------ progress


class ProgressDisplay:
    """Shows the runs' progress: tqdm bars (``"bars"``), log lines (``"log"``) or nothing.

    Bars: one overall bar (all updates of all runs to train, so its ETA is the job's) and one
    bar per run with updates/s, the last evaluation's accuracies and the run's ETA. Log lines:
    one when a run starts, one every ``log_every_s`` seconds, one when it ends.
    """

    def __init__(self, mode: str, log: Log, total_updates: int, log_every_s: float = 30.0):
        if mode not in ("bars", "log", "none"):
            raise ValueError(f"progress mode must be 'bars', 'log' or 'none', got {mode!r}")
        self.mode, self.log, self.log_every_s = mode, log, log_every_s
        self._overall: Any = None
        self._bar: Any = None
        self._last_update = 0
        self._last_log = 0.0
        if mode == "bars":
            from tqdm.auto import tqdm

            self._tqdm = tqdm
            self._overall = tqdm(total=total_updates, desc="all runs", unit="upd",
                                 position=0, dynamic_ncols=True, file=sys.stderr)

    def message(self, text: str) -> None:
        if self.mode == "bars":
            self._tqdm.write(text, file=sys.stderr)
        elif self.mode == "log":
            self.log(text)

    def start_run(self, label: str, spec: RunSpec, total: int) -> None:
        self._last_update = 0
        self._last_log = time.monotonic()
        if self.mode == "bars":
            self._bar = self._tqdm(total=total, desc=spec.run_id, unit="upd", position=1,
                                   leave=False, dynamic_ncols=True, file=sys.stderr)
        self.message(f"{label} {spec.run_id}: {spec.epochs} epochs, lr {spec.lr:g}, "
                     f"{spec.reduction} loss, {total} updates")

    def update(self, p: Progress) -> None:
        step = p.update - self._last_update
        self._last_update = p.update
        acc = ""
        if p.train_accuracy is not None:
            acc = f"train {p.train_accuracy:.4f}, test {p.test_accuracy:.4f}"
        if self.mode == "bars":
            self._bar.update(step)
            self._overall.update(step)
            if acc and p.evaluations:
                self._bar.set_postfix_str(acc, refresh=False)
        elif self.mode == "log" and time.monotonic() - self._last_log >= self.log_every_s:
            self._last_log = time.monotonic()
            rate = p.update / p.elapsed if p.elapsed > 0 else 0.0
            eta = (p.total_updates - p.update) / rate if rate > 0 else float("nan")
            self.log(f"  {p.spec.run_id}: update {p.update}/{p.total_updates} "
                     f"({rate:.0f} upd/s, ETA {eta:.0f} s) {acc}".rstrip())

    def end_run(self, label: str, result: RunResult, total: int, reused: bool = False) -> None:
        if self.mode == "bars":
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            self._overall.update(total - self._last_update if not reused else 0)
        self.message(f"{label} {result.run_id}: {describe(result, reused)}")

    def close(self) -> None:
        """Close the bars (idempotent)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._overall is not None:
            self._overall.close()
            self._overall = None


def describe(result: RunResult, reused: bool = False) -> str:
    """One line: status, time and final accuracies of a run."""
    how = "reused (already finished)" if reused else (
        f"{result.wall_time:.1f} s, {result.updates_per_second:.0f} upd/s")
    if result.final_train_accuracy is None:
        accs = "no evaluation"
    else:
        accs = f"train {result.final_train_accuracy:.4f}, test {result.final_test_accuracy:.4f}"
    if result.diverged:
        return (f"DIVERGED at update {result.diverged_at_update} "
                f"({result.divergence_reason}); {how}; last {accs}")
    return f"ok, {how}; {accs}"


def _stderr_log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ reproduce


@dataclass
class ReproduceOutcome:
    """What :func:`reproduce` did: where, which runs, which were reused, how long."""

    out_dir: Path
    protocol: Protocol
    results: list[RunResult]
    reused: list[str] = field(default_factory=list)
    trained: list[str] = field(default_factory=list)
    wall_time: float = 0.0  # the whole call, report included
    results_json: dict[str, Any] = field(default_factory=dict, repr=False)


def run_paths(out_dir: Path, run_id: str) -> tuple[Path, Path]:
    """``(runs/<run_id>.json, weights/<run_id>.npz)`` inside ``out_dir``."""
    return out_dir / "runs" / f"{run_id}.json", out_dir / "weights" / f"{run_id}.npz"


def load_finished(out_dir: Path, spec: RunSpec, protocol_hash: str,
                  fingerprint: str) -> RunResult | None:
    """The saved result of ``spec`` in ``out_dir`` if it is finished *and* was made by the
    same protocol hash, the same spec and the same data; otherwise None (retrain)."""
    record_path, weights_path = run_paths(out_dir, spec.run_id)
    if not (record_path.is_file() and weights_path.is_file()):
        return None
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        if (record.get("format") != RUN_FORMAT
                or record.get("protocol_hash") != protocol_hash
                or record.get("data_fingerprint") != fingerprint
                or record["result"]["spec"] != spec.to_dict()):
            return None
        return RunResult.from_dict(record["result"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable: retrain


def save_run(out_dir: Path, result: RunResult, protocol_hash: str, fingerprint: str) -> None:
    """Save a finished run: its weights first, then its record (the 'finished' marker)."""
    from numnet.core import serialize

    record_path, weights_path = run_paths(out_dir, result.run_id)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    if result.model is not None:  # serialize.save is atomic
        serialize.save(weights_path, result.model, metadata={
            "run_id": result.run_id, "spec": result.spec.to_dict(), "status": result.status,
            "final_train_accuracy": result.final_train_accuracy,
            "final_test_accuracy": result.final_test_accuracy,
        })
    write_json(record_path, {
        "format": RUN_FORMAT,
        "protocol_hash": protocol_hash,
        "data_fingerprint": fingerprint,
        "weights": str(weights_path.relative_to(out_dir)),
        "weights_format": serialize.FORMAT,
        "result": result.to_dict(),
    })


def reproduce(
    protocol: Protocol | str | Path = "assignment",
    data: Datasets | None = None,
    out_dir: str | Path | None = None,
    *,
    models: list[str] | None = None,
    seed: int | None = None,
    quick: bool = False,
    force: bool = False,
    device: str = "cpu",
    data_dir: str | Path | None = None,
    progress: str = "auto",
    log: Log = _stderr_log,
    make_report: bool = True,
    blas_threads: int | None = None,
) -> ReproduceOutcome:
    """Run every run of ``protocol`` (restricted to ``models``) and write all outputs.

    protocol: a :class:`Protocol`, a built-in name or a TOML path. data: SPEC's splits (loaded
    with ``numnet.lab.data.load`` for the protocol's dataset when None, from ``data_dir`` or the
    cache). seed overrides the protocol seed; quick applies the protocol's ``[quick]`` variant.
    progress: "bars", "log", "none" or "auto" (bars on a terminal, else log lines).
    blas_threads: limit BLAS to this many threads while training (None: leave it alone).
    Returns a :class:`ReproduceOutcome`; raises KeyboardInterrupt after saving what finished.
    """
    started = time.perf_counter()
    cpu_started = time.process_time()
    started_at = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    protocol = protocol_mod.resolve(protocol, seed, quick)
    specs = plan_runs(protocol, models)
    out = Path(out_dir) if out_dir is not None else default_out_dir(protocol)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "protocol.toml", protocol.text)

    if data is None:
        from numnet.lab import data as data_mod

        data = data_mod.load(dataset=protocol.dataset, data_dir=data_dir,
                             validation_size=protocol.validation_size,
                             progress=progress != "none")
    protocol_mod.check_against_data(protocol, data.train.num_examples, data.test.num_examples)
    info = data_info(protocol.dataset, data)
    phash = protocol.hash

    if progress == "auto":
        progress = "bars" if sys.stderr.isatty() else "log"
    totals = {s.run_id: expected_updates(data.train.num_examples, s.batch_size, s.epochs)
              for s in specs}
    finished = {} if force else {
        s.run_id: r for s in specs
        if (r := load_finished(out, s, phash, info["fingerprint"])) is not None
    }
    display = ProgressDisplay(progress, log, sum(totals[s.run_id] for s in specs
                                                  if s.run_id not in finished))
    quick_note = f" [{QUICK_LABEL}]" if protocol.quick else ""
    display.message(f"numnet reproduce: protocol {protocol.name}{quick_note} "
                    f"(hash {phash}), {len(specs)} runs, output {out}")
    outcome = ReproduceOutcome(out_dir=out, protocol=protocol, results=[])
    try:
        with blas_limit(blas_threads):
            environment = environment_info()  # inside the limit: records the thread count
            for k, spec in enumerate(specs, start=1):
                label = f"[{k}/{len(specs)}]"
                if spec.run_id in finished:
                    result = finished[spec.run_id]
                    outcome.reused.append(spec.run_id)
                    display.end_run(label, result, totals[spec.run_id], reused=True)
                else:
                    display.start_run(label, spec, totals[spec.run_id])
                    result = train_run(spec, data, device=device, on_progress=display.update)
                    save_run(out, result, phash, info["fingerprint"])
                    result.model = None  # saved; do not keep every model in memory
                    outcome.trained.append(spec.run_id)
                    display.end_run(label, result, totals[spec.run_id])
                outcome.results.append(result)
    except KeyboardInterrupt:
        display.close()
        log(f"numnet reproduce: interrupted; {len(outcome.results)} of {len(specs)} runs are "
            f"saved in {out}. Rerun the same command to finish the others.")
        raise
    finally:
        display.close()

    outcome.wall_time = time.perf_counter() - started
    timing = {
        "started_at": started_at,
        "finished_at": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "wall_time": outcome.wall_time,
        "cpu_time": time.process_time() - cpu_started,  # this process, all threads
        "training_time": sum(r.wall_time for r in outcome.results if r.run_id in outcome.trained),
        "reused_runs": list(outcome.reused),
    }
    outcome.results_json = results_document(protocol, outcome.results, info, timing, device,
                                            environment)
    write_json(out / "results.json", outcome.results_json)
    write_text(out / "results.csv", results_csv(outcome.results_json))
    if make_report:
        from numnet.lab import report

        report.write_report(out, outcome.results_json)
    # results.json's wall time ends before the report; the command's includes it
    outcome.wall_time = time.perf_counter() - started
    log(f"numnet reproduce: done in {outcome.wall_time:.1f} s ({len(outcome.trained)} trained, "
        f"{len(outcome.reused)} reused); outputs in {out}")
    return outcome


def results_document(protocol: Protocol, results: list[RunResult], data: dict[str, Any],
                     timing: dict[str, Any], device: str = "cpu",
                     environment: dict[str, Any] | None = None) -> dict[str, Any]:
    """The content of results.json (see the module docstring)."""
    spec_results: dict[str, list[Any]] = {}
    for r in results:
        spec_results.setdefault(r.spec.model, []).append(r.spec_tuple())
    return {
        "format": RESULTS_FORMAT,
        "label": QUICK_LABEL if protocol.quick else None,
        "protocol": protocol.metadata(),
        "device": device,
        "data": data,
        "environment": environment if environment is not None else environment_info(),
        # SPEC: per model, a list of ((num_epochs, learning_rate), train_acc, test_acc).
        "results": spec_results,
        "runs": [r.to_dict() for r in results],
        "timing": timing,
    }


CSV_COLUMNS = ("protocol", "quick", "run_id", "model", "setting", "epochs", "lr", "reduction",
               "seed", "status", "diverged_at_update", "evaluation", "samples",
               "train_accuracy", "test_accuracy", "train_loss", "test_loss")


def results_csv(doc: dict[str, Any]) -> str:
    """results.csv: one row per (run, evaluation); a run without evaluations gets one row
    with the evaluation columns empty."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for run in doc["runs"]:
        s = run["spec"]
        head = [doc["protocol"]["name"], doc["protocol"]["quick"], run["run_id"], s["model"],
                s["setting"], s["epochs"], repr(s["lr"]), s["reduction"], s["seed"],
                run["status"], run["diverged_at_update"] or ""]
        if not run["samples"]:
            writer.writerow(head + [""] * 6)
        for k, samples in enumerate(run["samples"]):
            writer.writerow(head + [k + 1, samples, repr(run["train_accuracy"][k]),
                                    repr(run["test_accuracy"][k]), repr(run["train_loss"][k]),
                                    repr(run["test_loss"][k])])
    return buf.getvalue()


def load_results(out_dir: str | Path) -> dict[str, Any]:
    """Read ``out_dir/results.json`` (checking its format)."""
    path = Path(out_dir) / "results.json"
    doc = read_json(path)
    if not isinstance(doc, dict) or doc.get("format") != RESULTS_FORMAT:
        raise NumnetError(
            f"{path} is not a numnet results file (format {RESULTS_FORMAT}); "
            "run `numnet reproduce --out DIR` first"
        )
    return doc


def strip_timing(obj: Any) -> Any:
    """``obj`` without the clock-dependent keys (:data:`TIMING_KEYS`), recursively: what must
    be identical between two runs with the same seed."""
    if isinstance(obj, dict):
        return {k: strip_timing(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [strip_timing(v) for v in obj]
    return obj


def iter_runs(doc: dict[str, Any]) -> Iterator[RunResult]:
    """The runs of a results document as :class:`RunResult` objects."""
    for run in doc["runs"]:
        yield RunResult.from_dict(run)


# ------------------------------------------------------------------------------ single run


def train_one(
    spec: RunSpec,
    data: Datasets,
    out_dir: str | Path,
    *,
    dataset: str = "mnist",
    device: str = "cpu",
    progress: str = "auto",
    log: Log = _stderr_log,
    blas_threads: int | None = None,
) -> RunResult:
    """``numnet train``: one run; its weights and record saved in ``out_dir`` as reproduce
    saves them (``weights/<run_id>.npz``, ``runs/<run_id>.json``)."""
    out = Path(out_dir)
    if progress == "auto":
        progress = "bars" if sys.stderr.isatty() else "log"
    total = expected_updates(data.train.num_examples, spec.batch_size, spec.epochs)
    display = ProgressDisplay(progress, log, total)
    try:
        display.start_run("[1/1]", spec, total)
        with blas_limit(blas_threads):
            result = train_run(spec, data, device=device, on_progress=display.update)
        display.end_run("[1/1]", result, total)
    finally:
        display.close()
    save_run(out, result, protocol_hash="", fingerprint=data_info(dataset, data)["fingerprint"])
    return result
