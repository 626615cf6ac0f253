"""Who must hear an event (trouw.language.journey.interest): pure, milliseconds."""

from __future__ import annotations

from typing import Any

from trouw.language.journey.interest import EVERYTHING, Interest, hearing, with_other_workers
from trouw.language.journey.model import Journey

NOBODY: dict[str, Any] = {"versions": (), "pending": ()}


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


EXPIRY = journey(
    "voucher_expiry",
    {"event": "voucher_expiring"},
    exit_on=[{"event": "voucher_redeemed"}],
    goals=[{"event": "purchase", "name": "bought"}],
)


def test_start_types_are_heard_for_everyone_and_unknown_types_by_nobody() -> None:
    heard = hearing([EXPIRY], {})
    assert heard.wants("voucher_expiring", **NOBODY)
    for kind in ("review", "bounce", "custom:poll", "voucher_issued"):
        assert not heard.wants(kind, versions=["v"], pending=["voucher_expiring"]), kind
        assert not heard.interest.wants(kind), kind


def test_a_type_only_runs_listen_to_is_heard_for_a_customer_whose_run_lives() -> None:
    heard = hearing([EXPIRY], {EXPIRY.version: sorted(EXPIRY.listens_to())})
    for kind in ("voucher_redeemed", "purchase", "delivered"):
        assert heard.interest.wants(kind), kind  # the API hands it off at once
        assert heard.wants(kind, versions=[EXPIRY.version], pending=()), kind
    assert not heard.wants("voucher_redeemed", **NOBODY)  # no run for this customer
    assert not heard.wants("voucher_redeemed", versions=["another"], pending=())


def test_a_run_that_may_be_starting_hears_what_it_would_listen_to() -> None:
    # The customer's voucher_expiring was signalled; match_journeys has not answered it yet.
    heard = hearing([EXPIRY], {})
    assert heard.pending_types == {"voucher_expiring"}
    assert heard.wants("voucher_redeemed", versions=(), pending=["voucher_expiring"])
    assert not heard.wants("voucher_redeemed", versions=(), pending=["purchase"])


def test_a_live_run_of_an_older_version_keeps_its_exit_heard() -> None:
    # Today's version starts on voucher_expiring and exits on nothing; a run of the version
    # before it still exits on a redemption.
    today = journey("voucher_expiry", {"event": "voucher_expiring"})
    assert not hearing([today], {}).interest.wants("voucher_redeemed")
    heard = hearing([today], {"v-old": ["delivered", "voucher_redeemed"]})
    assert heard.wants("voucher_redeemed", versions=["v-old"], pending=())
    assert not heard.wants("voucher_redeemed", **NOBODY)
    assert not heard.interest.wants("review")


def test_a_live_run_of_an_unknown_version_makes_every_event_heard() -> None:
    heard = hearing([], {"v1": ["delivered"], "v0": None})
    assert heard.starts.everything and heard.wants("custom:anything", **NOBODY)


def test_any_trigger_hears_everything_and_a_date_trigger_register_and_purchase() -> None:
    assert hearing([journey("all", {"event": "any"})], {}).wants("custom:poll", **NOBODY)
    birthday = hearing([journey("birthday", {"date": "customer.birthday", "every": "year"})], {})
    assert birthday.wants("register", **NOBODY) and birthday.wants("purchase", **NOBODY)
    assert not birthday.wants("review", **NOBODY) and not birthday.starts.everything


def test_a_type_only_another_worker_knows_is_heard_for_everyone() -> None:
    heard = with_other_workers(hearing([EXPIRY], {}), Interest(frozenset({"custom:poll"})))
    assert heard.wants("custom:poll", **NOBODY)
    assert not heard.wants("review", **NOBODY)


def test_a_type_both_know_keeps_this_relays_answer_per_customer() -> None:
    own = hearing([EXPIRY], {})
    heard = with_other_workers(own, own.interest)
    assert heard == own
    assert not heard.wants("voucher_redeemed", **NOBODY)


def test_a_worker_that_names_no_types_makes_every_type_heard() -> None:
    heard = with_other_workers(hearing([EXPIRY], {}), EVERYTHING)
    assert heard.wants("review", **NOBODY) and heard.wants("voucher_redeemed", **NOBODY)
