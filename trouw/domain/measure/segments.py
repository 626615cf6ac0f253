"""The funnel per customer segment: each step's messages split by the insight segment the
customer was in when the message was made (sent → delivered → opened → clicked → orders).

The segment comes from the segment history (insight_segment_change, written by every insight
refresh): the last change at or before the message's creation, so a customer who later moves on
does not rewrite an old funnel; `unscored` before the customer's first refresh.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from trouw.domain.db.models import Engagement, InsightSegmentChange, Message
from trouw.domain.measure.attribution import Attribution
from trouw.domain.measure.messages import by_key

UNSCORED = "unscored"
_STAGES = ("delivered", "opened", "clicked")


@dataclass
class SegmentStep:
    journey: str
    version: str | None
    step: str
    channel: str
    segment: str
    eligible: int = 0  # messages the runs reached
    sent: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    orders: int = 0  # orders attributed to these messages: the funnel's "converted"
    revenue: float = 0.0


def _spans() -> Any:
    """Each segment a customer was in, from its change to the next (None: still in it)."""
    c = InsightSegmentChange.__table__  # type: ignore[attr-defined]
    until = sa.func.lead(c.c.at).over(partition_by=c.c.customer_id, order_by=(c.c.at, c.c.id))
    return sa.select(c.c.customer_id, c.c.segment, c.c.at.label("since"), until.label("until")).cte(
        "segment_span"
    )


def _with_segment(connection: Connection, m: Any) -> tuple[Any, Any]:
    """The message table with each message's segment then, and that segment's column: each
    database's fast way (bench/segment_funnel_bench.py). PostgreSQL joins on ranges (a "latest
    change before" subquery per message made it scan the history backwards for each one:
    minutes at 100,000 messages); SQLite looks the change up per message by customer, where a
    materialised range join was twice as slow."""
    if connection.dialect.name == "postgresql":
        spans = _spans()
        during = sa.and_(
            spans.c.customer_id == m.c.customer_id,
            spans.c.since <= m.c.created_at,
            sa.or_(spans.c.until.is_(None), m.c.created_at < spans.c.until),
        )
        return m.outerjoin(spans, during), sa.func.coalesce(spans.c.segment, UNSCORED)
    c = InsightSegmentChange.__table__  # type: ignore[attr-defined]
    latest = (
        sa.select(c.c.segment)
        .where(c.c.customer_id == m.c.customer_id, c.c.at <= m.c.created_at)
        .order_by(c.c.at.desc(), c.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return m, sa.func.coalesce(latest, UNSCORED)


def segment_funnel(
    connection: Connection,
    *,
    start: datetime,
    end: datetime,
    attributed: Iterable[Attribution],
    journey: str | None = None,
) -> list[SegmentStep]:
    """Messages made in [start, end), engagement that happened in it, and the orders of the
    period attributed to them, per journey, version, step, channel and segment."""
    m = Message.__table__  # type: ignore[attr-defined]
    e = Engagement.__table__  # type: ignore[attr-defined]
    with_segment, segment = _with_segment(connection, m)
    where = [m.c.created_at >= start, m.c.created_at < end]
    if journey is not None:
        where.append(m.c.journey == journey)
    place = [m.c.journey, m.c.journey_version, m.c.step, m.c.channel]
    found: dict[tuple[str, str | None, str, str, str], SegmentStep] = {}

    def of(key: tuple[str, str | None, str, str, str]) -> SegmentStep:
        if key not in found:
            found[key] = SegmentStep(*key)
        return found[key]

    made: Any = connection.execute(
        sa.select(*place, segment.label("segment"), m.c.state, sa.func.count())
        .select_from(with_segment)
        .where(*where)
        .group_by(*place, "segment", m.c.state)
    )
    for j, version, step, channel, seg, state, count in made:
        row = of((j, version, step, channel, seg))
        row.eligible += count
        if state == "sent":
            row.sent += count
    engaged_where = [e.c.at >= start, e.c.at < end, e.c.kind.in_(_STAGES)]
    if journey is not None:
        engaged_where.append(e.c.journey == journey)
    engaged: Any = connection.execute(
        sa.select(*place, segment.label("segment"), e.c.kind, sa.func.count(sa.distinct(m.c.id)))
        .select_from(e.join(with_segment, m.c.message_key == e.c.message_key))
        .where(*engaged_where)
        .group_by(*place, "segment", e.c.kind)
    )
    for j, version, step, channel, seg, kind, count in engaged:
        row = of((j, version, step, channel, seg))
        setattr(row, kind, getattr(row, kind) + count)
    of_message: dict[str, list[Attribution]] = {}
    for a in attributed:
        of_message.setdefault(a.message_key, []).append(a)
    for key, j, version, step, channel, seg in by_key(
        connection, of_message, *place, segment, source=with_segment
    ):
        row = of((j, version, step, channel, seg))
        for a in of_message[key]:
            row.orders += 1
            row.revenue += float(a.revenue)
    for row in found.values():
        row.revenue = round(row.revenue, 2)
    return sorted(
        found.values(), key=lambda r: (r.journey, r.version or "", r.step, r.channel, r.segment)
    )


def segments_json(rows: Iterable[SegmentStep]) -> list[dict[str, Any]]:
    return [asdict(row) for row in rows]
