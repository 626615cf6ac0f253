"""voucher_expiry starts on voucher_expiring; a voucher whose run of the old version (started on
voucher_issued, sleeping until the reminder) is still in flight gets no second run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from activities.journey_runs import JourneyActivities
from activities.services import Services
from tests.conftest import ROOT
from trouw.domain.db.models import InboundEvent, JourneyRun, JourneyRunEvent
from trouw.domain.ingest import EventIn, ingest_event, wire_event
from trouw.domain.loyalty.sweep import sweep
from trouw.domain.loyalty.vouchers import issue
from trouw.language.contracts import MatchJourneysInput
from trouw.language.journey.triggers import run_workflow_id
from trouw.settings import Settings

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _expiring(engine: Engine) -> tuple[MatchJourneysInput, str]:
    """c1 with a voucher expiring in 30 days, swept 7 days before: its voucher_expiring."""
    with Session(engine) as session:
        ingest_event(
            session,
            EventIn(id="r1", type="register", customer="c1", at=NOW),
        )
        voucher, _new = issue(
            session,
            customer_id="c1",
            value=Decimal("10"),
            expires_at=NOW + timedelta(days=30),
            issued_key="k1",
            now=NOW,
            prefix="VRIEND",
        )
        code = voucher.code
        at = voucher.expires_at - timedelta(days=7)
        assert sweep(session, now=at, expiring_days=7, customer_ids=["c1"]) == 1
        row = session.exec(
            select(InboundEvent).where(InboundEvent.source_id == f"voucher_expiring:{code}")
        ).one()
        session.commit()
        return MatchJourneysInput(customer_id="c1", event=wire_event(row), now=at), code


def _match(engine: Engine, tmp_path: Path, input: MatchJourneysInput) -> list[str]:
    settings = Settings(
        home=tmp_path / "home", journeys_dir=ROOT / "journeys", templates_dir=ROOT / "templates"
    )
    services = Services.from_settings(settings, engine=engine)
    return [plan.journey for plan in JourneyActivities(services)._match(input).runs]


def test_voucher_expiring_starts_the_reminder(engine: Engine, tmp_path: Path) -> None:
    input, _code = _expiring(engine)
    assert _match(engine, tmp_path, input) == ["voucher_expiry"]


def test_a_run_of_the_old_version_in_flight_keeps_the_reminder_to_itself(
    engine: Engine, tmp_path: Path
) -> None:
    input, code = _expiring(engine)
    workflow_id = run_workflow_id("c1", "voucher_expiry", code)
    with Session(engine) as session:
        # The run the old version started on voucher_issued (re-entry by code): same id.
        session.add(
            JourneyRun(
                workflow_id=workflow_id,
                customer_id="c1",
                journey="voucher_expiry",
                version="52b925ef225a",
                reentry_key=code,
                event_source_id=f"voucher_issued:{code}",
                started_at=NOW,
            )
        )
        session.commit()
    assert _match(engine, tmp_path, input) == []
    with Session(engine) as session:
        reasons = session.exec(
            select(JourneyRunEvent.reason).where(JourneyRunEvent.journey == "voucher_expiry")
        ).all()
    assert reasons == [
        f"re-entry guard: run {workflow_id} was started by event voucher_issued:{code} "
        "(re-entry: event.code)"
    ]
