"""Insight and the database: facts from every way in, refresh storage, history, derived events."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from tests.conftest import ROOT
from trouw.domain.context import build_context, recommended_products
from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import (
    CustomerInsightRecord,
    InboundEvent,
    InsightRefresh,
    InsightSegmentChange,
    InsightStage,
    Order,
    OrderLine,
    Product,
)
from trouw.domain.ingest import EventIn, ingest_event
from trouw.domain.insight.store import (
    apply_chunk,
    chunk_bounds,
    finish_refresh,
    load_facts,
    next_order_moved,
    score_and_stage,
    segment_sizes,
)
from trouw.settings import Settings
from trouw.ways_in.api.webshops import process_webhook
from trouw.ways_in.imports.importer import import_file
from trouw.ways_in.webshops import webshop

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SHIFT = timedelta(days=7)


def test_orders_from_the_api_a_webhook_and_a_backfill_count_the_same(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    with session_scope(engine) as session:
        ingest_event(
            session,
            EventIn.model_validate(
                {
                    "id": "api-1",
                    "type": "purchase",
                    "customer": "c-api",
                    "order": "o-api",
                    "channel": "pos",
                    "at": AT,
                    "lines": [{"sku": "LAWN-10", "qty": 2, "unit_price": "24.95"}],
                }
            ),
        )
    order = json.loads((ROOT / "tests/api/data/webshops/shopify/order.json").read_text())["order"]
    assert process_webhook(engine, webshop("shopify"), "orders/create", order, None).status == (
        "accepted"
    )
    history = tmp_path / "history.jsonl"
    history.write_text(
        json.dumps(
            {
                "order_id": "o-imp",
                "customer_id": "c-imp",
                "placed_at": "2025-03-02T09:00:00+01:00",
                "channel": "pos",
                "lines": [{"sku": "LAWN-10", "qty": 1, "unit_price": 24.95}],
            }
        )
        + "\n"
    )
    report = import_file(
        kind="orders", path=history, engine=engine, settings=settings, backfill=True
    )
    assert report.records_new == 1, report

    facts = load_facts(engine)

    by_order = {fact.order_id: fact for fact in facts.orders}
    assert set(by_order) == {"o-api", "o-imp", "shopify:450789469"}
    assert by_order["o-api"].revenue == pytest.approx(49.90)
    assert by_order["o-api"].ordered_at == AT
    assert by_order["o-imp"].ordered_at == datetime(2025, 3, 2, 8, 0, tzinfo=UTC)
    assert by_order["o-imp"].customer_id == "c-imp"
    shop_lines = [line for line in facts.lines if line.order_id == "shopify:450789469"]
    with session_scope(engine) as session:
        stored = session.exec(
            select(OrderLine).where(OrderLine.order_id == "shopify:450789469")
        ).all()
        backfilled = session.exec(
            select(InboundEvent).where(InboundEvent.customer_id == "c-imp")
        ).all()
    assert len(shop_lines) == len(stored) > 0
    assert {line.sku for line in shop_lines} == {line.sku for line in stored}
    # History loaded with --backfill is stored as already relayed: it starts no journeys.
    assert backfilled and all(row.relayed_at is not None for row in backfilled)


def _shop(engine: Engine, orders: list[tuple[str, str, datetime, list[str]]]) -> None:
    """Orders straight into the tables: (customer, order, placed_at, skus at 10.00 each)."""
    with session_scope(engine) as session:
        for sku, category in (("A", "garden"), ("B", "garden"), ("C", "pets"), ("D", "pets")):
            if session.get(Product, sku) is None:
                session.add(Product(sku=sku, name=f"Product {sku}", category=category))
        for customer, order_id, at, skus in orders:
            session.add(
                Order(
                    id=order_id,
                    customer_id=customer,
                    channel="pos",
                    placed_at=at,
                    total=Decimal("10.00") * len(skus),
                )
            )
            for number, sku in enumerate(skus, start=1):
                session.add(
                    OrderLine(
                        order_id=order_id,
                        line_no=number,
                        sku=sku,
                        name=sku,
                        qty=1,
                        unit_price=Decimal("10.00"),
                    )
                )


def test_returned_orders_and_orders_after_the_cut_off_are_left_out(engine: Engine) -> None:
    _shop(
        engine,
        [
            ("c1", "o1", AT, ["A", "B"]),
            ("c1", "o2", AT + timedelta(days=10), ["C"]),
            ("c2", "o3", AT, ["A"]),
        ],
    )
    with session_scope(engine) as session:
        returned = session.get(Order, "o3")
        assert returned is not None
        returned.returned_at = AT + timedelta(days=1)
        session.add(returned)

    facts = load_facts(engine, as_of=AT + timedelta(days=5))

    assert [fact.order_id for fact in facts.orders] == ["o1"]
    assert sorted((line.sku, line.category) for line in facts.lines) == [
        ("A", "garden"),
        ("B", "garden"),
    ]


def _refresh(engine: Engine, settings: Settings, refresh_id: str, as_of: datetime) -> int:
    count = score_and_stage(
        engine, settings, refresh_id=refresh_id, as_of=as_of, horizon_days=None, now=as_of
    )
    events = 0
    for first, last in chunk_bounds(engine, refresh_id=refresh_id, size=7):
        events += apply_chunk(
            engine,
            refresh_id=refresh_id,
            first=first,
            last=last,
            now=as_of,
            next_order_shift=SHIFT,
        ).events
    finish_refresh(engine, refresh_id=refresh_id, now=as_of)
    assert count > 0
    return events


def _regulars(days: int) -> list[tuple[str, str, datetime, list[str]]]:
    """Twenty customers: ten buy every month, ten bought twice long ago."""
    orders = []
    for n in range(10):
        for month in range(days // 30):
            orders.append((f"r{n:02}", f"r{n}-{month}", AT + timedelta(days=30 * month), ["A"]))
    for n in range(10):
        orders.append((f"s{n:02}", f"s{n}-0", AT, ["B", "C"]))
        orders.append((f"s{n:02}", f"s{n}-1", AT + timedelta(days=20), ["D"]))
    return orders


def test_refresh_stores_insight_and_announces_segment_changes_after_the_baseline(
    engine: Engine, settings: Settings
) -> None:
    _shop(engine, _regulars(240))
    first = AT + timedelta(days=30)

    assert _refresh(engine, settings, "first", first) == 0  # the baseline announces nothing

    with session_scope(engine) as session:
        rows = session.exec(select(CustomerInsightRecord)).all()
        assert len(rows) == 20
        assert all(row.refresh_id == "first" and row.as_of == first for row in rows)
        changes = session.exec(select(InsightSegmentChange)).all()
        assert {change.previous_segment for change in changes} == {None}
        assert len(changes) == 20
        assert session.get(InsightRefresh, "first").baseline  # type: ignore[union-attr]
        before = {row.customer_id: row.segment for row in rows}

    later = AT + timedelta(days=240)
    events = _refresh(engine, settings, "second", later)

    with session_scope(engine) as session:
        after = {row.customer_id: row for row in session.exec(select(CustomerInsightRecord)).all()}
        moved = {c for c in after if after[c].segment != before[c]}
        assert moved, "eight months on, the lapsed customers are in another segment"
        entered = session.exec(
            select(InboundEvent).where(InboundEvent.type == "segment_entered")
        ).all()
        assert {row.customer_id for row in entered} == moved
        for row in entered:
            data = row.payload["data"]
            assert data == {
                "segment": after[row.customer_id].segment,
                "previous_segment": before[row.customer_id],
            }
            assert row.relayed_at is None  # the relay hands it to the customer's workflow
            assert row.source_id == f"insight:second:{row.customer_id}:segment_entered"
            assert after[row.customer_id].segment_since == later
        history = session.exec(
            select(InsightSegmentChange).where(InsightSegmentChange.refresh_id == "second")
        ).all()
        assert {change.customer_id for change in history} == moved
        assert session.exec(select(InsightStage)).all() == []
        sizes = segment_sizes(session)
    assert sum(size["customers"] for size in sizes) == 20
    assert events >= len(moved)


def test_a_retried_chunk_changes_nothing_twice(engine: Engine, settings: Settings) -> None:
    _shop(engine, _regulars(240))
    _refresh(engine, settings, "first", AT + timedelta(days=30))
    later = AT + timedelta(days=240)
    score_and_stage(engine, settings, refresh_id="again", as_of=later, horizon_days=None, now=later)
    (first, last), *_ = chunk_bounds(engine, refresh_id="again", size=100)
    once = apply_chunk(
        engine, refresh_id="again", first=first, last=last, now=later, next_order_shift=SHIFT
    )
    twice = apply_chunk(
        engine, refresh_id="again", first=first, last=last, now=later, next_order_shift=SHIFT
    )

    assert once.events > 0 and twice.events == 0 and twice.changes == 0
    with session_scope(engine) as session:
        ids = session.exec(
            select(InboundEvent.source_id).where(
                col(InboundEvent.source_id).like("insight:again:%")
            )
        ).all()
    assert len(ids) == len(set(ids)) == once.events


def test_context_holds_insight_and_recommendations_without_the_order(
    engine: Engine, settings: Settings
) -> None:
    _shop(engine, _regulars(240))
    _refresh(engine, settings, "first", AT + timedelta(days=240))
    with session_scope(engine) as session:
        context = build_context(
            session, customer_id="s00", order_id="s0-1", skus=[], now=AT + timedelta(days=241)
        )
        unknown = build_context(session, customer_id="nobody", order_id=None, skus=[], now=AT)
        stored = session.get(CustomerInsightRecord, "r00")
        assert stored is not None and stored.recommendations
        picks = recommended_products(session, "r00", exclude=[stored.recommendations[0]])
        cold = recommended_products(session, "nobody", exclude=[])

    insight = context["insight"]
    assert insight["segment"] and insight["orders"] == 2 and insight["as_of"] is not None
    assert 0.0 <= insight["p_active"] <= 1.0
    assert set(unknown["insight"].values()) == {None}
    assert stored.recommendations[0] not in [pick["sku"] for pick in picks]
    assert all(pick["sku"] != "A" for pick in picks)  # r00 bought A already
    assert cold  # the best sellers, for a customer the refresh did not know


def test_a_next_order_is_news_when_first_known_or_moved_by_the_shift() -> None:
    day = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
    assert next_order_moved(None, day, shift=SHIFT)  # none announced yet
    assert not next_order_moved(day, None, shift=SHIFT)  # nothing expected: nothing to say
    assert not next_order_moved(None, None, shift=SHIFT)
    assert not next_order_moved(day, day + timedelta(days=6, hours=23), shift=SHIFT)
    assert next_order_moved(day, day + SHIFT, shift=SHIFT)
    assert not next_order_moved(day, day - timedelta(days=6), shift=SHIFT)
    assert next_order_moved(day, day - SHIFT, shift=SHIFT)


def test_next_order_expected_is_emitted_for_a_date_moved_by_seven_days_or_more(
    engine: Engine, settings: Settings
) -> None:
    _shop(engine, _regulars(240))
    _refresh(engine, settings, "first", AT + timedelta(days=30))  # the baseline: no event
    with session_scope(engine) as session:
        announced = {
            row.customer_id: row.announced_next_order_at
            for row in session.exec(select(CustomerInsightRecord)).all()
        }
    dated = sorted(c for c, at in announced.items() if at is not None)
    assert len(dated) >= 4, "the regular buyers have an expected next order"
    later = AT + timedelta(days=60)
    score_and_stage(
        engine, settings, refresh_id="second", as_of=later, horizon_days=None, now=later
    )
    # Each staged date set by hand, relative to the one announced before.
    moves: dict[str, timedelta | None] = {c: timedelta(0) for c in announced}
    moves.update({dated[0]: timedelta(days=6), dated[1]: SHIFT, dated[2]: -SHIFT - SHIFT})
    moves[dated[3]] = None  # no next order expected any more
    with session_scope(engine) as session:
        for row in session.exec(select(InsightStage)).all():
            move, before = moves[row.customer_id], announced[row.customer_id]
            expected = None if move is None or before is None else before + move
            row.data = {**row.data, "expected_next_order_at": expected and expected.isoformat()}
            session.add(row)
    for first, last in chunk_bounds(engine, refresh_id="second", size=7):
        apply_chunk(
            engine, refresh_id="second", first=first, last=last, now=later, next_order_shift=SHIFT
        )

    with session_scope(engine) as session:
        events = session.exec(
            select(InboundEvent).where(InboundEvent.type == "next_order_expected")
        ).all()
        rows = {r.customer_id: r for r in session.exec(select(CustomerInsightRecord)).all()}
    by_customer = {e.customer_id: e for e in events}
    assert set(by_customer) == {dated[1], dated[2]}
    for customer in (dated[1], dated[2]):
        new = announced[customer] + moves[customer]  # type: ignore[operator]
        event = by_customer[customer]
        assert event.payload["data"] == {"expected_next_order_at": new.isoformat()}
        assert event.source_id == f"insight:second:{customer}:next_order_expected"
        assert event.occurred_at == later
        assert rows[customer].announced_next_order_at == new
    # Moved by less than the shift, or no longer expected: the announced date stays.
    assert rows[dated[0]].announced_next_order_at == announced[dated[0]]
    assert rows[dated[0]].expected_next_order_at == announced[dated[0]] + timedelta(days=6)  # type: ignore[operator]
    assert rows[dated[3]].announced_next_order_at == announced[dated[3]]
    assert rows[dated[3]].expected_next_order_at is None
