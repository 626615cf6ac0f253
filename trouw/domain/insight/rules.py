"""'Also bought': pair association rules counted sparsely, and recommendations from them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from trouw.domain.insight.facts import LineFact, OrderFact

Level = Literal["product", "category"]


@dataclass(frozen=True)
class Rule:
    """Antecedent -> consequent, with the measures mlxtend's association_rules gives them."""

    antecedent: str
    consequent: str
    support: float  # share of baskets holding both
    confidence: float  # P(consequent | antecedent)
    lift: float  # confidence / support of the consequent
    level: str


@dataclass(frozen=True)
class _Baskets:
    """Baskets (one per order) as a sparse 0/1 matrix, baskets x items."""

    matrix: sparse.csr_matrix
    items: list[str]
    basket_customers: list[str]


def _baskets(lines: Sequence[LineFact], level: Level) -> _Baskets:
    basket_index: dict[tuple[str, str], int] = {}
    item_index: dict[str, int] = {}
    customers: list[str] = []
    rows: list[int] = []
    cols: list[int] = []
    for line in lines:
        item = line.sku if level == "product" else line.category
        if item is None:
            continue
        key = (line.customer_id, line.order_id)
        row = basket_index.get(key)
        if row is None:
            row = basket_index[key] = len(basket_index)
            customers.append(line.customer_id)
        col = item_index.get(item)
        if col is None:
            col = item_index[item] = len(item_index)
        rows.append(row)
        cols.append(col)
    shape = (len(basket_index), len(item_index))
    matrix = sparse.csr_matrix(
        (np.ones(len(rows), dtype=np.float64), (np.asarray(rows), np.asarray(cols))), shape=shape
    )
    # An item on two lines of one order counts once: baskets are sets.
    matrix.data[:] = 1.0
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return _Baskets(matrix=matrix, items=list(item_index), basket_customers=customers)


def _lines_until(
    lines: Sequence[LineFact], orders: Sequence[OrderFact] | None, as_of: datetime | None
) -> Sequence[LineFact]:
    if as_of is None:
        return lines
    if orders is None:
        raise ValueError("as_of needs the orders, whose dates say which lines came before it")
    kept = {(o.customer_id, o.order_id) for o in orders if o.ordered_at <= as_of}
    return [line for line in lines if (line.customer_id, line.order_id) in kept]


def _pair_counts(matrix: sparse.csr_matrix, keep: NDArray[np.int64]) -> sparse.coo_matrix:
    """Co-occurrence counts of the kept items, off the diagonal, as a sparse matrix."""
    sub = matrix[:, keep].tocsc()
    co = (sub.T @ sub).tocoo()
    off = co.row != co.col
    return sparse.coo_matrix((co.data[off], (co.row[off], co.col[off])), shape=co.shape)


def association_rules(
    lines: Sequence[LineFact],
    *,
    level: Level = "product",
    min_support: float = 0.001,
    min_confidence: float = 0.0,
    orders: Sequence[OrderFact] | None = None,
    as_of: datetime | None = None,
) -> list[Rule]:
    """Every rule A -> B between two items whose pair is in at least `min_support` of baskets.

    Support, confidence and lift are mlxtend's (support of {A, B}; support({A, B}) / support(A);
    confidence / support(B)); a basket is one order's set of items. Only items that are frequent
    on their own can be in a frequent pair, so pairs are counted among those alone, sparsely.
    Sorted by lift, then confidence, then support (all descending), then the names.
    """
    baskets = _baskets(_lines_until(lines, orders, as_of), level)
    n = baskets.matrix.shape[0]
    if n == 0:
        return []
    item_counts = np.asarray(baskets.matrix.sum(axis=0)).ravel()
    # A small tolerance keeps a pair at exactly the threshold, as mlxtend's >= does.
    needed = min_support * n - 1e-9
    keep = np.flatnonzero(item_counts >= needed)
    if len(keep) < 2:
        return []
    pairs = _pair_counts(baskets.matrix, keep)
    frequent = pairs.data >= needed
    count_ab = pairs.data[frequent]
    a = keep[pairs.row[frequent]]
    b = keep[pairs.col[frequent]]
    support = count_ab / n
    confidence = count_ab / item_counts[a]
    lift = confidence / (item_counts[b] / n)
    chosen = confidence >= min_confidence
    rules = [
        Rule(
            antecedent=baskets.items[int(i)],
            consequent=baskets.items[int(j)],
            support=float(s),
            confidence=float(c),
            lift=float(lf),
            level=level,
        )
        for i, j, s, c, lf in zip(
            a[chosen], b[chosen], support[chosen], confidence[chosen], lift[chosen], strict=True
        )
    ]
    rules.sort(key=lambda r: (-r.lift, -r.confidence, -r.support, r.antecedent, r.consequent))
    return rules


# Each sku keeps its strongest companions only: enough to fill any top-k list, and it keeps the
# customers x skus score matrix sparse however many skus sell together.
COMPANIONS_PER_SKU = 50
# Customers scored at once: bounds the memory of the score matrix.
_CHUNK = 4096


def _top_per_row(matrix: sparse.csr_matrix, tie: NDArray[np.int64], limit: int) -> list[list[int]]:
    """Per row, the columns of the `limit` entries that sort first by value (descending), then
    by `tie` (ascending).

    Sorting every entry by three keys cost minutes at 100,000 customers (docs/performance.md).
    So one float sort (row, then value) finds each row's value at place `limit`, nearly exactly;
    every entry at or above that value less a margin far wider than the float error is kept
    (ties at the cut included), and only those few are sorted by the exact keys.
    """
    n_rows = matrix.shape[0]
    indptr, indices, data = matrix.indptr, matrix.indices, matrix.data
    if len(data) == 0 or limit <= 0:
        return [[] for _ in range(n_rows)]
    row_of = np.repeat(np.arange(n_rows), np.diff(indptr))
    top = float(np.max(np.abs(data))) or 1.0
    # Within a row, in (row - 1/2, row]: larger values first.
    rough = np.argsort(row_of - data / (2.0 * top), kind="stable")
    place = np.arange(len(rough)) - indptr[row_of[rough]]
    first = rough[place < limit]
    cut = np.full(n_rows, np.inf)
    np.minimum.at(cut, row_of[first], data[first])
    kept = np.flatnonzero(data >= cut[row_of] - 1e-9 * top)
    exact = kept[np.lexsort((tie[indices[kept]], -data[kept], row_of[kept]))]
    starts = np.searchsorted(row_of[exact], np.arange(n_rows + 1), side="left")
    columns = indices[exact]
    return [
        columns[starts[r] : min(starts[r + 1], starts[r] + limit)].tolist() for r in range(n_rows)
    ]


def _keep_columns(
    matrix: sparse.csr_matrix, chosen: list[list[int]], shape: tuple[int, int]
) -> sparse.csr_matrix:
    """The matrix with, per row, only the chosen columns' entries."""
    rows = np.repeat(np.arange(len(chosen)), [len(c) for c in chosen])
    cols = np.fromiter((c for row in chosen for c in row), dtype=np.int64, count=len(rows))
    values = np.asarray(matrix[rows, cols]).ravel() if len(rows) else np.zeros(0)
    return sparse.csr_matrix((values, (rows, cols)), shape=shape)


def recommend(
    lines: Sequence[LineFact],
    *,
    customer_ids: Sequence[str] | None,
    top: int = 5,
    exclude: Mapping[str, set[str]] | None = None,
    as_of: datetime | None = None,
    orders: Sequence[OrderFact] | None = None,
) -> dict[str, list[str]]:
    """Up to `top` skus per customer, best first, never one they bought or one in `exclude`.

    A sku's score is the sum, over the skus the customer bought, of the confidence that a basket
    holding that sku also holds this one ("bought with what you bought"), over each sku's
    COMPANIONS_PER_SKU strongest companions; what the pairs do not fill is filled by popularity
    (baskets holding the sku), which is also the whole answer for a customer with no history
    (cold start). Ties go to the more popular sku, then by name. `customer_ids` None means every
    customer in `lines`.
    """
    kept = _lines_until(lines, orders, as_of)
    baskets = _baskets(kept, "product")
    items = baskets.items
    wanted = (
        list(dict.fromkeys(baskets.basket_customers))
        if customer_ids is None
        else list(customer_ids)
    )
    if not items or top <= 0:
        return {customer: [] for customer in wanted}
    item_counts = np.asarray(baskets.matrix.sum(axis=0)).ravel()
    name_rank = np.empty(len(items), dtype=np.float64)
    name_rank[np.argsort(np.array(items), kind="stable")] = np.arange(len(items))
    popularity_order = np.lexsort((name_rank, -item_counts))
    # Among equal scores the more popular sku first, then by name: one integer per sku.
    tie = np.empty(len(items), dtype=np.int64)
    tie[popularity_order] = np.arange(len(items))
    # Customers x items: what each customer bought, across all their baskets.
    customer_index = {c: i for i, c in enumerate(dict.fromkeys(baskets.basket_customers))}
    basket_rows = np.asarray([customer_index[c] for c in baskets.basket_customers])
    owner = sparse.csr_matrix(
        (np.ones(len(basket_rows)), (basket_rows, np.arange(len(basket_rows)))),
        shape=(len(customer_index), baskets.matrix.shape[0]),
    )
    bought = (owner @ baskets.matrix).tocsr()
    bought.data[:] = 1.0
    co = _pair_counts(baskets.matrix, np.arange(len(items))).tocsr()
    # confidence(i -> j) = count(i, j) / count(i): scale row i by 1 / count(i).
    confidence = (sparse.diags(1.0 / np.maximum(item_counts, 1.0)) @ co).tocsr()
    companions = _keep_columns(
        confidence, _top_per_row(confidence, tie, COMPANIONS_PER_SKU), confidence.shape
    )
    extra = exclude or {}
    known = [c for c in wanted if c in customer_index]
    candidates: dict[str, list[int]] = {}
    for lo in range(0, len(known), _CHUNK):
        chunk = known[lo : lo + _CHUNK]
        rows = np.asarray([customer_index[c] for c in chunk])
        owned = bought[rows]
        scores = (owned @ companions).tocsr()
        # Drop what the customer bought: those scores are never candidates.
        scores = (scores - scores.multiply(owned)).tocsr()
        scores.eliminate_zeros()
        room = top + max((len(extra.get(c, ())) for c in chunk), default=0)
        for customer, cols in zip(chunk, _top_per_row(scores, tie, room), strict=True):
            candidates[customer] = cols
    result: dict[str, list[str]] = {}
    for customer in wanted:
        skip = set(extra.get(customer, set()))
        row = customer_index.get(customer)
        if row is not None:
            skip.update(
                items[i] for i in bought.indices[bought.indptr[row] : bought.indptr[row + 1]]
            )
        ranked = [items[i] for i in candidates.get(customer, []) if items[i] not in skip][:top]
        if len(ranked) < top:
            chosen = set(ranked)
            for i in popularity_order:
                sku = items[int(i)]
                if sku not in skip and sku not in chosen:
                    ranked.append(sku)
                    if len(ranked) >= top:
                        break
        result[customer] = ranked
    return result
