"""The diagnosis rules on synthetic curves made for each case: every verdict, its priority, and
the thresholds and numbers each reason states."""

from __future__ import annotations

import math

import numpy as np
import pytest

from numnet.lab import report
from numnet.lab.report import diagnosis
from numnet.lab.training import RunResult, RunSpec


def run_dict(train, test, status="ok", model="model1", setting=1, diverged_at=None,
             epochs=5, lr=0.1, train_loss=0.3, test_examples=10000) -> dict:
    n = len(train)
    spec = RunSpec(model=model, epochs=epochs, lr=lr, setting=setting, seed=11,
                   eval_test_examples=test_examples)
    return RunResult(
        spec=spec, status=status, updates=200 * n if status == "ok" else diverged_at - 1,
        samples=[20000 * (k + 1) for k in range(n)], train_accuracy=list(map(float, train)),
        test_accuracy=list(map(float, test)), train_loss=[train_loss] * n,
        test_loss=[0.35] * n, init_seed=1, shuffle_seed=2, diverged_at_update=diverged_at,
        divergence_reason="non-finite training loss" if status == "diverged" else None,
        wall_time=1.5,
    ).to_dict()


def ramp(a: float, b: float, n: int = 20) -> list[float]:
    return list(np.linspace(a, b, n))


def rise_then_flat(a: float, top: float, n: int = 20, rise: int = 8) -> list[float]:
    return list(np.r_[np.linspace(a, top, rise), [top] * (n - rise)])


# ----------------------------------------------------------------------------- each verdict


def test_over_fitting_states_rule_and_numbers() -> None:
    train = ramp(0.95, 0.995)
    test = list(np.r_[np.linspace(0.94, 0.975, 8), np.linspace(0.974, 0.966, 12)])
    d = report.diagnose(run_dict(train, test))
    assert d.verdict == "over-fitting"
    text = d.reasons["over-fitting"]
    assert "train accuracy rose +" in text and "below its best 0.9750" in text
    assert d.numbers["test_drop_from_best"] > 0.003 and d.numbers["gap"] > 0.01


def test_test_stalling_while_train_rises_is_over_fitting() -> None:
    d = report.diagnose(run_dict(ramp(0.96, 0.999), [0.97] * 20))
    assert d.verdict == "over-fitting"
    assert "changed by +0.00 points" in d.reasons["over-fitting"]


def test_a_widening_gap_is_over_fitting() -> None:
    d = report.diagnose(run_dict(ramp(0.97, 0.99), ramp(0.962, 0.968)))
    assert d.verdict == "over-fitting"
    assert "less than train (> 0.5: the gap widens)" in d.findings[0]
    close = report.diagnose(run_dict(ramp(0.97, 0.99), ramp(0.972, 0.982)))
    assert "over-fitting" not in close.labels


def test_a_plateau_well_below_is_under_fitting() -> None:
    d = report.diagnose(run_dict(rise_then_flat(0.5, 0.92), rise_then_flat(0.5, 0.91)))
    assert d.labels == ["under-fitting"]
    reason = d.reasons["under-fitting"]
    assert "plateau at 0.9200" in reason and "<= +0.5" in reason and "below 0.95" in reason


def test_a_model_far_below_its_best_elsewhere_is_under_fitting() -> None:
    """Train accuracy 96.5% fits by the absolute rule, but the same model reaches 99.8% with
    another setting: 3.3 points below (> 3) is under-fitting; 2 points below is not."""
    flat = rise_then_flat(0.9, 0.965)
    d = report.diagnose(run_dict(flat, [t - 0.005 for t in flat]), best_train_elsewhere=0.998)
    assert d.verdict == "under-fitting"
    assert "3.30 points below 0.9980, the best this model reaches" in d.reasons["under-fitting"]
    ok = report.diagnose(run_dict(flat, [t - 0.005 for t in flat]), best_train_elsewhere=0.985)
    assert "under-fitting" not in ok.labels


def test_diagnose_all_compares_with_the_same_models_other_settings() -> None:
    best = rise_then_flat(0.9, 0.998)
    low = rise_then_flat(0.9, 0.96)
    runs = [run_dict(best, [t - 0.01 for t in best], setting=1),
            run_dict(low, [t - 0.005 for t in low], setting=2),
            run_dict(ramp(0.5, 0.99), ramp(0.5, 0.98), model="model2", setting=1)]
    ds = report.diagnose_all(runs)
    assert ds["model1-setting2"].verdict == "under-fitting"
    assert ds["model1-setting2"].numbers["best_train_elsewhere"] == pytest.approx(0.998)
    assert "under-fitting" not in ds["model1-setting1"].labels  # 0.96 is below, not above
    rec = report.diagnosis_records(runs)["model1-setting2"]
    assert rec["labels"] == ["under-fitting"] and rec["reasons"][0].startswith("Under-fitting:")


def test_a_high_accuracy_still_rising_is_still_improving_not_under_fitting() -> None:
    """Model 4 at 98.4% test with accuracy still rising (the issue's example)."""
    train = ramp(0.970, 0.991, 27)
    test = ramp(0.966, 0.984, 27)
    d = report.diagnose(run_dict(train, test, model="model4"), best_train_elsewhere=0.996)
    assert d.labels == ["still improving"]
    reason = d.reasons["still improving"]
    assert "over the last quarter (> +0.5)" in reason and "more epochs would help" in reason


def test_low_and_rising_is_still_improving_and_under_fitting_when_far_below() -> None:
    train = ramp(0.70, 0.875)
    d = report.diagnose(run_dict(train, [t + 0.01 for t in train]))
    assert d.labels == ["still improving"]  # nothing to compare with: rising, not a plateau
    far = report.diagnose(run_dict(train, [t + 0.01 for t in train]), best_train_elsewhere=0.92)
    assert far.labels == ["under-fitting", "still improving"]


def test_good_fit() -> None:
    d = report.diagnose(run_dict([0.985] * 20, [0.98] * 20))
    assert d.verdict == "good fit" and d.flags == []
    assert d.findings[0].startswith("Good fit: end train 0.9850, test 0.9800")


def test_chance_level_is_not_learning_with_the_loss_against_ln10() -> None:
    noisy = [0.1 + (0.012 if k % 2 else -0.012) for k in range(20)]
    d = report.diagnose(run_dict(noisy, noisy, train_loss=2.3021))
    assert d.labels == ["not learning"]  # at chance, the noise is not "unstable"
    reason = d.reasons["not learning"]
    assert "< 0.20 (chance 0.10)" in reason and "2.3021 per example" in reason
    assert f"ln 10 = {math.log(10):.4f}" in reason


def test_diverged_and_nan_accuracies_are_diverged_never_under_fitting() -> None:
    d = report.diagnose(run_dict([0.5, 0.6], [0.5, 0.6], status="diverged", diverged_at=401))
    assert d.verdict == "diverged" and "update 401" in d.findings[0]
    nan = report.diagnose(run_dict([0.5, 0.6, float("nan"), 0.098], [0.5, 0.6, float("nan"),
                                                                        0.098]))
    assert nan.labels == ["diverged"]
    assert "evaluation 3 of 4 is not a number" in nan.reasons["diverged"]


def test_zig_zag_is_unstable_not_under_fitting() -> None:
    """Model 1 at lr 0.1: about 90% but moving up and down by a point or two."""
    te = [0.85, 0.87, 0.89, 0.892, 0.88, 0.89, 0.866, 0.878, 0.899, 0.905, 0.877, 0.90, 0.88]
    d = report.diagnose(run_dict([t - 0.002 for t in te], te))
    assert d.verdict == "unstable"
    reason = d.reasons["unstable"]
    assert f"(threshold {100 * d.numbers['unstable_jump_threshold']:.2f})" in reason
    assert "(threshold 2.00)" in reason and d.numbers["unstable_jump_threshold"] > 0.005
    assert f"{100 * d.numbers['test_jump']:.2f} points per evaluation" in reason
    assert d.numbers["test_jump"] > 0.005 and d.numbers["test_largest_drop"] > 0.02


def test_sampling_noise_of_a_small_evaluation_set_is_not_unstable() -> None:
    """A 0.8-point back-and-forth at 90%: beyond noise on 10,000 test examples (threshold
    0.51 points), within it on 1,000 (threshold 1.5 x 0.80 x sqrt(2 p (1-p) / 1000) = 1.61)."""
    te = [0.9 + (0.004 if k % 2 else -0.004) for k in range(20)]
    big = report.diagnose(run_dict([t + 0.002 for t in te], te))
    assert big.verdict == "unstable"
    assert big.numbers["unstable_jump_threshold"] == pytest.approx(
        max(0.005, 1.5 * math.sqrt(2 / math.pi) * math.sqrt(2 * 0.9 * 0.1 / 10000)))
    small = report.diagnose(run_dict([t + 0.002 for t in te], te, test_examples=1000))
    assert "unstable" not in small.labels
    assert small.numbers["unstable_jump_threshold"] == pytest.approx(0.0161, abs=1e-4)


def test_one_large_drop_is_unstable() -> None:
    te = ramp(0.9, 0.97)
    te[15] -= 0.03
    d = report.diagnose(run_dict([t + 0.01 for t in te], te))
    assert d.verdict == "unstable" and d.numbers["test_largest_drop"] > 0.02


def test_a_steady_rise_is_not_unstable() -> None:
    d = report.diagnose(run_dict(ramp(0.2, 0.9), ramp(0.2, 0.9)))  # 3.7 points per evaluation
    assert "unstable" not in d.labels and d.numbers["test_jump"] == pytest.approx(0, abs=1e-12)


def test_over_fitting_needs_a_stable_run() -> None:
    noisy = [v + (0.03 if k % 2 else -0.03) for k, v in enumerate(np.linspace(0.95, 0.94, 20))]
    u = report.diagnose(run_dict(ramp(0.96, 0.999), noisy))
    assert u.labels == ["unstable"] and "over-fitting not judged" in u.findings[-1]


def test_few_evaluations_skip_trend_rules() -> None:
    d = report.diagnose(run_dict([0.97, 0.99], [0.96, 0.97]))
    assert d.verdict == "good fit"
    assert any("trend rules" in f for f in d.findings)
    low = report.diagnose(run_dict([0.80, 0.85], [0.80, 0.85]))
    assert low.labels == ["under-fitting"] and "0.8250 < 0.95" in low.reasons["under-fitting"]


def test_every_verdict_has_a_rule_and_the_record_keeps_reasons_per_label() -> None:
    assert [name for name, _ in diagnosis.RULES] == list(diagnosis.VERDICT_ORDER)
    d = report.diagnose(run_dict(ramp(0.70, 0.875), ramp(0.71, 0.885)),
                        best_train_elsewhere=0.92)
    rec = d.to_record()
    assert rec["verdict"] == "under-fitting" and len(rec["reasons"]) == len(rec["labels"])
    assert all(r.lower().startswith(label.split()[0]) for label, r in
               zip(rec["labels"], rec["reasons"], strict=True))


def test_a_bare_curves_dict_without_spec_is_diagnosed() -> None:
    """Notebooks pass their own dicts (status and curves, no spec): no noise floor then."""
    te = [0.9 + (0.004 if k % 2 else -0.004) for k in range(20)]
    run = {"run_id": "mine", "status": "ok", "train_accuracy": [t + 0.002 for t in te],
           "test_accuracy": te, "train_loss": [0.3] * 20}
    d = report.diagnose(run)
    assert d.verdict == "unstable" and d.numbers["unstable_jump_threshold"] == 0.005
    assert report.diagnose_all([run])["mine"].verdict == "unstable"


def test_a_run_without_curve_points_is_judged_on_its_final_weights() -> None:
    run = run_dict([], [])
    run["final_weights"] = {"update": 56, "train_accuracy": 0.99, "test_accuracy": 0.98,
                            "train_loss": 0.05, "test_loss": 0.07}
    d = report.diagnose(run)
    assert d.verdict == "good fit" and "final weights (update 56)" in d.findings[1]
    run["final_weights"].update(train_accuracy=0.11, test_accuracy=0.1)
    assert report.diagnose(run).verdict == "not learning"
    del run["final_weights"]
    assert report.diagnose(run).verdict == "not learning"  # nothing measured at all
