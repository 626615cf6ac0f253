"""Customer insight: RFM, buy-till-you-die forecasts and 'also bought', as pure functions."""

from trouw.domain.insight.choice import ModelChoice
from trouw.domain.insight.facts import LineFact, OrderFact
from trouw.domain.insight.rules import Rule, association_rules, recommend
from trouw.domain.insight.scoring import CustomerInsight, ShopScores, score_customers, score_shop
from trouw.domain.insight.settings import DEFAULT_SEGMENTS, InsightSettings, SegmentRule

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
