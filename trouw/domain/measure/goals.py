"""Conversion goals: what a converted run's goal was worth, stored once per run (goal_conversion)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlmodel import Session, select

from trouw.domain.db.models import GoalConversion, InboundEvent, JourneyRun, Order
from trouw.language.contracts import GoalReached


def event_value(data: Any) -> Decimal | None:
    """A custom event's own `value` property, as money (None when it has none or no number)."""
    if not isinstance(data, dict):
        return None
    raw = data.get("value")
    if raw is None or isinstance(raw, bool):
        return None
    try:
        value = Decimal(str(raw)).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        return None
    return value if value.is_finite() and value >= 0 else None


def goal_value(session: Session, goal: GoalReached) -> Decimal | None:
    """The goal event's order total (a purchase), else a custom event's `value` property; a
    `goal:` step, or an event with neither, has no value."""
    if goal.order_id is not None:
        order = session.get(Order, goal.order_id)
        if order is not None:
            return Decimal(order.total)
    if goal.event_id is not None:
        row = session.exec(
            select(InboundEvent).where(InboundEvent.source_id == goal.event_id)
        ).first()
        if row is not None:
            # A custom event's properties are its data (trouw.domain.ingest), `value` among them.
            return event_value((row.payload or {}).get("data"))
    return None


def record_goal(session: Session, run: JourneyRun, goal: GoalReached, *, at: datetime) -> None:
    """The run's conversion, once: a retried record_run finds it there and adds nothing."""
    exists = session.exec(
        select(GoalConversion.id).where(GoalConversion.workflow_id == run.workflow_id)
    ).first()
    if exists is not None:
        return
    session.add(
        GoalConversion(
            workflow_id=run.workflow_id,
            customer_id=run.customer_id,
            journey=run.journey,
            version=run.version,
            goal=goal.goal,
            event_type=goal.event_type,
            event_id=goal.event_id,
            order_id=goal.order_id,
            at=at,
            value=goal_value(session, goal),
        )
    )


def goal_totals(
    connection: Connection, *, start: datetime, end: datetime, journey: str | None = None
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Per journey and version, each goal's conversions in [start, end) and their value
    (`value` sums the conversions that have one; `valued` counts them)."""
    g = GoalConversion.__table__  # type: ignore[attr-defined]
    query = sa.select(
        g.c.journey,
        g.c.version,
        g.c.goal,
        sa.func.count(),
        sa.func.count(g.c.value),
        sa.func.sum(g.c.value),
    ).where(g.c.at >= start, g.c.at < end)
    if journey is not None:
        query = query.where(g.c.journey == journey)
    found: dict[tuple[str, str], list[dict[str, Any]]] = {}
    rows: Any = connection.execute(query.group_by(g.c.journey, g.c.version, g.c.goal))
    for j, version, goal, conversions, valued, value in sorted(rows, key=lambda r: r[:3]):
        found.setdefault((j, version), []).append(
            {
                "goal": goal,
                "conversions": conversions,
                "valued": valued,
                "value": round(float(value or 0), 2),
            }
        )
    return found
