"""Each customer's order history as of a date, as arrays: counts, dates, spend, habits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from trouw.domain.insight.facts import LineFact, OrderFact
from trouw.domain.insight.settings import InsightSettings

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

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
    # Order days in the last 30 and 91 days before as_of: how the customer buys lately.
    recent_30: NDArray[np.float64]
    recent_91: NDArray[np.float64]
    weekday: list[int]
    hour: list[int]
    season: list[str]
    sale_buyer: list[bool]
    favourite_category: list[str | None]
    breadth: list[str]


def _in_sale(month: int, day: int, settings: InsightSettings) -> bool:
    md = (month, day)
    for start, end in settings.sale_periods:
        if (start <= md <= end) if start <= end else (md >= start or md <= end):
            return True
    return False


_SEASON_NAMES = ("autumn", "spring", "summer", "winter")  # alphabetical: ties go to the first
_SEASON_OF_MONTH = np.array([_SEASON_NAMES.index(_SEASONS[m]) for m in range(12)])


def _mode(
    groups: NDArray[np.int64], values: NDArray[np.int64], n: int, size: int
) -> NDArray[np.int64]:
    """Per group, the most frequent value in 0..size-1; among equals the smallest."""
    counts = np.bincount(groups * size + values, minlength=n * size).reshape(n, size)
    return np.asarray(counts.argmax(axis=1), dtype=np.int64)


def build_histories(
    orders: Sequence[OrderFact],
    lines: Sequence[LineFact],
    *,
    as_of: datetime,
    settings: InsightSettings,
    habits: bool = True,
) -> Histories:
    """Summarise the orders placed at or before `as_of` (later ones are ignored).

    Without `habits` the moment, category and breadth fields hold placeholders and the lines
    are not read: the models' earlier cut needs only the counts. One pass in Python over the
    orders (and lines); the rest is numpy over all customers at once.
    """
    kept = [o for o in orders if o.ordered_at <= as_of]
    ids = sorted({o.customer_id for o in kept})
    n = len(ids)
    index = {c: i for i, c in enumerate(ids)}
    cust = np.fromiter((index[o.customer_id] for o in kept), dtype=np.int64, count=len(kept))
    # Seconds since 1970 in UTC: subtracting aware datetimes needs no time zone lookup.
    seconds = np.fromiter(
        ((o.ordered_at - _EPOCH).total_seconds() for o in kept), dtype=np.float64, count=len(kept)
    )
    revenue = np.fromiter((max(o.revenue, 0.0) for o in kept), dtype=np.float64, count=len(kept))
    as_of_seconds = (as_of - _EPOCH).total_seconds()
    as_of_day = int(as_of_seconds // 86400)

    count = np.bincount(cust, minlength=n).astype(np.float64)
    total = np.bincount(cust, weights=revenue, minlength=n).astype(np.float64)
    order = np.lexsort((seconds, cust))
    starts = np.searchsorted(cust[order], np.arange(n), side="left")
    ends = np.searchsorted(cust[order], np.arange(n), side="right") - 1
    first_index = order[starts] if n else np.zeros(0, dtype=np.int64)
    last_index = order[ends] if n else np.zeros(0, dtype=np.int64)
    first = [kept[int(i)].ordered_at for i in first_index]
    last = [kept[int(i)].ordered_at for i in last_index]
    recency = np.maximum(np.floor((as_of_seconds - seconds[last_index]) / 86400), 0.0)

    # The buy-till-you-die summary: distinct (customer, UTC day) pairs and their spend.
    day = np.floor(seconds / 86400).astype(np.int64)
    pairs, pair_of = np.unique(cust * 10_000_000 + day, return_inverse=True)
    pair_cust = pairs // 10_000_000
    pair_day = pairs % 10_000_000
    pair_spend = np.bincount(pair_of.ravel(), weights=revenue, minlength=len(pairs))
    days = np.bincount(pair_cust, minlength=n).astype(np.float64)
    # Pairs are sorted by customer, then day: the first pair of each customer is its first day.
    first_pair = np.searchsorted(pair_cust, np.arange(n), side="left")
    last_pair = np.searchsorted(pair_cust, np.arange(n), side="right") - 1
    first_day = pair_day[first_pair] if n else np.zeros(0, dtype=np.int64)
    x = days - 1.0
    t_x = (pair_day[last_pair] - first_day).astype(np.float64) if n else np.zeros(0)
    big_t = np.maximum(as_of_day - first_day, 0).astype(np.float64)
    first_spend = pair_spend[first_pair] if n else np.zeros(0)
    spend_by_customer = np.bincount(pair_cust, weights=pair_spend, minlength=n)
    repeat_avg = np.where(x > 0, (spend_by_customer - first_spend) / np.maximum(x, 1.0), 0.0)
    age = as_of_day - pair_day
    recent_30 = np.bincount(pair_cust, weights=(age < 30) * 1.0, minlength=n).astype(np.float64)
    recent_91 = np.bincount(pair_cust, weights=(age < 91) * 1.0, minlength=n).astype(np.float64)

    if habits:
        weekday, hour, season, sale = _moments(kept, cust, seconds, n, settings)
        favourite, breadth = _assortment(lines, kept, index, n, settings)
    else:
        weekday, hour, season = [0] * n, [0] * n, ["winter"] * n
        sale, favourite, breadth = [False] * n, [None] * n, ["narrow"] * n
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
        recent_30=recent_30,
        recent_91=recent_91,
        weekday=weekday,
        hour=hour,
        season=season,
        sale_buyer=sale,
        favourite_category=favourite,
        breadth=breadth,
    )


def _moments(
    kept: list[OrderFact],
    cust: NDArray[np.int64],
    seconds: NDArray[np.float64],
    n: int,
    settings: InsightSettings,
) -> tuple[list[int], list[int], list[str], list[bool]]:
    """Typical weekday, hour and season in the shop's time zone, and sale buying."""
    zone = ZoneInfo(settings.timezone)
    # The local calendar of each quarter hour, computed once per distinct quarter: every
    # time zone's offset, and every change of it, falls on a quarter hour.
    local_of_hour: dict[int, tuple[int, int, int, bool]] = {}
    hours = (seconds // 900).astype(np.int64)
    weekday = np.empty(len(kept), dtype=np.int64)
    hour = np.empty(len(kept), dtype=np.int64)
    month = np.empty(len(kept), dtype=np.int64)
    in_sale = np.empty(len(kept), dtype=np.float64)
    for k, (key, o) in enumerate(zip(hours.tolist(), kept, strict=True)):
        local = local_of_hour.get(key)
        if local is None:
            t = o.ordered_at.astimezone(zone)
            local = (t.weekday(), t.hour, t.month, _in_sale(t.month, t.day, settings))
            local_of_hour[key] = local
        weekday[k], hour[k], month[k], in_sale[k] = local
    sale_share = np.bincount(cust, weights=in_sale, minlength=n) / np.maximum(
        np.bincount(cust, minlength=n), 1
    )
    seasons = _mode(cust, _SEASON_OF_MONTH[month - 1], n, 4)
    return (
        _mode(cust, weekday, n, 7).tolist(),
        _mode(cust, hour, n, 24).tolist(),
        [_SEASON_NAMES[s] for s in seasons],
        (sale_share >= settings.sale_buyer_share).tolist(),
    )


def _assortment(
    lines: Sequence[LineFact],
    kept: list[OrderFact],
    index: dict[str, int],
    n: int,
    settings: InsightSettings,
) -> tuple[list[str | None], list[str]]:
    """Favourite category (most line revenue; ties: alphabetical) and narrow or broad."""
    owner = {(o.customer_id, o.order_id): index[o.customer_id] for o in kept}
    rows: list[int] = []
    names: list[str] = []
    spend: list[float] = []
    for line in lines:
        if line.category is None:
            continue
        row = owner.get((line.customer_id, line.order_id))
        if row is not None:
            rows.append(row)
            names.append(line.category)
            # Spend decides; a free line still counts as a purchase in its category.
            spend.append(max(line.revenue, 0.0) + 1e-9)
    favourite: list[str | None] = [None] * n
    breadth = ["narrow"] * n
    if not rows:
        return favourite, breadth
    categories, codes = np.unique(np.array(names), return_inverse=True)
    matrix = sparse.csr_matrix(
        (np.asarray(spend), (np.asarray(rows), codes.ravel())), shape=(n, len(categories))
    )
    matrix.sum_duplicates()
    has = np.diff(matrix.indptr) > 0
    # Columns are sorted and categories alphabetical: argmax takes the first of equals.
    top = np.asarray(matrix.argmax(axis=1)).ravel()
    top_spend = np.asarray(matrix.max(axis=1).toarray()).ravel()
    share = top_spend / np.maximum(np.asarray(matrix.sum(axis=1)).ravel(), 1e-300)
    wide = (np.diff(matrix.indptr) >= settings.broad_min_categories) & (
        share <= settings.broad_max_top_share
    )
    names_of = categories.tolist()
    for i in np.flatnonzero(has).tolist():
        favourite[i] = names_of[top[i]]
        if wide[i]:
            breadth[i] = "broad"
    return favourite, breadth
