"""Which event types Temporal must hear (trouw.language.journey.interest): pure, milliseconds."""

from __future__ import annotations

from typing import Any

from trouw.language.journey.interest import interest
from trouw.language.journey.model import Journey


def journey(name: str, trigger: dict[str, Any], **settings: Any) -> Journey:
    return Journey.model_validate(
        {
            "journey": name,
            "trigger": trigger,
            "settings": settings,
            "steps": [
                {"id": "wait", "wait_for": "delivered", "timeout": "7d"},
                {"id": "mail", "send": "email", "template": "x"},
            ],
        }
    )


def test_triggers_exits_goals_and_waits_are_heard_and_nothing_else() -> None:
    voucher = journey(
        "voucher_expiry",
        {"event": "voucher_issued"},
        exit_on=[{"event": "voucher_redeemed"}],
        goals=[{"event": "purchase", "name": "bought"}],
    )
    heard = interest([voucher], [])
    for kind in ("voucher_issued", "voucher_redeemed", "purchase", "delivered"):
        assert heard.wants(kind), kind
    for kind in ("review", "bounce", "custom:poll", "voucher_expiring"):
        assert not heard.wants(kind), kind


def test_a_live_run_of_an_older_version_keeps_its_exit_heard() -> None:
    # Today's version starts on voucher_expiring and no longer exits on voucher_redeemed; a run
    # of the version before it still waits and exits on a redemption.
    today = journey("voucher_expiry", {"event": "voucher_expiring"})
    assert not interest([today], []).wants("voucher_redeemed")
    assert interest([today], [["delivered", "voucher_redeemed"]]).wants("voucher_redeemed")
    assert not interest([today], [["delivered", "voucher_redeemed"]]).wants("review")


def test_a_live_run_of_an_unknown_version_makes_every_type_heard() -> None:
    heard = interest([], [["delivered"], None])
    assert heard.everything and heard.wants("review") and heard.wants("custom:anything")


def test_any_trigger_hears_everything_and_a_date_trigger_register_and_purchase() -> None:
    assert interest([journey("all", {"event": "any"})], []).wants("custom:poll")
    birthday = interest([journey("birthday", {"date": "customer.birthday", "every": "year"})], [])
    assert birthday.wants("register") and birthday.wants("purchase")
    assert not birthday.wants("review") and not birthday.everything


def test_nothing_running_and_no_journeys_hears_nothing() -> None:
    heard = interest([], [])
    assert not heard.everything and not heard.wants("purchase")
