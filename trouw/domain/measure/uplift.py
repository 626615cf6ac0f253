"""Uplift of one split arm over another: rates, differences, 95 % intervals, CUPED, plain words.

Pure: arrays in, numbers and sentences out. Each customer of an arm contributes one row:
did they convert in the window, what they spent in the window, and what they spent in the
pre-period before the split (the CUPED covariate). The difference is tested with Welch's
t-test on the (adjusted) per-customer outcomes, which for a 0/1 outcome is the unpooled
two-proportion test: no assumption that both arms share a variance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

Method = Literal["welch", "cuped+welch"]
Metric = Literal["conversion", "revenue"]

# Below this many customers in the smaller arm, or this many conversions in both arms
# together, the normal approximation behind the interval is not trusted: we say so instead.
MIN_CUSTOMERS = 30
MIN_CONVERSIONS = 5
ALPHA = 0.05
POWER = 0.8
# An effect smaller than this share of the reference arm's value is, for a small shop, no
# effect: when the test could have seen one this size and did not, the journey adds nothing.
MEANINGFUL_RELATIVE = 0.2


@dataclass(frozen=True)
class ArmSample:
    """The customers of one arm: one entry per customer, in the same order in each array."""

    name: str
    converted: Sequence[bool] | NDArray[np.bool_]
    revenue: Sequence[float] | NDArray[np.float64]
    pre_spend: Sequence[float] | NDArray[np.float64]
    holdout: bool = False

    def arrays(self) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        conv = np.asarray(self.converted, dtype=np.float64)
        rev = np.asarray(self.revenue, dtype=np.float64)
        pre = np.asarray(self.pre_spend, dtype=np.float64)
        if not conv.shape == rev.shape == pre.shape or conv.ndim != 1:
            raise ValueError(f"arm {self.name}: converted, revenue and pre_spend differ in length")
        return conv, rev, pre


@dataclass(frozen=True)
class ArmSummary:
    name: str
    holdout: bool
    customers: int
    conversions: int
    revenue: float
    conversion_rate: float | None
    revenue_per_customer: float | None


@dataclass(frozen=True)
class Difference:
    """Treatment minus reference for one metric; None where the data cannot tell yet."""

    metric: Metric
    diff: float | None
    ci95: tuple[float, float] | None
    p_value: float | None
    # The smallest true difference this sample finds with 80 % power at 5 % (two-sided).
    mde: float | None
    # How much of the outcome's variance the pre-period spend explained (0 without CUPED).
    variance_reduction: float = 0.0


@dataclass(frozen=True)
class Uplift:
    treatment: ArmSummary
    reference: ArmSummary
    conversion: Difference
    revenue: Difference
    method: Method
    verdict: str
    notes: list[str] = field(default_factory=list)


def summarize(arm: ArmSample) -> ArmSummary:
    conv, rev, _pre = arm.arrays()
    n = int(conv.size)
    return ArmSummary(
        name=arm.name,
        holdout=arm.holdout,
        customers=n,
        conversions=int(conv.sum()),
        revenue=float(rev.sum()),
        conversion_rate=float(conv.mean()) if n else None,
        revenue_per_customer=float(rev.mean()) if n else None,
    )


def cuped_theta(outcome: NDArray[np.float64], covariate: NDArray[np.float64]) -> float:
    """The regression slope of outcome on covariate; 0 when the covariate does not vary."""
    if outcome.size < 2:
        return 0.0
    var = float(np.var(covariate, ddof=1))
    if var <= 0.0 or not math.isfinite(var):
        return 0.0
    return float(np.cov(outcome, covariate, ddof=1)[0, 1] / var)


def mde(
    var_a: float, n_a: int, var_b: float, n_b: int, *, alpha: float = ALPHA, power: float = POWER
) -> float | None:
    """Minimum detectable effect of a two-sample difference of means (normal approximation)."""
    # Imported where used: scipy.stats takes ~1 CPU s to import, and a report or a simulation
    # without a split reached never needs it.
    from scipy import stats

    if n_a < 1 or n_b < 1:
        return None
    se = math.sqrt(var_a / n_a + var_b / n_b)
    return float((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) * se)


def planned_conversion_mde(
    baseline_rate: float,
    n_treatment: int,
    n_reference: int,
    *,
    alpha: float = ALPHA,
    power: float = POWER,
) -> float | None:
    """Before a test: the smallest conversion difference these arm sizes can find."""
    var = baseline_rate * (1 - baseline_rate)
    return mde(var, n_treatment, var, n_reference, alpha=alpha, power=power)


def _welch(
    a: NDArray[np.float64], b: NDArray[np.float64], alpha: float
) -> tuple[float, tuple[float, float] | None, float | None]:
    """Difference of means a - b, its (1 - alpha) interval and two-sided p-value."""
    from scipy import stats  # see mde

    diff = float(a.mean() - b.mean())
    va, vb = float(np.var(a, ddof=1)), float(np.var(b, ddof=1))
    se2 = va / a.size + vb / b.size
    if se2 <= 0.0:
        # Both arms constant: no spread to judge a difference against.
        return diff, None, None
    se = math.sqrt(se2)
    # Welch–Satterthwaite degrees of freedom; a zero-variance arm contributes no term.
    denom = (va / a.size) ** 2 / (a.size - 1) + (vb / b.size) ** 2 / (b.size - 1)
    df = se2**2 / denom if denom > 0 else float(a.size + b.size - 2)
    t_crit = float(stats.t.ppf(1 - alpha / 2, df))
    p = float(2 * stats.t.sf(abs(diff) / se, df))
    return diff, (diff - t_crit * se, diff + t_crit * se), p


def _difference(
    metric: Metric,
    y_t: NDArray[np.float64],
    y_r: NDArray[np.float64],
    x_t: NDArray[np.float64],
    x_r: NDArray[np.float64],
    *,
    cuped: bool,
    alpha: float,
    power: float,
    enough: bool,
) -> Difference:
    if y_t.size < 2 or y_r.size < 2:
        return Difference(metric, None, None, None, None)
    reduction = 0.0
    if cuped:
        # One slope from both arms together: the split is random, so the pre-period spend is
        # independent of the arm and the adjustment leaves the expected difference unchanged.
        y_all, x_all = np.concatenate([y_t, y_r]), np.concatenate([x_t, x_r])
        theta = cuped_theta(y_all, x_all)
        if theta != 0.0:
            centre = float(x_all.mean())
            before = float(np.var(y_all, ddof=1))
            y_t = y_t - theta * (x_t - centre)
            y_r = y_r - theta * (x_r - centre)
            after = float(np.var(np.concatenate([y_t, y_r]), ddof=1))
            reduction = max(0.0, 1 - after / before) if before > 0 else 0.0
    diff, ci, p = _welch(y_t, y_r, alpha)
    detectable = mde(
        float(np.var(y_t, ddof=1)),
        int(y_t.size),
        float(np.var(y_r, ddof=1)),
        int(y_r.size),
        alpha=alpha,
        power=power,
    )
    if not enough:
        return Difference(metric, diff, None, None, detectable, reduction)
    return Difference(metric, diff, ci, p, detectable, reduction)


def compare(
    treatment: ArmSample,
    reference: ArmSample,
    *,
    cuped: bool = True,
    alpha: float = ALPHA,
    power: float = POWER,
    currency: str = "EUR",
) -> Uplift:
    """Uplift of `treatment` over `reference` (the hold-out, or the first arm of an A/B split)."""
    ct, rt, pt = treatment.arrays()
    cr, rr, pr = reference.arrays()
    st, sr = summarize(treatment), summarize(reference)
    enough = (
        min(ct.size, cr.size) >= MIN_CUSTOMERS
        and st.conversions + sr.conversions >= MIN_CONVERSIONS
    )
    use_cuped = cuped and bool(np.any(pt) or np.any(pr))
    conversion = _difference(
        "conversion", ct, cr, pt, pr, cuped=use_cuped, alpha=alpha, power=power, enough=enough
    )
    revenue = _difference(
        "revenue", rt, rr, pt, pr, cuped=use_cuped, alpha=alpha, power=power, enough=enough
    )
    notes: list[str] = []
    if cuped and not use_cuped:
        notes.append("no pre-period spend for these customers: CUPED adjusts nothing")
    return Uplift(
        treatment=st,
        reference=sr,
        conversion=conversion,
        revenue=revenue,
        method="cuped+welch" if use_cuped else "welch",
        verdict=verdict(st, sr, conversion, revenue, enough=enough, currency=currency),
        notes=notes,
    )


def _points(value: float) -> str:
    return f"{value * 100:+.1f}"


def _amount(value: float) -> str:
    return f"{value:+.2f}"


def verdict(
    treatment: ArmSummary,
    reference: ArmSummary,
    conversion: Difference,
    revenue: Difference,
    *,
    enough: bool,
    currency: str = "EUR",
) -> str:
    """One sentence a marketer can act on, never claiming more than the interval shows."""
    other = "the hold-out" if reference.holdout else f"arm {reference.name}"
    if not enough:
        need = min(treatment.customers, reference.customers)
        return (
            f"not enough customers yet to tell ({need} in the smaller arm, "
            f"{treatment.conversions + reference.conversions} conversions in all)"
        )
    found: list[str] = []
    worse: list[str] = []
    for diff, show, unit in (
        (conversion, _points, "points"),
        (revenue, _amount, f"{currency} per customer"),
    ):
        if diff.ci95 is None or diff.diff is None:
            continue
        low, high = diff.ci95
        span = f"{show(diff.diff)} {unit} (95 % interval {show(low)} to {show(high)})"
        if low > 0:
            found.append(f"{diff.metric} {span}")
        elif high < 0:
            worse.append(f"{diff.metric} {span}")
    if worse:
        return f"{other} does better than arm {treatment.name}: " + "; ".join(worse)
    if found:
        return f"arm {treatment.name} adds measurably over {other}: " + "; ".join(found)
    # Nothing significant: is that because there is nothing, or because the test is too small?
    base_rate = reference.conversion_rate or 0.0
    base_rev = reference.revenue_per_customer or 0.0
    small_enough = (
        conversion.mde is not None
        and revenue.mde is not None
        and conversion.mde <= MEANINGFUL_RELATIVE * base_rate
        and revenue.mde <= MEANINGFUL_RELATIVE * base_rev
    )
    if small_enough and reference.holdout:
        return "the hold-out buys as much: this journey adds nothing measurable"
    if small_enough:
        return f"arm {treatment.name} and {other} do equally well: no measurable difference"
    detail = []
    if conversion.mde is not None:
        detail.append(f"{conversion.mde * 100:.1f} points of conversion")
    if revenue.mde is not None:
        detail.append(f"{revenue.mde:.2f} {currency} per customer")
    return (
        "not enough customers yet to tell: no difference so far, but only one of at least "
        + " or ".join(detail)
        + " would show"
    )
