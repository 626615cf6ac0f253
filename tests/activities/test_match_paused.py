"""A paused journey starts no run: the event is recorded as not starting it, with the pause."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from activities.journey_runs import JourneyActivities
from activities.services import Services
from tests.conftest import ROOT
from trouw.domain.control import set_journey_paused
from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import JourneyRun, JourneyRunEvent
from trouw.domain.ingest import EventIn, ingest_event, wire_event
from trouw.language.contracts import MatchJourneysInput
from trouw.settings import Settings

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_a_paused_journey_starts_no_run_and_says_why(engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "journeys"
    folder.mkdir()
    for name in ("alpha", "beta"):
        (folder / f"{name}.yaml").write_text(
            f"journey: {name}\ntrigger: {{event: purchase}}\nsteps:\n  - {{id: done, exit: done}}\n"
        )
    settings = Settings(
        home=tmp_path / "home", journeys_dir=folder, templates_dir=ROOT / "templates"
    )
    services = Services.from_settings(settings, engine=engine)
    with session_scope(engine) as session:
        set_journey_paused(
            session, journey="beta", paused=True, by="cli:ann", at=NOW, reason="new copy"
        )

    def purchase(event_id: str, order: str) -> MatchJourneysInput:
        with session_scope(engine) as session:
            row, _new = ingest_event(
                session,
                EventIn(
                    id=event_id,
                    type="purchase",
                    customer="c1",
                    order=order,
                    channel="pos",
                    lines=[{"sku": "LAWN-10", "unit_price": "24.95"}],  # type: ignore[list-item]
                    at=NOW,
                ),
            )
            return MatchJourneysInput(customer_id="c1", event=wire_event(row), now=NOW)

    result = JourneyActivities(services)._match(purchase("e1", "o1"))
    assert [plan.journey for plan in result.runs] == ["alpha"]
    with Session(engine) as session:
        assert [r.journey for r in session.exec(select(JourneyRun)).all()] == ["alpha"]
        refused = session.exec(
            select(JourneyRunEvent).where(JourneyRunEvent.kind == "not_started")
        ).one()
    assert refused.journey == "beta"
    assert refused.reason == "journey beta paused since 2026-03-02 09:00 UTC by cli:ann (new copy)"

    with session_scope(engine) as session:
        set_journey_paused(session, journey="beta", paused=False, by="cli:ann", at=NOW)
    again = JourneyActivities(services)._match(purchase("e2", "o2"))
    assert sorted(plan.journey for plan in again.runs) == ["alpha", "beta"]
