"""Which events end a run: goals first, then exit rules (trouw/language/journey/exits.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.conftest import ROOT
from trouw.language.journey.exits import RunEvent, ending
from trouw.language.journey.loader import load_journey
from trouw.language.journey.model import Journey

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def shipped(name: str) -> Journey:
    return load_journey(ROOT / "journeys" / f"{name}.yaml").journey


def event(
    kind: str, *, order: str | None = None, skus: list[str] | None = None, **data: Any
) -> RunEvent:
    return RunEvent(
        type=kind,
        scope={"type": kind, "order_id": order, **data},
        order_id=order,
        skus=skus or [],
        run_order_id="o1",
        run_skus=["LAWN-10"],
    )


def test_refill_ends_when_its_product_is_bought_again_not_another() -> None:
    refill = shipped("refill")
    again = ending(refill, event("purchase", order="o2", skus=["LAWN-10"]), scope={}, now=NOW)
    assert again is not None and (again.outcome, again.reason) == ("exited", "exit on purchase")
    assert ending(refill, event("purchase", order="o2", skus=["POT-40"]), scope={}, now=NOW) is None


def test_a_return_ends_only_the_runs_of_its_order() -> None:
    refill = shipped("refill")
    assert ending(refill, event("returned", order="o1"), scope={}, now=NOW) is not None
    assert ending(refill, event("returned", order="o9"), scope={}, now=NOW) is None


def test_when_conditions_decide_and_a_broken_one_counts_as_false() -> None:
    enrichment = shipped("enrichment")
    sms = event("unsubscribe", channel="sms", scope="all")
    email = event("unsubscribe", channel="email", scope="all")
    assert ending(enrichment, sms, scope={}, now=NOW) is None
    assert ending(enrichment, email, scope={}, now=NOW) is not None
    broken = Journey.model_validate(
        {
            "journey": "b",
            "trigger": {"event": "purchase"},
            "settings": {"category": "service", "exit_on": [{"event": "review", "when": "1 / 0"}]},
            "steps": [{"id": "w", "wait": "3d"}],
        }
    )
    assert ending(broken, event("review"), scope={}, now=NOW) is None


def test_a_goal_converts_before_any_exit_rule() -> None:
    journey = Journey.model_validate(
        {
            "journey": "g",
            "trigger": {"event": "purchase"},
            "settings": {
                "category": "service",
                "goals": [{"name": "bought", "event": "purchase", "match": "any"}],
                "exit_on": [{"event": "purchase"}],
            },
            "steps": [{"id": "w", "wait": "3d"}],
        }
    )
    end = ending(journey, event("purchase", order="o2"), scope={}, now=NOW)
    assert end is not None and (end.outcome, end.reason) == ("converted", "goal bought: purchase")
