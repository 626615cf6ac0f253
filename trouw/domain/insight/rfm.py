"""RFM scores 1-5 as quintiles over the shop's own customers, and the segment they name."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from trouw.domain.insight.settings import UNMATCHED_SEGMENT, SegmentRule

# pandas' qcut computes its edges at np.linspace(0, 1, q + 1); the same floats keep ties at
# an edge on the same side as pandas puts them.
_QUANTILES = np.linspace(0.0, 1.0, 6)


def quintile_scores(
    values: NDArray[np.float64], *tiebreaks: NDArray[np.float64]
) -> NDArray[np.int64]:
    """Scores 1-5, higher for higher values: pandas' `qcut(ranks, 5, labels=[1, 2, 3, 4, 5])`.

    The ranks are `rank(method="first")` over the customers ordered by `values`, then by each
    tie-break array in turn (all ascending), so customers with equal values are split across
    quintiles by their other dimensions, and never by chance. One customer alone scores 3
    (pandas refuses to cut a single value into five bins).
    """
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if n == 1:
        return np.full(1, 3, dtype=np.int64)
    # np.lexsort sorts by its last key first.
    order = (
        np.lexsort((*reversed(tiebreaks), values))
        if tiebreaks
        else np.argsort(values, kind="stable")
    )
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = np.arange(1, n + 1, dtype=np.float64)
    edges = np.quantile(np.arange(1, n + 1, dtype=np.float64), _QUANTILES)
    # Bins are right-closed, the lowest edge included: the bin is the count of inner edges < rank.
    return np.searchsorted(edges[1:-1], ranks, side="left").astype(np.int64) + 1


def rfm_scores(
    *, recency_days: NDArray[np.float64], orders: NDArray[np.float64], monetary: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """R (recent is high), F (many orders is high), M (high total spend is high).

    Ties are broken by the two other dimensions: among equal recency the more frequent, then the
    higher spender scores higher; among equal orders the more recent, then the higher spender;
    among equal spend the more frequent, then the more recent.
    """
    recent = -recency_days
    r = quintile_scores(recent, orders, monetary)
    f = quintile_scores(orders, recent, monetary)
    m = quintile_scores(monetary, orders, recent)
    return r, f, m


def fm_score(f: int, m: int) -> int:
    """The combined frequency-monetary score the segment grid uses: (f + m) / 2, halves up."""
    return (f + m + 1) // 2


def segment_of(*, r: int, f: int, m: int, orders: int, rules: Sequence[SegmentRule]) -> str:
    fm = fm_score(f, m)
    for rule in rules:
        if rule.matches(r=r, fm=fm, orders=orders):
            return rule.name
    return UNMATCHED_SEGMENT


def segments(
    *,
    r: NDArray[np.int64],
    f: NDArray[np.int64],
    m: NDArray[np.int64],
    orders: NDArray[np.float64],
    rules: Sequence[SegmentRule],
) -> list[str]:
    """segment_of for every customer at once (first matching rule wins)."""
    fm = (f + m + 1) // 2
    names = [*(rule.name for rule in rules), UNMATCHED_SEGMENT]
    chosen = np.full(len(r), len(rules), dtype=np.int64)
    for k in range(len(rules) - 1, -1, -1):
        rule = rules[k]
        low, high = rule.orders
        hit = (
            (r >= rule.r[0])
            & (r <= rule.r[1])
            & (fm >= rule.fm[0])
            & (fm <= rule.fm[1])
            & (orders >= low)
            & (orders <= (np.inf if high is None else high))
        )
        chosen[hit] = k
    return [names[k] for k in chosen.tolist()]
