"""An unsubscribe ends the shipped email journeys only when it covers their email and category."""

from __future__ import annotations

import pytest
import pytest_asyncio

from tests.conftest import ROOT
from tests.workflows.scenario import of, run, write_scenario
from trouw.commands.simulate import SimulationResult

CUSTOMERS = [
    {"id": "r1", "email": "r1@example.com", "phone": "+32470000021"},  # SMS unsubscribe
    {"id": "r2", "email": "r2@example.com", "phone": "+32470000022"},  # SMS STOP
    {"id": "r3", "email": "r3@example.com"},  # promotional-only email unsubscribe
    {"id": "r4", "email": "r4@example.com"},  # service email unsubscribe
    {"id": "r5", "email": "r5@example.com"},  # everything
]
UNSUBSCRIBES = {
    "r1": {"type": "unsubscribe", "channel": "sms"},
    "r2": {"type": "sms_stop"},
    "r3": {"type": "unsubscribe", "channel": "email", "scope": "promotional"},
    "r4": {"type": "unsubscribe", "channel": "email", "scope": "service"},
    "r5": {"type": "unsubscribe", "channel": "all"},
}
EVENTS = [
    event
    for customer in CUSTOMERS
    for event in (
        {
            "at": "0d",
            "type": "purchase",
            "customer": customer["id"],
            "order": f"o-{customer['id']}",
            "channel": "web",
            "lines": [{"sku": "LAWN-10"}],
        },
        {"at": "10d", "customer": customer["id"], **UNSUBSCRIBES[customer["id"]]},
    )
]


@pytest_asyncio.fixture(scope="module")
async def result(tmp_path_factory: pytest.TempPathFactory) -> SimulationResult:
    path = write_scenario(
        tmp_path_factory.mktemp("unsubscribe_service") / "scenario.yaml",
        customers=CUSTOMERS,
        events=EVENTS,
        until="70d",
    )
    _scenario, outcome = await run(path, ROOT / "journeys", ROOT / "templates")
    return outcome


@pytest.mark.parametrize("customer", ["r1", "r2", "r3"])
def test_an_unsubscribe_that_spares_service_email_keeps_the_refill_reminder(
    result: SimulationResult, customer: str
) -> None:
    # LAWN-10 lasts 60 days: the reminder is due five days before, long after the unsubscribe.
    reminders = of(result, customer, journey="refill")
    assert [(e.step, e.outcome) for e in reminders] == [("reminder", "sent")]


@pytest.mark.parametrize("customer", ["r4", "r5"])
def test_a_service_email_unsubscribe_ends_the_refill_run(
    result: SimulationResult, customer: str
) -> None:
    assert of(result, customer, journey="refill") == []
