"""Uplift statistics on small hand-made arms: rates, intervals, CUPED, MDE, plain words."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from trouw.domain.measure.uplift import (
    ArmSample,
    compare,
    cuped_theta,
    mde,
    planned_conversion_mde,
    summarize,
)


def _arm(name: str, conv: list[int], rev: list[float], pre: list[float] | None = None, **kw):
    return ArmSample(name, [bool(c) for c in conv], rev, pre or [0.0] * len(conv), **kw)


def test_summary_counts_customers_conversions_and_revenue() -> None:
    s = summarize(_arm("a", [1, 0, 1, 0], [10.0, 0.0, 30.0, 0.0]))
    assert (s.customers, s.conversions, s.revenue) == (4, 2, 40.0)
    assert s.conversion_rate == 0.5 and s.revenue_per_customer == 10.0


def test_without_covariate_the_interval_is_welchs() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(10, 3, 200)
    b = rng.normal(9, 5, 150)
    up = compare(
        ArmSample("t", a > 10, a, np.zeros(200)),
        ArmSample("h", b > 10, b, np.zeros(150)),
    )
    assert up.method == "welch"
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert up.revenue.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    low, high = ref.confidence_interval(0.95)
    assert up.revenue.ci95 == pytest.approx((low, high), rel=1e-9)
    assert up.revenue.diff == pytest.approx(a.mean() - b.mean())


def test_conversion_difference_matches_the_unpooled_proportion_test() -> None:
    t = [1] * 60 + [0] * 940
    h = [1] * 40 + [0] * 960
    up = compare(_arm("t", t, [0.0] * 1000), _arm("h", h, [0.0] * 1000, holdout=True))
    assert up.conversion.diff == pytest.approx(0.02)
    se = math.sqrt(0.06 * 0.94 / 1000 + 0.04 * 0.96 / 1000)
    z_p = 2 * stats.norm.sf(0.02 / se)
    # Welch on 0/1 outcomes is the unpooled z-test up to n/(n-1) and t versus normal.
    assert up.conversion.p_value == pytest.approx(z_p, rel=0.02)


def test_cuped_narrows_the_interval_and_keeps_the_estimate_unbiased() -> None:
    rng = np.random.default_rng(7)
    n = 2000
    pre = rng.lognormal(4, 0.8, 2 * n)
    spend = 0.8 * pre + rng.normal(0, 10, 2 * n)
    spend[:n] += 5.0  # the true effect
    t = ArmSample("t", spend[:n] > 50, spend[:n], pre[:n])
    h = ArmSample("h", spend[n:] > 50, spend[n:], pre[n:])
    plain = compare(t, h, cuped=False)
    adjusted = compare(t, h)
    assert adjusted.method == "cuped+welch" and plain.method == "welch"
    assert adjusted.revenue.variance_reduction > 0.8
    width = lambda d: d.ci95[1] - d.ci95[0]  # noqa: E731
    assert width(adjusted.revenue) < 0.5 * width(plain.revenue)
    low, high = adjusted.revenue.ci95
    assert low < 5.0 < high


def test_cuped_slope_is_zero_without_spread_in_the_covariate() -> None:
    assert cuped_theta(np.array([1.0, 2.0, 3.0]), np.array([5.0, 5.0, 5.0])) == 0.0
    assert cuped_theta(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0])) == pytest.approx(1)


def test_minimum_detectable_effect_shrinks_with_the_square_root_of_the_sample() -> None:
    small = planned_conversion_mde(0.05, 1000, 1000)
    large = planned_conversion_mde(0.05, 4000, 4000)
    assert small is not None and large is not None
    assert small / large == pytest.approx(2.0)
    # 2.8 standard errors: z(0.975) + z(0.8).
    assert small == pytest.approx(2.8016 * math.sqrt(2 * 0.05 * 0.95 / 1000), rel=1e-3)
    assert mde(1.0, 0, 1.0, 10) is None


def test_tiny_arms_say_not_enough_customers_and_give_no_interval() -> None:
    up = compare(_arm("t", [1, 0, 1], [5.0, 0, 5.0]), _arm("h", [0, 0, 1], [0, 0, 5.0]))
    assert up.verdict.startswith("not enough customers yet to tell")
    assert up.conversion.ci95 is None and up.conversion.p_value is None
    assert up.conversion.diff == pytest.approx(1 / 3)


def test_a_clear_win_is_called_with_its_interval() -> None:
    t = [1] * 200 + [0] * 800
    h = [1] * 100 + [0] * 900
    rev_t = [50.0] * 200 + [0.0] * 800
    rev_h = [50.0] * 100 + [0.0] * 900
    up = compare(_arm("mail", t, rev_t), _arm("holdout", h, rev_h, holdout=True))
    assert up.verdict.startswith("arm mail adds measurably over the hold-out")
    assert up.conversion.p_value is not None and up.conversion.p_value < 1e-6


def test_a_loss_is_called_a_loss() -> None:
    t = [1] * 100 + [0] * 900
    h = [1] * 200 + [0] * 800
    up = compare(_arm("mail", t, [0.0] * 1000), _arm("h", h, [0.0] * 1000, holdout=True))
    assert up.verdict.startswith("the hold-out does better than arm mail")


def test_a_large_null_test_says_the_hold_out_buys_as_much() -> None:
    rng = np.random.default_rng(3)
    n = 40_000
    conv = rng.random(2 * n) < 0.3
    rev = np.where(conv, 40.0, 0.0)
    up = compare(
        ArmSample("mail", conv[:n], rev[:n], np.zeros(n)),
        ArmSample("holdout", conv[n:], rev[n:], np.zeros(n), holdout=True),
    )
    assert up.verdict == "the hold-out buys as much: this journey adds nothing measurable"


def test_a_small_null_test_says_how_large_an_effect_it_could_see() -> None:
    rng = np.random.default_rng(4)
    n = 300
    conv = rng.random(2 * n) < 0.05
    conv[0] = conv[n] = True
    rev = np.where(conv, 40.0, 0.0)
    up = compare(
        ArmSample("mail", conv[:n], rev[:n], np.zeros(n)),
        ArmSample("holdout", conv[n:], rev[n:], np.zeros(n), holdout=True),
    )
    assert up.conversion.ci95 is not None
    assert up.conversion.ci95[0] < 0 < up.conversion.ci95[1]
    assert up.verdict.startswith("not enough customers yet to tell: no difference so far")
    assert "points of conversion" in up.verdict


def test_arms_of_unequal_length_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        compare(ArmSample("t", [True], [1.0, 2.0], [0.0]), _arm("h", [0], [0.0]))
