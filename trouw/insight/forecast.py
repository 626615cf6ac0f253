"""Forecasts per customer: active, next order, expected orders and value, with fallbacks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from trouw.insight.btyd import BetaGeo, FitError, GammaGamma
from trouw.insight.history import Histories

Array = NDArray[np.float64]

# Below these counts the maximum-likelihood fit is not trusted on its own: the BG/NBD fit is
# then penalised toward a weak prior (documented in docs/insight.md, "Models").
MIN_CUSTOMERS_FOR_MLE = 300
MIN_REPEATERS_FOR_MLE = 30
PRIOR_PENALTY = 0.05
# How many "orders" of the shop's mean spend are mixed into a customer's own mean spend when
# the Gamma-Gamma model cannot be fitted.
SPEND_SHRINK_ORDERS = 1.0
# A next order further away than this is no date to plan a message on: none is given.
MAX_NEXT_ORDER_DAYS = 3650.0


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


def _fit_beta_geo(h: Histories) -> tuple[BetaGeo, str]:
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
    positive = h.monetary_avg[h.monetary_avg > 0]
    shop_mean = float(np.mean(positive)) if len(positive) else 0.0
    try:
        gg = GammaGamma.fit(h.x, h.repeat_avg)
        spend = gg.expected_spend(h.x, h.repeat_avg)
        # A one-time buyer's first order says something about them, too: Gamma-Gamma's own
        # shrinkage, with the first order counted as one observation.
        one_time = h.x == 0
        spend[one_time] = gg.expected_spend(np.ones(int(one_time.sum())), h.monetary_avg[one_time])
        return _finite(spend, shop_mean), "gg"
    except FitError:
        mixed = (h.orders * h.monetary_avg + SPEND_SHRINK_ORDERS * shop_mean) / (
            h.orders + SPEND_SHRINK_ORDERS
        )
        return _finite(mixed, shop_mean), "mean"


def median_next_order_days(model: BetaGeo, h: Histories) -> Array:
    """Days from as_of until the customer has even odds of having ordered again (NaN: never).

    Solves p_alive * (1 - ((alpha + T) / (alpha + T + t))^(r + x)) = 1/2 for t.
    """
    p_alive = model.p_alive(h.x, h.t_x, h.T)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        rest = 1.0 - 0.5 / p_alive
        days = (model.alpha + h.T) * (np.power(rest, -1.0 / (model.r + h.x)) - 1.0)
    usable = (p_alive > 0.5) & np.isfinite(days) & (days <= MAX_NEXT_ORDER_DAYS)
    return np.asarray(np.where(usable, days, np.nan), dtype=np.float64)


def forecast(h: Histories, *, horizon_days: int, value_days: int) -> Forecast:
    """Fit the models on the shop's own customers and forecast every one of them."""
    n = len(h.customer_ids)
    if n == 0:
        empty = np.zeros(0)
        return Forecast("none", empty, empty, empty, empty, empty)
    model, name = _fit_beta_geo(h)
    p_active = _finite(model.p_alive(h.x, h.t_x, h.T), 0.0, high=1.0)
    p_order = _finite(model.p_order_within(float(horizon_days), h.x, h.t_x, h.T), 0.0, high=1.0)
    expected = _finite(model.expected_orders(float(horizon_days), h.x, h.t_x, h.T), p_order)
    year = _finite(model.expected_orders(float(value_days), h.x, h.t_x, h.T), expected)
    spend, spend_name = _spend(h)
    return Forecast(
        model=f"{name}+{spend_name}",
        p_active=p_active,
        p_order=p_order,
        expected_orders=expected,
        next_order_days=median_next_order_days(model, h),
        expected_value=_finite(year * spend, 0.0),
    )
