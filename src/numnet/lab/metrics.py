"""The per-run metrics CSV: a run's evaluations as one long table that any tool can plot
(pandas, a spreadsheet, gnuplot), like Keras' CSVLogger or Lightning's metrics.csv.

Every run that numnet trains (``train``, ``reproduce``, ``sweep``) writes one next to its
record: ``runs/<run_id>.metrics.csv`` (a sweep's too). Columns
(:data:`METRICS_COLUMNS`), one row per evaluation per split:

- ``update``: the number of SGD updates made when the weights were evaluated;
- ``epoch``: epochs of training data seen, fractional (``samples_seen / train examples``);
  empty when the train split's size is not known;
- ``samples_seen``: ``update * batch_size``, the x axis of the protocol's figure;
- ``split``: ``train`` (the first ``eval_train_examples`` train examples, file order) or
  ``test`` (the first ``eval_test_examples`` test examples);
- ``loss``: mean cross-entropy per example on that split; ``accuracy``: fraction correct;
- ``wall_time``: seconds from the start of the run's training loop to the end of that
  evaluation (``RunResult.evaluation_times``); empty when it was not recorded (a file rebuilt
  from an older record);
- ``point``: ``curve`` for the protocol's learning-curve evaluations (every ``eval_every``
  updates), ``final`` for the evaluation of the final weights after the last update (those
  saved and used by ``numnet predict``), present when the run's record has one.

A run with training internals (``numnet.lab.training.internals``) has one more column per
internal after these (``weight_norm.fc1``, ..., ``dead_fraction.relu1``, ``logit_absmax``,
``logit_std``, ``top_prob``): the snapshot of that evaluation, the same on its train and test
rows, empty on ``final`` rows.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from numnet.core.io import write_text
from numnet.lab.training.internals import internals_cells, internals_columns

METRICS_COLUMNS = ("update", "epoch", "samples_seen", "split", "loss", "accuracy", "wall_time",
                   "point")
SPLITS = ("train", "test")
SUFFIX = ".metrics.csv"


def metrics_path(record_path: str | Path) -> Path:
    """``runs/<run_id>.json`` -> ``runs/<run_id>.metrics.csv`` (next to the record)."""
    path = Path(record_path)
    return path.with_name(path.name.removesuffix(".json") + SUFFIX)


def _num(x: float | None) -> str:
    return "" if x is None else repr(float(x))


def metrics_rows(run: dict[str, Any], train_examples: int | None = None,
                 times: Sequence[float] | None = None) -> list[list[Any]]:
    """The rows of the metrics CSV of ``run`` (a ``RunResult.to_dict()``), header excluded.

    ``train_examples``: the size of the train split (for ``epoch``); ``times``: the elapsed
    seconds of each curve evaluation (``RunResult.evaluation_times``); either may be None."""
    batch = int(run["spec"]["batch_size"])

    def epoch(samples: int) -> str:
        return "" if not train_examples else repr(round(samples / train_examples, 6))

    rows: list[list[Any]] = []
    for k, samples in enumerate(run["samples"]):
        wall = times[k] if times is not None and k < len(times) else None
        for split in SPLITS:
            rows.append([samples // batch, epoch(samples), samples, split,
                         _num(run[f"{split}_loss"][k]), _num(run[f"{split}_accuracy"][k]),
                         _num(wall), "curve"])
    final = run.get("final_weights")
    if final:
        update = int(final["update"])
        wall = run.get("wall_time")  # the run's loop and this last evaluation
        for split in SPLITS:
            rows.append([update, epoch(update * batch), update * batch, split,
                         _num(final[f"{split}_loss"]), _num(final[f"{split}_accuracy"]),
                         _num(wall), "final"])
    return rows


def metrics_csv(run: dict[str, Any], train_examples: int | None = None,
                times: Sequence[float] | None = None) -> str:
    """The metrics CSV of one run as text (header first; see the module docstring)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    internals = run.get("internals")
    writer.writerow(METRICS_COLUMNS + tuple(internals_columns(internals) if internals else ()))
    for row in metrics_rows(run, train_examples, times):
        extra = (internals_cells(internals, int(row[0])) if row[-1] == "curve" else
                 [""] * len(internals_columns(internals))) if internals else []
        writer.writerow(row + extra)
    return buf.getvalue()


def write_metrics(record_path: str | Path, run: dict[str, Any],
                  train_examples: int | None = None,
                  times: Sequence[float] | None = None) -> Path:
    """Write the metrics CSV of ``run`` next to its record ``record_path`` (atomically, through
    numnet.core.io); return its path."""
    path = metrics_path(record_path)
    write_text(path, metrics_csv(run, train_examples, times))
    return path
