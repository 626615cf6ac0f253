"""Channel-scoped unsubscribes in the shipped post_purchase journey, on the time-skipping server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.conftest import ROOT
from tests.workflows.scenario import of, run, write_scenario
from trouw.commands.simulate import SimulationResult

CUSTOMERS = [
    {"id": "u1", "email": "u1@example.com", "phone": "+32470000011"},  # email unsubscribe
    {"id": "u2", "email": "u2@example.com"},  # email unsubscribe, no phone
    {"id": "u3", "email": "u3@example.com", "phone": "+32470000013"},  # SMS unsubscribe
    {"id": "u4", "email": "u4@example.com"},  # promotional email only
    {"id": "u5", "email": "u5@example.com", "phone": "+32470000015"},  # everything, SMS STOP
]


def _web_order(customer: str) -> list[dict[str, Any]]:
    order = f"o-{customer}"
    return [
        {
            "at": "0d",
            "type": "purchase",
            "customer": customer,
            "order": order,
            "channel": "web",
            "lines": [{"sku": "ROSE-01"}],
        },
        {"at": "2d", "type": "delivered", "customer": customer, "order": order},
    ]


EVENTS = [
    *(event for customer in CUSTOMERS for event in _web_order(customer["id"])),
    {"at": "1d", "type": "unsubscribe", "customer": "u1", "channel": "email"},
    {"at": "1d", "type": "unsubscribe", "customer": "u2", "channel": "email", "scope": "service"},
    {"at": "1d", "type": "unsubscribe", "customer": "u3", "channel": "sms"},
    {
        "at": "1d",
        "type": "unsubscribe",
        "customer": "u4",
        "channel": "email",
        "scope": "promotional",
    },
    {"at": "1d", "type": "unsubscribe", "customer": "u5", "channel": "all"},
    {"at": "1d1h", "type": "sms_stop", "customer": "u5"},
]


@pytest_asyncio.fixture(scope="module")
async def result(tmp_path_factory: pytest.TempPathFactory) -> SimulationResult:
    path = write_scenario(
        tmp_path_factory.mktemp("unsubscribe") / "scenario.yaml",
        customers=CUSTOMERS,
        events=EVENTS,
        until="20d",
    )
    _scenario, outcome = await run(path, ROOT / "journeys", ROOT / "templates")
    return outcome


def steps(result: SimulationResult, customer: str) -> list[tuple[str, str]]:
    return [(e.step, e.outcome) for e in of(result, customer, journey="post_purchase")]


def test_an_email_unsubscribe_mid_journey_keeps_the_delivery_notice(
    result: SimulationResult,
) -> None:
    # The delivery notice (transactional) still goes out; care tips and review do not.
    assert steps(result, "u1") == [("confirmation", "sent"), ("delivery_sms", "sent")]
    assert steps(result, "u2") == [("confirmation", "sent"), ("delivery_email", "sent")]


def test_an_sms_unsubscribe_leaves_the_email_service_mail(result: SimulationResult) -> None:
    assert steps(result, "u3") == [
        ("confirmation", "sent"),
        ("delivery_sms", "sent"),
        ("care_tips", "sent"),
        ("review_request", "sent"),
    ]


def test_a_promotional_unsubscribe_leaves_the_service_mail(result: SimulationResult) -> None:
    assert steps(result, "u4") == [
        ("confirmation", "sent"),
        ("delivery_email", "sent"),
        ("care_tips", "sent"),
        ("review_request", "sent"),
    ]


def test_after_unsubscribing_everywhere_the_notice_is_still_tried(
    result: SimulationResult,
) -> None:
    # The run exits on the unsubscribe but still tries its delivery notice; the STOP that came
    # after it blocks every SMS (the carrier would refuse it), so the policy suppresses it.
    assert steps(result, "u5") == [
        ("confirmation", "sent"),
        ("delivery_sms", "suppressed"),
    ]


RECEIPT_AFTER_TIPS = """\
journey: receipt_after_tips
trigger: {event: purchase}
settings:
  category: service
  exit_on:
    - {event: opt_out}
steps:
  - {id: pause, wait: 1d}
  - {id: tips, send: email, template: care_tips}
  - {id: receipt, send: email, template: order_confirmation, category: transactional}
  - {id: later, wait: 1d}
  - {id: more_tips, send: email, template: care_tips}
"""


async def test_any_consent_withdrawal_exit_still_sends_what_is_transactional(
    tmp_path: Path,
) -> None:
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    (journeys / "receipt_after_tips.yaml").write_text(RECEIPT_AFTER_TIPS, encoding="utf-8")
    path = write_scenario(
        tmp_path / "scenario.yaml",
        customers=[{"id": "w1", "email": "w1@example.com"}],
        events=[
            {
                "at": "0d",
                "type": "purchase",
                "customer": "w1",
                "order": "o-w1",
                "channel": "pos",
                "lines": [{"sku": "LAWN-10"}],
            },
            {"at": "12h", "type": "opt_out", "customer": "w1", "channel": "email"},
        ],
        until="5d",
    )
    _scenario, result = await run(path, journeys, ROOT / "templates")
    assert [(e.step, e.outcome) for e in of(result, "w1")] == [("receipt", "sent")]
    outcomes = [(r.step, r.outcome, r.reason) for r in result.runs if r.customer == "w1"]
    assert ("tips", "skipped", "exit on opt_out (transactional messages still sent)") in outcomes
    # It ends once the receipt is out: nothing transactional is left after it.
    assert outcomes[-1] == (
        "receipt",
        "exited",
        "exit on opt_out (transactional messages still sent)",
    )
