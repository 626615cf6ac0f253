"""What the versions with live runs listen to, as the database knows it (journey_version)."""

from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from trouw.domain.db.models import JourneyRun, JourneyVersion
from trouw.language.journey.model import Journey


def register_version(session: Session, journey: Journey) -> None:
    """Record what this version's runs listen to, once (before its first run is recorded)."""
    table = JourneyVersion.__table__  # type: ignore[attr-defined]
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(
        dialect.insert(table)
        .values(version=journey.version, journey=journey.name, listens=sorted(journey.listens_to()))
        .on_conflict_do_nothing(index_elements=["version"])
    )


def live_listens(session: Session) -> list[list[str] | None]:
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
    return [known.get(version) for version in versions]
