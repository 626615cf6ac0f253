"""Forecasts per customer: active, next order, expected orders and value, with fallbacks.

The answer is BG/NBD (fitted on the shop's own customers) corrected by two regressions that
learned, on an earlier cut of the same shop's data, how its customers actually ordered compared
with what BG/NBD forecast then (docs/insight.md, "Models"; the measurements behind the choice
are in docs/decisions.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.stats import rankdata

from trouw.insight.btyd import BetaGeo, FitError, GammaGamma
from trouw.insight.glm import OffsetGlm
from trouw.insight.history import Histories

Array = NDArray[np.float64]

# Below these counts the maximum-likelihood fit is not trusted on its own: the BG/NBD fit is
# then penalised toward a weak prior.
MIN_CUSTOMERS_FOR_MLE = 300
MIN_REPEATERS_FOR_MLE = 30
PRIOR_PENALTY = 0.05
# The learned correction needs this many customers at the earlier cut and this many of them
# ordering in the window after it; with fewer, BG/NBD answers alone.
MIN_CUSTOMERS_TO_LEARN = 300
MIN_BUYERS_TO_LEARN = 30
# The ranking check at the earlier cut needs this many customers who ordered in the window and
# this many who did not; with fewer, the model's own ranking stands.
MIN_CASES_TO_COMPARE = 5
# Ridge weight of the corrections (in units of customers' likelihood).
CORRECTION_L2 = 10.0
# How many "orders" of the shop's mean spend are mixed into a customer's own mean spend when
# the Gamma-Gamma model cannot be fitted.
SPEND_SHRINK_ORDERS = 1.0
# A next order further away than this is no date to plan a message on: none is given.
MAX_NEXT_ORDER_DAYS = 3650.0
_EPS = 1e-9


@dataclass(frozen=True)
class Forecast:
    """Per customer, in the Histories' order. `next_order_days` is NaN where none is expected."""

    model: str
    p_active: Array
    p_order: Array
    expected_orders: Array
    next_order_days: Array
    expected_value: Array


def _finite(
    values: Array, fallback: Array | float, low: float = 0.0, high: float = np.inf
) -> Array:
    """Replace NaN and infinities (a numerically lost customer) by the fallback, then clip."""
    out = np.where(np.isfinite(values), values, fallback)
    return np.asarray(np.clip(out, low, high), dtype=np.float64)


def fit_beta_geo(h: Histories) -> tuple[BetaGeo, str]:
    """BG/NBD by maximum likelihood, or penalised toward a weak prior for small shops."""
    repeaters = int(np.count_nonzero(h.x > 0))
    if len(h.x) >= MIN_CUSTOMERS_FOR_MLE and repeaters >= MIN_REPEATERS_FOR_MLE:
        try:
            fitted = BetaGeo.fit(h.x, h.t_x, h.T)
            probe = fitted.expected_orders(365.0, h.x, h.t_x, h.T)
            if np.all(np.isfinite(probe)):
                return fitted, "bgnbd"
        except FitError:
            pass
    return BetaGeo.fit(h.x, h.t_x, h.T, penalty=PRIOR_PENALTY, prior=_prior(h)), "bgnbd-map"


def _prior(h: Histories) -> Array:
    """A weak prior in log-parameters: a slow, heterogeneous buyer who often stays."""
    age = max(float(np.mean(h.T)), 30.0)
    prior: Array = np.log(np.array([0.5, age, 1.0, 3.0]))
    return prior


def _spend(h: Histories) -> tuple[Array, str]:
    """Expected spend per order day: Gamma-Gamma over every order day of the customer.

    The published model averages repeat purchases only; counting the first order as well held
    more of CDNOW's holdout revenue in the top decile (docs/decisions.md) and gives one-time
    buyers their own shrunken estimate instead of the shop's mean.
    """
    days = h.x + 1.0
    per_day = h.monetary_total / days
    positive = per_day[per_day > 0]
    shop_mean = float(np.mean(positive)) if len(positive) else 0.0
    try:
        gg = GammaGamma.fit(days, per_day)
        return _finite(gg.expected_spend(days, per_day), shop_mean), "gg"
    except FitError:
        mixed = (days * per_day + SPEND_SHRINK_ORDERS * shop_mean) / (days + SPEND_SHRINK_ORDERS)
        return _finite(mixed, shop_mean), "mean"


def features(h: Histories, model: BetaGeo) -> Array:
    """What the corrections see of a customer: horizon-free, on log scales."""
    p_alive = model.p_alive(h.x, h.t_x, h.T)
    return np.column_stack(
        [
            np.log1p(h.recency_days),
            np.log1p(h.x),
            np.log1p(h.T),
            np.log1p(h.t_x),
            np.log1p(h.monetary_avg),
            np.log(np.clip(p_alive, _EPS, 1.0)),
            np.log1p(h.recent_30),
            np.log1p(h.recent_91),
            h.recency_days / np.maximum(h.T, 1.0),
        ]
    )


@dataclass(frozen=True)
class _Corrected:
    """BG/NBD with the learned corrections (or none: BG/NBD itself, threshold one half)."""

    model: BetaGeo
    counts: OffsetGlm | None = None
    orders: OffsetGlm | None = None
    threshold: float = 0.5

    def _base_counts(self, t: float | Array, h: Histories) -> Array:
        return _finite(self.model.expected_orders(t, h.x, h.t_x, h.T), 0.0)

    def expected_orders(self, t: float, h: Histories, z: Array) -> Array:
        base = self._base_counts(t, h)
        if self.counts is None:
            return base
        return _finite(self.counts.predict(z, np.log(base + _EPS)), base)

    def p_order(self, t: float | Array, h: Histories, z: Array) -> Array:
        base = _finite(self.model.p_order_within(t, h.x, h.t_x, h.T), 0.0, high=1.0)
        if self.orders is None:
            return base
        with_horizon = np.column_stack([z, np.log(self._base_counts(t, h) + _EPS)])
        return _finite(self.orders.predict(with_horizon, np.zeros(len(h.x))), base, high=1.0)

    def next_order_days(self, h: Histories, z: Array) -> Array:
        """Days until P(ordered again) reaches the decision threshold (NaN: not within 10 years).

        P grows with the window, so bisection on the log of the window finds it to a day.
        """
        n = len(h.x)
        low = np.zeros(n)
        high = np.full(n, MAX_NEXT_ORDER_DAYS)
        reachable = self.p_order(high, h, z) >= self.threshold
        for _ in range(40):
            mid = np.sqrt(np.maximum(low, 0.25) * high)
            above = self.p_order(mid, h, z) >= self.threshold
            high = np.where(above, mid, high)
            low = np.where(above, low, mid)
            if np.all(high - low < 0.5):
                break
        return np.asarray(np.where(reachable, high, np.nan), dtype=np.float64)


def _best_f1_threshold(p: Array, ordered: Array) -> float:
    """The probability cut that best tells who ordered (F1), on a grid of whole percents."""
    best, best_f1 = 0.5, -1.0
    positives = float(ordered.sum())
    for tau in np.arange(0.05, 0.951, 0.01):
        chosen = p >= tau
        denominator = positives + float(chosen.sum())
        score = 2.0 * float(np.sum(chosen & (ordered > 0))) / denominator if denominator else 0.0
        if score > best_f1 + 1e-12:
            best, best_f1 = float(tau), score
    return best


def _learn(
    model: BetaGeo, earlier: Histories, later_counts: Array, window_days: int
) -> _Corrected | None:
    """The corrections, learned from what the customers at the earlier cut did in the window.

    Counts: Poisson regression with BG/NBD's log forecast as offset. Ordering at all: logistic
    regression on the same features plus BG/NBD's log forecast for the window (its coefficient
    must be positive, so that a longer window never lowers the probability; otherwise there is
    no correction). The decision threshold of the next-order date is the probability that best
    told, at the cut, who ordered in the window.
    """
    z = features(earlier, model)
    bare = _Corrected(model)
    window = float(window_days)
    base_counts = bare._base_counts(window, earlier)
    counts = OffsetGlm.fit("poisson", z, later_counts, np.log(base_counts + _EPS), l2=CORRECTION_L2)
    ordered = (later_counts > 0).astype(np.float64)
    with_horizon = np.column_stack([z, np.log(base_counts + _EPS)])
    orders = OffsetGlm.fit(
        "logistic", with_horizon, ordered, np.zeros(len(ordered)), l2=CORRECTION_L2
    )
    if orders.coef[-1] <= 0:
        return None
    learned = _Corrected(model, counts, orders)
    threshold = _best_f1_threshold(learned.p_order(window, earlier, z), ordered)
    return _Corrected(model, counts, orders, threshold)


def auc(ordered: Array, score: Array) -> float:
    """Mann-Whitney AUC (average ranks for ties) of `score` telling who ordered; NaN when all
    or none did."""
    positive = ordered > 0
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def recency_order(h: Histories, model_p: Array) -> NDArray[np.int64]:
    """Customers from least to most likely to order by recency alone, then frequency, then the
    model's probability among customers equal on both."""
    return np.asarray(np.lexsort((model_p, h.x, -h.recency_days)), dtype=np.int64)


def _recency_ranks_better(
    model: BetaGeo, earlier: Histories, later_counts: Array, window_days: int
) -> bool:
    """Whether, at the earlier cut, recency (then frequency) told who ordered in the window
    better than the model fitted then did (AUC, in the shop's own data only)."""
    buyers = int(np.count_nonzero(later_counts))
    if min(buyers, len(later_counts) - buyers) < MIN_CASES_TO_COMPARE:
        return False
    p = _finite(model.p_order_within(float(window_days), earlier.x, earlier.t_x, earlier.T), 0.0)
    place = np.empty(len(p))
    place[recency_order(earlier, p)] = np.arange(len(p))
    return auc(later_counts, place) > auc(later_counts, p)


def _recency_first(
    name: str,
    model: BetaGeo,
    earlier: Histories | None,
    later_counts: Array | None,
    window_days: int,
) -> bool:
    """Whether recency should rank the customers instead of the model alone.

    Always for a model fitted with the prior (a small shop): on 100-customer samples of CDNOW it
    ranked worse than recency alone (docs/decisions.md). Otherwise when, at the shop's own
    earlier cut, recency told better who ordered in the window than the model did then.
    """
    if name == "bgnbd-map":
        return True
    if earlier is None or later_counts is None or window_days <= 0 or len(earlier.x) == 0:
        return False
    earlier_model, _ = fit_beta_geo(earlier)
    return _recency_ranks_better(earlier_model, earlier, later_counts, window_days)


def _handed_out(values: Array, order: NDArray[np.int64], *, larger_is_likelier: bool) -> Array:
    """The same values, handed out along `order` (least likely first)."""
    ranked = np.sort(values)  # NaN last
    if not larger_is_likelier:
        ranked = ranked[::-1]  # NaN (no next order) first: the least likely
    out = np.empty_like(values)
    out[order] = ranked
    return out


def forecast(
    h: Histories,
    *,
    horizon_days: int,
    value_days: int,
    earlier: Histories | None = None,
    later_counts: Array | None = None,
    window_days: int = 0,
) -> Forecast:
    """Fit on the shop's own customers and forecast every one of them.

    `earlier` is the shop as of `window_days` before, and `later_counts` the order days each
    of its customers had in the window since: the corrections learn from them when there are
    enough (MIN_CUSTOMERS_TO_LEARN, MIN_BUYERS_TO_LEARN) and BG/NBD was fitted by maximum
    likelihood at that cut as well.
    """
    n = len(h.customer_ids)
    if n == 0:
        empty = np.zeros(0)
        return Forecast("none", empty, empty, empty, empty, empty)
    model, name = fit_beta_geo(h)
    corrected = _Corrected(model)
    if (
        name == "bgnbd"
        and earlier is not None
        and later_counts is not None
        and window_days > 0
        and len(earlier.x) >= MIN_CUSTOMERS_TO_LEARN
        and int(np.count_nonzero(later_counts)) >= MIN_BUYERS_TO_LEARN
    ):
        earlier_model, earlier_name = fit_beta_geo(earlier)
        if earlier_name == "bgnbd":
            learned = _learn(earlier_model, earlier, later_counts, window_days)
            if learned is not None:
                # Learned at the cut, applied to today's BG/NBD fit and features.
                corrected = _Corrected(model, learned.counts, learned.orders, learned.threshold)
                name = "bgnbd+learned"
    z = features(h, model)
    p_active = _finite(model.p_alive(h.x, h.t_x, h.T), 0.0, high=1.0)
    expected = corrected.expected_orders(float(horizon_days), h, z)
    p_order = corrected.p_order(float(horizon_days), h, z)
    next_days = corrected.next_order_days(h, z)
    if corrected.counts is None and _recency_first(name, model, earlier, later_counts, window_days):
        # Keep the model's answers (how many orders, how likely, how soon, over the whole shop)
        # but hand them out in order of recency, then frequency (docs/insight.md, "Fallbacks").
        order = recency_order(h, p_order)
        p_order = _handed_out(p_order, order, larger_is_likelier=True)
        expected = _handed_out(expected, order, larger_is_likelier=True)
        next_days = _handed_out(next_days, order, larger_is_likelier=False)
        name = f"{name}+recency"
    # The value's counts are BG/NBD's own: the corrections are learned for the learning window,
    # and BG/NBD's year ranked CDNOW's holdout revenue better (docs/decisions.md).
    year = _Corrected(model).expected_orders(float(value_days), h, z)
    spend, spend_name = _spend(h)
    return Forecast(
        model=f"{name}+{spend_name}",
        p_active=p_active,
        p_order=p_order,
        expected_orders=expected,
        next_order_days=next_days,
        expected_value=_finite(year * spend, 0.0),
    )
