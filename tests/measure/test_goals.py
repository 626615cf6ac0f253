"""Goal conversions: recorded once per run with their time and value (goal_conversion)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import select

from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import GoalConversion, InboundEvent, JourneyRun, Order
from trouw.domain.measure.goals import event_value, record_goal
from trouw.language.contracts import GoalReached

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


def test_a_custom_events_value_is_money_or_nothing() -> None:
    assert event_value({"value": 12.5}) == Decimal("12.50")
    assert event_value({"value": "19.999"}) == Decimal("20.00")
    for data in ({}, {"value": None}, {"value": True}, {"value": "lots"}, {"value": -3}, None):
        assert event_value(data) is None, data
    assert event_value({"value": "NaN"}) is None


def _run(s: Any, workflow_id: str) -> JourneyRun:
    run = JourneyRun(
        workflow_id=workflow_id,
        customer_id="c1",
        journey="welcome",
        version="v1",
        reentry_key="c1",
        event_source_id="e0",
        started_at=T0,
        status="converted",
    )
    s.add(run)
    s.flush()
    return run


def test_goal_values_come_from_the_order_or_the_events_value(engine: Engine) -> None:
    with session_scope(engine) as s:
        s.add(Order(id="o1", customer_id="c1", channel="web", placed_at=T0, total=Decimal("42.10")))
        s.add(
            InboundEvent(
                source_id="e-signup",
                type="custom:signup",
                customer_id="c1",
                occurred_at=T0,
                payload={"data": {"name": "signup", "value": 7}},
            )
        )
        bought = _run(s, "w-bought")
        signed = _run(s, "w-signed")
        stepped = _run(s, "w-step")
        at = T0 + timedelta(days=2)
        record_goal(
            s,
            bought,
            GoalReached(goal="buy", event_id="e-buy", event_type="purchase", order_id="o1"),
            at=at,
        )
        record_goal(
            s,
            signed,
            GoalReached(goal="signup", event_id="e-signup", event_type="custom:signup"),
            at=at,
        )
        record_goal(s, stepped, GoalReached(goal="welcomed"), at=at)
        # A retried record_run finds the conversion there: nothing twice, nothing changed.
        record_goal(s, bought, GoalReached(goal="other"), at=at + timedelta(days=1))
    with session_scope(engine) as s:
        rows = {r.workflow_id: r for r in s.exec(select(GoalConversion)).all()}
    assert {k: (r.goal, r.value) for k, r in rows.items()} == {
        "w-bought": ("buy", Decimal("42.10")),
        "w-signed": ("signup", Decimal("7.00")),
        "w-step": ("welcomed", None),
    }
    assert rows["w-bought"].at == T0 + timedelta(days=2)
    assert (rows["w-bought"].journey, rows["w-bought"].version) == ("welcome", "v1")


def test_the_report_shows_each_goal_with_its_conversions_and_value(engine: Engine) -> None:
    from trouw.domain.measure.attribution import AttributionRules
    from trouw.domain.measure.report import journey_report

    with session_scope(engine) as s:
        for n, (goal, value, day) in enumerate(
            [("buy", "40.00", 1), ("buy", "10.50", 2), ("welcomed", None, 3), ("buy", "99", 40)]
        ):
            s.add(
                GoalConversion(
                    workflow_id=f"w{n}",
                    customer_id=f"c{n}",
                    journey="welcome",
                    version="v1",
                    goal=goal,
                    at=T0 + timedelta(days=day),
                    value=Decimal(value) if value else None,
                )
            )
    with engine.connect() as c:
        report = journey_report(c, AttributionRules(), start=T0, end=T0 + timedelta(days=30))
    [journey] = report.to_json()["journeys"]
    # The conversion on day 40 falls outside the period.
    assert journey["goals"] == [
        {"goal": "buy", "conversions": 2, "valued": 2, "value": 50.5},
        {"goal": "welcomed", "conversions": 1, "valued": 0, "value": 0.0},
    ]
    assert journey["goal_value"] == 50.5
