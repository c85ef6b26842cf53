"""One run: the protocol's loop counts, evaluation, divergence, seeds and determinism (tiny
data)."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from tiny_mnist import PoisonedBatches, tiny_datasets

from numnet.core.datasets import DataSet
from numnet.lab import training
from numnet.lab.training import RunResult, RunSpec, train_run

DATA = tiny_datasets()  # 550 train, 50 validation, 200 test


def tiny_spec(**kw) -> RunSpec:
    base = dict(model="model1", epochs=2, lr=0.01, batch_size=10, eval_every=10,
                eval_train_examples=110, eval_test_examples=200, eval_batch_size=64, seed=3)
    return RunSpec(**{**base, **kw})


def strip(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in ("wall_time", "updates_per_second")}


@pytest.mark.parametrize("epochs", [1, 5, 15, 40])
def test_spec_counts_for_mnist_sizes(epochs: int) -> None:
    assert training.expected_updates(55000, 100, epochs) == 550 * epochs + 1
    assert training.expected_evaluations(55000, 100, epochs, 200) == (550 * epochs + 1) // 200


@pytest.mark.parametrize(("n", "b", "epochs"), [(57, 10, 3), (55, 10, 2), (10, 10, 2), (7, 3, 4)])
def test_expected_updates_matches_next_batch(n: int, b: int, epochs: int) -> None:
    ds = DataSet(np.zeros((n, 784), np.float32), np.zeros((n, 10), np.float32), seed=0)
    calls = 0
    while ds.epochs_completed < epochs:
        ds.next_batch(b)
        calls += 1
    assert training.expected_updates(n, b, epochs) == calls


def test_run_counts_and_curves() -> None:
    spec = tiny_spec(epochs=3, lr=0.001)
    result = train_run(spec, DATA)
    updates = 55 * 3 + 1
    assert result.status == "ok" and result.diverged_at_update is None
    assert result.updates == updates == training.expected_updates(550, 10, 3)
    assert result.evaluations == updates // 10 == 16
    assert result.samples == [10 * 10 * k for k in range(1, 17)]
    for curve in (result.train_accuracy, result.test_accuracy, result.train_loss,
                  result.test_loss):
        assert len(curve) == 16 and all(math.isfinite(v) for v in curve)
    assert all(0 <= a <= 1 for a in result.train_accuracy + result.test_accuracy)
    assert result.test_accuracy[-1] > result.test_accuracy[0] + 0.2  # it learns
    assert result.test_loss[-1] < result.test_loss[0]
    assert result.spec_tuple() == ((3, 0.001), result.train_accuracy, result.test_accuracy)


def test_evaluation_uses_first_train_examples_in_file_order() -> None:
    # 111 updates = 3 x 37: the last evaluation sees the returned (final) model
    result = train_run(tiny_spec(lr=0.001, eval_every=37), DATA)
    assert result.samples[-1] == 10 * result.updates
    model = result.model
    acc, loss = training.evaluate(model, DATA.train.images[:110], DATA.train.labels[:110], 1000)
    assert acc == result.train_accuracy[-1]
    assert loss == pytest.approx(result.train_loss[-1], rel=1e-6)
    # by hand: argmax agreement on the test set, in one chunk
    logits = model.forward(DATA.test.images, train=False)
    by_hand = float(np.mean(logits.argmax(1) == DATA.test.labels.argmax(1)))
    assert result.test_accuracy[-1] == pytest.approx(by_hand, abs=1e-12)
    # chunking does not change the numbers beyond rounding
    acc7, loss7 = training.evaluate(model, DATA.test.images, DATA.test.labels, 7)
    assert acc7 == result.test_accuracy[-1] and loss7 == pytest.approx(result.test_loss[-1])


@pytest.mark.parametrize("at", [1, 10, 37])
def test_divergence_stops_at_the_right_update(at: int) -> None:
    spec = tiny_spec()
    source = PoisonedBatches(training.make_batch_source(spec, DATA.train), at)
    result = train_run(spec, DATA, batches=source)
    assert result.status == "diverged" and result.diverged
    assert result.diverged_at_update == at
    assert result.divergence_reason == "non-finite training loss"
    assert result.updates == at - 1  # the poisoned update is not applied
    assert result.evaluations == (at - 1) // spec.eval_every
    assert source.calls == at  # the loop stopped right there
    # the curves up to the stop are those of the clean run
    clean = train_run(spec, DATA)
    assert result.test_accuracy == clean.test_accuracy[: result.evaluations]


def test_absurd_learning_rate_diverges_after_first_update() -> None:
    # lr 1e38 pushes float32 weights to +-inf in the first update: update 2's loss is NaN.
    result = train_run(tiny_spec(lr=1e38), DATA)
    assert (result.status, result.diverged_at_update, result.updates) == ("diverged", 2, 1)
    assert result.evaluations == 0 and result.final_test_accuracy is None


def test_non_finite_parameters_are_caught_at_evaluation() -> None:
    spec = tiny_spec()
    model = training.build_model(spec)

    class Stepper(training.NumnetStepper):
        updates = 0

        def update(self) -> None:
            super().update()
            Stepper.updates += 1
            if Stepper.updates == 25:  # a parameter the loss check cannot see before update 30
                self.model.parameters()[0].value[0, 0] = np.nan

        def loss(self, x, y):  # the stepper hides the NaN from the batch loss
            return 0.0 if Stepper.updates >= 25 else super().loss(x, y)

    result = train_run(spec, DATA, stepper=Stepper(model, spec.lr, spec.reduction))
    assert (result.status, result.diverged_at_update) == ("diverged", 30)
    assert result.divergence_reason == "non-finite parameters"
    assert result.evaluations == 2


def test_same_seed_same_result_other_seed_differs() -> None:
    spec = tiny_spec(model="model3", epochs=1)
    a, b = train_run(spec, DATA), train_run(spec, DATA)
    assert strip(a.to_dict()) == strip(b.to_dict())
    c = train_run(tiny_spec(model="model3", epochs=1, seed=4), DATA)
    assert c.train_loss != a.train_loss
    assert (c.init_seed, c.shuffle_seed) != (a.init_seed, a.shuffle_seed)


def test_seeds_for_init_and_batch_order_are_documented_functions() -> None:
    spec = tiny_spec(model="model2", epochs=1)
    init_seed, shuffle_seed = training.child_seeds(spec.seed)
    assert init_seed != shuffle_seed
    assert training.child_seeds(spec.seed) == (init_seed, shuffle_seed)
    # the init seed is exactly what models.build receives
    from numnet.core import models

    built = training.build_model(spec)
    direct = models.build("model2", seed=init_seed)
    for (_, p), (_, q) in zip(built.named_parameters(), direct.named_parameters(), strict=True):
        np.testing.assert_array_equal(p.value, q.value)
    # the shuffle seed gives the batch order of the run
    s1, s2 = training.make_batch_source(spec, DATA.train), DataSet(
        DATA.train.images, DATA.train.labels, seed=shuffle_seed)
    for _ in range(60):
        np.testing.assert_array_equal(s1.next_batch(10)[0], s2.next_batch(10)[0])
    # and train_run uses exactly these two
    result = train_run(spec, DATA)
    assert (result.init_seed, result.shuffle_seed) == (init_seed, shuffle_seed)


def test_initial_model_is_trained_in_place_and_data_left_alone() -> None:
    spec = tiny_spec()
    model = training.build_model(spec)
    before = DATA.train.epochs_completed
    result = train_run(spec, DATA, stepper=training.NumnetStepper(model, spec.lr, spec.reduction))
    assert result.model is model
    assert DATA.train.epochs_completed == before


def test_progress_callback() -> None:
    events: list[training.Progress] = []
    result = train_run(tiny_spec(), DATA, plugins=[training.Reporter(events.append, every=5)])
    updates = [e.update for e in events]
    assert updates == sorted(updates)
    assert events[-1].done and events[-1].update == result.updates
    assert all(e.total_updates == 111 for e in events)
    evals = [e for e in events if e.update % 10 == 0 and not e.done]
    assert [e.test_accuracy for e in evals] == result.test_accuracy


def test_round_trips_and_pickling() -> None:
    spec = tiny_spec(setting=2)
    assert spec.run_id == "model1-setting2" and tiny_spec().run_id == "model1-e2-lr0.01"
    assert RunSpec.from_dict(spec.to_dict()) == spec
    assert pickle.loads(pickle.dumps(spec)) == spec
    result = train_run(spec, DATA)
    again = RunResult.from_dict(result.to_dict())
    assert again.to_dict() == result.to_dict()
    assert pickle.loads(pickle.dumps(result)).to_dict() == result.to_dict()


def test_float64_run() -> None:
    result = train_run(tiny_spec(dtype="float64", epochs=1), DATA)
    assert result.status == "ok"
    assert result.model.parameters()[0].value.dtype == np.float64


def test_cuda_without_cupy_is_a_clear_error() -> None:
    from numnet.core import backend

    if backend.cuda_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(RuntimeError, match="cuda"):
        train_run(tiny_spec(), DATA, device="cuda")
