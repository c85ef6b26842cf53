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
from numnet.core.losses import softmax_cross_entropy
from numnet.core.optim import SGD
from numnet.lab.training.background import (
    MAX_DEFERRED,
    BackgroundEvaluator,
    CurvePoint,
    RemoteEvaluator,
    ServiceAddress,
)
from numnet.lab.training.internals import (
    PROBE_EXAMPLES,
    InternalsRecorder,
    numnet_probabilities,
    numnet_snapshot,
)
from numnet.lab.training.spec import STATUS_DIVERGED, STATUS_OK, Progress, RunResult, RunSpec

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


# ------------------------------------------------------------------------------ evaluation


def evaluate(model: Any, x: Any, y: Any, batch_size: int = 1000) -> tuple[float, float]:
    """``(accuracy, mean cross-entropy)`` of ``model`` on images ``x`` (n, 784) and one-hot
    labels ``y`` (n, 10), the loss summed in chunks of ``batch_size`` (no training caches
    kept).

    One evaluation forward over all of ``x``: the model cuts it into its own chunks
    (``Sequential.eval_chunk`` rows) and spreads them over the runtime's lanes, so a helper
    thread wakes once per evaluation rather than once per chunk. A row's logits do not depend
    on the chunking, and the loss is summed chunk by chunk as before."""
    xp = backend.array_module(x)
    n = len(x)
    correct = 0
    loss_sum = 0.0
    every_logit = model.forward(x, train=False)
    for start in range(0, n, batch_size):
        logits, yb = every_logit[start : start + batch_size], y[start : start + batch_size]
        correct += int(xp.sum(xp.argmax(logits, axis=1) == xp.argmax(yb, axis=1)))
        loss, _ = softmax_cross_entropy(logits, yb, reduction="sum")
        loss_sum += float(loss)
    return correct / n, loss_sum / n


def evaluation_sets(spec: RunSpec, data: Datasets, device: str = "cpu"
                    ) -> tuple[Any, Any, Any, Any]:  # fmt: skip
    """``(x_tr, y_tr, x_te, y_te)``: the examples a run's curve points are evaluated on, as
    the protocol says (docs/protocol.md §6) -- the first ``spec.eval_train_examples`` of train
    in file order and the first ``spec.eval_test_examples`` of test; images ``(n, 784)`` in
    the run's dtype, one-hot labels ``(n, 10)``, on ``device``."""
    dtype = np.dtype(spec.dtype)
    n_tr, n_te = spec.eval_train_examples, spec.eval_test_examples
    return (backend.to_device(data.train.images[:n_tr].astype(dtype, copy=False), device),
            backend.to_device(data.train.labels[:n_tr], device),
            backend.to_device(data.test.images[:n_te].astype(dtype, copy=False), device),
            backend.to_device(data.test.labels[:n_te], device))


def parameters_finite(model: Any) -> bool:
    """True when every parameter value of ``model`` is finite."""
    for p in model.parameters():
        xp = backend.array_module(p.value)
        if not bool(xp.isfinite(p.value).all()):
            return False
    return True


# ------------------------------------------------------------------------------ the step


class NumnetStepper:
    """numnet's training step, as :func:`train_run` drives it.

    A *stepper* is what the loop needs from an implementation: ``loss(x, y)`` (forward and loss
    of a training batch, a Python float; keeps what the update needs), ``update()`` (backward
    and one SGD step for that batch), ``parameters_finite()``, ``evaluate(x, y, batch_size)``
    -> ``(accuracy, mean loss)``, and a ``model`` attribute; for the run's internals (optional:
    the loop records them when the stepper has them) ``internals(x_probe)`` -> one snapshot
    (``numnet.lab.training.internals``) and ``probabilities(x, batch_size)`` -> softmax
    probabilities ``(N, 10)`` as a NumPy array. ``numnet compare`` passes a
    PyTorch stepper (``numnet.lab.reference_torch.ReferenceTrainer``) so that both implementations
    run through this same loop, batches, evaluations and divergence rule.
    """

    def __init__(self, model: Any, lr: float, reduction: str) -> None:
        self.model = model
        self.optimizer = SGD(model.parameters(), lr)
        self.reduction = reduction
        self._dlogits: Any = None

    def loss(self, x: Any, y: Any) -> float:
        logits = self.model.forward(x)
        loss, self._dlogits = softmax_cross_entropy(logits, y, reduction=self.reduction)
        return float(loss)

    def update(self) -> None:
        self.model.backward(self._dlogits)
        self.optimizer.step()

    def parameters_finite(self) -> bool:
        return parameters_finite(self.model)

    def evaluate(self, x: Any, y: Any, batch_size: int) -> tuple[float, float]:
        return evaluate(self.model, x, y, batch_size)

    def internals(self, x_probe: Any) -> dict[str, Any]:
        return numnet_snapshot(self.model, x_probe)

    def probabilities(self, x: Any, batch_size: int) -> Any:
        return numnet_probabilities(self.model, x, batch_size)


def evaluate_final_weights(stepper: Any, update: int, samples: list[int],
                           curves: dict[str, list[float]], spec: RunSpec,
                           sets: tuple[Any, Any, Any, Any]) -> dict[str, Any]:
    """The evaluation of the weights after the last update (those saved and used by
    ``predict``), on the curves' examples ``sets = (x_tr, y_tr, x_te, y_te)``:
    ``{"update", "train_accuracy", "test_accuracy", "train_loss", "test_loss"}``. When the last
    update was also the last curve point that point is reused (same weights, same numbers)."""
    if samples and samples[-1] == update * spec.batch_size:
        tr_acc, te_acc = curves["tr_acc"][-1], curves["te_acc"][-1]
        tr_loss, te_loss = curves["tr_loss"][-1], curves["te_loss"][-1]
    else:
        x_tr, y_tr, x_te, y_te = sets
        tr_acc, tr_loss = stepper.evaluate(x_tr, y_tr, spec.eval_batch_size)
        te_acc, te_loss = stepper.evaluate(x_te, y_te, spec.eval_batch_size)
    return {"update": update, "train_accuracy": tr_acc, "test_accuracy": te_acc,
            "train_loss": tr_loss, "test_loss": te_loss}


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
    backend.xp_for(device)  # a clear error before any work when the device is unavailable
    init_seed, shuffle_seed = child_seeds(spec.seed)
    if stepper is None:
        model = initial_model if initial_model is not None else build_model(spec)
        if device != "cpu":
            model.to(device)
        stepper = NumnetStepper(model, spec.lr, spec.reduction)
    train = batch_source if batch_source is not None else make_batch_source(spec, data.train)

    dtype = np.dtype(spec.dtype)
    x_tr, y_tr, x_te, y_te = evaluation_sets(spec, data, device)

    recorder = None
    if spec.internals and hasattr(stepper, "internals"):
        # a fixed probe: the first train examples in file order
        x_probe = backend.to_device(
            data.train.images[:PROBE_EXAMPLES].astype(dtype, copy=False), device)
        recorder = InternalsRecorder(spec.lr, x_probe)
        recorder.record_start(stepper, 0)

    total = expected_updates(train.num_examples, spec.batch_size, spec.epochs)
    ends: dict[int, list[RunSpec]] = {}  # update -> the shorter runs whose last update it is
    for other in shorter:
        if prefix_key(other) != prefix_key(spec) or other.epochs > spec.epochs:
            raise ValueError(f"{other.run_id} is not a prefix of {spec.run_id}")
        end = expected_updates(train.num_examples, other.batch_size, other.epochs)
        ends.setdefault(end, []).append(other)
    samples: list[int] = []
    curves: dict[str, list[float]] = {k: [] for k in ("tr_acc", "te_acc", "tr_loss", "te_loss")}
    status, diverged_at, reason = STATUS_OK, None, None

    # Training loss per example since the last report (the progress bar shows it).
    per_example = 1.0 / spec.batch_size if spec.reduction == "sum" else 1.0
    loss_window = [0.0, 0]

    def report(i: int, done: bool = False) -> None:
        if on_progress is not None:
            total_loss, count = loss_window
            loss_window[:] = [0.0, 0]
            on_progress(Progress(
                spec, i, total, len(samples),
                curves["tr_acc"][-1] if samples else None,
                curves["te_acc"][-1] if samples else None,
                time.perf_counter() - start, done,
                train_loss=total_loss / count * per_example if count else None,
            ))

    def finish(run: RunSpec, model: Any, update: int | None = None,
               on: Any = None) -> RunResult:  # fmt: skip
        """The result of ``run`` ending now (this run, or a shorter one at its last update):
        the curves so far, the final model's evidence and the final weights' evaluation.
        ``update`` (default: the last applied) and ``on`` (default: the run's stepper) are
        those of a shorter run ended later than its last update (its points waited)."""
        update = applied if update is None else update
        on = stepper if on is None else on
        run_status, run_diverged_at, run_reason = status, diverged_at, reason
        final_weights = None
        if run_status == STATUS_OK:
            final_weights = evaluate_final_weights(on, update, samples, curves, run,
                                                   (x_tr, y_tr, x_te, y_te))
            if not (np.isfinite(final_weights["train_loss"])
                    and np.isfinite(final_weights["test_loss"])):
                run_status, run_diverged_at = STATUS_DIVERGED, update
                run_reason, final_weights = "non-finite final weights", None
        evidence = None
        if recorder is not None and run_status == STATUS_OK and hasattr(on, "probabilities"):
            evidence = recorder.final(on, x_te, y_te, run.eval_batch_size, update)
        return RunResult(
            spec=run,
            status=run_status,
            updates=update,
            samples=list(samples),
            train_accuracy=list(curves["tr_acc"]),
            test_accuracy=list(curves["te_acc"]),
            train_loss=list(curves["tr_loss"]),
            test_loss=list(curves["te_loss"]),
            init_seed=init_seed,
            shuffle_seed=shuffle_seed,
            diverged_at_update=run_diverged_at,
            divergence_reason=run_reason,
            wall_time=time.perf_counter() - start,
            final_weights=final_weights,
            model=model,
            internals=recorder.to_dict() if recorder is not None else None,
            internals_time=recorder.seconds if recorder is not None else 0.0,
            final_model=evidence,
        )

    # shorter runs past their last update whose curve points wait: (run, its model, update)
    late: list[tuple[RunSpec, Any, int]] = []

    def end_shorter(runs: list[RunSpec], wait: bool = False) -> None:
        """End ``runs`` at this update; with ``wait``, once their curve points are settled."""
        for run in runs:
            copy = build_model(run)  # a model of its own: this run trains on in place
            if device != "cpu":
                copy.to(device)
            copy.load_state_dict(stepper.model.state_dict())
            if wait:
                late.append((run, copy, applied))
            else:
                shorter_ended(finish(run, copy))

    def shorter_ended(result: RunResult) -> None:
        result.shared_with = spec.run_id
        if on_shorter is not None:
            on_shorter(result)

    def end_late(before: int | None = None) -> None:
        """End the waiting shorter runs whose points are all on the curve: those whose last
        update is before ``before`` (None: every one)."""
        while late and (before is None or late[0][2] < before):
            run, copy, update = late.pop(0)
            on = NumnetStepper(copy, run.lr, run.reduction)
            shorter_ended(finish(run, copy, update, on))

    # Evaluations run beside the training (numnet's stepper on the CPU, when asked, whenever
    # the run may use more than one thread -- a worker's share grows once a core is idle), or
    # wait for a free core (defer_evaluations): the points not yet on the curve are settled --
    # put on the curve, or found diverged and the weights restored -- in update order, before
    # anything that depends on them (training.background).
    background = None
    if background_evaluation and isinstance(stepper, NumnetStepper) and device == "cpu":
        sets = (x_tr, y_tr, x_te, y_te)
        background = (
            BackgroundEvaluator(stepper.model, evaluate, sets, spec.eval_batch_size)
            if evaluation_service is None else
            RemoteEvaluator(stepper.model, evaluate, sets, spec.eval_batch_size, spec,
                            evaluation_service))
    defer = background is not None and (defer_evaluations or evaluation_service is not None)
    points: deque[CurvePoint] = deque()  # evaluated (or to be), not yet on the curve

    def add_point(update: int, tr_acc: float, tr_loss: float, te_acc: float, te_loss: float,
                  snapshot: Any = None) -> bool:
        """The evaluation of update ``update`` on the curve; False (the run diverged there)
        when a loss is not finite."""
        nonlocal status, diverged_at, reason
        if not (np.isfinite(tr_loss) and np.isfinite(te_loss)):
            status, diverged_at, reason = STATUS_DIVERGED, update, "non-finite evaluation loss"
            return False
        samples.append(update * spec.batch_size)
        curves["tr_acc"].append(tr_acc)
        curves["te_acc"].append(te_acc)
        curves["tr_loss"].append(tr_loss)
        curves["te_loss"].append(te_loss)
        if recorder is not None:
            recorder.append(snapshot if snapshot is not None else recorder.snapshot(stepper),
                            update)
        report(max(update, applied))
        return True

    def hand_over() -> None:
        """The waiting points to the helper, oldest first, when it has a core of its own
        now."""
        if background is not None and background.has_core():
            for point in points:
                if point.future is None and point.result is None:
                    point.future = background.submit(point.weights)

    def settle(keep: int | None = 0) -> bool:
        """Put the evaluated points on the curve, in update order: every point (``keep`` 0),
        the finished ones (None), or enough of the oldest that at most ``keep`` wait. False
        when one found the run diverged: the run then ends at its update, with its weights.
        Deferred, settling every point, this thread evaluates the newest ones that no helper
        has started while the helper works from the oldest; a shorter run whose points the
        helper has put on the curve meanwhile ends between two of them (its end -- saving,
        figures -- overlaps the helper's work). Shorter runs whose points are all on the
        curve end here."""
        hand_over()
        if keep == 0 and defer:  # the newest here, while the helper works from the oldest
            for point in reversed(list(points)):
                if point.result is not None:
                    continue
                report(applied)  # the progress callback also updates this run's thread share
                hand_over()  # a core may have become free meanwhile
                if point.future is not None and not point.future.cancel():
                    break  # the helper has it, and every older one
                point.future, point.result = None, background.evaluate_here(point.weights)
                if late and not put_on_curve(None):
                    return False
        return put_on_curve(keep)

    def put_on_curve(keep: int | None) -> bool:
        """:func:`settle`'s second half: the points on the curve, oldest first, waiting for
        (or making) their evaluations as ``keep`` says."""
        nonlocal applied
        while points:
            point = points[0]
            end_late(before=point.update)
            must = keep is not None and len(points) > keep
            if point.result is None:
                if defer and must and point.future is not None and point.future.cancel():
                    # not started (a helper behind, or a service with no core): here, now
                    point.future, point.result = None, background.evaluate_here(point.weights)
                elif point.future is not None and (must or point.future.done()):
                    point.result = point.future.result()
                elif point.future is None and must:  # nothing in flight: the helper is idle
                    point.result = background.evaluate_here(point.weights)
                else:
                    break
            points.popleft()
            if not add_point(point.update, *point.result, snapshot=point.snapshot):
                for later in points:
                    if later.future is not None:
                        later.future.cancel()
                points.clear()
                for run, _, end in late:  # diverged before they ended: end them as it did
                    ends.setdefault(end, []).append(run)
                late.clear()
                applied = point.update
                stepper.model.load_state_dict(point.weights)
                return False
        if not points:
            end_late()
        return True

    start = time.perf_counter()
    i = 0
    applied = 0
    # Overflow in a diverging run is expected and detected below; keep it out of the warnings.
    # BLAS on one thread for the whole run, set here on the calling thread: OpenBLAS takes its
    # thread count from the thread that sets it, and the evaluation helper's own sets would
    # not hold -- its GEMMs must round as the in-line evaluation's do.
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"), \
                runtime.single_threaded_blas():
            while train.epochs_completed < spec.epochs:
                i += 1
                x, y = train.next_batch(spec.batch_size)
                if device != "cpu" or x.dtype != dtype:
                    x = backend.to_device(x.astype(dtype, copy=False), device)
                    y = backend.to_device(y, device)
                batch_loss = stepper.loss(x, y)
                if not np.isfinite(batch_loss):
                    if settle():
                        status, diverged_at, reason = (STATUS_DIVERGED, i,
                                                       "non-finite training loss")
                    break
                loss_window[0] += batch_loss
                loss_window[1] += 1
                stepper.update()
                applied = i
                if i == 1 and recorder is not None:
                    recorder.record_start(stepper, 1)
                if i % spec.eval_every == 0:
                    if not settle(None if defer else 0):
                        break
                    if not stepper.parameters_finite():
                        if settle():  # an earlier point may have diverged first
                            status, diverged_at, reason = (STATUS_DIVERGED, i,
                                                           "non-finite parameters")
                        break
                    if defer or (background is not None and runtime.get_threads() > 1):
                        snapshot = recorder.snapshot(stepper) if recorder is not None else None
                        points.append(CurvePoint(i, stepper.model.state_dict(), snapshot))
                        if not settle(MAX_DEFERRED):
                            break
                    else:
                        tr_acc, tr_loss = stepper.evaluate(x_tr, y_tr, spec.eval_batch_size)
                        te_acc, te_loss = stepper.evaluate(x_te, y_te, spec.eval_batch_size)
                        if not add_point(i, tr_acc, tr_loss, te_acc, te_loss):
                            break
                elif i % progress_every == 0:
                    report(i)
                if i in ends:
                    if defer:  # its points keep waiting; it ends when they are settled
                        end_shorter(ends.pop(i), wait=True)
                    elif not settle():
                        break
                    else:
                        end_shorter(ends.pop(i))
            if background is not None:
                background.training_done()
            settle()
            for end in sorted(ends):  # diverged before these ended: so would they have, alone
                end_shorter(ends.pop(end))
            result = finish(spec, stepper.model)
    finally:
        if background is not None:
            background.close()
    wall = time.perf_counter() - start
    report(applied, done=True)
    result.wall_time = wall
    return result
