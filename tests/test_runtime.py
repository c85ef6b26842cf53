"""numnet.core.runtime: thread counts, evaluation lanes whose helpers give work
back, BLAS held to one thread, ``threads(n)`` and a bad NUMNET_THREADS that never breaks an
import. Results must be bit-identical for any thread count."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from numnet.core import runtime
from numnet.core.errors import NumnetError, ThreadsError
from numnet.core.kernels import fast, fused
from numnet.core.models import build


@pytest.fixture
def threads_restored():
    before = runtime.get_threads()
    yield
    runtime.set_threads(before)


def _fused_step(act: str | None) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(11)
    x = rng.standard_normal((5, 8, 6, 3))
    dz = rng.standard_normal((5, 4, 3, 4))
    w = np.random.default_rng(12).standard_normal((3, 3, 3, 4))
    b = np.random.default_rng(13).standard_normal(4)
    ws = fast.Workspace()
    dw, db = np.zeros_like(w), np.zeros_like(b)
    z, cache = fused.convpool2x2_forward(x, w, b, act, workspace=ws)
    dx, _, _ = fused.convpool2x2_backward(dz, cache, workspace=ws, dw=dw, db=db)
    return z, dx, dw, db


@pytest.mark.parametrize("act", [None, "tanh"])
def test_fused_step_is_identical_on_1_2_and_3_threads(threads_restored, act):
    results = []
    for n in (1, 2, 3):
        runtime.set_threads(n)
        results.append(_fused_step(act))
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            np.testing.assert_array_equal(a, b)


def test_model4_training_is_identical_for_any_thread_count(threads_restored) -> None:
    """A protocol-sized batch of 100 through two SGD steps."""
    from numnet.core.losses import softmax_cross_entropy

    rng = np.random.default_rng(0)
    x = rng.random((100, 784), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 100)]
    runs = []
    for n in (1, 2, 3):
        runtime.set_threads(n)
        model = build("model4", seed=0)
        for _ in range(2):
            _, d = softmax_cross_entropy(model.forward(x), y)
            model.backward(d)
            for p in model.parameters():
                p.value -= np.float32(1e-3) * p.grad
        runs.append(model.state_dict())
    for other in runs[1:]:
        for name, value in runs[0].items():
            np.testing.assert_array_equal(value, other[name], err_msg=name)


def test_split_rows_depends_on_sizes_only() -> None:
    assert runtime.split_rows(1000, 256) == [(0, 250), (250, 500), (500, 750), (750, 1000)]
    assert runtime.split_rows(10, 4) == [(0, 4), (4, 7), (7, 10)]
    assert runtime.split_rows(3, 500) == [(0, 3)]
    assert runtime.split_rows(0, 500) == [(0, 0)]


@pytest.mark.parametrize("name", ["model2", "model4"])
def test_evaluation_is_identical_for_any_thread_count(threads_restored, name) -> None:
    """An evaluation in chunks on 1, 2 and 3 lanes: the same logits, bit for bit; and a
    training step after it is not disturbed by the lanes' buffers."""
    from numnet.core.losses import softmax_cross_entropy

    rng = np.random.default_rng(3)
    x = rng.random((1000, 784), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 100)]
    logits, grads = [], []
    for n in (1, 2, 3):
        runtime.set_threads(n)
        model = build(name, seed=0)
        model.eval_chunk = 96  # 11 chunks: every lane gets some
        _, d = softmax_cross_entropy(model.forward(x[:100]), y)
        logits.append(model.predict(x))
        model.backward(d)
        grads.append({k: p.grad.copy() for k, p in model.named_parameters()})
    for other, other_grads in zip(logits[1:], grads[1:], strict=True):
        np.testing.assert_array_equal(logits[0], other)
        for k, g in grads[0].items():
            np.testing.assert_array_equal(g, other_grads[k], err_msg=k)
    model.eval_chunk = None  # one pass: the same logits within float rounding
    np.testing.assert_allclose(model.predict(x), logits[0], rtol=1e-5, atol=1e-5)


def test_run_lanes_runs_every_index_once_with_lanes_named(threads_restored) -> None:
    runtime.set_threads(3)
    seen: list[tuple[int, int]] = []
    lock = threading.Lock()

    def chunk(k: int) -> None:
        with lock:
            seen.append((k, runtime.current_lane()))

    runtime.run_lanes(chunk, 20)
    assert sorted(k for k, _ in seen) == list(range(20))
    assert {lane for _, lane in seen} <= {0, 1, 2}
    assert runtime.current_lane() == 0  # outside run_lanes


def test_lanes_keep_their_own_buffers(threads_restored) -> None:
    ws = fast.Workspace()
    runtime.set_threads(2)
    seen: dict[int, int] = {}

    def chunk(k: int) -> None:
        seen[runtime.current_lane()] = id(ws.get("buf", (3,), np.float32, np))

    runtime.run_lanes(chunk, 8)
    assert len(set(seen.values())) == len(seen)  # one buffer per lane that ran


def test_an_error_in_a_lane_is_raised(threads_restored) -> None:
    runtime.set_threads(2)

    def chunk(k: int) -> None:
        if k == 3:
            raise RuntimeError("chunk 3 failed")

    with pytest.raises(RuntimeError, match="chunk 3 failed"):
        runtime.run_lanes(chunk, 10)
    runtime.run_lanes(lambda k: None, 4)  # the lanes still work afterwards


def test_chunks_are_taken_back_from_a_busy_helper(threads_restored) -> None:
    """run_lanes: chunks that no helper thread has started are run by the caller."""
    rt = runtime.RUNTIME
    if not rt.blas_controllers():
        pytest.skip("threadpoolctl cannot hold BLAS to one thread here: no helper thread")
    runtime.set_threads(2)
    blocker = threading.Event()
    runtime.run_lanes(lambda k: None, 2)  # make sure the helper pool exists
    rt._helpers(1).submit(blocker.wait)  # keep its one helper busy
    done = []
    runtime.run_lanes(lambda k: done.append((k, threading.current_thread().name)), 3)
    blocker.set()
    assert sorted(k for k, _ in done) == [0, 1, 2]
    assert {name for _, name in done} == {threading.current_thread().name}


def test_single_threaded_blas_restores_the_count() -> None:
    libs = runtime.RUNTIME.blas_controllers()
    if not libs:
        pytest.skip("threadpoolctl cannot see a BLAS library here")
    before = [lib.num_threads for lib in libs]
    with runtime.single_threaded_blas():
        with runtime.single_threaded_blas():  # re-entrant
            assert all(lib.num_threads == 1 for lib in libs)
        assert all(lib.num_threads == 1 for lib in libs)
    assert [lib.num_threads for lib in libs] == before


def test_thread_counts_are_checked(threads_restored) -> None:
    runtime.set_threads(5)  # no cap at two
    assert runtime.get_threads() == 5
    for bad in (0, -1, 1.5, "2", True, None):
        with pytest.raises(ThreadsError, match="positive integer"):
            runtime.set_threads(bad)
    assert runtime.get_threads() == 5
    with pytest.raises(ValueError):  # ThreadsError is a ValueError too
        runtime.threads(0)


def test_threads_context_sets_and_restores(threads_restored) -> None:
    runtime.set_threads(1)
    with runtime.threads(3):
        assert runtime.get_threads() == 3
        with runtime.threads(None):
            assert runtime.get_threads() == 3
    assert runtime.get_threads() == 1


def test_environment_threads(monkeypatch) -> None:
    monkeypatch.delenv(runtime.ENV_VAR, raising=False)
    assert runtime.environment_threads() is None and runtime.environment_problem() is None
    assert runtime.default_threads() == runtime.available_cores()
    monkeypatch.setenv(runtime.ENV_VAR, " 3 ")
    assert runtime.environment_threads() == 3 and runtime.default_threads() == 3
    for bad in ("abc", "", "0", "-2", "1.5"):
        monkeypatch.setenv(runtime.ENV_VAR, bad)
        with pytest.raises(NumnetError, match="NUMNET_THREADS must be a positive integer"):
            runtime.environment_threads()
        assert f"got {bad!r}" in runtime.environment_problem()
        assert runtime.default_threads() == runtime.available_cores()


@pytest.mark.parametrize("value", ["abc", "", "0"])
def test_bad_environment_value_does_not_break_the_import(value: str) -> None:
    env = {**os.environ, runtime.ENV_VAR: value}
    code = (
        "from numnet.core import models, runtime; "
        "print(runtime.get_threads() == runtime.available_cores(), "
        "runtime.environment_problem() is not None, models.build('model1').kernels)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["True", "True", "fast"]


def test_single_lane_keeps_every_chunk_on_the_calling_thread(threads_restored) -> None:
    runtime.set_threads(4)
    seen: list[tuple[int, str]] = []
    with runtime.single_lane():
        runtime.run_lanes(lambda k: seen.append((k, threading.current_thread().name)), 6)
        assert runtime.current_lane() == 0
    assert [k for k, _ in seen] == list(range(6))
    assert {name for _, name in seen} == {threading.current_thread().name}
    assert getattr(runtime._LOCAL, "lane", None) is None  # restored
