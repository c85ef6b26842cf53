"""The training loop of one run, its evaluations and divergence detection (the rules are in
:mod:`numnet.lab.training`)."""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from numnet.core import backend, models, runtime
from numnet.core.datasets import DataSet, Datasets
from numnet.lab.training.background import (
    MAX_DEFERRED,
    BackgroundEvaluator,
    CurvePoint,
    RemoteEvaluator,
    ServiceAddress,
)
from numnet.lab.training.internals import PROBE_EXAMPLES, InternalsRecorder
from numnet.lab.training.spec import STATUS_DIVERGED, STATUS_OK, Progress, RunResult, RunSpec
from numnet.lab.training.stepper import (
    NumnetStepper,
    evaluate,
    evaluate_final_weights,
    evaluation_sets,
)

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
    updates, exactly."""
    return dataclasses.replace(spec, epochs=0, setting=None)


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


# ------------------------------------------------------------------------------ the run


def train_run(
    spec: RunSpec,
    data: Datasets,
    *,
    device: str = "cpu",
    on_progress: Callable[[Progress], None] | None = None,
    initial_model: Any = None,
    batch_source: Any = None,
    progress_every: int = 25,
    stepper: Any = None,
    shorter: Sequence[RunSpec] = (),
    on_shorter: Callable[[RunResult], None] | None = None,
    background_evaluation: bool = False,
    defer_evaluations: bool = False,
    evaluation_service: ServiceAddress | None = None,
) -> RunResult:
    """Train one model as the protocol's loop does and return its learning curves and the
    evaluation of its final weights (``RunResult.final_weights``).

    ``data``: the protocol's splits (only ``train`` and ``test`` are used; ``train``'s own batch
    state is left alone). ``initial_model`` replaces :func:`build_model` (it is trained in place);
    ``batch_source`` (anything with ``next_batch(b)`` and ``epochs_completed``, fresh) replaces
    :func:`make_batch_source`. ``on_progress`` is called every ``progress_every`` updates, after
    every evaluation and at the end. ``device`` is "cpu" or "cuda" (numnet.core.backend raises a
    clear error when CUDA is not available). ``stepper`` (see :class:`NumnetStepper`) replaces
    numnet's training step and evaluation, e.g. by PyTorch's for ``numnet compare``; it then
    owns the model (``initial_model`` and ``device`` are not used for it).

    ``shorter``: runs this one is a prefix-extension of (:func:`prefix_key` equal, at most
    ``spec.epochs`` epochs). Each ends inside this run, after its own last update (550*E + 1
    for E epochs; the loop's condition is checked before each batch): its result -- curves up
    to there, its status, its weights copied into a model of its own, ``shared_with`` this
    run -- is passed to ``on_shorter`` there, and equals what ``train_run`` of it alone gives
    (timing aside). numnet's stepper only (the copy is a numnet model).

    ``background_evaluation``: evaluate each curve point on a helper thread, on a copy of the
    weights, while the training goes on -- numnet's stepper on the CPU, at the points where
    ``runtime.get_threads()`` is above 1; otherwise in line. The result is the same
    (``numnet.lab.training.background``); it pays where a core would otherwise wait, e.g. the
    last run of a protocol on a machine of two cores. ``defer_evaluations`` (with
    ``background_evaluation``): while no second thread is given, the curve points wait (at
    most :data:`MAX_DEFERRED`) instead of being evaluated in line, and are evaluated once a
    core is free or when the run must settle them; the result is again the same.
    ``evaluation_service`` (with ``background_evaluation``; the address of a
    ``numnet.lab.training.service.EvaluationService``): the points are deferred and sent
    there as they come, to be evaluated in that process; again the same result.
    """
    return _Run(spec, data, device=device, on_progress=on_progress, initial_model=initial_model,
                batch_source=batch_source, progress_every=progress_every, stepper=stepper,
                shorter=shorter, on_shorter=on_shorter,
                background_evaluation=background_evaluation,
                defer_evaluations=defer_evaluations,
                evaluation_service=evaluation_service).train()


class _Run:
    """One :func:`train_run` in progress: its curve so far, the curve points not yet on it, the
    shorter runs it carries, and the steps of its loop (:meth:`train`).

    The order it keeps: evaluations run beside the training (numnet's stepper on the CPU, when
    asked, whenever the run may use more than one thread -- a worker's share grows once a core
    is idle), or wait for a free core (``defer_evaluations``); the points not yet on the curve
    (:attr:`points`) are *settled* -- put on the curve, or found diverged and the weights
    restored -- in update order, before anything that depends on them: a divergence check, a
    shorter run's end, this run's end (``numnet.lab.training.background``)."""

    def __init__(self, spec: RunSpec, data: Datasets, *, device: str,
                 on_progress: Callable[[Progress], None] | None, initial_model: Any,
                 batch_source: Any, progress_every: int, stepper: Any,
                 shorter: Sequence[RunSpec], on_shorter: Callable[[RunResult], None] | None,
                 background_evaluation: bool, defer_evaluations: bool,
                 evaluation_service: ServiceAddress | None) -> None:  # fmt: skip
        backend.xp_for(device)  # a clear error before any work when the device is unavailable
        self.spec, self.device = spec, device
        self.on_progress, self.progress_every = on_progress, progress_every
        self.on_shorter = on_shorter
        self.init_seed, self.shuffle_seed = child_seeds(spec.seed)
        if stepper is None:
            model = initial_model if initial_model is not None else build_model(spec)
            if device != "cpu":
                model.to(device)
            stepper = NumnetStepper(model, spec.lr, spec.reduction)
        self.stepper = stepper
        self.batches = (batch_source if batch_source is not None
                        else make_batch_source(spec, data.train))
        self.dtype = np.dtype(spec.dtype)
        self.sets = evaluation_sets(spec, data, device)  # (x_tr, y_tr, x_te, y_te)

        self.recorder = None
        if spec.internals and hasattr(stepper, "internals"):
            # a fixed probe: the first train examples in file order
            x_probe = backend.to_device(
                data.train.images[:PROBE_EXAMPLES].astype(self.dtype, copy=False), device)
            self.recorder = InternalsRecorder(spec.lr, x_probe)
            self.recorder.record_start(stepper, 0)

        self.total = expected_updates(self.batches.num_examples, spec.batch_size, spec.epochs)
        #: update -> the shorter runs whose last update it is
        self.ends: dict[int, list[RunSpec]] = {}
        for other in shorter:
            if prefix_key(other) != prefix_key(spec) or other.epochs > spec.epochs:
                raise ValueError(f"{other.run_id} is not a prefix of {spec.run_id}")
            end = expected_updates(self.batches.num_examples, other.batch_size, other.epochs)
            self.ends.setdefault(end, []).append(other)
        #: shorter runs past their last update whose curve points wait: (run, its model, update)
        self.late: list[tuple[RunSpec, Any, int]] = []

        self.samples: list[int] = []
        self.curves: dict[str, list[float]] = {
            k: [] for k in ("tr_acc", "te_acc", "tr_loss", "te_loss")}
        self.status, self.diverged_at, self.reason = STATUS_OK, None, None
        self.applied = 0  # the last update applied to the weights
        # Training loss per example since the last report (the progress bar shows it).
        self.per_example = 1.0 / spec.batch_size if spec.reduction == "sum" else 1.0
        self.loss_sum, self.loss_count = 0.0, 0

        self.background: BackgroundEvaluator | None = None
        if background_evaluation and isinstance(stepper, NumnetStepper) and device == "cpu":
            self.background = (
                BackgroundEvaluator(stepper.model, evaluate, self.sets, spec.eval_batch_size)
                if evaluation_service is None else
                RemoteEvaluator(stepper.model, evaluate, self.sets, spec.eval_batch_size, spec,
                                evaluation_service))
        self.defer = self.background is not None and (
            defer_evaluations or evaluation_service is not None)
        #: evaluated (or to be), not yet on the curve, oldest first
        self.points: deque[CurvePoint] = deque()
        self.start = 0.0  # time.perf_counter() when the loop starts (train)

    # -------------------------------------------------------------------- the loop

    def train(self) -> RunResult:
        """Run the loop to its end (or its divergence) and return the run's result."""
        spec, stepper, batches = self.spec, self.stepper, self.batches
        self.start = time.perf_counter()
        i = 0
        # Overflow in a diverging run is expected and detected below; keep it out of the
        # warnings. BLAS on one thread for the whole run, set here on the calling thread:
        # OpenBLAS takes its thread count from the thread that sets it, and the evaluation
        # helper's own sets would not hold -- its GEMMs must round as the in-line evaluation's
        # do.
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"), \
                    runtime.single_threaded_blas():
                while batches.epochs_completed < spec.epochs:
                    i += 1
                    x, y = batches.next_batch(spec.batch_size)
                    if self.device != "cpu" or x.dtype != self.dtype:
                        x = backend.to_device(x.astype(self.dtype, copy=False), self.device)
                        y = backend.to_device(y, self.device)
                    batch_loss = stepper.loss(x, y)
                    if not np.isfinite(batch_loss):
                        if self.settle():
                            self.diverge(i, "non-finite training loss")
                        break
                    self.loss_sum += batch_loss
                    self.loss_count += 1
                    stepper.update()
                    self.applied = i
                    if i == 1 and self.recorder is not None:
                        self.recorder.record_start(stepper, 1)
                    if i % spec.eval_every == 0:
                        if not self.curve_point(i):
                            break
                    elif i % self.progress_every == 0:
                        self.report(i)
                    if i in self.ends and not self.shorter_runs_end(i):
                        break
                if self.background is not None:
                    self.background.training_done()
                self.settle()
                for end in sorted(self.ends):  # diverged before these ended: so would they
                    self.end_shorter(self.ends.pop(end))  # have, alone
                result = self.finish(spec, stepper.model)
        finally:
            if self.background is not None:
                self.background.close()
        wall = time.perf_counter() - self.start
        self.report(self.applied, done=True)
        result.wall_time = wall
        return result

    def curve_point(self, update: int) -> bool:
        """The curve point of ``update`` (the last applied): evaluated in line, or kept with
        a copy of the weights for the helper, the points before it settled as the mode says.
        False when the run ends here (it diverged at this point or an earlier one)."""
        if not self.settle(None if self.defer else 0):
            return False
        if not self.stepper.parameters_finite():
            if self.settle():  # an earlier point may have diverged first
                self.diverge(update, "non-finite parameters")
            return False
        if self.defer or (self.background is not None and runtime.get_threads() > 1):
            snapshot = self.recorder.snapshot(self.stepper) if self.recorder is not None else None
            self.points.append(CurvePoint(update, self.stepper.model.state_dict(), snapshot))
            return self.settle(MAX_DEFERRED)
        x_tr, y_tr, x_te, y_te = self.sets
        tr_acc, tr_loss = self.stepper.evaluate(x_tr, y_tr, self.spec.eval_batch_size)
        te_acc, te_loss = self.stepper.evaluate(x_te, y_te, self.spec.eval_batch_size)
        return self.add_point(update, tr_acc, tr_loss, te_acc, te_loss)

    def diverge(self, update: int, reason: str) -> None:
        """The run diverged at ``update``, for ``reason``."""
        self.status, self.diverged_at, self.reason = STATUS_DIVERGED, update, reason

    def report(self, update: int, done: bool = False) -> None:
        """Tell ``on_progress`` where the run stands at ``update``."""
        if self.on_progress is None:
            return
        total_loss, count = self.loss_sum, self.loss_count
        self.loss_sum, self.loss_count = 0.0, 0
        has_points = bool(self.samples)
        self.on_progress(Progress(
            self.spec, update, self.total, len(self.samples),
            self.curves["tr_acc"][-1] if has_points else None,
            self.curves["te_acc"][-1] if has_points else None,
            time.perf_counter() - self.start, done,
            train_loss=total_loss / count * self.per_example if count else None,
            pending=len(self.points),
        ))

    def add_point(self, update: int, tr_acc: float, tr_loss: float, te_acc: float,
                  te_loss: float, snapshot: Any = None) -> bool:  # fmt: skip
        """The evaluation of update ``update`` on the curve; False (the run diverged there)
        when a loss is not finite."""
        if not (np.isfinite(tr_loss) and np.isfinite(te_loss)):
            self.diverge(update, "non-finite evaluation loss")
            return False
        self.samples.append(update * self.spec.batch_size)
        self.curves["tr_acc"].append(tr_acc)
        self.curves["te_acc"].append(te_acc)
        self.curves["tr_loss"].append(tr_loss)
        self.curves["te_loss"].append(te_loss)
        if self.recorder is not None:
            self.recorder.append(
                snapshot if snapshot is not None else self.recorder.snapshot(self.stepper),
                update)
        self.report(max(update, self.applied))
        return True

    def finish(self, run: RunSpec, model: Any, update: int | None = None,
               on: Any = None) -> RunResult:  # fmt: skip
        """The result of ``run`` ending now (this run, or a shorter one at its last update):
        the curves so far, the final model's evidence and the final weights' evaluation.
        ``update`` (default: the last applied) and ``on`` (default: the run's stepper) are
        those of a shorter run ended later than its last update (its points waited)."""
        update = self.applied if update is None else update
        on = self.stepper if on is None else on
        status, diverged_at, reason = self.status, self.diverged_at, self.reason
        curves, recorder = self.curves, self.recorder
        final_weights = None
        if status == STATUS_OK:
            final_weights = evaluate_final_weights(on, update, self.samples, curves, run,
                                                   self.sets)
            if not (np.isfinite(final_weights["train_loss"])
                    and np.isfinite(final_weights["test_loss"])):
                status, diverged_at = STATUS_DIVERGED, update
                reason, final_weights = "non-finite final weights", None
        evidence = None
        if recorder is not None and status == STATUS_OK and hasattr(on, "probabilities"):
            _, _, x_te, y_te = self.sets
            evidence = recorder.final(on, x_te, y_te, run.eval_batch_size, update)
        return RunResult(
            spec=run,
            status=status,
            updates=update,
            samples=list(self.samples),
            train_accuracy=list(curves["tr_acc"]),
            test_accuracy=list(curves["te_acc"]),
            train_loss=list(curves["tr_loss"]),
            test_loss=list(curves["te_loss"]),
            init_seed=self.init_seed,
            shuffle_seed=self.shuffle_seed,
            diverged_at_update=diverged_at,
            divergence_reason=reason,
            wall_time=time.perf_counter() - self.start,
            final_weights=final_weights,
            model=model,
            internals=recorder.to_dict() if recorder is not None else None,
            internals_time=recorder.seconds if recorder is not None else 0.0,
            final_model=evidence,
        )

    # -------------------------------------------------------------------- the shorter runs

    def shorter_runs_end(self, update: int) -> bool:
        """The shorter runs whose last update is ``update`` end: now, once the points before
        are settled, or (deferred) later, once theirs are. False when settling found the run
        diverged (they then end with it, as diverged)."""
        if self.defer:  # their points keep waiting; they end when those are settled
            self.end_shorter(self.ends.pop(update), wait=True)
        elif not self.settle():
            return False
        else:
            self.end_shorter(self.ends.pop(update))
        return True

    def end_shorter(self, runs: list[RunSpec], wait: bool = False) -> None:
        """End ``runs`` at this update; with ``wait``, once their curve points are settled."""
        for run in runs:
            copy = build_model(run)  # a model of its own: this run trains on in place
            if self.device != "cpu":
                copy.to(self.device)
            copy.load_state_dict(self.stepper.model.state_dict())
            if wait:
                self.late.append((run, copy, self.applied))
            else:
                self.shorter_ended(self.finish(run, copy))

    def shorter_ended(self, result: RunResult) -> None:
        result.shared_with = self.spec.run_id
        if self.on_shorter is not None:
            self.on_shorter(result)

    def end_late(self, before: int | None = None) -> None:
        """End the waiting shorter runs whose points are all on the curve: those whose last
        update is before ``before`` (None: every one)."""
        while self.late and (before is None or self.late[0][2] < before):
            run, copy, update = self.late.pop(0)
            on = NumnetStepper(copy, run.lr, run.reduction)
            self.shorter_ended(self.finish(run, copy, update, on))

    # -------------------------------------------------------------------- the waiting points

    def hand_over(self) -> None:
        """The waiting points to the helper, oldest first, when it has a core of its own
        now."""
        if self.background is not None and self.background.has_core():
            for point in self.points:
                if point.future is None and point.result is None:
                    point.future = self.background.submit(point.weights)

    def settle(self, keep: int | None = 0) -> bool:
        """Put the evaluated points on the curve, in update order: every point (``keep`` 0),
        the finished ones (None), or enough of the oldest that at most ``keep`` wait. False
        when one found the run diverged: the run then ends at its update, with its weights.
        Deferred, settling every point, this thread evaluates the newest ones that no helper
        has started while the helper works from the oldest; a shorter run whose points the
        helper has put on the curve meanwhile ends between two of them (its end -- saving,
        figures -- overlaps the helper's work). Shorter runs whose points are all on the
        curve end here."""
        self.hand_over()
        if keep == 0 and self.defer:  # the newest here, while the helper works from the oldest
            assert self.background is not None
            for point in reversed(list(self.points)):
                if point.result is not None:
                    continue
                self.report(self.applied)  # the progress callback also sets this run's threads
                self.hand_over()  # a core may have become free meanwhile
                if point.future is not None and not point.future.cancel():
                    break  # the helper has it, and every older one
                point.future, point.result = None, self.background.evaluate_here(point.weights)
                if self.late and not self.put_on_curve(None):
                    return False
        return self.put_on_curve(keep)

    def put_on_curve(self, keep: int | None) -> bool:
        """:meth:`settle`'s second half: the points on the curve, oldest first, waiting for
        (or making) their evaluations as ``keep`` says."""
        points, background = self.points, self.background
        while points:
            point = points[0]
            self.end_late(before=point.update)
            must = keep is not None and len(points) > keep
            if point.result is None:
                assert background is not None
                if self.defer and must and point.future is not None and point.future.cancel():
                    # not started (a helper behind, or a service with no core): here, now
                    point.future, point.result = None, background.evaluate_here(point.weights)
                elif point.future is not None and (must or point.future.done()):
                    point.result = point.future.result()
                elif point.future is None and must:  # nothing in flight: the helper is idle
                    point.result = background.evaluate_here(point.weights)
                else:
                    break
            points.popleft()
            if not self.add_point(point.update, *point.result, snapshot=point.snapshot):
                for later in points:
                    if later.future is not None:
                        later.future.cancel()
                points.clear()
                for run, _, end in self.late:  # diverged before they ended: end them as it did
                    self.ends.setdefault(end, []).append(run)
                self.late.clear()
                self.applied = point.update
                self.stepper.model.load_state_dict(point.weights)
                return False
        if not points:
            self.end_late()
        return True
