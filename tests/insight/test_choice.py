"""Choosing each forecast figure's model from the shop's own backtest (pure, milliseconds)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from trouw.domain.insight import OrderFact, score_shop
from trouw.domain.insight.choice import (
    FALLBACK_COUNTS,
    FALLBACK_RANKING,
    MIN_BACKTEST_CASES,
    MIN_BACKTEST_CUSTOMERS,
    choose,
    choose_counts,
    choose_ranking,
)
from trouw.domain.insight.forecast import auc, auc_difference

ALL = frozenset({"bgnbd", "recency", "learned"})
AS_OF = datetime(2026, 6, 1, tzinfo=UTC)


def test_counts_go_to_the_lowest_rmse() -> None:
    chosen = choose_counts({"bgnbd": 1.07, "recency": 1.26, "learned": 1.12}, ALL)
    assert chosen.model == "bgnbd" and "1.070" in chosen.reason
    assert choose_counts({"bgnbd": 1.07, "learned": 1.01}, ALL).model == "learned"


def test_ranking_goes_to_the_highest_auc() -> None:
    sure = {"bgnbd": 0.004, "learned": 0.004}  # standard errors of each AUC minus recency's
    chosen = choose_ranking({"bgnbd": 0.70, "recency": 0.69, "learned": 0.71}, ALL, errors=sure)
    assert chosen.model == "learned" and chosen.metric == "auc"
    assert chosen.scores == {"bgnbd": 0.70, "recency": 0.69, "learned": 0.71}


def test_a_tie_goes_to_the_simpler_candidate() -> None:
    assert choose_counts({"learned": 1.0, "bgnbd": 1.0}, ALL).model == "bgnbd"
    assert choose_ranking({"learned": 0.7, "recency": 0.7}, ALL, errors={}).model == "recency"


def test_a_candidate_unavailable_today_or_unscored_is_not_chosen() -> None:
    simple = frozenset({"bgnbd", "recency"})
    assert choose_counts({"bgnbd": 1.2, "learned": 0.9}, simple).model == "bgnbd"
    unscored = {"bgnbd": float("nan"), "recency": 0.6}
    assert choose_ranking(unscored, ALL, errors={}).model == "recency"
    nothing = choose_counts({"bgnbd": float("nan")}, ALL)
    assert nothing.model == FALLBACK_COUNTS and nothing.reason.startswith("fallback")


def test_a_ranking_no_better_than_chance_is_not_used_silently() -> None:
    chosen = choose_ranking({"bgnbd": 0.47, "recency": 0.45, "learned": 0.48}, ALL, errors={})
    assert chosen.model == FALLBACK_RANKING
    assert "chance" in chosen.reason and chosen.scores["learned"] == 0.48


def test_a_ranking_not_significantly_better_than_recency_leaves_recency_answering() -> None:
    """One held-back window of a small shop is a noisy judge: learned's 0.71 against recency's
    0.69 is one standard error (0.02) above it, so recency keeps answering, and says why."""
    scores = {"bgnbd": 0.70, "recency": 0.69, "learned": 0.71}
    chosen = choose_ranking(scores, ALL, errors={"bgnbd": 0.02, "learned": 0.02})
    assert chosen.model == FALLBACK_RANKING
    assert "not significantly above recency's (0.690" in chosen.reason
    assert chosen.scores == scores
    assert choose_ranking(scores, ALL, errors={}).model == FALLBACK_RANKING  # no evidence
    assert choose_ranking(scores, ALL, errors={"learned": 0.0099}).model == "learned"
    # Two standard errors exactly (binary fractions: no rounding) is not more than two.
    exact = {"recency": 0.5, "learned": 0.75}
    assert choose_ranking(exact, ALL, errors={"learned": 0.125}).model == FALLBACK_RANKING
    assert choose_ranking(exact, ALL, errors={"learned": 0.124}).model == "learned"


def _pairwise_delong(ordered: np.ndarray, scores: list[np.ndarray]) -> tuple[float, float]:
    """DeLong's variance of AUC(first) - AUC(second) from every (ordered, not ordered) pair."""
    positive = ordered > 0
    kernels = []
    for score in scores:
        x, y = score[positive][:, None], score[~positive][None, :]
        kernels.append((x > y) + 0.5 * (x == y))
    m, n = kernels[0].shape
    per_positive = np.array([k.mean(axis=1) for k in kernels])
    per_negative = np.array([k.mean(axis=0) for k in kernels])
    s10, s01 = np.cov(per_positive), np.cov(per_negative)
    variance = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m
    variance += (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    return float(kernels[0].mean() - kernels[1].mean()), float(np.sqrt(variance))


def test_auc_difference_is_delong_s_over_every_pair_ties_included() -> None:
    rng = np.random.default_rng(5)
    for size in (5, 40, 300):
        ordered = rng.poisson(0.6, size).astype(float)
        ordered[:2], ordered[2:4] = 1.0, 0.0  # both outcomes
        first = np.round(ordered + rng.normal(0, 1.5, size), 1)  # ties
        second = rng.integers(0, 4, size).astype(float)  # many ties
        difference, error = auc_difference(ordered, first, second)
        expected_difference, expected_error = _pairwise_delong(ordered, [first, second])
        assert difference == pytest.approx(expected_difference, abs=1e-12)
        assert difference == pytest.approx(auc(ordered, first) - auc(ordered, second), abs=1e-12)
        assert error == pytest.approx(expected_error, rel=1e-9)
    same = rng.normal(size=50)
    assert auc_difference((same > 0).astype(float), same, same) == (0.0, 0.0)
    assert all(np.isnan(auc_difference(np.array([1.0, 0.0, 0.0]), same[:3], same[:3])))


def test_too_little_history_falls_back_whatever_the_scores() -> None:
    scores = {"bgnbd": 1.0, "learned": 0.5}
    ranks = {"bgnbd": 0.6, "learned": 0.9}
    for customers, buyers in (
        (MIN_BACKTEST_CUSTOMERS - 1, 100),
        (1000, MIN_BACKTEST_CASES - 1),
        (1000, 1000 - MIN_BACKTEST_CASES + 1),
    ):
        chosen = choose(
            scores,
            ranks,
            auc_errors={},
            available=ALL,
            window_days=30,
            customers=customers,
            buyers=buyers,
        )
        assert (chosen.expected_orders.model, chosen.p_order.model) == ("bgnbd", "recency")
        assert chosen.p_order.reason.startswith("fallback")
    chosen = choose(
        scores, ranks, auc_errors={}, available=ALL, window_days=30, customers=1000, buyers=100
    )
    assert (chosen.expected_orders.model, chosen.p_order.model) == ("learned", "learned")
    assert chosen.as_dict()["p_order"]["scores"] == {"bgnbd": 0.6, "learned": 0.9}


def young_shop(customers: int, days: int, seed: int) -> list[OrderFact]:
    """A shop opened `days` ago, gaining customers every day, each ordering now and then."""
    rng = np.random.default_rng(seed)
    orders = []
    for i in range(customers):
        t = AS_OF - timedelta(days=float(rng.uniform(0, days)))
        k = 0
        while t <= AS_OF and k < 20:
            orders.append(OrderFact(f"c{i:05d}", f"c{i}-{k}", t, 25.0))
            t = t + timedelta(days=float(rng.exponential(40.0)))
            k += 1
    return orders


def test_a_young_shop_gets_the_fallback_and_says_why() -> None:
    """Three weeks old: the held-back window (10 days) has too few customers before it and too
    few of them ordering in it to choose by, so BG/NBD's counts and recency's ranking answer."""
    scored = score_shop(young_shop(400, 21, 3), [], as_of=AS_OF, horizon_days=90)
    choice = scored.choice
    assert choice.window_days == 10 and choice.customers < MIN_BACKTEST_CUSTOMERS
    assert (choice.expected_orders.model, choice.p_order.model) == ("bgnbd", "recency")
    assert choice.p_order.reason.startswith("fallback") and choice.p_order.scores == {}
    assert {c.model for c in scored.customers} == {"bgnbd orders:bgnbd p:recency spend:gg"}
    assert all(np.isfinite(c.p_order) and np.isfinite(c.expected_orders) for c in scored.customers)
