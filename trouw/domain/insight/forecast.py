"""Forecasts per customer: active, next order, expected orders and value, with fallbacks.

Three candidates answer expected orders and P(order): BG/NBD fitted on the shop's own
customers, its answers handed out by recency, and BG/NBD corrected by two regressions that
learned, on an earlier cut of the same shop's data, how its customers actually ordered compared
with what BG/NBD forecast then. A backtest in the shop's own history picks one per figure
(trouw/domain/insight/choice.py; docs/insight.md, "Models"; measurements in docs/decisions.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.stats import rankdata

from trouw.domain.insight.btyd import BetaGeo, FitError, GammaGamma
from trouw.domain.insight.choice import ModelChoice, choose, fallback, too_little_history
from trouw.domain.insight.glm import OffsetGlm
from trouw.domain.insight.history import Histories

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
    choice: ModelChoice


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


def auc_difference(ordered: Array, first: Array, second: Array) -> tuple[float, float]:
    """AUC of `first` minus AUC of `second`, two rankings of the same customers telling who
    ordered, and the standard error of that difference by DeLong, DeLong and Clarke-Pearson
    (1988), computed from ranks (Sun and Xu 2014); NaN when fewer than two ordered or did not."""
    positive = ordered > 0
    m, n = int(positive.sum()), int((~positive).sum())
    if m < 2 or n < 2:
        return float("nan"), float("nan")
    # Per customer who ordered, the share of the others ranked below them (ties half), and per
    # customer who did not, the share of those who ordered ranked above them.
    above: list[Array] = []
    below: list[Array] = []
    for score in (first, second):
        ranks = rankdata(score)
        above.append((ranks[positive] - rankdata(score[positive])) / n)
        below.append(1.0 - (ranks[~positive] - rankdata(score[~positive])) / m)
    difference = float(np.mean(above[0]) - np.mean(above[1]))
    variance = float(
        np.var(above[0] - above[1], ddof=1) / m + np.var(below[0] - below[1], ddof=1) / n
    )
    return difference, float(np.sqrt(max(variance, 0.0)))


def recency_order(h: Histories, model_p: Array) -> NDArray[np.int64]:
    """Customers from least to most likely to order by recency alone, then frequency, then the
    model's probability among customers equal on both."""
    return np.asarray(np.lexsort((model_p, h.x, -h.recency_days)), dtype=np.int64)


def _handed_out(values: Array, order: NDArray[np.int64], *, larger_is_likelier: bool) -> Array:
    """The same values, handed out along `order` (least likely first)."""
    ranked = np.sort(values)  # NaN last
    if not larger_is_likelier:
        ranked = ranked[::-1]  # NaN (no next order) first: the least likely
    out = np.empty_like(values)
    out[order] = ranked
    return out


def _can_learn(earlier: Histories | None, later_counts: Array | None, window_days: int) -> bool:
    return (
        earlier is not None
        and later_counts is not None
        and window_days > 0
        and len(earlier.x) >= MIN_CUSTOMERS_TO_LEARN
        and int(np.count_nonzero(later_counts)) >= MIN_BUYERS_TO_LEARN
    )


Fitted = tuple[BetaGeo, str]


def _learned_at(
    model: BetaGeo,
    earlier: Histories | None,
    later_counts: Array | None,
    window_days: int,
    earlier_fit: Fitted | None = None,
) -> _Corrected | None:
    """`model` (fitted by maximum likelihood today) with the corrections learned at `earlier`
    (whose BG/NBD fit may be given), or None when they cannot be learned there."""
    if (
        earlier is None
        or later_counts is None
        or not _can_learn(earlier, later_counts, window_days)
    ):
        return None
    earlier_model, earlier_name = earlier_fit or fit_beta_geo(earlier)
    if earlier_name != "bgnbd":
        return None
    learned = _learn(earlier_model, earlier, later_counts, window_days)
    if learned is None:
        return None
    # Learned at the cut, applied to the later BG/NBD fit and features.
    return _Corrected(model, learned.counts, learned.orders, learned.threshold)


@dataclass(frozen=True)
class _Answers:
    """Each candidate's expected orders and P(order) for one set of customers, and the
    next-order days of the one asked for (`_answers`'s dates_for; an empty dict otherwise)."""

    counts: dict[str, Array]
    p: dict[str, Array]
    next_days: dict[str, Array]


def _answers(
    h: Histories,
    bare: _Corrected,
    learned: _Corrected | None,
    t: float,
    *,
    dates_for: str | None = None,
) -> _Answers:
    z = features(h, bare.model)
    counts = bare.expected_orders(t, h, z)
    p = bare.p_order(t, h, z)
    order = recency_order(h, p)
    out = _Answers(
        counts={"bgnbd": counts, "recency": _handed_out(counts, order, larger_is_likelier=True)},
        p={"bgnbd": p, "recency": _handed_out(p, order, larger_is_likelier=True)},
        next_days={},
    )
    if learned is not None:
        out.counts["learned"] = learned.expected_orders(t, h, z)
        out.p["learned"] = learned.p_order(t, h, z)
    # A date is a bisection of some 40 P(order) evaluations per customer: only the chosen one.
    if dates_for == "learned" and learned is not None:
        out.next_days["learned"] = learned.next_order_days(h, z)
    elif dates_for in ("bgnbd", "recency"):
        days = bare.next_order_days(h, z)
        out.next_days["bgnbd"] = days
        out.next_days["recency"] = _handed_out(days, order, larger_is_likelier=False)
    return out


def backtest(
    earlier: Histories | None,
    later_counts: Array | None,
    window_days: int,
    *,
    before: Histories | None = None,
    before_counts: Array | None = None,
    before_window: int = 0,
    available: frozenset[str],
    earlier_fit: Fitted | None = None,
) -> ModelChoice:
    """Fit every candidate on the shop as of `earlier` (the last window held back) and score
    it on the order days its customers had in that window (`later_counts`). The learned
    candidate learns at `before`, one window earlier still, as the product does today."""
    if earlier is None or later_counts is None or window_days <= 0:
        return fallback("fallback: history too short to hold back a window of a week")
    customers = len(earlier.x)
    buyers = int(np.count_nonzero(later_counts))
    if too_little_history(customers, buyers) is not None:
        return choose(
            {},
            {},
            auc_errors={},
            available=available,
            window_days=window_days,
            customers=customers,
            buyers=buyers,
        )
    model, name = earlier_fit or fit_beta_geo(earlier)
    learned = None
    if name == "bgnbd":
        learned = _learned_at(model, before, before_counts, before_window)
    scored = _answers(earlier, _Corrected(model), learned, float(window_days))
    rmse = {
        candidate: float(np.sqrt(np.mean((values - later_counts) ** 2)))
        for candidate, values in scored.counts.items()
    }
    ranking = {candidate: auc(later_counts, values) for candidate, values in scored.p.items()}
    # How sure the backtest is that a candidate ranks better than recency: the standard error
    # of the difference of their AUCs on the same customers.
    errors = {
        candidate: auc_difference(later_counts, values, scored.p["recency"])[1]
        for candidate, values in scored.p.items()
        if candidate != "recency"
    }
    return choose(
        rmse,
        ranking,
        auc_errors=errors,
        available=available,
        window_days=window_days,
        customers=customers,
        buyers=buyers,
    )


def forecast(
    h: Histories,
    *,
    horizon_days: int,
    value_days: int,
    earlier: Histories | None = None,
    later_counts: Array | None = None,
    window_days: int = 0,
    before: Histories | None = None,
    before_counts: Array | None = None,
    before_window: int = 0,
) -> Forecast:
    """Fit on the shop's own customers and forecast every one of them.

    `earlier` is the shop as of `window_days` before, and `later_counts` the order days each
    of its customers had in the window since; `before` and `before_counts` the same one window
    earlier again. The corrections learn at `earlier` (when there are enough customers and
    buyers: MIN_CUSTOMERS_TO_LEARN, MIN_BUYERS_TO_LEARN, and BG/NBD was fitted by maximum
    likelihood there); which candidate answers each figure is chosen by the backtest that
    holds back the window after `earlier` (trouw/domain/insight/choice.py).
    """
    n = len(h.customer_ids)
    if n == 0:
        empty = np.zeros(0)
        none = fallback("fallback: no customers")
        return Forecast("none", empty, empty, empty, empty, empty, none)
    model, name = fit_beta_geo(h)
    earlier_fit = fit_beta_geo(earlier) if earlier is not None and len(earlier.x) else None
    learned = None
    if name == "bgnbd":
        learned = _learned_at(model, earlier, later_counts, window_days, earlier_fit)
    available = frozenset({"bgnbd", "recency"} | ({"learned"} if learned is not None else set()))
    choice = backtest(
        earlier,
        later_counts,
        window_days,
        before=before,
        before_counts=before_counts,
        before_window=before_window,
        available=available,
        earlier_fit=earlier_fit,
    )
    counts_model, p_model = choice.expected_orders.model, choice.p_order.model
    today = _answers(h, _Corrected(model), learned, float(horizon_days), dates_for=p_model)
    # The value's counts are BG/NBD's own: the corrections are learned for the learning window,
    # and BG/NBD's year ranked CDNOW's holdout revenue better (docs/decisions.md).
    year = _Corrected(model).expected_orders(float(value_days), h, features(h, model))
    spend, spend_name = _spend(h)
    return Forecast(
        model=f"{name} orders:{counts_model} p:{p_model} spend:{spend_name}",
        p_active=_finite(model.p_alive(h.x, h.t_x, h.T), 0.0, high=1.0),
        p_order=today.p[p_model],
        expected_orders=today.counts[counts_model],
        # The date is where the chosen P(order) reaches its threshold: the two go together.
        next_order_days=today.next_days[p_model],
        expected_value=_finite(year * spend, 0.0),
        choice=choice,
    )
