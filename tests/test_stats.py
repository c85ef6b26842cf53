"""numnet.lab.stats: Student-t quantiles against tables, summary statistics and curve
comparisons worked by hand."""

from __future__ import annotations

import math

import pytest

from numnet.lab import stats


def test_t_quantile_against_tables():
    # Student's t table values (two-sided 95%: p = 0.975)
    for df, t in ((1, 12.706204736), (2, 4.302652730), (4, 2.776445105), (9, 2.262157163),
                  (30, 2.042272456), (1000, 1.962339081)):
        assert stats.t_quantile(0.975, df) == pytest.approx(t, rel=1e-8)
    # other levels, and a non-integer df (values of scipy.stats.t.ppf)
    assert stats.t_quantile(0.995, 5) == pytest.approx(4.032142984, rel=1e-8)
    assert stats.t_quantile(0.9, 3) == pytest.approx(1.637744354, rel=1e-8)
    assert stats.t_quantile(0.975, 7.5) == pytest.approx(2.333039626864974, rel=1e-9)
    assert stats.t_quantile(0.5, 3) == pytest.approx(0.0, abs=1e-10)
    assert stats.t_quantile(0.025, 4) == pytest.approx(-2.776445105, rel=1e-8)
    with pytest.raises(ValueError):
        stats.t_quantile(1.0, 3)


def test_describe_hand_worked():
    d = stats.describe([0.90, 0.92, 0.94])
    assert d["n"] == 3 and d["mean"] == pytest.approx(0.92)
    assert d["std"] == pytest.approx(0.02)  # sample std, ddof = 1
    half = 4.302652730 * 0.02 / math.sqrt(3)
    assert d["ci95"] == pytest.approx([0.92 - half, 0.92 + half])
    assert (d["min"], d["max"]) == (0.90, 0.94)
    one = stats.describe([0.5])
    assert one["mean"] == 0.5 and one["std"] is None and one["ci95"] is None
    assert stats.describe([])["mean"] is None


def test_curve_stats_per_evaluation():
    bands = stats.curve_stats([[0.5, 0.7, 0.8], [0.6, 0.8]])
    assert bands["n"] == [2, 2, 1]
    assert bands["mean"] == pytest.approx([0.55, 0.75, 0.8])
    assert bands["std"][:2] == pytest.approx([math.sqrt(0.005)] * 2) and bands["std"][2] is None
    assert (bands["min"], bands["max"]) == ([0.5, 0.7, 0.8], [0.6, 0.8, 0.8])


def test_curve_gap_ratio_and_window_mean_by_hand():
    assert stats.curve_gap([0.5, 0.7, 0.9], [0.5, 0.75, 0.8, 0.85], [200, 400, 600, 800]) == (
        pytest.approx(0.1), 600)
    assert stats.curve_gap([], [0.3], [200]) == (None, None)
    assert stats.curve_gap([0.1, 0.3], [0.2, 0.2], [1, 2]) == (pytest.approx(0.1), 1)  # first
    assert stats.ratio(3.0, 2.0) == 1.5
    assert stats.ratio(None, 2.0) is None and stats.ratio(1.0, 0.0) is None
    assert stats.window_mean([1.0, 2.0, 3.0, 4.0], 4, 2) == 3.5
    assert stats.window_mean([1.0, 2.0, 3.0, 4.0], 1, 3) == 1.0  # clipped at the start
    assert stats.window_mean([1.0, 2.0], 0, 2) == 1.0  # an empty window is the first value
