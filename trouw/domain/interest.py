"""Who listens, as the database knows it: live runs' versions and what they listen to
(journey_version), and events match_journeys has not answered yet (inbound_event.matched_at)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime

from sqlalchemy import bindparam, update
from sqlmodel import Session, col, select

from trouw.domain.db.engine import insert_new
from trouw.domain.db.models import InboundEvent, JourneyRun, JourneyVersion
from trouw.language.journey.model import Journey


def register_versions(session: Session, journeys: Iterable[Journey]) -> None:
    """Record what these versions' runs listen to, once each (before their first runs are
    recorded): one statement for all of them."""
    rows = {
        journey.version: {
            "version": journey.version,
            "journey": journey.name,
            "listens": sorted(journey.listens_to()),
        }
        for journey in journeys
    }
    if rows:
        table = JourneyVersion.__table__  # type: ignore[attr-defined]
        session.execute(insert_new(session, table, key=["version"]), list(rows.values()))


# Built once (every match_journeys runs it); the event and the time are bound.
_MARK_MATCHED = (
    update(InboundEvent)
    .where(col(InboundEvent.source_id) == bindparam("event_source_id"))
    .where(col(InboundEvent.matched_at).is_(None))
    .values(matched_at=bindparam("matched_now"))
)


def mark_matched(session: Session, source_id: str, now: datetime) -> None:
    """match_journeys answered this event: the runs it starts are recorded in this transaction."""
    session.execute(_MARK_MATCHED, {"event_source_id": source_id, "matched_now": now})


def live_listens(session: Session) -> dict[str, list[str] | None]:
    """For each version with a live run (held or running: its record says running), what its
    runs listen to; None for a version with no journey_version row (its first run was
    recorded before versions were), whose listens nobody can tell."""
    live = select(JourneyRun.version).where(col(JourneyRun.status) == "running").distinct()
    versions = list(session.exec(live).all())
    rows = session.exec(
        select(col(JourneyVersion.version), JourneyVersion.listens).where(
            col(JourneyVersion.version).in_(versions)
        )
    ).all()
    known: dict[str, list[str]] = {version: list(listens) for version, listens in rows}
    return {version: known.get(version) for version in versions}


def unmatched_starts(
    session: Session, customers: Collection[str], types: Collection[str]
) -> list[tuple[str, str, int]]:
    """(customer, type, row id) of these customers' events of these types that match_journeys
    has not answered yet (parked ones never reach it)."""
    if not customers or not types:
        return []
    rows = session.exec(
        select(InboundEvent.customer_id, InboundEvent.type, InboundEvent.id)
        .where(col(InboundEvent.customer_id).in_(customers))
        .where(col(InboundEvent.type).in_(types))
        .where(col(InboundEvent.matched_at).is_(None))
        .where(col(InboundEvent.parked_at).is_(None))
    ).all()
    return [(customer, kind, int(row_id or 0)) for customer, kind, row_id in rows]


def live_versions(session: Session, customers: Collection[str]) -> dict[str, set[str]]:
    """The versions of each of these customers' live runs (held or running)."""
    found: dict[str, set[str]] = {}
    if not customers:
        return found
    rows = session.exec(
        select(JourneyRun.customer_id, JourneyRun.version)
        .where(col(JourneyRun.customer_id).in_(customers))
        .where(col(JourneyRun.status) == "running")
    ).all()
    for customer, version in rows:
        found.setdefault(customer, set()).add(version)
    return found
