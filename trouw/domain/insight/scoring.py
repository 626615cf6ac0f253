"""score_shop: everything insight knows about each customer as of a date, and the models used."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from trouw.domain.insight.choice import ModelChoice
from trouw.domain.insight.facts import LineFact, OrderFact
from trouw.domain.insight.forecast import forecast
from trouw.domain.insight.history import Histories, build_histories
from trouw.domain.insight.rfm import rfm_scores, segments
from trouw.domain.insight.settings import InsightSettings


@dataclass(frozen=True)
class CustomerInsight:
    """One customer as of a date. Field meanings: docs/insight.md, "Models"."""

    customer_id: str
    orders: int
    first_order_at: datetime
    last_order_at: datetime
    recency_days: int
    frequency: int  # repeat purchase days (days with an order after the first one)
    monetary_total: float
    monetary_avg: float
    r: int
    f: int
    m: int
    segment: str
    p_active: float
    p_order: float  # within the horizon
    expected_orders: float  # within the horizon
    expected_next_order_at: datetime | None
    expected_value: float  # over settings.value_days (12 months by default)
    weekday: int  # 0 = Monday, in the shop's time zone
    hour: int
    season: str  # winter | spring | summer | autumn
    sale_buyer: bool
    favourite_category: str | None
    breadth: str  # narrow | broad
    model: str  # which model or fallback answered


def _earlier_cut(
    orders: Sequence[OrderFact],
    h: Histories,
    *,
    as_of: datetime,
    horizon_days: int,
    settings: InsightSettings,
) -> tuple[Histories | None, NDArray[np.float64] | None, int]:
    """The shop as it was one learning window ago, and what each of its customers did since.

    The window is the horizon, but at most half of the shop's history, so that the earlier cut
    keeps half of it to learn from.
    """
    if not h.customer_ids:
        return None, None, 0
    span = (as_of - min(h.first_order_at)).days
    window = min(horizon_days, span // 2)
    if window < 7:
        return None, None, 0
    cut = as_of - timedelta(days=window)
    earlier = build_histories(orders, [], as_of=cut, settings=settings, habits=False)
    now = dict(zip(h.customer_ids, h.x, strict=True))
    # Order days after the cut: days now minus days then (x counts days after the first).
    later = np.array([now[c] - x for c, x in zip(earlier.customer_ids, earlier.x, strict=True)])
    return earlier, np.maximum(later, 0.0), window


@dataclass(frozen=True)
class ShopScores:
    """Every customer's insight, and which model answered each forecast figure and why."""

    customers: list[CustomerInsight]
    choice: ModelChoice


def score_customers(
    orders: Sequence[OrderFact],
    lines: Sequence[LineFact],
    *,
    as_of: datetime,
    horizon_days: int = 90,
    settings: InsightSettings | None = None,
) -> list[CustomerInsight]:
    """Every customer with an order at or before `as_of`, sorted by id (score_shop's)."""
    return score_shop(
        orders, lines, as_of=as_of, horizon_days=horizon_days, settings=settings
    ).customers


def score_shop(
    orders: Sequence[OrderFact],
    lines: Sequence[LineFact],
    *,
    as_of: datetime,
    horizon_days: int = 90,
    settings: InsightSettings | None = None,
) -> ShopScores:
    """Every customer with an order at or before `as_of`, sorted by id; later orders are ignored.

    Never raises for small or degenerate data and never returns NaN: see the fallbacks in
    docs/insight.md, "Models".
    """
    if horizon_days < 1:
        raise ValueError("horizon_days must be at least 1")
    config = settings or InsightSettings()
    h = build_histories(orders, lines, as_of=as_of, settings=config)
    r, f, m = rfm_scores(recency_days=h.recency_days, orders=h.orders, monetary=h.monetary_total)
    earlier, later_counts, window = _earlier_cut(
        orders, h, as_of=as_of, horizon_days=horizon_days, settings=config
    )
    # One window earlier again: where the learned candidate learns for the backtest.
    before, before_counts, before_window = (None, None, 0)
    if earlier is not None:
        cut = as_of - timedelta(days=window)
        before, before_counts, before_window = _earlier_cut(
            orders, earlier, as_of=cut, horizon_days=window, settings=config
        )
    fc = forecast(
        h,
        horizon_days=horizon_days,
        value_days=config.value_days,
        earlier=earlier,
        later_counts=later_counts,
        window_days=window,
        before=before,
        before_counts=before_counts,
        before_window=before_window,
    )
    names = segments(r=r, f=f, m=m, orders=h.orders, rules=config.segments)
    result: list[CustomerInsight] = []
    for i, customer in enumerate(h.customer_ids):
        orders_i = int(h.orders[i])
        next_days = fc.next_order_days[i]
        result.append(
            CustomerInsight(
                customer_id=customer,
                orders=orders_i,
                first_order_at=h.first_order_at[i],
                last_order_at=h.last_order_at[i],
                recency_days=int(h.recency_days[i]),
                frequency=int(h.x[i]),
                monetary_total=round(float(h.monetary_total[i]), 2),
                monetary_avg=round(float(h.monetary_avg[i]), 2),
                r=int(r[i]),
                f=int(f[i]),
                m=int(m[i]),
                segment=names[i],
                p_active=float(fc.p_active[i]),
                p_order=float(fc.p_order[i]),
                expected_orders=float(fc.expected_orders[i]),
                expected_next_order_at=(
                    None if np.isnan(next_days) else as_of + timedelta(days=float(next_days))
                ),
                expected_value=round(float(fc.expected_value[i]), 2),
                weekday=h.weekday[i],
                hour=h.hour[i],
                season=h.season[i],
                sale_buyer=h.sale_buyer[i],
                favourite_category=h.favourite_category[i],
                breadth=h.breadth[i],
                model=fc.model,
            )
        )
    return ShopScores(result, fc.choice)
