"""Customer insight: RFM, buy-till-you-die forecasts and 'also bought', as pure functions."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from trouw.domain.insight.choice import ModelChoice
from trouw.domain.insight.facts import LineFact, OrderFact
from trouw.domain.insight.settings import DEFAULT_SEGMENTS, InsightSettings, SegmentRule

if TYPE_CHECKING:
    from trouw.domain.insight.rules import Rule, association_rules, recommend
    from trouw.domain.insight.scoring import (
        CustomerInsight,
        ShopScores,
        score_customers,
        score_shop,
    )

# Imported on first use: they load numpy and SciPy (some 90 MiB), and a worker imports this
# package for the insight activities' store, which needs them only when a refresh runs.
_NUMERIC = {
    "Rule": "rules",
    "association_rules": "rules",
    "recommend": "rules",
    "CustomerInsight": "scoring",
    "ShopScores": "scoring",
    "score_customers": "scoring",
    "score_shop": "scoring",
}


def __getattr__(name: str) -> Any:
    module = _NUMERIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_SEGMENTS",
    "CustomerInsight",
    "InsightSettings",
    "ModelChoice",
    "LineFact",
    "OrderFact",
    "Rule",
    "SegmentRule",
    "ShopScores",
    "association_rules",
    "recommend",
    "score_customers",
    "score_shop",
]
