"""A run's version is recorded with what it listens to, and its event as answered, in the
transaction that records the run."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from sqlmodel import select

from activities.journey_runs import JourneyActivities
from activities.services import Services
from tests.purchases import ingest_purchase
from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import InboundEvent, JourneyRun, JourneyVersion
from trouw.domain.interest import live_listens
from trouw.language.contracts import MatchJourneysInput
from trouw.settings import Settings

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_started_runs_record_their_versions_listens(engine: Engine, settings: Settings) -> None:
    services = Services.from_settings(settings, engine=engine)
    event = ingest_purchase(
        engine,
        id="e1",
        customer="c1",
        order="o1",
        lines=[{"sku": "LAWN-10", "unit_price": "24.95"}],
        at=NOW,
    )
    plans = (
        JourneyActivities(services)
        ._match(MatchJourneysInput(customer_id="c1", event=event, now=NOW))
        .runs
    )
    journeys = services.catalog.journeys()
    with session_scope(engine) as session:
        versions = {v.version: v for v in session.exec(select(JourneyVersion)).all()}
        live = live_listens(session)
    assert {plan.version for plan in plans} == set(versions)
    for plan in plans:
        assert versions[plan.version].listens == sorted(journeys[plan.journey].listens_to())
    assert live == {plan.version: versions[plan.version].listens for plan in plans}
    with session_scope(engine) as session:
        # Answered in the transaction that recorded the runs.
        assert session.exec(select(InboundEvent.matched_at)).one() is not None
    with session_scope(engine) as session:
        for run in session.exec(select(JourneyRun)).all():
            run.status = "completed"
            session.add(run)
    with session_scope(engine) as session:
        assert live_listens(session) == {}  # ended runs listen to nothing
