"""The shipped journeys over months on the time-skipping server, through `trouw simulate`."""

from __future__ import annotations

from datetime import datetime

import pytest
import pytest_asyncio

from tests.conftest import ROOT
from tests.workflows.scenario import of, run, write_scenario
from trouw.commands.simulate import SimulationResult

CUSTOMERS = [
    # unsubscribes in the middle of the wait before the care tips
    {
        "id": "a1",
        "first_name": "Bart",
        "email": "a1@example.com",
        "phone": "+32470000001",
        "locale": "nl-BE",
    },
    # buys the fertiliser again before it runs out
    {"id": "a2", "first_name": "Sophie", "email": "a2@example.com", "locale": "fr-BE"},
    # comes back after 100 days
    {
        "id": "a3",
        "first_name": "Emma",
        "email": "a3@example.com",
        "locale": "nl-NL",
        "timezone": "Europe/Amsterdam",
        "birthday": "1990-01-15",
    },
    # returns the web order the next day
    {
        "id": "a4",
        "first_name": "Tom",
        "email": "a4@example.com",
        "locale": "nl-BE",
        "birthday": "1980-06-01",
    },
    # birthday in March, opted in to promotional email
    {
        "id": "a5",
        "first_name": "Claire",
        "email": "a5@example.com",
        "locale": "fr-BE",
        "birthday": "1985-03-20",
        "opt_in": {"email": True},
    },
    # birthday, but no opt-in
    {
        "id": "a6",
        "first_name": "Daan",
        "email": "a6@example.com",
        "locale": "nl-NL",
        "birthday": "1985-03-20",
    },
    # delivered late in the evening: the delivery SMS waits for the morning
    {
        "id": "a8",
        "first_name": "Lotte",
        "email": "a8@example.com",
        "phone": "+32470000008",
        "locale": "nl-BE",
        "birthday": "1970-12-24",
    },
    # a refill period longer than the refill journey's service cutoff
    {
        "id": "a9",
        "first_name": "Hugo",
        "email": "a9@example.com",
        "locale": "fr-BE",
        "birthday": "1970-12-24",
    },
]
EVENTS = [
    {
        "at": "0d",
        "type": "purchase",
        "customer": "a1",
        "order": "o-a1",
        "channel": "web",
        "lines": [{"sku": "LAWN-10"}, {"sku": "ROSE-01"}],
    },
    {"at": "2d", "type": "delivered", "customer": "a1", "order": "o-a1"},
    {"at": "3d", "type": "unsubscribe", "customer": "a1", "channel": "email"},
    {
        "at": "0d",
        "type": "purchase",
        "customer": "a2",
        "order": "o-a2-1",
        "channel": "pos",
        "lines": [{"sku": "LAWN-10"}],
    },
    {
        "at": "30d",
        "type": "purchase",
        "customer": "a2",
        "order": "o-a2-2",
        "channel": "pos",
        "lines": [{"sku": "LAWN-10"}],
    },
    {
        "at": "0d",
        "type": "purchase",
        "customer": "a3",
        "order": "o-a3-1",
        "channel": "pos",
        "lines": [{"sku": "POT-40"}],
    },
    {
        "at": "100d",
        "type": "purchase",
        "customer": "a3",
        "order": "o-a3-2",
        "channel": "pos",
        "lines": [{"sku": "POT-40"}],
    },
    {
        "at": "0d",
        "type": "purchase",
        "customer": "a4",
        "order": "o-a4",
        "channel": "web",
        "lines": [{"sku": "ROSE-01"}],
    },
    {"at": "1d", "type": "returned", "customer": "a4", "order": "o-a4"},
    {"at": "0d", "type": "register", "customer": "a5"},
    {"at": "0d", "type": "register", "customer": "a6"},
    {
        "at": "0d",
        "type": "purchase",
        "customer": "a8",
        "order": "o-a8",
        "channel": "web",
        "lines": [{"sku": "POT-40"}],
    },
    {"at": "1d13h30m", "type": "delivered", "customer": "a8", "order": "o-a8"},
    {
        "at": "0d",
        "type": "purchase",
        "customer": "a9",
        "order": "o-a9",
        "channel": "pos",
        "lines": [{"sku": "SALT-25"}],
    },
]


@pytest_asyncio.fixture(scope="module")
async def result(tmp_path_factory: pytest.TempPathFactory) -> SimulationResult:
    path = write_scenario(
        tmp_path_factory.mktemp("shipped") / "scenario.yaml", customers=CUSTOMERS, events=EVENTS
    )
    _scenario, outcome = await run(path, ROOT / "journeys", ROOT / "templates")
    return outcome


def local(entry_at: str) -> str:
    return datetime.fromisoformat(entry_at).strftime("%Y-%m-%d %H:%M")


def test_confirmation_at_once_for_every_purchase(result: SimulationResult) -> None:
    confirmations = [e for e in result.timeline if e.template == "order_confirmation"]
    assert sorted(e.customer for e in confirmations) == [
        "a1",
        "a2",
        "a2",
        "a3",
        "a3",
        "a4",
        "a8",
        "a9",
    ]
    assert all(e.outcome == "sent" and e.category == "transactional" for e in confirmations)
    assert of(result, "a1", template="order_confirmation")[0].at == "2026-03-02T09:00:00+01:00"
    assert (
        of(result, "a1", template="order_confirmation")[0].subject
        == "Bedankt voor je bestelling o-a1"
    )


def test_unsubscribe_mid_wait_stops_service_mail(result: SimulationResult) -> None:
    sent = [(e.journey, e.step, e.channel) for e in of(result, "a1")]
    # delivery notice by SMS (a phone number is known), then nothing after the unsubscribe on day 3
    assert sent == [
        ("post_purchase", "confirmation", "email"),
        ("post_purchase", "delivery_sms", "sms"),
    ]
    assert local(of(result, "a1", step="delivery_sms")[0].at) == "2026-03-04 09:00"


def test_new_purchase_cancels_refill(result: SimulationResult) -> None:
    reminders = of(result, "a2", journey="refill")
    # the first order's reminder (due day 55) is cancelled by the purchase on day 30;
    # the second order's is due 60 days after it, 5 days early, at 10:00
    assert [(local(e.at), e.outcome) for e in reminders] == [("2026-05-26 10:00", "sent")]
    assert reminders[0].subject is not None and "Gazonmest 10 kg" in reminders[0].subject


def test_new_purchase_cancels_reactivation(result: SimulationResult) -> None:
    reactivation = of(result, "a3", journey="reactivation")
    assert [(e.step, local(e.at)) for e in reactivation] == [("miss_you", "2026-12-07 09:00")]


def test_return_ends_post_purchase(result: SimulationResult) -> None:
    assert [(e.journey, e.step) for e in of(result, "a4", journey="post_purchase")] == [
        ("post_purchase", "confirmation")
    ]


def test_birthday_with_voucher_and_expiry_reminder(result: SimulationResult) -> None:
    birthday = of(result, "a5", journey="birthday")
    assert [(local(e.at), e.outcome) for e in birthday] == [
        ("2026-03-20 09:00", "sent"),
        ("2027-03-20 09:00", "sent"),
    ]
    expiry = of(result, "a5", journey="voucher_expiry")
    # the voucher is valid 30 days; the reminder comes 7 days before, at 10:00
    assert [(local(e.at), e.outcome) for e in expiry] == [("2026-04-12 10:00", "sent")]


def test_birthday_without_opt_in_sends_nothing(result: SimulationResult) -> None:
    assert of(result, "a6", journey="birthday") == []
    assert of(result, "a6", journey="voucher_expiry") == []


def test_enrichment_asks_for_a_missing_birthday_once(result: SimulationResult) -> None:
    asks = [e for e in result.timeline if e.journey == "enrichment"]
    # a2 has no birthday on file; a1 unsubscribed; everyone else has one
    assert [(e.customer, local(e.at)) for e in asks] == [("a2", "2026-04-01 10:00")]


def test_delivery_sms_waits_for_the_end_of_quiet_hours(result: SimulationResult) -> None:
    sms = of(result, "a8", step="delivery_sms")
    assert [(local(e.at), e.outcome) for e in sms] == [("2026-03-04 08:00", "sent")]


def test_service_message_after_the_cutoff_is_suppressed(result: SimulationResult) -> None:
    reminder = of(result, "a9", journey="refill")
    assert [(e.outcome, e.reason) for e in reminder] == [("suppressed", "service_cutoff_passed")]


def test_every_decision_is_in_the_contract_shape(result: SimulationResult) -> None:
    for entry in result.timeline:
        assert entry.channel in ("email", "sms")
        assert entry.category in ("transactional", "service", "promotional")
        assert entry.outcome in ("sent", "suppressed")
        assert (entry.reason is None) == (entry.outcome == "sent")
        assert datetime.fromisoformat(entry.at).tzinfo is not None
