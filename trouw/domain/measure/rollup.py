"""The report's counts from per-day roll-ups: fold the triggers' deltas, read a period from them.

Migration 0016 keeps, per UTC day, the journey runs started, the messages created (by step,
outcome and deferral) and the messages engaged (by kind, each message once a day) in
report_*_day, through triggers that append +1/-1 rows to report_*_delta on every insert, update
and delete of journey_run, message and engagement. `counts` gives the numbers that
`trouw.domain.measure.report.ledger_counts` reads from the ledgers, exactly (tests/measure/
test_rollup.py), from:
- the day tables plus the deltas not folded yet, for the whole UTC days of the period;
- the ledgers themselves for the period's first and last partial days;
- for engagement, the messages engaged on more than one day (report_engagement_multiday),
  whose rows it reads so that each counts once over the period, as the ledger's
  COUNT(DISTINCT message_key) does.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from trouw.domain.db.models import (
    Engagement,
    ReportEngagementDay,
    ReportEngagementDelta,
    ReportMessageDay,
    ReportMessageDelta,
    ReportRunDay,
    ReportRunDelta,
)
from trouw.domain.measure.report import (
    Counts,
    EngagedKey,
    engagement_counts,
    ledger_counts,
    message_counts,
    run_counts,
)

log = logging.getLogger("trouw.measure.rollup")

# Two folds at once on PostgreSQL would add the same roll-up rows in different orders.
_FOLD_LOCK = 0x7472_6F75_7701


def _table(day_model: Any, delta_model: Any, count: str) -> tuple[Any, Any, tuple[str, ...], str]:
    """A roll-up: its day table, its delta table, its keys (after the day) and its count."""
    keys = tuple(c.name for c in day_model.__table__.primary_key.columns if c.name != "day")
    return day_model, delta_model, keys, count


_TABLES = (
    _table(ReportRunDay, ReportRunDelta, "runs"),
    _table(ReportMessageDay, ReportMessageDelta, "messages"),
    _table(ReportEngagementDay, ReportEngagementDelta, "messages"),
)


def fold(connection: Connection) -> dict[str, int]:
    """Adds the delta rows into the day tables and deletes them; how many each table folded.

    Reports are exact with or without it (they read the deltas too); it keeps them short.
    """
    postgres = connection.dialect.name == "postgresql"
    if postgres:
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _FOLD_LOCK})
    folded = {}
    for day_model, delta_model, keys, count in _TABLES:
        day_table, delta_table = day_model.__table__, delta_model.__table__
        columns = ", ".join(("day", *keys))
        upsert = (
            f"ON CONFLICT ({columns}) DO UPDATE "
            f"SET {count} = {day_table.name}.{count} + excluded.{count}"
        )
        if postgres:
            # One statement, one snapshot: exactly the deltas it deletes are added (a delta
            # committed meanwhile, even with a lower id, waits for the next fold).
            statement = (
                f"WITH gone AS (DELETE FROM {delta_table.name} RETURNING {columns}, n), "
                f"added AS (INSERT INTO {day_table.name} ({columns}, {count}) "
                f"SELECT {columns}, SUM(n) FROM gone GROUP BY {columns} {upsert} RETURNING 1) "
                "SELECT COUNT(*) FROM gone"
            )
            folded[delta_table.name] = int(connection.execute(sa.text(statement)).scalar_one())
            continue
        # SQLite: the transaction holds the database's one write lock; nothing lands between.
        last = connection.execute(sa.select(sa.func.max(delta_table.c.id))).scalar_one()
        if last is None:
            folded[delta_table.name] = 0
            continue
        connection.execute(
            sa.text(
                f"INSERT INTO {day_table.name} ({columns}, {count}) "
                f"SELECT {columns}, SUM(n) FROM {delta_table.name} WHERE id <= :last "
                f"GROUP BY {columns} {upsert}"
            ),
            {"last": last},
        )
        gone = connection.execute(sa.delete(delta_table).where(delta_table.c.id <= last))
        folded[delta_table.name] = gone.rowcount
    return folded


def fold_pending(engine: Engine) -> dict[str, int]:
    """`fold` in a transaction of its own."""
    with engine.begin() as connection:
        return fold(connection)


async def fold_forever(engine: Engine, *, every: float) -> None:
    """The worker's fold: every `every` seconds (setting `report_fold_seconds`).

    Not at report time: a fold is a write transaction, and on SQLite it would queue every
    report behind the database's one write lock (the click writer, sends, callbacks) and hold
    them up in turn. A report is exact without it (it reads the deltas too); folding keeps the
    deltas it reads few.
    """
    while True:
        try:
            folded = await asyncio.to_thread(fold_pending, engine)
            if any(folded.values()):
                log.debug("report roll-ups folded %s", folded)
        except Exception:  # the database away for a moment: the next round catches up
            log.exception("folding the report roll-ups failed")
        await asyncio.sleep(every)


def _summed(
    connection: Connection,
    table: tuple[Any, Any, tuple[str, ...], str],
    *,
    first: date,
    last: date,
    journey: str | None,
) -> list[Any]:
    """Per key, the day table's counts plus the unfolded deltas over days [first, last)."""
    day_model, delta_model, keys, count = table
    parts = []
    for source, n in ((day_model.__table__, count), (delta_model.__table__, "n")):
        part = sa.select(*(source.c[k] for k in keys), source.c[n].label("n")).where(
            source.c.day >= first, source.c.day < last
        )
        if journey is not None:
            part = part.where(source.c.journey == journey)
        parts.append(part)
    both = sa.union_all(*parts).subquery()
    columns = [both.c[k] for k in keys]
    total = sa.func.sum(both.c.n)
    # One statement: a fold committing meanwhile is seen entirely or not at all.
    return list(
        connection.execute(sa.select(*columns, total).group_by(*columns).having(total != 0))
    )


def _none(value: str) -> str | None:
    """The ledger's NULL, stored as "" in a roll-up key."""
    return value or None


def counts(
    connection: Connection, *, start: datetime, end: datetime, journey: str | None
) -> Counts:
    """`report.ledger_counts` over [start, end), read from the roll-ups where days are whole."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    first = start.date() if start.timetz() == time(tzinfo=UTC) else start.date() + timedelta(1)
    last = end.date()
    begin = datetime.combine(first, time(), tzinfo=UTC)
    until = datetime.combine(last, time(), tzinfo=UTC)
    if begin >= until:  # no whole day: the ledgers' rows are few
        return ledger_counts(connection, start=start, end=end, journey=journey)
    found = Counts()
    runs, messages, engaged = (
        _summed(connection, table, first=first, last=last, journey=journey) for table in _TABLES
    )
    for j, version, status, n in runs:
        found.runs[(j, version, status)] += int(n)
    for j, version, s, channel, state, decision, reason, deferred, n in messages:
        key = (j, _none(version), s, channel, state, decision, _none(reason), bool(deferred))
        found.messages[key] += int(n)
    for j, version, s, channel, kind, n in engaged:
        found.engaged[(j, _none(version), s, channel, kind)] += int(n)
    edges = [(a, b) for a, b in ((start, begin), (until, end)) if a < b]
    for a, b in edges:
        found.runs.update(run_counts(connection, start=a, end=b, journey=journey))
        found.messages.update(message_counts(connection, start=a, end=b, journey=journey))
        found.engaged.update(engagement_counts(connection, start=a, end=b, journey=journey))
    found.engaged.update(
        _spanning(connection, start=start, end=end, whole=(begin, until), journey=journey)
    )
    found.engaged = +found.engaged  # drop keys the correction brought to 0
    return found


def _spanning(
    connection: Connection,
    *,
    start: datetime,
    end: datetime,
    whole: tuple[datetime, datetime],
    journey: str | None,
) -> Counter[EngagedKey]:
    """What to add so that a message engaged on several days (or in several parts of the
    period) counts once: 1 less the times the day sums and the partial days counted it."""
    # From the (few) listed messages to their rows by message key: on SQLite, CROSS JOIN fixes
    # that order and "+" keeps the planner off the kind, time and journey indexes (it took the
    # kind index for the inner lookup: 557 s at 200,000 messages instead of well under 1 s).
    # Only the messages whose first..last days meet the period (the table only grows).
    plus = "+" if connection.dialect.name == "sqlite" else ""
    query = (
        "SELECT e.message_key, e.journey, e.journey_version, e.step, e.channel, e.kind, e.at "
        "FROM report_engagement_multiday md CROSS JOIN engagement e "
        "WHERE md.last_day >= :first_day AND md.first_day <= :last_day "
        f"AND e.message_key = md.message_key AND {plus}e.kind = md.kind "
        f"AND {plus}e.at >= :start AND {plus}e.at < :end"
    )
    if journey is not None:
        query += f" AND {plus}e.journey = :journey"
    e = Engagement.__table__  # type: ignore[attr-defined]
    params: dict[str, Any] = {
        "start": start,
        "end": end,
        "first_day": start.date(),
        "last_day": (end - timedelta(microseconds=1)).date(),
    }
    if journey is not None:
        params["journey"] = journey
    bound = sa.text(query).bindparams(
        sa.bindparam("start", type_=e.c.at.type),
        sa.bindparam("end", type_=e.c.at.type),
        sa.bindparam("first_day", type_=sa.Date()),
        sa.bindparam("last_day", type_=sa.Date()),
    )
    typed = bound.columns(
        *(
            e.c[name]
            for name in (
                "message_key",
                "journey",
                "journey_version",
                "step",
                "channel",
                "kind",
                "at",
            )
        )
    )
    rows: Any = connection.execute(typed, params)
    seen: dict[tuple[str, EngagedKey], set[Any]] = defaultdict(set)
    begin, until = whole
    for message_key, j, version, s, channel, kind, at in rows:
        # A whole day counts once per day it is in; each partial end of the period once.
        part: Any = at.date() if begin <= at < until else ("edge", at < begin)
        seen[(message_key, (j, version, s, channel, kind))].add(part)
    correction: Counter[EngagedKey] = Counter()
    for (_message, key), parts in seen.items():
        correction[key] += 1 - len(parts)
    return correction
