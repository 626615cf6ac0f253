"""Which model answers each forecast figure, chosen by a backtest in the shop's own history.

The backtest holds back the last learning window of the shop's history (the horizon, at most
half of the history), fits every candidate on what precedes it and scores it on what the
customers then did: expected orders by RMSE, P(order) by how well it ranked who ordered (AUC;
another ranking replaces recency's only when it is significantly better).
Nothing outside the shop's own orders is looked at (docs/insight.md, "Which model answers").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Simplest first: a tie (or a candidate that could not be scored) goes to the simpler one.
#   bgnbd    BG/NBD alone;
#   recency  BG/NBD's answers handed out in order of days since the last order, then order days;
#   learned  BG/NBD corrected by the regressions learned at the cut before (forecast.py).
CANDIDATES: tuple[str, ...] = ("bgnbd", "recency", "learned")
# Below the backtest's minimum these answer: BG/NBD's counts (its aggregate is the model's own)
# and recency's ranking (on CDNOW and its small samples never below chance, docs/decisions.md).
FALLBACK_COUNTS = "bgnbd"
FALLBACK_RANKING = "recency"
# The backtest is run when the held-back window has at least this many customers before it,
# and at least this many of them ordered in it and this many did not; with fewer, one noisy
# window would choose, so the fallbacks answer.
MIN_BACKTEST_CUSTOMERS = 300
MIN_BACKTEST_CASES = 30
# A ranking no better than a coin at the backtest is not used for P(order).
CHANCE_AUC = 0.5
# Another ranking replaces recency's only when its backtest AUC is higher by more than this many
# standard errors of the difference (DeLong's, forecast.auc_difference): a ranking no better
# than recency passes about once in 44 backtests. Fixed a priori (the usual 95 % two-sided),
# not tuned on any shop.
SIGNIFICANCE_Z = 2.0


@dataclass(frozen=True)
class FigureChoice:
    """The model chosen for one figure, why, and every candidate's backtest score."""

    model: str
    reason: str
    metric: str = ""  # rmse | auc ("" when no backtest was run)
    scores: Mapping[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "reason": self.reason,
            "metric": self.metric,
            "scores": {name: round(score, 4) for name, score in self.scores.items()},
        }


@dataclass(frozen=True)
class ModelChoice:
    """The models a refresh used for expected orders and for P(order) (and its next-order
    date, which is where that probability reaches the shop's threshold)."""

    expected_orders: FigureChoice
    p_order: FigureChoice
    window_days: int = 0  # the held-back window (0: no backtest)
    customers: int = 0  # customers before the held-back window that the backtest scored
    buyers: int = 0  # of them, those who ordered in the window

    def as_dict(self) -> dict[str, Any]:
        return {
            "expected_orders": self.expected_orders.as_dict(),
            "p_order": self.p_order.as_dict(),
            "window_days": self.window_days,
            "customers": self.customers,
            "buyers": self.buyers,
        }


def too_little_history(customers: int, buyers: int) -> str | None:
    """Why the backtest cannot choose (None: it can)."""
    if customers < MIN_BACKTEST_CUSTOMERS:
        return (
            f"fallback: {customers} customers before the backtest window "
            f"(fewer than {MIN_BACKTEST_CUSTOMERS})"
        )
    if min(buyers, customers - buyers) < MIN_BACKTEST_CASES:
        return (
            f"fallback: {buyers} of {customers} customers ordered in the backtest window "
            f"(needs {MIN_BACKTEST_CASES} who did and {MIN_BACKTEST_CASES} who did not)"
        )
    return None


def fallback(reason: str) -> ModelChoice:
    """The simple, robust answer for a shop whose history cannot back a choice."""
    return ModelChoice(
        expected_orders=FigureChoice(FALLBACK_COUNTS, reason),
        p_order=FigureChoice(FALLBACK_RANKING, reason),
    )


def _scored(scores: Mapping[str, float], available: frozenset[str]) -> list[tuple[str, float]]:
    """The candidates that can answer today and were scored, simplest first."""
    return [
        (name, scores[name])
        for name in CANDIDATES
        if name in available and name in scores and math.isfinite(scores[name])
    ]


def choose_counts(rmse: Mapping[str, float], available: frozenset[str]) -> FigureChoice:
    """The lowest backtest RMSE of expected orders; a tie goes to the simpler candidate."""
    ranked = _scored(rmse, available)
    if not ranked:
        return FigureChoice(FALLBACK_COUNTS, "fallback: no candidate could be scored", "rmse", rmse)
    best, score = min(ranked, key=lambda item: item[1])  # min keeps the first of equals
    return FigureChoice(best, f"lowest backtest RMSE ({score:.3f})", "rmse", dict(rmse))


def choose_ranking(
    auc: Mapping[str, float], available: frozenset[str], *, errors: Mapping[str, float]
) -> FigureChoice:
    """The highest backtest AUC of P(order); a tie goes to the simpler candidate. When the best
    ranked no better than chance, recency answers and the reason says so. `errors` holds, per
    candidate, the standard error of its AUC minus recency's: the best replaces recency only
    when it is higher by more than SIGNIFICANCE_Z of them (a small shop's one window is a noisy
    judge; a missing or non-finite error counts as not significant)."""
    ranked = _scored(auc, available)
    if not ranked:
        return FigureChoice(FALLBACK_RANKING, "fallback: no candidate could be scored", "auc", auc)
    best, score = max(ranked, key=lambda item: item[1])  # max keeps the first of equals
    if score <= CHANCE_AUC:
        return FigureChoice(
            FALLBACK_RANKING,
            f"fallback: no candidate ranked better than chance in the backtest (best {score:.3f})",
            "auc",
            dict(auc),
        )
    reference = auc.get(FALLBACK_RANKING, float("nan"))
    if best != FALLBACK_RANKING and FALLBACK_RANKING in available and math.isfinite(reference):
        error = errors.get(best, float("nan"))
        if not (math.isfinite(error) and score - reference > SIGNIFICANCE_Z * error):
            return FigureChoice(
                FALLBACK_RANKING,
                f"{FALLBACK_RANKING}: {best}'s backtest AUC ({score:.3f}) is not significantly "
                f"above {FALLBACK_RANKING}'s ({reference:.3f}; standard error {error:.3f})",
                "auc",
                dict(auc),
            )
    return FigureChoice(best, f"highest backtest AUC ({score:.3f})", "auc", dict(auc))


def choose(
    rmse: Mapping[str, float],
    auc: Mapping[str, float],
    *,
    auc_errors: Mapping[str, float],
    available: frozenset[str],
    window_days: int,
    customers: int,
    buyers: int,
) -> ModelChoice:
    """Each figure's model from the backtest's scores, or the fallback when the window before
    which they were measured had too few customers or too few of either outcome."""
    short = too_little_history(customers, buyers)
    if short is not None:
        chosen = fallback(short)
        return ModelChoice(chosen.expected_orders, chosen.p_order, window_days, customers, buyers)
    return ModelChoice(
        choose_counts(rmse, available),
        choose_ranking(auc, available, errors=auc_errors),
        window_days,
        customers,
        buyers,
    )
