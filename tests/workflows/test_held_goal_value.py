"""A held run (first step a wait) that a goal ends in the customer workflow records its goal,
time and value like a running one (goal_conversion)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlmodel import select

from tests.conftest import ROOT
from tests.workflows.scenario import START, write_scenario
from trouw.commands.simulate import load_scenario, simulate
from trouw.domain.db.engine import make_engine, session_scope
from trouw.domain.db.models import GoalConversion, JourneyRun

JOURNEY = """\
journey: held_goal
trigger: {event: purchase, reentry: order}
settings:
  category: service
  goals:
    - {event: purchase, name: bought_again}
steps:
  - id: later
    wait: 30d
  - id: tips
    send: email
    template: care_tips
"""


def _purchase(at: str, order: str, qty: int) -> dict[str, object]:
    lines = [{"sku": "LAWN-10", "qty": qty}]
    return {
        "at": at,
        "type": "purchase",
        "customer": "h1",
        "order": order,
        "channel": "pos",
        "lines": lines,
    }


async def test_a_held_run_converted_by_a_purchase_records_its_value(tmp_path: Path) -> None:
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    (journeys / "held_goal.yaml").write_text(JOURNEY)
    customers = [{"id": "h1", "first_name": "Hanne", "email": "h1@example.com", "locale": "nl-BE"}]
    events = [_purchase("0d", "o1", 1), _purchase("5d", "o2", 3)]
    path = write_scenario(tmp_path / "s.yaml", customers=customers, events=events, until="10d")
    runs: dict[str, list[object]] = {}
    await simulate(
        load_scenario(path),
        journeys_dir=journeys,
        templates_dir=ROOT / "templates",
        workdir=tmp_path / "sim",
        run_histories=runs,
    )
    assert "journey:h1:held_goal:o1" not in runs  # held, never started: ended in the customer
    engine = make_engine(f"sqlite:///{tmp_path / 'sim' / 'simulation.db'}")
    with session_scope(engine) as session:
        run = session.exec(
            select(JourneyRun).where(JourneyRun.workflow_id == "journey:h1:held_goal:o1")
        ).one()
        [goal] = session.exec(select(GoalConversion)).all()
        assert run.status == "converted"
        assert (goal.workflow_id, goal.goal, goal.event_type, goal.order_id) == (
            "journey:h1:held_goal:o1",
            "bought_again",
            "purchase",
            "o2",
        )
        assert goal.value == Decimal("74.85")  # 3 x 24.95, the goal event's order
        start = datetime.fromisoformat(START)
        assert abs(goal.at - (start + timedelta(days=5))) < timedelta(minutes=1)
    engine.dispose()
