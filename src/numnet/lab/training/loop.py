"""The training loop of one run (the rules are in :mod:`numnet.lab.training`): read
:func:`train_run` first. :class:`Run` holds what the loop builds up (the curves, the status)
and makes the :class:`RunResult`; the optional parts are plug-ins (:class:`Plugin`).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from numnet.core import backend, models, runtime, schedules
from numnet.core.datasets import DataSet, Datasets
from numnet.core.names import MODEL_NAMES
from numnet.lab.training.internals import PROBE_EXAMPLES, InternalsRecorder
from numnet.lab.training.spec import (
    CURVES,
    STATUS_DIVERGED,
    STATUS_OK,
    Progress,
    RunResult,
    RunSpec,
)
from numnet.lab.training.stepper import NumnetStepper, evaluation_sets

# ------------------------------------------------------------------------------ seeds, counts


def child_seeds(seed: int) -> tuple[int, int]:
    """``(init_seed, shuffle_seed)`` of a run: ``SeedSequence(seed).spawn(2)``, one uint32
    state word each. The first builds the model's weights, the second orders the batches."""
    init_ss, shuffle_ss = np.random.SeedSequence(seed).spawn(2)
    return int(init_ss.generate_state(1)[0]), int(shuffle_ss.generate_state(1)[0])


def build_model(spec: RunSpec) -> Any:
    """The run's initial model: ``models.build`` with the spec's options, kernels and init
    seed."""
    init_seed, _ = child_seeds(spec.seed)
    if spec.layers is not None:  # a custom model, or a variant of a built-in one
        name = spec.run_id if spec.model in MODEL_NAMES else spec.model
        return models.build(spec.definition(), seed=init_seed, dtype=spec.dtype,
                            name=name, bias_init=spec.bias_init, kernels=spec.kernels,
                            weight_init=spec.weight_init)
    return models.build(
        spec.model,
        seed=init_seed,
        dtype=spec.dtype,
        conv_activation=None if spec.conv_activation == "none" else spec.conv_activation,
        bias_init=spec.bias_init,
        kernels=spec.kernels,
        weight_init=spec.weight_init,
    )


def make_batch_source(spec: RunSpec, train: DataSet) -> DataSet:
    """A fresh TF-style ``DataSet`` over ``train``'s arrays (no copy), shuffled by the run's
    shuffle seed: ``next_batch`` then yields the run's batches in the run's order."""
    _, shuffle_seed = child_seeds(spec.seed)
    return DataSet(train.images, train.labels, seed=shuffle_seed)


def prefix_key(spec: RunSpec) -> RunSpec:
    """What a run shares with the runs it is a prefix of: its spec without the epochs and the
    setting label. Two runs with equal keys (same seed, so same initial weights and batch
    order) and E1 <= E2 epochs: the first is the second's first ``expected_updates(E1)``
    updates, exactly. Not so under a schedule whose rates depend on the run's length (a
    cosine decays over the whole run): its epochs stay in the key."""
    keep_epochs = spec.schedule is not None and schedules.depends_on_length(
        spec.schedule_spec())
    return dataclasses.replace(spec, epochs=spec.epochs if keep_epochs else 0, setting=None)


def expected_updates(num_examples: int, batch_size: int, epochs: int) -> int:
    """Number of updates the protocol's loop makes: ``next_batch`` calls until ``epochs`` epochs are
    completed (550*E + 1 for 55,000 examples and batch 100). Independent of the shuffling."""
    index, completed, updates = 0, 0, 0
    while completed < epochs:
        updates += 1
        if index + batch_size > num_examples:
            completed += 1
            index = batch_size - (num_examples - index)
        else:
            index += batch_size
    return updates


def expected_evaluations(num_examples: int, batch_size: int, epochs: int, eval_every: int) -> int:
    """``floor(expected_updates / eval_every)``: evaluations a run without divergence makes."""
    return expected_updates(num_examples, batch_size, epochs) // eval_every


# ------------------------------------------------------------------------------ the loop


def train_run(spec: RunSpec, data: Datasets, *, device: str = "cpu", stepper: Any = None,
              batches: Any = None, plugins: Sequence[Plugin] = ()) -> RunResult:
    """Train one model as the protocol's loop does; return its learning curves and the
    evaluation of its final weights (``RunResult.final_weights``).

    ``data``: the protocol's splits (only ``train`` and ``test`` are used; ``train``'s own
    batch state is left alone). ``device``: "cpu" or "cuda". ``stepper`` (see
    :class:`NumnetStepper`) replaces numnet's training step on the run's initial model, e.g. by
    PyTorch's for ``numnet compare``. ``batches`` (anything with ``next_batch(b)`` and
    ``epochs_completed``, fresh) replaces :func:`make_batch_source`. ``plugins``: the optional
    parts (:class:`Progress` reports, :class:`ShorterRuns`); the training internals are one
    too, added when ``spec.internals``.
    """
    batches = batches if batches is not None else make_batch_source(spec, data.train)
    if stepper is None:
        backend.xp_for(device)  # a clear error before any work when the device is unavailable
        model = build_model(spec)
        if device != "cpu":
            model.to(device)
        total = expected_updates(batches.num_examples, spec.batch_size, spec.epochs)
        stepper = NumnetStepper.for_run(model, spec, total)
    run = Run(spec, data, stepper, device, plugins)
    i = 0
    # Overflow in a diverging run is expected and detected (the divergence rule); BLAS on one
    # thread: OpenBLAS's sums for some shapes depend on its thread count.
    with np.errstate(all="ignore"), runtime.single_threaded_blas():
        run.started(batches)
        while batches.epochs_completed < spec.epochs:
            i += 1
            x, y = run.on_device(*batches.next_batch(spec.batch_size))
            loss = stepper.loss(x, y)
            if not np.isfinite(loss):
                run.diverge(i, "non-finite training loss")  # this update is not applied
                break
            stepper.update()
            run.updated(i, loss)
            if i % spec.eval_every == 0 and not run.evaluate(i):
                break
        return run.finish()


class Plugin:
    """An optional part of the loop. Each method is called at one moment of :func:`train_run`
    and does nothing by default; ``run`` is the :class:`Run` (its spec, stepper, curves)."""

    def started(self, run: Run) -> None:
        """Before the first update."""

    def updated(self, run: Run, update: int, loss: float) -> None:
        """After update ``update`` was applied; ``loss`` is its batch loss."""

    def evaluated(self, run: Run, update: int) -> None:
        """After the curve point of update ``update`` was put on the curve."""

    def finished(self, run: Run, result: RunResult) -> None:
        """The run's result is made (its ``wall_time`` is set after)."""


class Run:
    """What :func:`train_run` builds up: the curves, the status, the last applied update, and
    the result of the run (or of a shorter run ending inside it, :meth:`result`)."""

    def __init__(self, spec: RunSpec, data: Datasets, stepper: Any, device: str,
                 plugins: Sequence[Plugin]) -> None:
        self.spec, self.stepper, self.device = spec, stepper, device
        self.init_seed, self.shuffle_seed = child_seeds(spec.seed)
        self.dtype = np.dtype(spec.dtype)
        self.sets = evaluation_sets(spec, data, device)  # (x_tr, y_tr, x_te, y_te)
        self.recorder: InternalsRecorder | None = None
        self.plugins = list(plugins)
        if spec.internals and hasattr(stepper, "internals"):
            # a fixed probe: the first train examples in file order
            probe = data.train.images[:PROBE_EXAMPLES].astype(self.dtype, copy=False)
            self.recorder = InternalsRecorder(spec.lr, backend.to_device(probe, device))
            self.plugins.insert(0, Internals(self.recorder))
        self.examples = self.total = 0  # train examples, updates to make (set when it starts)
        self.applied = 0  # the last update applied to the weights
        self.samples: list[int] = []
        self.curves: dict[str, list[float]] = {k: [] for k in CURVES}
        #: seconds from the start of the loop to the end of each curve evaluation
        self.evaluation_times: list[float] = []
        self.status, self.diverged_at, self.reason = STATUS_OK, None, None
        self.start = time.perf_counter()

    # -------------------------------------------------------------------- the loop's steps

    def started(self, batches: Any) -> None:
        self.examples = batches.num_examples  # in the train split
        self.total = expected_updates(self.examples, self.spec.batch_size, self.spec.epochs)
        self.start = time.perf_counter()
        for plugin in self.plugins:
            plugin.started(self)

    def on_device(self, x: Any, y: Any) -> tuple[Any, Any]:
        """A batch in the run's dtype on the run's device (no copy when it already is)."""
        if self.device != "cpu" or x.dtype != self.dtype:
            x = backend.to_device(x.astype(self.dtype, copy=False), self.device)
            y = backend.to_device(y, self.device)
        return x, y

    def updated(self, update: int, loss: float) -> None:
        self.applied = update
        for plugin in self.plugins:
            plugin.updated(self, update, loss)

    def evaluate(self, update: int) -> bool:
        """The curve point of ``update``: the parameters checked, then the model evaluated on
        the curves' examples. False when the run diverged here (it then ends)."""
        if not self.stepper.parameters_finite():
            self.diverge(update, "non-finite parameters")
            return False
        point = self.evaluation(self.stepper)
        if not (np.isfinite(point["train_loss"]) and np.isfinite(point["test_loss"])):
            self.diverge(update, "non-finite evaluation loss")
            return False
        self.samples.append(update * self.spec.batch_size)
        for key, value in point.items():
            self.curves[key].append(value)
        self.evaluation_times.append(self.elapsed())
        for plugin in self.plugins:
            plugin.evaluated(self, update)
        return True

    def evaluation(self, stepper: Any) -> dict[str, float]:
        """The accuracies and losses (:data:`CURVES`) of ``stepper``'s model on the curves'
        examples, train then test."""
        x_tr, y_tr, x_te, y_te = self.sets
        tr_acc, tr_loss = stepper.evaluate(x_tr, y_tr, self.spec.eval_batch_size)
        te_acc, te_loss = stepper.evaluate(x_te, y_te, self.spec.eval_batch_size)
        return dict(zip(CURVES, (tr_acc, te_acc, tr_loss, te_loss), strict=True))

    def diverge(self, update: int, reason: str) -> None:
        """The run diverged at ``update``, for ``reason``."""
        self.status, self.diverged_at, self.reason = STATUS_DIVERGED, update, reason

    def finish(self) -> RunResult:
        """This run's result, passed to every plug-in."""
        result = self.result(self.spec, self.stepper)
        for plugin in self.plugins:
            plugin.finished(self, result)
        result.wall_time = self.elapsed()
        return result

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    # -------------------------------------------------------------------- results

    def result(self, spec: RunSpec, stepper: Any) -> RunResult:
        """The result of ``spec`` ending now, at the last applied update, with ``stepper``'s
        model (this run's, or a copy for a shorter run): the curves so far, the evaluation of
        the final weights, the internals, the final model's evidence and (a copy of) this
        run's optimiser state."""
        update, status = self.applied, self.status
        diverged_at, reason, final_weights = self.diverged_at, self.reason, None
        if status == STATUS_OK:
            # the weights after the last update (saved, used by predict); when that update
            # was the last curve point, the point is reused (same weights, same numbers)
            at_point = self.samples and self.samples[-1] == update * spec.batch_size
            final_weights = {"update": update, **(
                {k: v[-1] for k, v in self.curves.items()} if at_point
                else self.evaluation(stepper))}
            if not (np.isfinite(final_weights["train_loss"])
                    and np.isfinite(final_weights["test_loss"])):
                status, diverged_at = STATUS_DIVERGED, update
                reason, final_weights = "non-finite final weights", None
        recorder, evidence = self.recorder, None
        optimizer = getattr(self.stepper, "optimizer", None)
        if recorder is not None and status == STATUS_OK and hasattr(stepper, "probabilities"):
            _, _, x_te, y_te = self.sets
            evidence = recorder.final(stepper, x_te, y_te, spec.eval_batch_size, update)
        return RunResult(
            spec=spec, status=status, updates=update, samples=list(self.samples),
            **{k: list(v) for k, v in self.curves.items()},
            init_seed=self.init_seed, shuffle_seed=self.shuffle_seed,
            diverged_at_update=diverged_at, divergence_reason=reason,
            wall_time=self.elapsed(), final_weights=final_weights, model=stepper.model,
            internals=recorder.to_dict() if recorder is not None else None,
            internals_time=recorder.seconds if recorder is not None else 0.0,
            final_model=evidence, evaluation_times=list(self.evaluation_times),
            # a copy of this run's optimiser state now, for a run with an optimiser of its own
            optimizer_state=copy.deepcopy(optimizer.state_dict())
            if spec.optimizer is not None and hasattr(optimizer, "state_dict") else None,
        )


# ------------------------------------------------------------------------------ plug-ins


class Internals(Plugin):
    """The training internals (``numnet.lab.training.internals``): a snapshot before the first
    update, after it, and at every curve point. They never change a number."""

    def __init__(self, recorder: InternalsRecorder) -> None:
        self.recorder = recorder

    def started(self, run: Run) -> None:
        self.recorder.record_start(run.stepper, 0)
        self.measure(run, 1)

    def updated(self, run: Run, update: int, loss: float) -> None:
        if update == 1:
            self.recorder.record_start(run.stepper, 1)
        self.measure(run, update + 1)

    @staticmethod
    def measure(run: Run, update: int) -> None:
        """Ask the stepper to measure update ``update`` when a snapshot will report it."""
        if hasattr(run.stepper, "measure_next_update") and (
                update == 1 or update % run.spec.eval_every == 0):
            run.stepper.measure_next_update = True

    def evaluated(self, run: Run, update: int) -> None:
        self.recorder.record(run.stepper, update)


class Reporter(Plugin):
    """Calls ``on_progress`` with a :class:`Progress` every ``every`` updates, after every
    curve point and at the end: display only, it controls nothing."""

    def __init__(self, on_progress: Callable[[Progress], None], every: int = 25) -> None:
        self.on_progress, self.every = on_progress, every
        self.loss_sum, self.loss_count = 0.0, 0

    def updated(self, run: Run, update: int, loss: float) -> None:
        self.loss_sum += loss
        self.loss_count += 1
        if update % self.every == 0 and update % run.spec.eval_every != 0:
            self.report(run, update)

    def evaluated(self, run: Run, update: int) -> None:
        self.report(run, update)

    def finished(self, run: Run, result: RunResult) -> None:
        self.report(run, run.applied, done=True)

    def report(self, run: Run, update: int, done: bool = False) -> None:
        # the mean training loss per example since the last report (a summed batch loss is
        # divided by the batch size)
        per_example = 1.0 / run.spec.batch_size if run.spec.reduction == "sum" else 1.0
        count, self.loss_count = self.loss_count, 0
        loss = self.loss_sum / count * per_example if count else None
        self.loss_sum = 0.0
        has_points = bool(run.samples)
        self.on_progress(Progress(
            run.spec, update, run.total, len(run.samples),
            run.curves["train_accuracy"][-1] if has_points else None,
            run.curves["test_accuracy"][-1] if has_points else None,
            run.elapsed(), done, train_loss=loss))


class ShorterRuns(Plugin):
    """Runs that this one extends (:func:`prefix_key` equal, at most as many epochs): each
    ends inside this run, after its own last update (550*E + 1 for E epochs), with the curve
    so far and a copy of the weights; its result goes to ``on_result``, identical to training
    it alone (timing aside), ``shared_with`` this run. A run that diverges first ends them
    with it, as diverged, as they would have alone. numnet's stepper only (the copy is a
    numnet model)."""

    def __init__(self, runs: Sequence[RunSpec], on_result: Callable[[RunResult], None]) -> None:
        self.runs, self.on_result = list(runs), on_result
        self.ends: dict[int, list[RunSpec]] = {}  # update -> the runs whose last it is

    def started(self, run: Run) -> None:
        for other in self.runs:
            if prefix_key(other) != prefix_key(run.spec) or other.epochs > run.spec.epochs:
                raise ValueError(f"{other.run_id} is not a prefix of {run.spec.run_id}")
            end = expected_updates(run.examples, other.batch_size, other.epochs)
            self.ends.setdefault(end, []).append(other)

    def updated(self, run: Run, update: int, loss: float) -> None:
        if update in self.ends and update % run.spec.eval_every != 0:
            self.end(run, self.ends.pop(update))

    def evaluated(self, run: Run, update: int) -> None:
        if update in self.ends:  # its last update is a curve point: ends after it
            self.end(run, self.ends.pop(update))

    def finished(self, run: Run, result: RunResult) -> None:
        for update in sorted(self.ends):  # the run diverged before they ended
            self.end(run, self.ends.pop(update))

    def end(self, run: Run, specs: list[RunSpec]) -> None:
        for spec in specs:
            copy = build_model(spec)  # a model of its own: this run trains on in place
            if run.device != "cpu":
                copy.to(run.device)
            copy.load_state_dict(run.stepper.model.state_dict())
            result = run.result(spec, NumnetStepper(copy, spec.lr, spec.reduction))
            result.shared_with = run.spec.run_id
            self.on_result(result)
