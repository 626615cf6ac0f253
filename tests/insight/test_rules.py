"""Pair rules equal mlxtend's association_rules; recommendations skip what was bought."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import sparse

from trouw.domain.insight import LineFact, association_rules, recommend
from trouw.domain.insight.rules import _top_per_row


def random_lines(seed: int, baskets: int, products: int) -> list[LineFact]:
    rng = np.random.default_rng(seed)
    popularity = rng.dirichlet(np.full(products, 0.5))
    lines = []
    for b in range(baskets):
        size = int(rng.integers(1, 6))
        for sku in rng.choice(products, size=size, p=popularity):
            # Duplicate lines of one sku in a basket happen (two sizes): a basket is a set.
            lines.append(
                LineFact(f"c{b % (baskets // 3 + 1)}", f"o{b}", f"P{sku}", f"K{sku % 4}", 1, 9.5)
            )
    return lines


def mlxtend_pairs(
    lines: list[LineFact], level: str, min_support: float
) -> dict[tuple[str, str], tuple[float, float, float]]:
    frequent_patterns = pytest.importorskip("mlxtend.frequent_patterns")
    item = (lambda line: line.sku) if level == "product" else (lambda line: line.category)
    frame = pd.DataFrame(
        {
            "basket": [f"{line.customer_id}\x1f{line.order_id}" for line in lines],
            "item": [item(line) for line in lines],
        }
    )
    onehot = pd.crosstab(frame["basket"], frame["item"]).astype(bool)
    itemsets = frequent_patterns.fpgrowth(
        onehot, min_support=min_support, use_colnames=True, max_len=2
    )
    if itemsets.empty or (itemsets["itemsets"].map(len) == 2).sum() == 0:
        return {}
    rules = frequent_patterns.association_rules(
        itemsets, num_itemsets=len(onehot), metric="confidence", min_threshold=0.0
    )
    return {
        (next(iter(r.antecedents)), next(iter(r.consequents))): (r.support, r.confidence, r.lift)
        for r in rules.itertuples()
    }


@pytest.mark.parametrize("level", ["product", "category"])
@pytest.mark.parametrize(("seed", "min_support"), [(1, 0.01), (2, 0.002), (3, 0.05)])
def test_rules_equal_mlxtend_association_rules(level: str, seed: int, min_support: float) -> None:
    lines = random_lines(seed, baskets=600, products=40)
    ours = {
        (r.antecedent, r.consequent): (r.support, r.confidence, r.lift)
        for r in association_rules(lines, level=level, min_support=min_support)
    }  # type: ignore[arg-type]
    theirs = mlxtend_pairs(lines, level, min_support)
    assert ours.keys() == theirs.keys()
    assert theirs, "the data should give rules"
    for key, measures in theirs.items():
        np.testing.assert_allclose(ours[key], measures, rtol=0, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([0.01, 0.03, 0.1]))
def test_rules_equal_mlxtend_on_any_small_shop(seed: int, min_support: float) -> None:
    lines = random_lines(seed, baskets=60, products=8)
    ours = {
        (r.antecedent, r.consequent): (r.support, r.confidence, r.lift)
        for r in association_rules(lines, min_support=min_support)
    }
    theirs = mlxtend_pairs(lines, "product", min_support)
    assert ours.keys() == theirs.keys()
    for key, measures in theirs.items():
        np.testing.assert_allclose(ours[key], measures, rtol=0, atol=1e-6)


def test_min_confidence_filters_and_rules_are_sorted_by_lift() -> None:
    lines = random_lines(4, baskets=500, products=20)
    rules = association_rules(lines, min_support=0.01, min_confidence=0.3)
    assert rules and all(r.confidence >= 0.3 for r in rules)
    lifts = [r.lift for r in rules]
    assert lifts == sorted(lifts, reverse=True)


def test_no_baskets_no_rules() -> None:
    assert association_rules([]) == []
    assert recommend([], customer_ids=["c1"]) == {"c1": []}


def basket(customer: str, order: str, *skus: str) -> list[LineFact]:
    return [LineFact(customer, order, sku, None, 1, 10.0) for sku in skus]


def test_recommend_follows_pairs_and_skips_what_was_bought_or_excluded() -> None:
    lines = (
        basket("a", "1", "mower", "oil")
        + basket("b", "2", "mower", "oil", "gloves")
        + basket("c", "3", "mower", "shears")
        + basket("d", "4", "seed")
        + basket("e", "5", "seed")
        + basket("f", "6", "seed")
        + basket("g", "7", "mower")
    )
    result = recommend(lines, customer_ids=["g", "a", "new"], top=3, exclude={"g": {"shears"}})
    assert result["g"][0] == "oil"  # bought with mowers most often
    assert "mower" not in result["g"] and "shears" not in result["g"]
    assert set(result["a"]).isdisjoint({"mower", "oil"})
    # Cold start: the most popular skus.
    assert result["new"] == ["mower", "seed", "oil"]
    assert all(len(v) == 3 for v in result.values())


def test_recommend_for_all_customers_and_as_of() -> None:
    from datetime import UTC, datetime

    from trouw.domain.insight import OrderFact

    lines = basket("a", "1", "x", "y") + basket("a", "2", "z")
    orders = [
        OrderFact("a", "1", datetime(2026, 1, 1, tzinfo=UTC), 20.0),
        OrderFact("a", "2", datetime(2026, 3, 1, tzinfo=UTC), 10.0),
    ]
    assert recommend(lines, customer_ids=None, top=5) == {"a": []}
    before = recommend(
        lines, customer_ids=None, as_of=datetime(2026, 2, 1, tzinfo=UTC), orders=orders
    )
    assert before == {"a": []}  # z was not sold yet, x and y were bought
    with pytest.raises(ValueError, match="as_of needs the orders"):
        recommend(lines, customer_ids=None, as_of=datetime(2026, 2, 1, tzinfo=UTC))


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 6), st.integers(0, 9), st.sampled_from([0.5, 1.0, 1.5, 2.25])),
        max_size=60,
    ),
    st.integers(0, 5),
)
def test_top_per_row_equals_a_full_sort(entries: list[tuple[int, int, float]], limit: int) -> None:
    """The partition-then-sort shortcut keeps exactly the entries a full sort by (value
    descending, tie ascending) puts first in each row, ties at the cut included."""
    cells = {(row, col): value for row, col, value in entries}
    rows = np.array([row for row, _ in cells], dtype=np.int64)
    cols = np.array([col for _, col in cells], dtype=np.int64)
    matrix = sparse.csr_matrix((np.array(list(cells.values())), (rows, cols)), shape=(7, 10))
    tie = np.random.default_rng(limit).permutation(10).astype(np.int64)
    expected = [
        [c for _, _, c in sorted((-v, tie[c], c) for (r, c), v in cells.items() if r == row)][
            :limit
        ]
        for row in range(7)
    ]
    assert _top_per_row(matrix, tie, limit) == expected
