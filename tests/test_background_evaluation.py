"""Evaluations beside the training (``train_run(background_evaluation=True)``), on a helper
thread or in an evaluation service (``training.service``, here on a thread of this process,
reached through a real connection): the same result as in line -- curves, internals,
divergence, restored weights, shorter runs -- and the evaluations really run where they should
(tiny data)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client

import numpy as np
import pytest
from tiny_mnist import PoisonedBatches, tiny_datasets

from numnet.core import runtime
from numnet.core.errors import NumnetError
from numnet.lab import training
from numnet.lab.training import RunSpec, loop, service, stepper, train_run
from numnet.lab.training.background import RemoteEvaluator

DATA = tiny_datasets()  # 550 train, 50 validation, 200 test
TIMING = ("wall_time", "updates_per_second", "internals_time")


@pytest.fixture(autouse=True)
def two_threads():
    """Background evaluation happens where numnet may use more than one thread."""
    with runtime.threads(2):
        yield


def spec_of(**kw) -> RunSpec:
    base = dict(model="model4", epochs=2, lr=0.003, batch_size=10, eval_every=10,
                eval_train_examples=110, eval_test_examples=200, eval_batch_size=64, seed=5)
    return RunSpec(**{**base, **kw})


@contextlib.contextmanager
def serving(on: bool = True):
    """An evaluation service on this process's data, and its address (None when not ``on``)."""
    if not on:
        yield None
        return
    with service.EvaluationService(DATA) as running:
        yield running.address


def both(spec: RunSpec, make_stepper=None, defer: bool = False, remote: bool = False,
         **kw) -> tuple[dict, dict, list, list]:  # fmt: skip
    """The run in line and beside (deferred with ``defer``; in an evaluation service with
    ``remote``): their records (timing aside) and final weights."""
    out = []
    for background in (False, True):
        stepper = make_stepper() if make_stepper else None
        with serving(remote and background) as address:
            result = train_run(spec, DATA, background_evaluation=background, stepper=stepper,
                               defer_evaluations=defer and background,
                               evaluation_service=address, **kw)
        record = {k: v for k, v in result.to_dict().items() if k not in TIMING}
        out.append((record, [p.value.copy() for p in result.model.parameters()]))
    (a, wa), (b, wb) = out
    return a, b, wa, wb


def watch_evaluations(monkeypatch, evaluate) -> None:
    """Every evaluation of a run goes through ``evaluate``: those made in line (the stepper's)
    and those on a copy of the weights (the helper's, the service's, the training thread's
    own)."""
    monkeypatch.setattr(stepper, "evaluate", evaluate)
    monkeypatch.setattr(loop, "evaluate", evaluate)


def assert_same_weights(wa: list, wb: list) -> None:
    assert all(np.array_equal(x, y) for x, y in zip(wa, wb, strict=True))


WHERE = [{"defer": False}, {"defer": True}, {"remote": True}]


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("model", ["model2", "model4"])
def test_a_run_evaluated_beside_equals_the_run_evaluated_in_line(model: str, where) -> None:
    a, b, wa, wb = both(spec_of(model=model), **where)
    assert a["status"] == "ok" and a["evaluations"] == 11
    assert a["internals"]["update"] == b["internals"]["update"] == list(range(10, 111, 10))
    assert a == b
    assert_same_weights(wa, wb)


def test_the_evaluations_run_on_the_helper_thread(monkeypatch) -> None:
    names: list[str] = []

    def evaluate(*args):
        names.append(threading.current_thread().name)
        return training.evaluate(*args)

    watch_evaluations(monkeypatch, evaluate)
    train_run(spec_of(model="model1", epochs=1), DATA, background_evaluation=True)
    # 5 curve points, train and test sets each, beside; the final weights' in line
    assert sum(name.startswith("numnet-eval") for name in names) == 10
    names.clear()
    train_run(spec_of(model="model1", epochs=1), DATA)  # in line: background not asked for
    assert names and not any(name.startswith("numnet-eval") for name in names)
    names.clear()
    with runtime.threads(1):  # asked for, but one thread: in line
        train_run(spec_of(model="model1", epochs=1), DATA, background_evaluation=True)
    assert names and not any(name.startswith("numnet-eval") for name in names)


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("at", [7, 10, 37])
def test_a_non_finite_training_loss_stops_both_at_the_same_update(at: int, where) -> None:
    spec = spec_of(model="model2")
    out = []
    for bg in (False, True):
        with serving(bg and where.get("remote", False)) as address:
            out.append(train_run(
                spec, DATA, background_evaluation=bg,
                defer_evaluations=bg and where.get("defer", False), evaluation_service=address,
                batch_source=PoisonedBatches(training.make_batch_source(spec, DATA.train), at)))
    a, b = ({k: v for k, v in r.to_dict().items() if k not in TIMING} for r in out)
    assert a["status"] == "diverged" and a["diverged_at_update"] == at
    assert a == b


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("where", WHERE)
def test_a_non_finite_evaluation_loss_ends_the_run_there_with_its_weights(where,
                                                                         threads: int) -> None:
    """Update 30 leaves a finite weight so large that every logit overflows: the evaluation of
    update 30 is not finite. In line the run stops there; beside, it has trained on (the loss
    hidden) when the evaluation comes back, so it ends at update 30 with the weights kept."""
    spec = spec_of(model="model2")
    with runtime.threads(threads):
        a, b, wa, wb = both(spec, diverging_at_30(spec), **where)
    assert (a["status"], a["diverged_at_update"], a["updates"]) == ("diverged", 30, 30)
    assert a["divergence_reason"] == "non-finite evaluation loss"
    assert a["evaluations"] == 2
    assert a == b
    assert_same_weights(wa, wb)
    assert wa[0].max() == np.float32(3e38)  # the weights of update 30, not of a later one


def diverging_at_30(spec: RunSpec):
    """A stepper factory: update 30 leaves a weight that makes every logit overflow, and the
    batch losses from there on are hidden (0)."""

    def make_stepper():
        model = training.build_model(spec)

        class Stepper(training.NumnetStepper):
            updates = 0

            def update(self) -> None:
                super().update()
                self.updates += 1
                if self.updates == 30:
                    self.model.parameters()[0].value[...] = np.float32(3e38)

            def loss(self, x, y):  # hides the overflow from the batch loss
                return 0.0 if self.updates >= 30 else super().loss(x, y)

        return Stepper(model, spec.lr, spec.reduction)

    return make_stepper


@pytest.mark.parametrize("remote", [False, True])
@pytest.mark.parametrize("threads", [1, 2])
def test_a_divergence_found_late_ends_the_waiting_shorter_run_as_in_line(threads: int,
                                                                         remote: bool) -> None:
    """Deferred, the evaluation of update 30 comes back after the shorter run's last update
    (56): the shorter run must end diverged at update 30, as in line."""
    spec = spec_of(model="model2", epochs=2)
    shorter = dataclasses.replace(spec, epochs=1)
    ends: list[list] = [[], []]
    for k, background in enumerate((False, True)):
        def keep(result, k=k):
            ends[k].append({k: v for k, v in result.to_dict().items() if k not in TIMING})
        with runtime.threads(threads), serving(remote and background) as address:
            train_run(spec, DATA, shorter=[shorter], on_shorter=keep,
                      stepper=diverging_at_30(spec)(), background_evaluation=background,
                      defer_evaluations=background, evaluation_service=address)
    (a,), (b,) = ends
    assert (a["status"], a["diverged_at_update"]) == ("diverged", 30)
    assert a == b


@pytest.mark.parametrize(("where", "threads"), [({"defer": False}, 2), ({"defer": True}, 2),
                                               ({"defer": True}, 1), ({"remote": True}, 1)])
def test_shorter_runs_end_the_same_beside_and_in_line(where, threads: int) -> None:
    """Beside, a shorter run ends at its last update; deferred, once its points are settled
    (with one thread: at the longer run's end), as the same result."""
    spec = spec_of(model="model4", epochs=2)
    shorter = dataclasses.replace(spec, epochs=1)
    ends: list[list] = [[], []]
    for k, background in enumerate((False, True)):
        def keep(result, k=k):
            ends[k].append((result.to_dict(), [p.value.copy() for p in result.model.parameters()]))
        with runtime.threads(threads), serving(background and "remote" in where) as address:
            train_run(spec, DATA, shorter=[shorter], on_shorter=keep,
                      background_evaluation=background,
                      defer_evaluations=background and where.get("defer", False),
                      evaluation_service=address)
    ((a, wa),), ((b, wb),) = ends
    assert a["updates"] == training.expected_updates(550, 10, 1) and a["evaluations"] == 5
    assert {k: v for k, v in a.items() if k not in TIMING} == {
        k: v for k, v in b.items() if k not in TIMING}
    assert_same_weights(wa, wb)


@pytest.mark.parametrize("max_deferred", [2, 64])
def test_deferred_points_wait_for_a_free_core_and_change_nothing(monkeypatch,
                                                                max_deferred: int) -> None:
    """One thread, evaluations deferred: no curve point is evaluated while it trains -- each
    waits, at most ``MAX_DEFERRED`` of them, and is evaluated on the training thread when the
    run must settle (its end) or the queue is full -- and the run equals the run in line."""
    monkeypatch.setattr(loop, "MAX_DEFERRED", max_deferred)
    spec = spec_of(model="model2")
    updates = [0]
    seen: list[tuple[int, str]] = []  # (updates done, thread) at each evaluation

    class Counting(training.NumnetStepper):
        def update(self) -> None:
            super().update()
            updates[0] += 1

    def evaluate(*args):
        seen.append((updates[0], threading.current_thread().name))
        return training.evaluate(*args)

    watch_evaluations(monkeypatch, evaluate)
    with runtime.threads(1):
        a, b, wa, wb = both(spec, lambda: Counting(training.build_model(spec), spec.lr,
                                                   spec.reduction), defer=True)
    assert a == b
    assert_same_weights(wa, wb)
    total = training.expected_updates(550, 10, 2)
    deferred = seen[len(seen) // 2:]  # the second run's: 11 points x 2 sets, then the final
    assert all(name == threading.current_thread().name for _, name in deferred)
    done_at = [n - total for n, _ in deferred[:-2]]  # updates of the run's second pass
    if max_deferred >= 11:  # every point waits for the end
        assert all(n == total for n in done_at)
    else:  # the oldest evaluated once more than two wait
        assert min(done_at) < total and done_at == sorted(done_at)


def test_the_progress_of_a_deferred_run_counts_the_points_not_yet_on_the_curve() -> None:
    """A point taken is pending until it is on the curve: the progress says how many, so an
    accuracy older than the update does not pass for the current one; at the end none is."""
    spec = spec_of(model="model1", epochs=2)
    events: list[training.Progress] = []
    with runtime.threads(1):  # no second core: every point waits for the run's end
        result = train_run(spec, DATA, background_evaluation=True, defer_evaluations=True,
                           on_progress=events.append, progress_every=5)
    taken = [e.update // spec.eval_every for e in events]
    assert all(e.evaluations + e.pending <= n for e, n in zip(events, taken, strict=True))
    assert max(e.pending for e in events) == 11  # all of them, as the run settles them
    assert events[-1].done and events[-1].pending == 0
    assert events[-1].evaluations == len(result.test_accuracy) == 11
    in_line: list[training.Progress] = []
    train_run(spec, DATA, on_progress=in_line.append, progress_every=5)
    assert not any(e.pending for e in in_line)


def test_the_service_evaluates_the_points_on_its_own_lowest_priority_thread(monkeypatch) -> None:
    """Every curve point goes to the service as it comes: one thread, the training's, never
    evaluates a point while it trains (no second core); the service's thread does, at Linux's
    SCHED_IDLE where it runs, and the points it did not get to by the end the training
    evaluates itself."""
    seen: list[tuple[str, int | None]] = []  # (thread, its scheduling policy) per evaluation

    def evaluate(*args):
        policy = (os.sched_getscheduler(threading.get_native_id())
                  if service.available() else None)
        seen.append((threading.current_thread().name, policy))
        return training.evaluate(*args)

    watch_evaluations(monkeypatch, evaluate)
    here_first = RemoteEvaluator.evaluate_here

    def slowly(self, weights):  # a fast machine ends the run before the service's first poll
        time.sleep(0.5)
        return here_first(self, weights)

    monkeypatch.setattr(RemoteEvaluator, "evaluate_here", slowly)
    spec = spec_of(model="model1", epochs=2)
    with runtime.threads(1):
        a, b, _, _ = both(spec, remote=True)
    assert a == b
    remote = seen[len(seen) // 2:]  # the second run's: 11 points x 2 sets, then the final
    served = [policy for name, policy in remote if name.startswith("numnet-service")]
    here = [name for name, _ in remote if not name.startswith("numnet-service")]
    # each point once (train and test set), but for the one where the two sides meet: the
    # service may start it as the run takes it (their messages cross), and both evaluate it
    assert 2 * 11 + 2 <= len(served) + len(here) <= 2 * 11 + 2 + 2
    assert served, "the service evaluated no point"
    if service.available():
        assert set(served) == {os.SCHED_IDLE}


def test_a_failing_evaluation_in_the_service_fails_the_run_in_one_line(monkeypatch) -> None:
    class Broken(service.BackgroundEvaluator):  # the service's evaluations only
        def evaluate_here(self, weights):
            raise MemoryError("no room for the evaluation")

    monkeypatch.setattr(service, "BackgroundEvaluator", Broken)
    here = RemoteEvaluator.evaluate_here

    def slowly(self, weights):  # so that the service starts a point before the run takes all
        time.sleep(0.5)
        return here(self, weights)

    monkeypatch.setattr(RemoteEvaluator, "evaluate_here", slowly)
    with serving() as address, pytest.raises(NumnetError) as error:
        train_run(spec_of(model="model1", epochs=1), DATA, background_evaluation=True,
                  evaluation_service=address)
    assert str(error.value) == "evaluation service: MemoryError: no room for the evaluation"


def test_a_client_with_the_wrong_key_is_refused_and_the_service_serves_on() -> None:
    spec = spec_of(model="model1", epochs=1)
    alone = train_run(spec, DATA).to_dict()
    with serving() as address:
        with pytest.raises(AuthenticationError):
            Client(address[0], authkey=b"not the key")
        served = train_run(spec, DATA, background_evaluation=True,
                           evaluation_service=address).to_dict()
    assert ({k: v for k, v in alone.items() if k not in TIMING}
            == {k: v for k, v in served.items() if k not in TIMING})
