"""A message engaged on several days is listed with the days it spans, so that a report reads
only the listed messages whose span meets its period (migration 0017)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from trouw.domain.db.models import Engagement, Message, ReportEngagementMultiday
from trouw.domain.measure.rollup import counts

T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)
WHERE = {"message_key": "m1", "customer_id": "c1", "journey": "welcome"}
WHERE |= {"journey_version": "v1", "step": "a", "channel": "email"}


def _open(n: int, day: int) -> dict[str, Any]:
    at = T0 + timedelta(days=day)
    return {**WHERE, "key": f"open{n}", "kind": "opened", "at": at, "source": "sendgrid"}


def _span(engine: Engine) -> list[tuple[str, str, date, date]]:
    md = ReportEngagementMultiday.__table__  # type: ignore[attr-defined]
    with engine.connect() as c:
        found = c.execute(sa.select(md.c.message_key, md.c.kind, md.c.first_day, md.c.last_day))
        return [tuple(row) for row in found]


def test_the_span_follows_the_rows_and_never_narrows(engine: Engine) -> None:
    e = Engagement.__table__  # type: ignore[attr-defined]
    with engine.begin() as c:
        message = {**WHERE, "category": "service", "template": "t", "created_at": T0}
        message |= {"status_history": [], "consent_snapshot": {}}
        c.execute(Message.__table__.insert(), message)  # type: ignore[attr-defined]
        c.execute(e.insert(), _open(1, 1))
    assert _span(engine) == []  # one day: not listed
    with engine.begin() as c:
        c.execute(e.insert(), _open(2, 3))
    assert _span(engine) == [("m1", "opened", date(2026, 3, 2), date(2026, 3, 4))]
    with engine.begin() as c:
        c.execute(e.insert(), _open(3, 0))
        c.execute(e.update().where(e.c.key == "open2").values(at=T0 + timedelta(days=5)))
    assert _span(engine) == [("m1", "opened", date(2026, 3, 1), date(2026, 3, 6))]
    with engine.begin() as c:
        c.execute(e.delete().where(e.c.key == "open3"))
    assert _span(engine) == [("m1", "opened", date(2026, 3, 1), date(2026, 3, 6))]
    # Whole days around the span, and a period that meets none of it: counted once, or not.
    with engine.connect() as c:
        over = counts(c, start=T0.replace(hour=0), end=T0 + timedelta(days=9), journey=None)
        after = counts(
            c,
            start=datetime(2026, 3, 7, tzinfo=UTC),
            end=datetime(2026, 3, 9, tzinfo=UTC),
            journey=None,
        )
    assert over.engaged == {("welcome", "v1", "a", "email", "opened"): 1}
    assert after.engaged == {}
