"""Journeys on insight in the simulator: one starts on entering at_risk, one branches on the
segment, one reminds three days before the expected next order.

The shipped scenario (journeys/scenarios/insight_segments.yaml) refreshes insight weekly with the
real refresh code; the oracle is the segment history that refresh stored, read back from the
simulation's own database.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import col, select

from tests.conftest import ROOT
from trouw.commands.simulate import RunEntry, SimulationResult, load_scenario, simulate
from trouw.domain.db.engine import make_engine, session_scope
from trouw.domain.db.models import InboundEvent, InsightRefresh, InsightSegmentChange

pytestmark = pytest.mark.slow
SCENARIO = ROOT / "journeys/scenarios/insight_segments.yaml"


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimulationResult, list[tuple]]:
    workdir = tmp_path_factory.mktemp("insight-sim")
    result = asyncio.run(
        simulate(
            load_scenario(SCENARIO),
            journeys_dir=ROOT / "journeys/examples",
            templates_dir=ROOT / "templates",
            workdir=Path(workdir),
        )
    )
    engine = make_engine(f"sqlite:///{workdir / 'simulation.db'}")
    with session_scope(engine) as session:
        baseline = {row.id for row in session.exec(select(InsightRefresh)).all() if row.baseline}
        changes = [
            (row.customer_id, row.at, row.segment, row.refresh_id)
            for row in session.exec(
                select(InsightSegmentChange).order_by(col(InsightSegmentChange.at))
            ).all()
        ]
    engine.dispose()
    return result, [c for c in changes if c[3] not in baseline]


def _runs(result: SimulationResult, journey: str, outcome: str) -> list[RunEntry]:
    return [r for r in result.runs if r.journey == journey and r.outcome == outcome]


def test_a_journey_starts_each_time_a_customer_enters_at_risk(
    simulated: tuple[SimulationResult, list[tuple]],
) -> None:
    result, changes = simulated
    entered = sorted((customer, at) for customer, at, segment, _ in changes if segment == "at_risk")
    # To the minute: the time-skipping server's clock runs a fraction of a second past it.
    started = sorted(
        (r.customer, datetime.fromisoformat(r.moment).replace(second=0, microsecond=0))
        for r in _runs(result, "example_at_risk_winback", "started")
    )

    assert entered, "the scenario must make someone enter at_risk"
    assert "slipping" in {customer for customer, _ in entered}
    assert started == entered
    assert all(
        "segment_entered" in (r.reason or "")
        for r in _runs(result, "example_at_risk_winback", "started")
    )
    sent = [
        e for e in result.timeline if e.journey == "example_at_risk_winback" and e.outcome == "sent"
    ]
    assert {e.customer for e in sent} == {customer for customer, _ in entered}
    assert {e.template for e in sent} == {"reactivation"}


def test_a_journey_branches_on_the_segment_of_the_last_refresh(
    simulated: tuple[SimulationResult, list[tuple]],
) -> None:
    result, _ = simulated
    engine = make_engine(f"sqlite:///{result.workdir / 'simulation.db'}")
    with session_scope(engine) as session:
        history = [
            (row.customer_id, row.at, row.segment)
            for row in session.exec(
                select(InsightSegmentChange).order_by(col(InsightSegmentChange.at))
            ).all()
        ]
    engine.dispose()

    def segment_at(customer: str, moment: datetime) -> str | None:
        known = [seg for who, at, seg in history if who == customer and at <= moment]
        return known[-1] if known else None

    branched = _runs(result, "example_segment_branch", "branched")
    assert len(branched) >= 20
    taken = set()
    for run in branched:
        segment = segment_at(run.customer, datetime.fromisoformat(run.moment))
        if segment == "champions":
            expected = "case 1 → thank"
        elif segment in ("at_risk", "hibernating", "lost"):
            expected = "case 2 → welcome_back"
        else:
            expected = "no case is true → done"
        assert run.reason == expected, (run, segment)
        taken.add(expected)
    assert len(taken) == 3, "the scenario exercises every branch"


def test_a_reminder_is_sent_three_days_before_each_announced_next_order(
    simulated: tuple[SimulationResult, list[tuple]],
) -> None:
    """example_next_order_reminder starts on next_order_expected (announced by the refresh when
    a date is new or moved by 7 days or more) and sends at 10:00 three days before that date,
    unless a purchase or a newer expectation ends it first."""
    result, _ = simulated
    engine = make_engine(f"sqlite:///{result.workdir / 'simulation.db'}")
    with session_scope(engine) as session:
        announced = [
            (
                row.customer_id,
                datetime.fromisoformat(row.payload["data"]["expected_next_order_at"]).replace(
                    second=0, microsecond=0
                ),
            )
            for row in session.exec(
                select(InboundEvent).where(InboundEvent.type == "next_order_expected")
            ).all()
        ]
    engine.dispose()
    started = _runs(result, "example_next_order_reminder", "started")
    sent = [
        e
        for e in result.timeline
        if e.journey == "example_next_order_reminder" and e.outcome == "sent"
    ]

    assert announced, "the refreshes must announce expected next orders"
    assert len(started) == len(announced)
    assert all("next_order_expected" in (r.reason or "") for r in started)
    assert sent, "some reminder must be sent before its customer orders again"
    assert {e.template for e in sent} == {"next_order"}
    brussels = ZoneInfo("Europe/Brussels")
    due = {
        (customer, (at.astimezone(brussels) - timedelta(days=3)).replace(hour=10, minute=0))
        for customer, at in announced
    }
    for e in sent:
        moment = datetime.fromisoformat(e.moment).astimezone(brussels)
        assert (e.customer, moment.replace(second=0, microsecond=0)) in due, e
