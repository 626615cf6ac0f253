"""Each customer's order history as of a date, as arrays: counts, dates, spend, habits."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TypeVar
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from trouw.insight.facts import LineFact, OrderFact
from trouw.insight.settings import InsightSettings

_K = TypeVar("_K", int, str)

# Meteorological seasons (northern hemisphere), by month.
_SEASONS: tuple[str, ...] = ("winter", "winter", "spring", "spring", "spring", "summer")
_SEASONS += ("summer", "summer", "autumn", "autumn", "autumn", "winter")


@dataclass(frozen=True)
class Histories:
    """One entry per customer, in `customer_ids` order; times in days."""

    customer_ids: list[str]
    orders: NDArray[np.float64]
    first_order_at: list[datetime]
    last_order_at: list[datetime]
    recency_days: NDArray[np.float64]  # whole days from the last order to as_of
    # The buy-till-you-die summary counts calendar days with an order (UTC), as the models do:
    x: NDArray[np.float64]  # repeat purchase days
    t_x: NDArray[np.float64]  # day of the last purchase, counted from the first
    T: NDArray[np.float64]  # age in days at as_of, counted from the first purchase
    monetary_total: NDArray[np.float64]
    monetary_avg: NDArray[np.float64]
    repeat_avg: NDArray[np.float64]  # mean spend per repeat purchase day (Gamma-Gamma's m_x)
    weekday: list[int]
    hour: list[int]
    season: list[str]
    sale_buyer: list[bool]
    favourite_category: list[str | None]
    breadth: list[str]


def _in_sale(day: date, periods: InsightSettings) -> bool:
    md = (day.month, day.day)
    for start, end in periods.sale_periods:
        if (start <= md <= end) if start <= end else (md >= start or md <= end):
            return True
    return False


def _most_common(counter: Counter[_K]) -> _K:
    """The most frequent value; among equals the smallest, so the answer never depends on order."""
    best = max(counter.values())
    return min(value for value, count in counter.items() if count == best)


def build_histories(
    orders: Sequence[OrderFact],
    lines: Sequence[LineFact],
    *,
    as_of: datetime,
    settings: InsightSettings,
) -> Histories:
    """Summarise the orders placed at or before `as_of` (later ones are ignored)."""
    zone = ZoneInfo(settings.timezone)
    as_of_day = as_of.date() if as_of.tzinfo is None else as_of.astimezone(ZoneInfo("UTC")).date()
    per_customer: defaultdict[str, list[OrderFact]] = defaultdict(list)
    for order in orders:
        if order.ordered_at <= as_of:
            per_customer[order.customer_id].append(order)
    ids = sorted(per_customer)
    kept_orders = {(o.customer_id, o.order_id) for c in ids for o in per_customer[c]}
    category_spend: defaultdict[str, defaultdict[str, float]] = defaultdict(
        lambda: defaultdict(float)
    )
    for line in lines:
        if line.category is not None and (line.customer_id, line.order_id) in kept_orders:
            # Spend decides the favourite; a free line still counts as a purchase in it.
            category_spend[line.customer_id][line.category] += max(line.revenue, 0.0) + 1e-9

    n = len(ids)
    count = np.zeros(n)
    recency = np.zeros(n)
    x = np.zeros(n)
    t_x = np.zeros(n)
    big_t = np.zeros(n)
    total = np.zeros(n)
    repeat_avg = np.zeros(n)
    first: list[datetime] = []
    last: list[datetime] = []
    weekday: list[int] = []
    hour: list[int] = []
    season: list[str] = []
    sale: list[bool] = []
    favourite: list[str | None] = []
    breadth: list[str] = []
    for i, customer in enumerate(ids):
        history = sorted(per_customer[customer], key=lambda o: (o.ordered_at, o.order_id))
        first.append(history[0].ordered_at)
        last.append(history[-1].ordered_at)
        count[i] = len(history)
        total[i] = sum(max(o.revenue, 0.0) for o in history)
        recency[i] = max((as_of - history[-1].ordered_at).days, 0)
        day_spend: dict[date, float] = {}
        for o in history:
            day = o.ordered_at.astimezone(ZoneInfo("UTC")).date()
            day_spend[day] = day_spend.get(day, 0.0) + max(o.revenue, 0.0)
        days = sorted(day_spend)
        x[i] = len(days) - 1
        t_x[i] = (days[-1] - days[0]).days
        big_t[i] = max((as_of_day - days[0]).days, 0)
        if len(days) > 1:
            repeat_avg[i] = sum(day_spend[d] for d in days[1:]) / (len(days) - 1)
        local = [o.ordered_at.astimezone(zone) for o in history]
        weekday.append(_most_common(Counter(t.weekday() for t in local)))
        hour.append(_most_common(Counter(t.hour for t in local)))
        season.append(_most_common(Counter(_SEASONS[t.month - 1] for t in local)))
        in_sale = sum(_in_sale(t.date(), settings) for t in local)
        sale.append(in_sale >= settings.sale_buyer_share * len(local))
        spend = category_spend.get(customer)
        if spend:
            top = min(spend, key=lambda name: (-spend[name], name))
            favourite.append(top)
            share = spend[top] / sum(spend.values())
            wide = (
                len(spend) >= settings.broad_min_categories
                and share <= settings.broad_max_top_share
            )
            breadth.append("broad" if wide else "narrow")
        else:
            favourite.append(None)
            breadth.append("narrow")
    return Histories(
        customer_ids=ids,
        orders=count,
        first_order_at=first,
        last_order_at=last,
        recency_days=recency,
        x=x,
        t_x=t_x,
        T=big_t,
        monetary_total=total,
        monetary_avg=total / np.maximum(count, 1.0),
        repeat_avg=repeat_avg,
        weekday=weekday,
        hour=hour,
        season=season,
        sale_buyer=sale,
        favourite_category=favourite,
        breadth=breadth,
    )
