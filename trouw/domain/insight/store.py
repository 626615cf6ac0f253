"""Insight and the database: facts out in one streaming query, scores in, changes out as events."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, delete, func, select

from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import (
    Customer,
    CustomerInsightRecord,
    InboundEvent,
    InsightRefresh,
    InsightSegmentChange,
    InsightStage,
    Order,
    OrderLine,
    Product,
)
from trouw.settings import Settings

if TYPE_CHECKING:
    from trouw.domain.insight import CustomerInsight, InsightSettings
    from trouw.domain.insight.facts import LineFact, OrderFact

# The derived events a refresh emits (journeys start on them like on any other event).
SEGMENT_ENTERED = "segment_entered"
NEXT_ORDER_EXPECTED = "next_order_expected"
# Rows fetched per round trip while streaming the facts.
FETCH_ROWS = 20_000


@dataclass(frozen=True)
class Facts:
    orders: list[OrderFact]
    lines: list[LineFact]


def _utc(value: Any) -> datetime:
    """A placed_at as the driver gives it: text on SQLite (stored in UTC), a datetime elsewhere."""
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def facts_query(as_of: datetime | None) -> sa.Select[Any]:
    """Every kept order with its lines and their category, in one statement.

    Returned orders are left out (as `history.*` leaves them out; as of a moment, those returned
    by then); orders from the API, webshop
    webhooks and `trouw import orders --backfill` are the same rows, so they count the same.
    Raw column types: the loader parses each order's time once, not once per line.
    """
    order = Order.__table__  # type: ignore[attr-defined]
    line = OrderLine.__table__  # type: ignore[attr-defined]
    product = Product.__table__  # type: ignore[attr-defined]
    query = sa.select(
        order.c.customer_id,
        order.c.id,
        sa.type_coerce(order.c.placed_at, sa.String),
        sa.type_coerce(order.c.total, sa.Float),
        line.c.sku,
        product.c.category,
        line.c.qty,
        sa.type_coerce(line.c.unit_price, sa.Float),
    ).select_from(
        order.outerjoin(line, line.c.order_id == order.c.id).outerjoin(
            product, product.c.sku == line.c.sku
        )
    )
    if as_of is None:
        return query.where(order.c.returned_at.is_(None))
    # As of a past moment, an order returned later was still kept then.
    return query.where(
        order.c.placed_at <= as_of,
        sa.or_(order.c.returned_at.is_(None), order.c.returned_at > as_of),
    )


def load_facts(engine: Engine, *, as_of: datetime | None = None) -> Facts:
    """OrderFact and LineFact for every kept order up to `as_of`, streamed from the database.

    Ids, skus and categories are interned: a million lines share a few hundred thousand strings.
    """
    from trouw.domain.insight.facts import LineFact, OrderFact

    orders: list[OrderFact] = []
    lines: list[LineFact] = []
    seen: set[str] = set()
    intern = sys.intern
    with engine.connect() as connection:
        result = connection.execution_options(stream_results=True, yield_per=FETCH_ROWS).execute(
            facts_query(as_of)
        )
        # Whole partitions, not row by row: SQLAlchemy's per-row fetch cost more than the rows.
        for partition in result.partitions():
            for customer_id, order_id, placed_at, total, sku, category, qty, price in partition:
                customer_id = intern(customer_id)
                if order_id not in seen:
                    order_id = intern(order_id)
                    seen.add(order_id)
                    orders.append(
                        OrderFact(customer_id, order_id, _utc(placed_at), float(total or 0))
                    )
                if sku is None:
                    continue  # an order without lines
                lines.append(
                    LineFact(
                        customer_id,
                        intern(order_id),
                        intern(sku),
                        intern(category) if category is not None else None,
                        int(qty),
                        float(price or 0) * int(qty),
                    )
                )
    return Facts(orders, lines)


# --- one refresh: start, stage, apply in chunks, finish --------------------------------------


def start_refresh(
    engine: Engine, *, refresh_id: str, as_of: datetime, horizon_days: int, now: datetime
) -> InsightRefresh:
    """The refresh row (kept on a retry). The first refresh ever is a baseline: it records
    segments without announcing them, so installing Trouw over years of history does not start
    a journey for every customer at once."""
    with session_scope(engine) as session:
        row = session.get(InsightRefresh, refresh_id)
        if row is None:
            known = session.exec(select(func.count()).select_from(CustomerInsightRecord)).one()
            row = InsightRefresh(
                id=refresh_id,
                as_of=as_of,
                horizon_days=horizon_days,
                started_at=now,
                baseline=known == 0,
            )
            session.add(row)
            session.flush()
        session.expunge(row)
        return row


def _stage_data(insight: CustomerInsight, recommendations: list[str]) -> dict[str, Any]:
    # A shallow copy of the fields (dataclasses.asdict deep-copies: 3x slower here).
    data = {field.name: getattr(insight, field.name) for field in dataclasses.fields(insight)}
    for key, value in data.items():
        if isinstance(value, datetime):
            data[key] = value.isoformat()
    data["recommendations"] = recommendations
    return data


def stage_scores(
    engine: Engine,
    *,
    refresh_id: str,
    insights: Sequence[CustomerInsight],
    recommendations: dict[str, list[str]],
    popular: list[str],
    now: datetime,
    models: dict[str, Any] | None = None,
    batch: int = 5000,
    progress: Any = None,
) -> None:
    """Park the scores of a refresh in insight_stage (a retry starts the staging over)."""
    with session_scope(engine) as session:
        session.exec(delete(InsightStage).where(col(InsightStage.refresh_id) == refresh_id))
    stage = InsightStage.__table__  # type: ignore[attr-defined]
    for start in range(0, len(insights), batch):
        rows = [
            {
                "refresh_id": refresh_id,
                "customer_id": insight.customer_id,
                "data": _stage_data(insight, recommendations.get(insight.customer_id, [])),
            }
            for insight in insights[start : start + batch]
        ]
        with engine.begin() as connection:
            connection.execute(stage.insert(), rows)
        if progress is not None:
            progress(start + len(rows))
    with session_scope(engine) as session:
        row = session.get(InsightRefresh, refresh_id)
        assert row is not None
        row.customers = len(insights)
        row.popular = popular
        row.models = models or {}
        row.scored_at = now
        session.add(row)


def insight_settings(settings: Settings, *, horizon_days: int | None = None) -> InsightSettings:
    """The pure package's settings from Trouw's (the insight_* keys of config/trouw.toml)."""
    from trouw.domain.insight import InsightSettings
    from trouw.domain.insight.settings import DEFAULT_SEGMENTS, SegmentRule

    segments = tuple(
        SegmentRule(
            name=str(rule["name"]),
            r=tuple(rule.get("r", (1, 5))),
            fm=tuple(rule.get("fm", (1, 5))),
            orders=tuple(rule.get("orders", (1, None))),
        )
        for rule in settings.insight_segments
    )
    return InsightSettings(
        horizon_days=horizon_days or settings.insight_horizon_days,
        segments=segments or DEFAULT_SEGMENTS,
        sale_buyer_share=settings.insight_sale_buyer_share,
        broad_min_categories=settings.insight_broad_min_categories,
        broad_max_top_share=settings.insight_broad_max_top_share,
        timezone=settings.default_timezone,
        value_days=settings.insight_value_days,
    )


# An id no customer has: recommend() answers it with the best sellers (the cold start).
NOBODY = "\x00nobody"


def score_and_stage(
    engine: Engine,
    settings: Settings,
    *,
    refresh_id: str,
    as_of: datetime,
    horizon_days: int | None,
    now: datetime,
    progress: Callable[[object], None] | None = None,
) -> int:
    """Read the facts, score every customer and their recommendations, stage them; returns
    how many customers were scored."""
    from trouw.domain.insight import recommend, score_shop

    tuned = insight_settings(settings, horizon_days=horizon_days)
    start_refresh(
        engine, refresh_id=refresh_id, as_of=as_of, horizon_days=tuned.horizon_days, now=now
    )
    facts = load_facts(engine, as_of=as_of)
    if progress:
        progress(f"scoring {len(facts.orders)} orders")
    scored = score_shop(
        facts.orders,
        facts.lines,
        as_of=as_of,
        horizon_days=tuned.horizon_days,
        settings=tuned,
    )
    insights = scored.customers
    if progress:
        progress(f"recommending for {len(insights)} customers")
    top = settings.insight_recommendations
    ids = [insight.customer_id for insight in insights]
    # The facts stop at as_of already: recommend() needs no cut-off of its own.
    recommendations = recommend(facts.lines, customer_ids=[*ids, NOBODY], top=top)
    popular = recommendations.pop(NOBODY, [])
    del facts

    def staged(count: int) -> None:
        if progress:
            progress(f"stored {count}/{len(insights)}")

    stage_scores(
        engine,
        refresh_id=refresh_id,
        insights=insights,
        recommendations=recommendations,
        popular=popular,
        now=now,
        models=scored.choice.as_dict(),
        progress=staged,
    )
    return len(insights)


def refresh_staged(engine: Engine, refresh_id: str) -> bool:
    """Whether this refresh has scored the shop already."""
    with session_scope(engine) as session:
        row = session.get(InsightRefresh, refresh_id)
        return row is not None and (row.scored_at is not None or row.status == "done")


def chunk_bounds(engine: Engine, *, refresh_id: str, size: int) -> list[tuple[str, str]]:
    """The staged customers cut into chunks of `size`: (first id, last id), inclusive."""
    with session_scope(engine) as session:
        ids = session.exec(
            select(InsightStage.customer_id)
            .where(InsightStage.refresh_id == refresh_id)
            .order_by(col(InsightStage.customer_id))
        ).all()
    return [(ids[n], ids[min(n + size, len(ids)) - 1]) for n in range(0, len(ids), size)]


@dataclass(frozen=True)
class ChunkOutcome:
    customers: int
    changes: int
    events: int


def _parse(data: dict[str, Any], key: str) -> datetime | None:
    value = data.get(key)
    return None if value is None else datetime.fromisoformat(value)


def _record(data: dict[str, Any], *, refresh: Any) -> dict[str, Any]:
    """A customer_insight row's columns from a staged score."""
    columns = set(CustomerInsightRecord.model_fields)
    row = {key: value for key, value in data.items() if key in columns}
    for key in ("first_order_at", "last_order_at", "expected_next_order_at"):
        row[key] = _parse(data, key)
    row.update(refresh_id=refresh.id, as_of=refresh.as_of, horizon_days=refresh.horizon_days)
    return row


def _event(
    refresh: Any, customer_id: str, kind: str, data: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """An inbound_event row for the relay: the same table every way in writes to."""
    return {
        # One per refresh, customer and kind: the chunk that wrote it is never applied again.
        "source_id": f"insight:{refresh.id}:{customer_id}:{kind}",
        "type": kind,
        "customer_id": customer_id,
        "occurred_at": refresh.as_of,
        "received_at": now,
        "payload": {"order_id": None, "skus": [], "data": data},
        "relay_attempts": 0,
    }


def next_order_moved(
    announced: datetime | None, expected: datetime | None, *, shift: timedelta
) -> bool:
    """Whether a new expected next order is news: none announced yet, or it moved by `shift`."""
    if expected is None:
        return False
    return announced is None or abs(expected - announced) >= shift


def apply_chunk(
    engine: Engine,
    *,
    refresh_id: str,
    first: str,
    last: str,
    now: datetime,
    next_order_shift: timedelta,
) -> ChunkOutcome:
    """Apply the staged scores of customers first..last: replace their insight row, keep the
    segment change, and emit segment_entered / next_order_expected for journeys to start on.

    Idempotent: a chunk retried after a worker died finds its rows, changes and events.
    Core statements, not ORM objects: a chunk of 10,000 customers is a handful of round trips.
    """
    insight = CustomerInsightRecord.__table__  # type: ignore[attr-defined]
    stage = InsightStage.__table__  # type: ignore[attr-defined]
    history = InsightSegmentChange.__table__  # type: ignore[attr-defined]
    inbound = InboundEvent.__table__  # type: ignore[attr-defined]
    customer = Customer.__table__  # type: ignore[attr-defined]
    in_chunk = sa.and_(stage.c.refresh_id == refresh_id, stage.c.customer_id.between(first, last))
    rows: list[dict[str, Any]] = []
    changes: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    with engine.begin() as connection:
        refresh = connection.execute(
            sa.select(InsightRefresh.__table__).where(  # type: ignore[attr-defined]
                InsightRefresh.__table__.c.id == refresh_id  # type: ignore[attr-defined]
            )
        ).one()
        staged = connection.execute(
            sa.select(stage.c.customer_id, stage.c.data)
            .where(in_chunk)
            .where(
                ~stage.c.customer_id.in_(
                    sa.select(customer.c.id).where(
                        customer.c.erased.is_(True), customer.c.id.between(first, last)
                    )
                )
            )
        ).all()
        current = {
            row.customer_id: row
            for row in connection.execute(
                sa.select(
                    insight.c.customer_id,
                    insight.c.refresh_id,
                    insight.c.segment,
                    insight.c.segment_since,
                    insight.c.announced_next_order_at,
                ).where(insight.c.customer_id.between(first, last))
            )
        }
        for customer_id, data in staged:
            old = current.get(customer_id)
            if old is not None and old.refresh_id == refresh_id:
                continue  # applied before this chunk was retried
            values = _record(data, refresh=refresh)
            previous = old.segment if old is not None else None
            moved = previous != values["segment"]
            values["segment_since"] = refresh.as_of if old is None or moved else old.segment_since
            announced = old.announced_next_order_at if old is not None else None
            expected = values.get("expected_next_order_at")
            announce = next_order_moved(announced, expected, shift=next_order_shift)
            values["announced_next_order_at"] = expected if announce else announced
            rows.append(values)
            if moved:
                changes.append(
                    {
                        "customer_id": customer_id,
                        "refresh_id": refresh_id,
                        "at": refresh.as_of,
                        "segment": values["segment"],
                        "previous_segment": previous,
                    }
                )
            if refresh.baseline:
                continue
            if moved:
                data_ = {"segment": values["segment"], "previous_segment": previous}
                events.append(_event(refresh, customer_id, SEGMENT_ENTERED, data_, now))
            if announce and expected is not None:
                data_ = {"expected_next_order_at": expected.isoformat()}
                events.append(_event(refresh, customer_id, NEXT_ORDER_EXPECTED, data_, now))
        if rows:
            connection.execute(
                insight.delete().where(insight.c.customer_id.in_([r["customer_id"] for r in rows]))
            )
            connection.execute(insight.insert(), rows)
        if changes:
            connection.execute(history.insert(), changes)
        if events:
            connection.execute(inbound.insert(), events)
    return ChunkOutcome(customers=len(staged), changes=len(changes), events=len(events))


def finish_refresh(engine: Engine, *, refresh_id: str, now: datetime) -> InsightRefresh:
    """Drop the staged scores and close the refresh with its counts."""
    with session_scope(engine) as session:
        session.exec(delete(InsightStage).where(col(InsightStage.refresh_id) == refresh_id))
        row = session.get(InsightRefresh, refresh_id)
        assert row is not None
        if row.status != "done":
            row.changes = session.exec(
                select(func.count())
                .select_from(InsightSegmentChange)
                .where(InsightSegmentChange.refresh_id == refresh_id)
            ).one()
            row.status = "done"
            row.finished_at = now
            session.add(row)
            session.flush()
        session.expunge(row)
        return row


# --- reading ------------------------------------------------------------------------------


def insight_of(session: Session, customer_id: str) -> CustomerInsightRecord | None:
    return session.get(CustomerInsightRecord, customer_id)


def latest_refresh(session: Session) -> InsightRefresh | None:
    return session.exec(
        select(InsightRefresh)
        .where(InsightRefresh.status == "done")
        .order_by(col(InsightRefresh.finished_at).desc())
    ).first()


def segment_sizes(session: Session) -> list[dict[str, Any]]:
    """Customers, revenue and average expected value per segment, largest first."""
    rows = session.exec(
        select(
            CustomerInsightRecord.segment,
            func.count(),
            func.sum(CustomerInsightRecord.monetary_total),
            func.avg(CustomerInsightRecord.expected_value),
        )
        .group_by(col(CustomerInsightRecord.segment))
        .order_by(func.count().desc(), col(CustomerInsightRecord.segment))
    ).all()
    return [
        {
            "segment": segment,
            "customers": int(count),
            "revenue": round(float(revenue or 0), 2),
            "expected_value_avg": round(float(value or 0), 2),
        }
        for segment, count, revenue, value in rows
    ]


def segment_history(session: Session, customer_id: str) -> list[InsightSegmentChange]:
    return list(
        session.exec(
            select(InsightSegmentChange)
            .where(InsightSegmentChange.customer_id == customer_id)
            .order_by(col(InsightSegmentChange.at))
        ).all()
    )


def iter_insights(session: Session) -> Iterator[CustomerInsightRecord]:
    yield from session.exec(
        select(CustomerInsightRecord).order_by(col(CustomerInsightRecord.customer_id))
    )


def customer_view(session: Session, customer_id: str) -> dict[str, Any] | None:
    """One customer's insight as the API answers it and `trouw insight customer` tells it:
    the last refresh's fields, the segment history and the recommended products."""
    from trouw.domain.context import INSIGHT_FIELDS, recommended_products

    row = session.get(CustomerInsightRecord, customer_id)
    if row is None:
        return None
    return {
        "customer_id": customer_id,
        **{name: getattr(row, name) for name in INSIGHT_FIELDS},
        "refresh_id": row.refresh_id,
        "segment_history": [
            {
                "at": change.at,
                "segment": change.segment,
                "previous_segment": change.previous_segment,
            }
            for change in segment_history(session, customer_id)
        ],
        "recommendations": [
            {"sku": product["sku"], "name": product["name"], "price": product["price"]}
            for product in recommended_products(session, customer_id, exclude=[], top=5)
        ],
    }


def segments_view(session: Session) -> dict[str, Any]:
    """Segment sizes and revenue, with the refresh they come from."""
    latest = latest_refresh(session)
    return {
        "refresh_id": latest.id if latest else None,
        "as_of": latest.as_of if latest else None,
        "customers": sum(size["customers"] for size in segment_sizes(session)),
        "segments": segment_sizes(session),
    }


def score_now(
    engine: Engine, settings: Settings, *, as_of: datetime, horizon_days: int | None = None
) -> tuple[Facts, list[CustomerInsight]]:
    """Score every customer as of a moment, straight from the orders (nothing is stored)."""
    from trouw.domain.insight import score_customers

    tuned = insight_settings(settings, horizon_days=horizon_days)
    facts = load_facts(engine, as_of=as_of)
    insights = score_customers(
        facts.orders, facts.lines, as_of=as_of, horizon_days=tuned.horizon_days, settings=tuned
    )
    return facts, insights
