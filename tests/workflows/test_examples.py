"""The example journeys' constructs on the time-skipping server: splits, goals, waits, calls."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.workflows.scenario import of, run, write_scenario
from trouw.language.journey.expressions import bucket


def arm(customer: str) -> str:
    point = bucket(customer, "example_ab_test", "split") * 100
    return "email_tips" if point < 45 else "sms_tips" if point < 90 else "holdout"


def test_split_is_deterministic_and_holdout_receives_nothing(tmp_path: Path) -> None:
    import asyncio

    ids = [f"h{n}" for n in range(40)]
    holdout = [c for c in ids if arm(c) == "holdout"][:2]
    others = [c for c in ids if arm(c) != "holdout"][:4]
    assert len(holdout) == 2, "pick more ids: the hash should put ~10% in the hold-out group"
    customers = [
        {
            "id": c,
            "first_name": "Test",
            "email": f"{c}@example.com",
            "phone": "+32470000099",
            "locale": "en",
            "birthday": "1980-01-01",
        }
        for c in holdout + others
    ]
    events = [
        {
            "at": "0d",
            "type": "purchase",
            "customer": c,
            "order": f"o-{c}",
            "channel": "pos",
            "lines": [{"sku": "ROSE-01"}],
        }
        for c in holdout + others
    ]
    path = write_scenario(tmp_path / "ab.yaml", customers=customers, events=events, until="10d")
    _scenario, result = asyncio.run(run(path, ROOT / "journeys/examples", ROOT / "templates"))
    for customer in holdout:
        assert of(result, customer, journey="example_ab_test") == []
    for customer in others:
        entries = of(result, customer, journey="example_ab_test")
        expected = "care_tips" if arm(customer) == "email_tips" else "delivery_notice"
        assert [(e.template, e.outcome) for e in entries] == [(expected, "sent")]


def test_goal_event_ends_the_run_as_a_conversion(tmp_path: Path) -> None:
    import asyncio

    from sqlmodel import select

    from trouw.domain.db.engine import make_engine, session_scope
    from trouw.domain.db.models import GoalConversion, JourneyRun

    customers = [
        {
            "id": "g1",
            "first_name": "Ann",
            "email": "g1@example.com",
            "locale": "en",
            "birthday": "1980-01-01",
        },
        {
            "id": "g2",
            "first_name": "Bob",
            "email": "g2@example.com",
            "locale": "en",
            "birthday": "1980-01-01",
        },
    ]
    events = [
        {"at": "0d", "type": "register", "customer": "g1"},
        {"at": "0d", "type": "register", "customer": "g2"},
        {
            "at": "2d",
            "type": "purchase",
            "customer": "g1",
            "order": "o-g1",
            "channel": "pos",
            "lines": [{"sku": "POT-40"}],
        },
    ]
    path = write_scenario(tmp_path / "goal.yaml", customers=customers, events=events, until="10d")
    _scenario, result = asyncio.run(run(path, ROOT / "journeys/examples", ROOT / "templates"))
    assert [e.step for e in of(result, "g1", journey="example_welcome")] == ["hello"]
    engine = make_engine(f"sqlite:///{result.workdir / 'simulation.db'}")
    with session_scope(engine) as session:
        runs = {
            run.customer_id: (run.status, run.end_reason)
            for run in session.exec(
                select(JourneyRun).where(JourneyRun.journey == "example_welcome")
            )
        }
    assert runs == {
        "g1": ("converted", "goal first_purchase: purchase"),
        "g2": ("converted", "goal welcomed"),
    }
    # Each conversion is recorded with its goal, time and value: the purchase's total for
    # the goal event, none for the `goal:` step reached after the week's wait.
    with session_scope(engine) as session:
        goals = {
            row.customer_id: (row.goal, row.event_type, row.order_id, row.value, row.at)
            for row in session.exec(select(GoalConversion))
        }
    start = datetime.fromisoformat("2026-03-02T09:00:00+01:00")
    g1, g2 = goals["g1"], goals["g2"]
    assert g1[:4] == ("first_purchase", "purchase", "o-g1", Decimal("29.00"))
    # At the purchase (the run wakes for it within a fraction of a real second).
    assert abs(g1[4] - (start + timedelta(days=2))) < timedelta(minutes=1)
    assert g2[:4] == ("welcomed", None, None, None)
    assert g2[4] >= start + timedelta(days=7)


@pytest.mark.parametrize("delivered_after", ["1d", None])
def test_wait_for_event_or_timeout(tmp_path: Path, delivered_after: str | None) -> None:
    import asyncio

    customers = [
        {
            "id": "w1",
            "first_name": "Wim",
            "email": "w1@example.com",
            "locale": "nl-BE",
            "birthday": "1980-01-01",
        }
    ]
    events = [
        {
            "at": "0d",
            "type": "purchase",
            "customer": "w1",
            "order": "o-w1",
            "channel": "web",
            "lines": [{"sku": "POT-40"}],
        }
    ]
    if delivered_after:
        events.append(
            {"at": delivered_after, "type": "delivered", "customer": "w1", "order": "o-w1"}
        )
    path = write_scenario(tmp_path / "wait.yaml", customers=customers, events=events, until="20d")
    _scenario, result = asyncio.run(run(path, ROOT / "journeys/examples", ROOT / "templates"))
    notices = of(result, "w1", journey="example_delivery_wait")
    if delivered_after:
        assert [(datetime.fromisoformat(e.at).day, e.template) for e in notices] == [
            (3, "delivery_notice")
        ]
    else:
        assert notices == []
