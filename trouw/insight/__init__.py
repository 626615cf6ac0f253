"""Customer insight: RFM, buy-till-you-die forecasts and 'also bought', as pure functions."""

from trouw.insight.facts import LineFact, OrderFact
from trouw.insight.rules import Rule, association_rules, recommend
from trouw.insight.scoring import CustomerInsight, score_customers
from trouw.insight.settings import DEFAULT_SEGMENTS, InsightSettings, SegmentRule

__all__ = [
    "DEFAULT_SEGMENTS",
    "CustomerInsight",
    "InsightSettings",
    "LineFact",
    "OrderFact",
    "Rule",
    "SegmentRule",
    "association_rules",
    "recommend",
    "score_customers",
]
