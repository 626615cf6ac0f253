"""The facts insight is computed from: one row per order and per order line, from any way in."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple


class OrderFact(NamedTuple):
    """One order (API, webhook or import), returns already netted out of `revenue`."""

    customer_id: str
    order_id: str
    ordered_at: datetime  # tz-aware UTC
    revenue: float  # shop currency, net of returns (>= 0)


class LineFact(NamedTuple):
    """One order line; `category` is None when the product has none."""

    customer_id: str
    order_id: str
    sku: str
    category: str | None
    quantity: int
    revenue: float
