"""`wait_for` with `when`: only the awaited event for which the condition holds ends the wait
(on the time-skipping server), and the condition is validated like every expression."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.workflows.scenario import of, run, write_scenario
from trouw.domain.loyalty.codes import scenario_code

pytestmark = pytest.mark.slow

SETTINGS = "custom_events:\n  survey_answered: {score: number}\n"
JOURNEY = """\
journey: survey_followup
trigger: {event: purchase}
steps:
  - id: wait_answer
    wait_for: custom:survey_answered
    match: any
    when: "event.score >= 4"
    timeout: 10d
    on_timeout: no_answer
  - id: thanks
    send: email
    template: review_request
    next: done
  - id: no_answer
    exit: no good answer
  - id: done
    exit: done
"""


def survey(customer: str, at: str, score: int) -> dict[str, object]:
    return {
        "at": at,
        "type": "custom",
        "name": "survey_answered",
        "customer": customer,
        "properties": {"score": score},
    }


def test_only_the_event_the_condition_picks_ends_the_wait(tmp_path: Path) -> None:
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    (journeys / "_settings.yaml").write_text(SETTINGS)
    (journeys / "survey_followup.yaml").write_text(JOURNEY)
    customers = [
        {"id": c, "first_name": "T", "email": f"{c}@example.com", "locale": "en"}
        for c in ("happy", "grumpy")
    ]
    purchase = {"type": "purchase", "channel": "pos", "lines": [{"sku": "POT-40"}]}
    events = [
        {"at": "0d", "customer": "happy", "order": "o1", **purchase},
        {"at": "0d", "customer": "grumpy", "order": "o2", **purchase},
        survey("happy", "1d", 2),
        survey("happy", "2d", 5),
        survey("grumpy", "1d", 1),
    ]
    path = write_scenario(tmp_path / "s.yaml", customers=customers, events=events, until="20d")
    _scenario, result = asyncio.run(run(path, journeys, ROOT / "templates"))
    thanks = of(result, "happy", template="review_request")
    assert [(entry.outcome, entry.at[:10]) for entry in thanks] == [("sent", "2026-03-04")]
    assert of(result, "grumpy") == []


def voucher_code(customer: str) -> str:
    """The code issue_voucher gives this example's run in a simulation (readable, numbered)."""
    return scenario_code("WELKOM", customer, 1)


def test_example_waits_for_its_own_voucher(tmp_path: Path) -> None:
    customers = [
        {
            "id": c,
            "first_name": "T",
            "email": f"{c}@example.com",
            "locale": "en",
            "opt_in": {"email": True},
        }
        for c in ("redeems", "forgets")
    ]
    purchase = {"type": "purchase", "channel": "pos", "lines": [{"sku": "POT-40"}]}
    events = [
        {"at": "0d", "customer": "redeems", "order": "o1", **purchase},
        {"at": "0d", "customer": "forgets", "order": "o2", **purchase},
        {
            "at": "5d",
            "type": "voucher_redeemed",
            "customer": "redeems",
            "code": voucher_code("redeems"),
        },
    ]
    path = write_scenario(tmp_path / "s.yaml", customers=customers, events=events, until="30d")
    _scenario, result = asyncio.run(run(path, ROOT / "journeys/examples", ROOT / "templates"))
    assert of(result, "redeems", journey="example_voucher_wait") == []
    reminders = of(result, "forgets", journey="example_voucher_wait")
    assert [(e.template, e.outcome, e.at[:10]) for e in reminders] == [
        ("voucher_expiry", "sent", "2026-03-23")
    ]
