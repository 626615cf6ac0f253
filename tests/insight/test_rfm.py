"""RFM scores against pandas' qcut on ranks, and the segment grid."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from trouw.domain.insight.rfm import fm_score, quintile_scores, rfm_scores, segment_of, segments
from trouw.domain.insight.settings import DEFAULT_SEGMENTS, UNMATCHED_SEGMENT

values = st.lists(st.integers(min_value=0, max_value=6), min_size=2, max_size=60)


def pandas_scores(frame: pd.DataFrame, by: list[str]) -> np.ndarray:
    """The documented definition, in pandas: order by the keys, rank 'first', qcut into 5."""
    ordered = frame.sort_values(by, kind="mergesort")
    ranks = pd.Series(np.arange(1, len(frame) + 1, dtype=float), index=ordered.index)
    ranks = ordered[by[0]].rank(method="first") if len(by) == 1 else ranks
    cut = pd.qcut(ranks, 5, labels=[1, 2, 3, 4, 5])
    return cut.astype(int).reindex(frame.index).to_numpy()


@settings(max_examples=300, deadline=None)
@given(values)
def test_quintiles_equal_pandas_qcut_on_first_ranks(raw: list[int]) -> None:
    frame = pd.DataFrame({"v": np.array(raw, dtype=float)})
    ours = quintile_scores(frame["v"].to_numpy())
    assert ours.tolist() == pandas_scores(frame, ["v"]).tolist()


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 3)), min_size=2, max_size=60
    )
)
def test_ties_broken_by_the_other_dimensions_as_documented(
    rows: list[tuple[int, int, int]],
) -> None:
    frame = pd.DataFrame(rows, columns=["a", "b", "c"], dtype=float)
    ours = quintile_scores(frame["a"].to_numpy(), frame["b"].to_numpy(), frame["c"].to_numpy())
    assert ours.tolist() == pandas_scores(frame, ["a", "b", "c"]).tolist()


@settings(max_examples=200, deadline=None)
@given(values)
def test_each_quintile_holds_a_fifth_of_the_customers(raw: list[int]) -> None:
    scores = quintile_scores(np.array(raw, dtype=float))
    counts = np.bincount(scores, minlength=6)[1:]
    assert counts.sum() == len(raw)
    assert counts.max() - counts.min() <= 1


def test_one_customer_scores_three_and_none_scores_nothing() -> None:
    assert quintile_scores(np.array([7.0])).tolist() == [3]
    assert quintile_scores(np.zeros(0)).tolist() == []


def test_recent_frequent_big_spenders_score_high() -> None:
    recency = np.array([1.0, 10, 100, 200, 400])
    orders = np.array([9.0, 5, 3, 2, 1])
    spend = np.array([900.0, 500, 300, 200, 100])
    r, f, m = rfm_scores(recency_days=recency, orders=orders, monetary=spend)
    assert r.tolist() == [5, 4, 3, 2, 1]
    assert f.tolist() == [5, 4, 3, 2, 1]
    assert m.tolist() == [5, 4, 3, 2, 1]


def test_default_segments_cover_every_cell_of_the_grid() -> None:
    for r in range(1, 6):
        for f in range(1, 6):
            for m in range(1, 6):
                for orders in (1, 2, 10):
                    name = segment_of(r=r, f=f, m=m, orders=orders, rules=DEFAULT_SEGMENTS)
                    assert name != UNMATCHED_SEGMENT


def test_default_segment_names_land_where_documented() -> None:
    def seg(r: int, fm: int, orders: int = 3) -> str:
        return segment_of(r=r, f=fm, m=fm, orders=orders, rules=DEFAULT_SEGMENTS)

    assert seg(5, 5) == "champions"
    assert seg(3, 4) == "loyal"
    assert seg(5, 1, orders=1) == "new"
    assert seg(5, 1) == "promising"
    assert seg(3, 1) == "needs_attention"
    assert seg(1, 5) == "at_risk"
    assert seg(2, 1) == "hibernating"
    assert seg(1, 1) == "lost"
    # One order says nothing about loyalty, whatever it cost.
    assert seg(5, 5, orders=1) == "new"
    assert seg(3, 5, orders=1) == "needs_attention"
    assert seg(1, 5, orders=1) == "lost"
    assert fm_score(4, 5) == 5 and fm_score(1, 2) == 2


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5), st.integers(1, 4)),
        min_size=1,
        max_size=40,
    )
)
def test_segments_of_all_customers_equal_one_at_a_time(
    rows: list[tuple[int, int, int, int]],
) -> None:
    r, f, m, orders = (np.array(col) for col in zip(*rows, strict=True))
    together = segments(r=r, f=f, m=m, orders=orders.astype(float), rules=DEFAULT_SEGMENTS)
    alone = [segment_of(r=a, f=b, m=c, orders=d, rules=DEFAULT_SEGMENTS) for a, b, c, d in rows]
    assert together == alone
