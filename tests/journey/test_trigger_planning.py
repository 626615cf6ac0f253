"""Trigger planning as a pure function: which runs an event starts, under which keys and ids."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from trouw.language.contracts import CustomerEvent
from trouw.language.journey.model import Journey
from trouw.language.journey.triggers import Refusal, listens_for_start, plan_runs, run_workflow_id

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CONTEXT: dict[str, Any] = {
    "customer": {"id": "c1", "birthday": "1980-03-05", "tier": ""},
    "history": {"orders": 2},
    "order": {
        "id": "o1",
        "lines": [
            {"sku": "LAWN-10", "qty": 1, "product": {"sku": "LAWN-10", "consumption_days": 60}},
            {"sku": "POT-40", "qty": 2, "product": {"sku": "POT-40", "consumption_days": None}},
        ],
    },
}


def journey(name: str, **trigger: Any) -> Journey:
    return Journey.model_validate(
        {
            "journey": name,
            "trigger": {"event": "purchase", **trigger} if "date" not in trigger else trigger,
            "steps": [{"id": "done", "exit": "done"}],
        }
    )


def purchase(**changes: Any) -> CustomerEvent:
    fields: dict[str, Any] = {
        "id": "e1",
        "type": "purchase",
        "customer_id": "c1",
        "at": NOW,
        "order_id": "o1",
        "skus": ["LAWN-10", "POT-40"],
        "data": {"channel": "web"},
    }
    return CustomerEvent(**{**fields, **changes})


def keys(journeys: list[Journey], event: CustomerEvent | None = None) -> list[str]:
    plans, failures = plan_runs(journeys, event or purchase(), CONTEXT, NOW)
    assert failures == []
    return [plan.key for plan in plans]


def test_each_reentry_rule_gives_its_key() -> None:
    assert keys([journey("a", reentry="order")]) == ["o1"]
    assert keys([journey("b", reentry="customer")]) == ["once"]
    assert keys([journey("c", reentry="event")]) == ["e1"]
    # An expression: its value is the key; an empty value starts no run.
    assert keys([journey("d", reentry="event.channel")]) == ["web"]
    assert keys([journey("e", reentry="customer.tier")]) == []


def test_for_each_makes_one_run_per_item_keyed_by_its_sku() -> None:
    plans, _ = plan_runs(
        [journey("refill", for_each="order.lines", reentry="order", **{"as": "line"})],
        purchase(),
        CONTEXT,
        NOW,
    )
    assert [(plan.key, plan.skus) for plan in plans] == [
        ("o1:LAWN-10", ["LAWN-10"]),
        ("o1:POT-40", ["POT-40"]),
    ]
    first = plans[0].context
    assert first["line"]["sku"] == "LAWN-10" and first["product"]["consumption_days"] == 60
    assert first["trigger"] == {"type": "purchase", "at": NOW, "order_id": "o1", "channel": "web"}


def test_a_false_condition_or_an_empty_date_is_a_refusal_not_a_failure() -> None:
    refusals: list[Refusal] = []
    plans, failures = plan_runs(
        [
            journey("big", when="history.orders > 5"),
            journey("birthday", date="customer.nope_date"),
        ],
        purchase(),
        {**CONTEXT, "customer": {**CONTEXT["customer"], "nope_date": None}},
        NOW,
        refusals,
    )
    assert plans == [] and failures == []
    assert [(r.journey.name, r.reason, r.expression) for r in refusals] == [
        ("big", "the trigger condition is false", "history.orders > 5"),
        ("birthday", "the trigger date is empty", "customer.nope_date"),
    ]


def test_a_date_journey_starts_once_when_the_customer_is_first_known() -> None:
    birthday = journey("birthday", date="customer.birthday", every="year")
    assert listens_for_start(birthday, "register") and listens_for_start(birthday, "purchase")
    assert not listens_for_start(birthday, "delivered")
    assert keys([birthday]) == ["date"]
    assert not listens_for_start(journey("a"), "delivered")


def test_a_run_id_is_customer_journey_and_key() -> None:
    assert run_workflow_id("c1", "refill", "o1:LAWN-10") == "journey:c1:refill:o1:LAWN-10"
