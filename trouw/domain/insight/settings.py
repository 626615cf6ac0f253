"""What a shop can tune about insight: horizon, segment mapping, sale periods, breadth."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SegmentRule:
    """A segment for customers whose scores fall in these inclusive ranges (first match wins).

    `fm` is the rounded mean of the F and M scores, floor((f + m + 1) / 2); `orders` bounds the
    customer's number of orders (None: no upper bound).
    """

    name: str
    r: tuple[int, int] = (1, 5)
    fm: tuple[int, int] = (1, 5)
    orders: tuple[int, int | None] = (1, None)

    def matches(self, *, r: int, fm: int, orders: int) -> bool:
        low, high = self.orders
        return (
            self.r[0] <= r <= self.r[1]
            and self.fm[0] <= fm <= self.fm[1]
            and orders >= low
            and (high is None or orders <= high)
        )


# The retail defaults, over the R x FM grid (rows R 5..1, columns FM 1..5), for customers with
# two orders or more; a one-order customer is new (R 5-4), needs_attention (R 3), hibernating
# (R 2) or lost (R 1), since one order says nothing about loyalty:
#   R 5-4: promising | promising | loyal | champions | champions
#   R 3:   needs_attention | needs_attention | loyal | loyal | loyal
#   R 2:   hibernating | hibernating | at_risk | at_risk | at_risk
#   R 1:   lost | lost | at_risk | at_risk | at_risk
DEFAULT_SEGMENTS: tuple[SegmentRule, ...] = (
    SegmentRule("champions", r=(4, 5), fm=(4, 5), orders=(2, None)),
    SegmentRule("loyal", r=(3, 5), fm=(3, 5), orders=(2, None)),
    SegmentRule("new", r=(4, 5), orders=(1, 1)),
    SegmentRule("promising", r=(4, 5)),
    SegmentRule("needs_attention", r=(3, 3)),
    SegmentRule("at_risk", r=(1, 2), fm=(3, 5), orders=(2, None)),
    SegmentRule("hibernating", r=(2, 2)),
    SegmentRule("lost", r=(1, 1)),
)

# Name given when no rule of a custom mapping matches (the defaults cover the whole grid).
UNMATCHED_SEGMENT = "other"

# The legal sale periods in Belgium (and the usual ones in the Netherlands) plus Black Friday
# to Cyber Monday at its widest: (month, day) to (month, day), inclusive.
DEFAULT_SALE_PERIODS: tuple[tuple[tuple[int, int], tuple[int, int]], ...] = (
    ((1, 3), (1, 31)),
    ((7, 1), (7, 31)),
    ((11, 22), (12, 2)),
)


@dataclass(frozen=True)
class InsightSettings:
    """Every knob of the insight computation; trouw/settings.py mirrors these with the same names."""

    horizon_days: int = 90
    segments: tuple[SegmentRule, ...] = DEFAULT_SEGMENTS
    sale_periods: tuple[tuple[tuple[int, int], tuple[int, int]], ...] = DEFAULT_SALE_PERIODS
    # A customer is a sale buyer when at least this share of their orders fell in a sale period.
    sale_buyer_share: float = 0.5
    # Broad: bought in at least `broad_min_categories` categories and no category holds more
    # than `broad_max_top_share` of the customer's revenue; everyone else is narrow.
    broad_min_categories: int = 3
    broad_max_top_share: float = 0.6
    # The shop's clock for the typical weekday and hour (IANA name).
    timezone: str = "Europe/Amsterdam"
    # Horizon of `expected_value` (the 12-month customer value).
    value_days: int = 365
