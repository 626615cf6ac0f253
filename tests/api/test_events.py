"""Events, customers and products in; a customer's profile, consents, messages, journeys out."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from tests.api.conftest import (
    Api,
    add_customer,
    add_message,
    answered_while_write_locked,
    events,
    rows,
)
from tests.conftest import ROOT
from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import Customer, JourneyRun, Order, Product
from trouw.domain.gdpr import erase
from trouw.stack.relay import stored_event

PURCHASE = {
    "id": "pos-gent-2026-0001",
    "type": "purchase",
    "customer": "c1",
    "order": "o1",
    "channel": "pos",
    "store": "Gent",
    "at": "2026-03-02T09:00:00+01:00",
    "lines": [{"sku": "LAWN-10", "qty": 1, "unit_price": "24.95"}],
    "profile": {"id": "c1", "email": "bart@example.com", "first_name": "Bart", "locale": "nl-BE"},
}


def test_purchase_is_accepted_and_stored(api: Api) -> None:
    response = api.post("/v1/events", PURCHASE)
    assert response.status_code == 202
    assert response.json() == {
        "id": "pos-gent-2026-0001",
        "customer": "c1",
        "type": "purchase",
        "status": "accepted",
    }
    assert "idempotent-replayed" not in response.headers
    assert [o.id for o in rows(api.engine, Order)] == ["o1"]


def test_the_same_event_twice_gives_one_effect_and_the_first_answer(api: Api) -> None:
    first = api.post("/v1/events", PURCHASE)
    second = api.post("/v1/events", PURCHASE)
    assert (second.status_code, second.json()) == (first.status_code, first.json())
    assert second.headers["idempotent-replayed"] == "true"
    # Even a changed body under the same id is the same event: the first answer stands.
    changed = api.post("/v1/events", {**PURCHASE, "store": "Leuven"})
    assert (changed.status_code, changed.json()) == (first.status_code, first.json())
    assert len(events(api.engine)) == 1
    assert len(rows(api.engine, Order)) == 1


def _register(api: Api) -> None:
    assert api.post("/v1/events", PURCHASE).status_code == 202
    with session_scope(api.engine) as session:
        session.add(Product(sku="LAWN-10", name="Gazonmest", price=Decimal("24.95")))


EVENTS: list[dict[str, Any]] = [
    {"type": "register", "profile": {"id": "c1", "first_name": "Bart"}},
    {"type": "purchase", "order": "o2", "channel": "web", "lines": [{"sku": "LAWN-10"}]},
    {"type": "delivered", "order": "o1"},
    {"type": "returned", "order": "o1"},
    {"type": "review", "rating": 5, "order": "o1"},
    {"type": "opt_in", "channel": "email", "wording_version": "v1", "wording_text": "Ja, graag"},
    {"type": "opt_out", "channel": "sms"},
    {"type": "unsubscribe", "channel": "all"},
    {"type": "bounce"},
    {"type": "sms_stop"},
    {"type": "custom", "name": "loyalty_level", "properties": {"level": "gold"}},
]


@pytest.mark.parametrize("event", EVENTS, ids=[e["type"] for e in EVENTS])
def test_every_event_type_is_accepted(api: Api, event: dict[str, Any]) -> None:
    _register(api)
    body = {"id": f"e-{event['type']}", "customer": "c1", **event}
    response = api.post("/v1/events", body)
    assert response.status_code == 202, response.json()
    assert response.json()["type"] == event["type"]
    again = api.post("/v1/events", body)
    assert again.json() == response.json()


def test_voucher_redeemed_is_accepted(api: Api) -> None:
    from trouw.domain.db.models import Voucher

    _register(api)
    with session_scope(api.engine) as session:
        at = datetime.now(UTC)
        session.add(
            Voucher(code="V10", customer_id="c1", value=Decimal(10), issued_at=at, expires_at=at)
        )
    body = {"id": "e-v", "type": "voucher_redeemed", "customer": "c1", "code": "V10"}
    assert api.post("/v1/events", body).status_code == 202


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**PURCHASE, "at": "2026-03-02T09:00:00"}, "at"),
        ({**PURCHASE, "lines": [{"sku": "X", "qty": 0}]}, "lines.0.qty"),
        ({**PURCHASE, "type": "purchased"}, "type"),
        ({**PURCHASE, "profile": {"id": "c1", "email": "not-an-email"}}, "profile.email"),
        ({**PURCHASE, "surprise": 1}, "surprise"),
    ],
)
def test_invalid_events_are_422_with_the_field(api: Api, body: dict[str, Any], field: str) -> None:
    response = api.post("/v1/events", body)
    assert response.status_code == 422
    problems = response.json()["detail"]
    assert field in [p["field"] for p in problems]
    assert all(p["message"] and not p["message"].startswith("Value error") for p in problems)
    assert events(api.engine) == []


def test_an_event_about_an_unknown_customer_is_404_and_stores_nothing(api: Api) -> None:
    response = api.post(
        "/v1/events", {"id": "d1", "type": "delivered", "customer": "nobody", "order": "o9"}
    )
    assert response.status_code == 404
    [problem] = response.json()["detail"]
    assert problem["field"] == "customer" and "unknown customer" in problem["message"]
    assert events(api.engine) == []


def test_an_unknown_order_is_404_and_another_customers_order_is_409(api: Api) -> None:
    assert api.post("/v1/events", PURCHASE).status_code == 202
    add_customer(api.engine, "c2")
    delivered = {"id": "d2", "type": "delivered", "customer": "c1", "order": "o9"}
    unknown = api.post("/v1/events", delivered)
    assert unknown.status_code == 404 and unknown.json()["detail"][0]["field"] == "order"
    taken = api.post(
        "/v1/events", {**PURCHASE, "id": "p-c2", "customer": "c2", "profile": {"id": "c2"}}
    )
    assert taken.status_code == 409
    assert taken.json()["detail"] == [
        {"field": "order", "message": "order o1 belongs to another customer"}
    ]
    assert len(events(api.engine)) == 1


def test_an_erased_customer_is_409_and_stays_erased(api: Api) -> None:
    assert api.post("/v1/events", PURCHASE).status_code == 202
    with session_scope(api.engine) as session:
        erase(session, customer_id="c1", at=datetime.now(UTC))
    again = {**PURCHASE, "id": "pos-gent-2026-0002", "order": "o2"}
    response = api.post("/v1/events", again)
    assert response.status_code == 409
    message = response.json()["detail"][0]["message"]
    assert message.startswith("customer 'c1' was erased") and "new customer id" in message
    refused = api.post("/v1/customers", {"id": "c1", "email": "bart@example.com"})
    assert refused.status_code == 409
    assert "was erased" in refused.json()["detail"][0]["message"]
    assert len(events(api.engine)) == 1 and len(rows(api.engine, Order)) == 1
    [tombstone] = rows(api.engine, Customer)
    assert tombstone.erased and (tombstone.email, tombstone.first_name) == (None, None)


def test_customers_and_products_are_upserted(api: Api) -> None:
    assert api.post("/v1/customers", {"id": "c9", "email": "an@example.com"}).json() == {"id": "c9"}
    assert api.post("/v1/customers", {"id": "c9", "first_name": "An"}).status_code == 200
    profile = api.get("/v1/customers/c9").json()["customer"]
    assert (profile["email"], profile["first_name"]) == ("an@example.com", "An")
    product = {"sku": "LAWN-10", "name": "Gazonmest 10 kg", "price": "24.95"}
    assert api.post("/v1/products", product).json() == {"sku": "LAWN-10"}
    assert api.post("/v1/products", {**product, "price": "26.95"}).status_code == 200
    assert str(rows(api.engine, Product)[0].price) == "26.95"


def test_customer_reads(api: Api) -> None:
    api.post("/v1/events", PURCHASE)
    api.post("/v1/events", {"id": "oi", "type": "opt_in", "customer": "c1", "channel": "email"})
    add_message(api.engine, "run-1:confirm:email", status_history=[{"status": "sent"}])
    with session_scope(api.engine) as session:
        session.add(
            JourneyRun(
                workflow_id="journey-c1-1",
                customer_id="c1",
                journey="order_followup",
                version="1",
                reentry_key="o1",
                event_source_id=str(PURCHASE["id"]),
                started_at=datetime.now(UTC),
            )
        )
    profile = api.get("/v1/customers/c1").json()
    assert profile["customer"]["id"] == "c1"
    assert profile["consent"]["consent"]["email:promotional"]["granted"] is True
    assert [m["message_key"] for m in profile["messages"]] == ["run-1:confirm:email"]
    assert [j["journey"] for j in profile["journeys"]] == ["order_followup"]

    messages = api.get("/v1/customers/c1/messages").json()["messages"]
    assert messages[0]["status_history"] == [{"status": "sent"}]
    assert "consent_snapshot" not in messages[0]
    assert api.get("/v1/customers/c1/messages?offset=1").json()["messages"] == []

    consents = api.get("/v1/customers/c1/consents").json()
    assert consents["current"]["consent"]["email:promotional"]["granted"] is True
    assert [r["source"] for r in consents["ledger"]] == ["api"]

    journeys = api.get("/v1/customers/c1/journeys").json()["journeys"]
    assert journeys[0]["workflow_id"] == "journey-c1-1"


def test_customer_reads_wait_for_no_writer(api: Api) -> None:
    # On SQLite a read that took the write lock queued behind every write (sends, redemptions)
    # and held them up in turn; PostgreSQL's reads never wait for a writer.
    if api.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's one write lock")
    add_customer(api.engine)
    statuses, while_held = answered_while_write_locked(
        api.engine,
        lambda: [api.get(f"/v1/customers/c1{suffix}").status_code for suffix in _CUSTOMER_READS],
    )
    assert statuses == [200] * len(_CUSTOMER_READS) and while_held


def test_a_stored_event_is_read_for_its_hand_off_without_the_write_lock(api: Api) -> None:
    # The API hands off derived events (points_changed after a purchase) by reading them back.
    if api.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's one write lock")
    api.post("/v1/events", PURCHASE)
    event, while_held = answered_while_write_locked(
        api.engine, lambda: stored_event(api.engine, str(PURCHASE["id"]))
    )
    assert event.id == PURCHASE["id"] and while_held


_CUSTOMER_READS = ["", "/messages", "/consents", "/journeys"]


@pytest.mark.parametrize("suffix", _CUSTOMER_READS)
def test_unknown_customer_is_404(api: Api, suffix: str) -> None:
    response = api.get(f"/v1/customers/nobody{suffix}")
    assert response.status_code == 404


def test_a_customer_id_the_customer_table_refuses_is_422(api: Api) -> None:
    body = {"id": "r1", "type": "register", "customer": "Bart Peeters"}
    response = api.post("/v1/events", body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "customer"
    assert events(api.engine) == []


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/customers", {"id": "c1", "opt_in": {"email": 0}}, "opt_in.email"),
        ("/v1/customers", {"id": "c1", "opt_in": {"sms": "yes"}}, "opt_in.sms"),
        ("/v1/customers", {"id": "c1", "birthday": 0}, "birthday"),
        ("/v1/customers", {"id": "c1", "timezone": "Europe/Gent"}, "timezone"),
        ("/v1/products", {"sku": "S", "name": "N", "warranty_months": "12"}, "warranty_months"),
        ("/v1/events", {**PURCHASE, "lines": [{"sku": "LAWN-10", "qty": "2"}]}, "lines.0.qty"),
        ("/v1/events", {**PURCHASE, "at": 1767225600}, "at"),
        ("/v1/events", {**PURCHASE, "channel": "phone"}, "channel"),
        ("/v1/events", {**PURCHASE, "lines": []}, "lines"),
        ("/v1/events", {"id": "e", "type": "delivered", "customer": "c1"}, "order"),
        ("/v1/events", {"id": "e", "type": "custom", "customer": "c1"}, "name"),
        ("/v1/events", {"id": "e", "type": "review", "customer": "c1", "rating": True}, "rating"),
    ],
)
def test_wire_types_are_strict(api: Api, path: str, body: dict[str, Any], field: str) -> None:
    response = api.post(path, body)
    assert response.status_code == 422, response.text
    assert field in [p["field"] for p in response.json()["detail"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**PURCHASE, "order": "o1\r\nBcc: everyone@example.com"}, "order"),
        ({**PURCHASE, "store": "Gent\n"}, "store"),
        ({**PURCHASE, "lines": [{"sku": "LAWN-10", "name": "Gazon\u2028mest"}]}, "lines.0.name"),
        (
            {**PURCHASE, "profile": {"id": "c1", "first_name": "Bart\nPeeters"}},
            "profile.first_name",
        ),
        ({"id": "e", "type": "custom", "customer": "c1", "name": "x\ry"}, "name"),
    ],
)
def test_line_breaks_in_names_and_ids_are_refused_naming_the_field(
    api: Api, body: dict[str, Any], field: str
) -> None:
    response = api.post("/v1/events", body)
    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert problem == {
        "field": field,
        "message": "must be a single line: line breaks are not allowed",
    }
    assert events(api.engine) == []


ALLOWED = "letters A-Z and a-z, digits 0-9 and . _ : @ # / + -"
CUSTOMER_ALLOWED = "letters A-Z and a-z, digits 0-9 and . _ : @ -"


@pytest.mark.parametrize(
    ("body", "field", "found"),
    [
        ({**PURCHASE, "order": "o1\x1b[2J\x1b[31mPAID"}, "order", "'\\x1b'"),
        ({**PURCHASE, "order": "o 1"}, "order", "' '"),
        ({**PURCHASE, "id": "e1<script>"}, "id", "'<'"),
        ({**PURCHASE, "lines": [{"sku": "LAWN\t10"}]}, "lines.0.sku", "'\\t'"),
        ({**PURCHASE, "lines": [{"sku": "LAWN\u202e01"}]}, "lines.0.sku", "'\\u202e'"),
        ({**PURCHASE, "customer": "c1/../c2"}, "customer", "'/'"),
    ],
)
def test_identifiers_outside_the_documented_characters_are_422_naming_the_field(
    api: Api, body: dict[str, Any], field: str, found: str
) -> None:
    response = api.post("/v1/events", body)
    assert response.status_code == 422, response.text
    problems = response.json()["detail"]
    allowed = CUSTOMER_ALLOWED if field == "customer" else ALLOWED
    assert {"field": field, "message": f"use only {allowed} (found {found})"} in problems
    assert events(api.engine) == []


def test_identifiers_in_the_documented_set_are_accepted(api: Api) -> None:
    body = {
        **PURCHASE,
        "id": "shopify:orders/create:820982911946154508",
        "order": "W-1001/2#3+4",
        "customer": "k.1001@pos:gent_2",
        "lines": [{"sku": "POT/40+", "qty": 1, "unit_price": "29.00"}],
    }
    body.pop("profile")
    assert api.post("/v1/events", body).status_code == 202


def test_the_documented_sets_are_the_enforced_ones() -> None:
    from trouw.domain.ingest import CUSTOMER_ID_CHARACTERS, IDENTIFIER_CHARACTERS

    assert (IDENTIFIER_CHARACTERS, CUSTOMER_ID_CHARACTERS) == (ALLOWED, CUSTOMER_ALLOWED)
    text = (ROOT / "docs" / "api.md").read_text()
    assert "`A-Z a-z 0-9 . _ : @ # / + -`" in text and "`A-Z a-z 0-9 . _ : @ -`" in text
