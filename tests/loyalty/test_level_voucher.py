"""issue_level_voucher: the gift of the level a run was started for, as the tiers configure it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.custom import CustomActivities
from activities.services import Services
from tests.conftest import ROOT
from trouw.domain.db.models import JourneyRun, Voucher
from trouw.domain.ingest import EventIn, ingest_event
from trouw.domain.loyalty.ledger import add_derived
from trouw.domain.loyalty.rules import LoyaltyRules, Tier
from trouw.language.contracts import CallActivityInput, CallActivityResult
from trouw.settings import Settings

NOW = datetime(2026, 3, 17, 8, 0, tzinfo=UTC)
TIERS = [
    Tier(name="brons", threshold=0),
    Tier(name="zilver", threshold=500, voucher=Decimal("7.50"), voucher_days=30),
    Tier(name="goud", threshold=1500),  # no gift
]


def _run(engine: Engine, level: str | None) -> str:
    """c1's run of loyalty_level, started by a level_reached for `level` (or by a purchase)."""
    workflow_id = f"journey:c1:loyalty_level:{level}"
    source = f"p1>level_reached:{level}" if level else "p1"
    with Session(engine) as session:
        ingest_event(session, EventIn(id="r1", type="register", customer="c1", at=NOW))
        if level:
            add_derived(
                session,
                customer_id="c1",
                source_id=source,
                type="level_reached",
                at=NOW,
                data={"level": level, "points": 671},
            )
        session.add(
            JourneyRun(
                workflow_id=workflow_id,
                customer_id="c1",
                journey="loyalty_level",
                version="v",
                reentry_key=str(level),
                event_source_id=source,
                started_at=NOW,
            )
        )
        session.commit()
    return workflow_id


async def _issue(engine: Engine, tmp_path: Path, workflow_id: str) -> CallActivityResult:
    settings = Settings(
        home=tmp_path / "home",
        journeys_dir=ROOT / "journeys",
        templates_dir=ROOT / "templates",
        loyalty=LoyaltyRules(tiers=TIERS),
    )
    activities = CustomActivities(Services.from_settings(settings, engine=engine))
    result: CallActivityResult = await ActivityEnvironment().run(
        activities.issue_level_voucher,
        CallActivityInput(
            key=f"{workflow_id}#0:gift",
            customer_id="c1",
            journey="loyalty_level",
            args={"prefix": "NIVEAU"},
            now=NOW,
        ),
    )
    return result


async def test_a_level_with_a_gift_issues_its_voucher_once(engine: Engine, tmp_path: Path) -> None:
    workflow_id = _run(engine, "zilver")
    first = await _issue(engine, tmp_path, workflow_id)
    assert first.values["value"] == "7.50"
    assert first.values["expires_at"] == (NOW + timedelta(days=30)).isoformat()
    assert [event.type for event in first.events] == ["voucher_issued"]
    again = await _issue(engine, tmp_path, workflow_id)  # a retried activity
    assert again.values["code"] == first.values["code"]
    with Session(engine) as session:
        voucher = session.get(Voucher, first.values["code"])
        assert voucher is not None and voucher.reason == "level zilver reached"
        assert voucher.workflow_id == workflow_id


async def test_a_level_without_a_gift_issues_nothing(engine: Engine, tmp_path: Path) -> None:
    result = await _issue(engine, tmp_path, _run(engine, "goud"))
    assert (result.values, result.events) == ({}, [])
    with Session(engine) as session:
        assert session.exec(select(Voucher)).all() == []


async def test_a_run_not_started_by_a_level_is_refused(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(ApplicationError, match="needs a run started by level_reached"):
        await _issue(engine, tmp_path, _run(engine, None))
