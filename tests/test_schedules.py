"""Learning-rate schedules: PyTorch's StepLR and CosineAnnealingLR where they match, warm-up by
hand-worked values, the constant schedule bit for bit, and bad specs refused in one line."""

from __future__ import annotations

import math

import numpy as np
import pytest

from numnet.core import schedules
from numnet.core.errors import NumnetError, OptimizerError
from numnet.core.layers import Parameter
from numnet.core.names import SCHEDULES
from numnet.core.optim import SGD


def _torch_lrs(make, base_lr: float, total: int) -> list[float]:
    """The lr torch's scheduler gives each of ``total`` updates (stepped once per update)."""
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base_lr)
    scheduler = make(torch.optim.lr_scheduler, opt)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return lrs


def _ours(spec: dict, base_lr: float, total: int) -> list[float]:
    s = schedules.build(spec)
    return [s.lr_at(t, base_lr, total) for t in range(total)]


@pytest.mark.parametrize(("step_size", "gamma"), [(1, 0.9), (7, 0.5), (30, 2.0)])
def test_step_matches_torchs_step_lr(step_size: int, gamma: float) -> None:
    theirs = _torch_lrs(lambda s, o: s.StepLR(o, step_size=step_size, gamma=gamma), 0.1, 100)
    ours = _ours({"type": "step", "step_size": step_size, "gamma": gamma}, 0.1, 100)
    np.testing.assert_allclose(ours, theirs, rtol=1e-13)


@pytest.mark.parametrize(("total", "min_lr"), [(100, 0.0), (37, 1e-4), (1, 0.0)])
def test_cosine_matches_torchs_cosine_annealing(total: int, min_lr: float) -> None:
    theirs = _torch_lrs(lambda s, o: s.CosineAnnealingLR(o, T_max=total, eta_min=min_lr),
                        0.05, total)
    ours = _ours({"type": "cosine", "min_lr": min_lr}, 0.05, total)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-18)


def test_warmup_then_cosine_matches_torchs_linear_then_cosine() -> None:
    """Warm-up over W updates = torch's LinearLR(start_factor=1/W, total_iters=W-1), then
    CosineAnnealingLR over the remaining T - W updates (SequentialLR)."""
    w, total, base = 5, 40, 0.1

    def make(s, o):
        return s.SequentialLR(o, [s.LinearLR(o, start_factor=1 / w, total_iters=w - 1),
                                  s.CosineAnnealingLR(o, T_max=total - w, eta_min=1e-3)], [w])

    theirs = _torch_lrs(make, base, total)
    ours = _ours({"type": "cosine", "min_lr": 1e-3, "warmup_updates": w}, base, total)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_warmup_hand_worked() -> None:
    # W = 4: 0.1 * 1/4, 2/4, 3/4, 4/4; then the schedule from s = 0.
    warm = [0.025, 0.05, 0.075, 0.1]
    assert _ours({"type": "constant", "warmup_updates": 4}, 0.1, 7) == pytest.approx(
        warm + [0.1] * 3, rel=1e-15)
    step = {"type": "step", "step_size": 2, "gamma": 0.5, "warmup_updates": 4}
    assert _ours(step, 0.1, 9) == pytest.approx(warm + [0.1, 0.1, 0.05, 0.05, 0.025], rel=1e-15)
    # cosine over T - W = 4 updates from 0.1 to 0: (1 + cos(pi * s / 4)) / 2 * 0.1
    cosine = _ours({"type": "cosine", "warmup_updates": 4}, 0.1, 8)
    c = math.sqrt(2) / 2
    assert cosine == pytest.approx(warm + [0.1, 0.05 * (1 + c), 0.05, 0.05 * (1 - c)], rel=1e-14)


def test_the_last_warmup_update_is_base_lr_exactly_and_cosine_ends_at_min_lr() -> None:
    s = schedules.build({"type": "cosine", "min_lr": 0.001, "warmup_updates": 3})
    assert s.lr_at(2, 0.1, 10) == 0.1
    assert s.lr_at(10, 0.1, 10) == 0.001 == s.lr_at(50, 0.1, 10)  # past the run: min_lr
    assert s.lr_at(0, 0.1, 2) == 0.1 / 3 and s.lr_at(3, 0.1, 2) == 0.001  # all warm-up


@pytest.mark.parametrize("base_lr", [0.1, np.float64(0.0123), np.float32(0.05), 3])
def test_constant_returns_base_lr_bit_for_bit(base_lr) -> None:
    s = schedules.build({"type": "constant"})
    assert all(s.lr_at(t, base_lr, 10) is base_lr for t in range(12))
    # and SGD fed it makes the protocol's update
    p, q = Parameter(np.ones(3, np.float32)), np.ones(3, np.float32)
    p.grad[...] = q.copy() * 0.3
    opt = SGD([p], lr=base_lr)
    opt.lr = s.lr_at(0, base_lr, 10)
    opt.step()
    np.testing.assert_array_equal(p.value, q - np.float32(base_lr) * (q * np.float32(0.3)))


def test_specs_and_defaults() -> None:
    assert tuple(schedules.CLASSES) == SCHEDULES
    assert schedules.check_spec({"type": "step", "step_size": 10}) == {
        "type": "step", "warmup_updates": 0, "step_size": 10, "gamma": 0.1}  # torch's gamma
    assert schedules.check_spec({"type": "cosine"}) == {
        "type": "cosine", "warmup_updates": 0, "min_lr": 0.0}
    s = schedules.build({"type": "cosine", "min_lr": 1e-4, "warmup_updates": 10})
    assert s == schedules.Cosine(warmup_updates=10, min_lr=1e-4)
    assert schedules.build(s.spec()) == s


@pytest.mark.parametrize(("spec", "message"), [
    ({"type": "cosin"}, "protocol.schedule: unknown type 'cosin' (did you mean 'cosine'?); "
                        "expected one of constant, step, cosine"),
    ({"type": "linear"}, "protocol.schedule: unknown type 'linear'; expected one of"),
    ({"step_size": 3}, "protocol.schedule: missing key 'type'"),
    ([0.1], "protocol.schedule: must be a mapping with a 'type'"),
    ({"type": "step"}, "protocol.schedule: type 'step' needs step_size"),
    ({"type": "step", "step_size": 3, "gama": 0.5},
     "protocol.schedule: unknown key 'gama' for type 'step' (did you mean 'gamma'?); "
     "allowed: warmup_updates, step_size, gamma"),
    ({"type": "cosine", "eta_min": 0.0},
     "protocol.schedule: unknown key 'eta_min' for type 'cosine'; allowed: warmup_updates, "
     "min_lr"),
    ({"type": "constant", "warmup": 5},
     "protocol.schedule: unknown key 'warmup' for type 'constant' (did you mean "
     "'warmup_updates'?)"),
    ({"type": "step", "step_size": 0}, "step_size must be an integer >= 1, got 0"),
    ({"type": "step", "step_size": 2.0}, "step_size must be an integer >= 1, got 2.0"),
    ({"type": "step", "step_size": True}, "step_size must be an integer >= 1, got True"),
    ({"type": "step", "step_size": 2, "gamma": 0}, "gamma must be a finite number > 0, got 0"),
    ({"type": "step", "step_size": 2, "gamma": -0.5}, "gamma must be a finite number > 0"),
    ({"type": "step", "step_size": 2, "gamma": math.inf}, "gamma must be a finite number > 0"),
    ({"type": "cosine", "min_lr": -1e-3}, "min_lr must be a finite number >= 0, got -0.001"),
    ({"type": "cosine", "warmup_updates": -1}, "warmup_updates must be an integer >= 0, got -1"),
])
def test_bad_specs_are_refused_in_one_line(spec, message) -> None:
    with pytest.raises(OptimizerError) as caught:
        schedules.check_spec(spec, where="protocol.schedule")
    text = str(caught.value)
    assert text.startswith("protocol.schedule: ")
    assert message.removeprefix("protocol.schedule: ") in text
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, NumnetError)
    assert "\n" not in str(caught.value)


def test_bad_calls_are_refused() -> None:
    with pytest.raises(OptimizerError, match="Step: gamma must be a finite number > 0"):
        schedules.Step(step_size=3, gamma=0.0)
    s = schedules.build({"type": "cosine"})
    with pytest.raises(OptimizerError, match="total_updates is needed"):
        s.lr_at(0, 0.1)
    with pytest.raises(OptimizerError, match="update must be an integer >= 0, got -1"):
        s.lr_at(-1, 0.1, 10)
    with pytest.raises(OptimizerError, match="base_lr must be a finite number >= 0"):
        s.lr_at(0, -0.1, 10)
    with pytest.raises(OptimizerError, match="total_updates must be an integer >= 1, got 0"):
        s.lr_at(0, 0.1, 0)
