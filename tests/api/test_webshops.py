"""Shopify and WooCommerce webhooks: HMAC-verified, mapped to purchase, delivered, returned."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session

from tests.api.conftest import (
    Api,
    add_customer,
    consents,
    customer,
    dumps,
    events,
    rows,
    shopify_headers,
    suppressions,
    woo_headers,
)
from tests.api.test_callbacks import inbound, twilio_post
from trouw.domain.context import build_context
from trouw.domain.customers import match_customer
from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import Customer, Order, OrderLine
from trouw.domain.gdpr import erase
from trouw.domain.render import TemplateStore, sample_context
from trouw.ways_in.api.webshops import hmac_sha256_base64, verify_hmac_base64

# Shaped like the orders/create example in Shopify's webhook reference (trimmed).
SHOPIFY_ORDER: dict[str, Any] = {
    "id": 820982911946154508,
    "admin_graphql_api_id": "gid://shopify/Order/820982911946154508",
    "name": "#1001",
    "email": "jon@example.com",
    "contact_email": "jon@example.com",
    "phone": None,
    "created_at": "2026-03-02T10:15:00+01:00",
    "currency": "EUR",
    "total_price": "73.90",
    "customer_locale": "nl-BE",
    "customer": {
        "id": 115310627314723954,
        "email": "jon@example.com",
        "first_name": "Jon",
        "last_name": "Peeters",
        "phone": "+32 470 12 34 56",
        "email_marketing_consent": {"state": "subscribed", "opt_in_level": "single_opt_in"},
        "sms_marketing_consent": None,
    },
    "line_items": [
        {
            "id": 866550311766439020,
            "variant_id": 808950810,
            "product_id": 632910392,
            "title": "Gazonmest 10 kg",
            "quantity": 2,
            "sku": "LAWN-10",
            "price": "24.95",
        },
        {
            "id": 141249953,
            "variant_id": 457924702,
            "product_id": 632910393,
            "title": "Graszaad 1 kg",
            "quantity": 1,
            "sku": "",
            "price": "24.00",
        },
    ],
}
SHOPIFY_FULFILLMENT = {
    "id": 123456,
    "order_id": 820982911946154508,
    "status": "success",
    "created_at": "2026-03-04T08:00:00+01:00",
    "shipment_status": None,
}
SHOPIFY_REFUND = {
    "id": 929361462,
    "order_id": 820982911946154508,
    "created_at": "2026-03-10T12:00:00+01:00",
    "refund_line_items": [{"quantity": 1, "line_item_id": 866550311766439020}],
}

# Shaped like a WooCommerce REST API v3 order, as its webhooks send it (trimmed).
WOO_ORDER: dict[str, Any] = {
    "id": 727,
    "number": "727",
    "status": "processing",
    "currency": "EUR",
    "date_created": "2026-03-02T10:00:00",
    "date_created_gmt": "2026-03-02T09:00:00",
    "date_paid_gmt": "2026-03-02T09:01:00",
    "date_completed_gmt": None,
    "total": "29.35",
    "customer_id": 26,
    "billing": {
        "first_name": "Sophie",
        "last_name": "Dubois",
        "email": "Sophie.Dubois@example.com",
        "phone": "0032 470 00 00 02",
    },
    "line_items": [
        {
            "id": 315,
            "name": "Kattenvoer 2 kg",
            "product_id": 93,
            "variation_id": 0,
            "quantity": 2,
            "sku": "CAT-2",
            "price": 12.99,
            "total": "25.98",
        }
    ],
    "refunds": [],
}


def shopify(api: Api, payload: Any, topic: str, webhook_id: str, secret: str | None = None) -> Any:
    body = dumps(payload)
    headers = shopify_headers(body, topic, webhook_id, **({"secret": secret} if secret else {}))
    return api.client.post("/v1/webhooks/shopify", content=body, headers=headers)


def woo(api: Api, payload: Any, topic: str = "order.created", secret: str | None = None) -> Any:
    body = dumps(payload)
    headers = woo_headers(body, topic, **({"secret": secret} if secret else {}))
    return api.client.post("/v1/webhooks/woocommerce", content=body, headers=headers)


def test_shopify_order_becomes_a_web_purchase_of_a_new_customer(api: Api) -> None:
    response = shopify(api, SHOPIFY_ORDER, "orders/create", "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043")
    assert response.status_code == 200
    assert response.json() == {"status": "accepted", "events": ["shopify:order:820982911946154508"]}
    order = rows(api.engine, Order)[0]
    assert (order.id, order.customer_id, order.channel) == (
        "shopify:820982911946154508",
        "shopify:115310627314723954",
        "web",
    )
    assert str(order.total) == "73.90"
    lines = sorted(rows(api.engine, OrderLine), key=lambda line: line.line_no)
    assert [(line.sku, line.qty, str(line.unit_price)) for line in lines] == [
        ("LAWN-10", 2, "24.95"),
        ("item-457924702", 1, "24.00"),
    ]
    new = customer(api.engine, "shopify:115310627314723954")
    assert new is not None
    assert (new.email, new.phone, new.first_name, new.locale) == (
        "jon@example.com",
        "+32470123456",
        "Jon",
        "nl-BE",
    )
    # Shopify's recorded marketing consent becomes a ledger record, with the shop as source.
    [record] = consents(api.engine, new.id)
    assert (record.channel, record.scope, record.granted, record.source) == (
        "email",
        "promotional",
        True,
        "shopify",
    )


def test_shopify_customer_is_matched_to_the_shop_customer_by_email(api: Api) -> None:
    add_customer(api.engine, "pos-42", email="JON@example.com", phone=None, first_name="Jonathan")
    shopify(api, SHOPIFY_ORDER, "orders/create", "w1")
    assert rows(api.engine, Order)[0].customer_id == "pos-42"
    known = customer(api.engine, "pos-42")
    assert known is not None
    # What the shop knew stays; only the missing phone number is filled in.
    assert (known.first_name, known.phone) == ("Jonathan", "+32470123456")


def test_shopify_customer_is_matched_by_phone_when_email_differs(api: Api) -> None:
    add_customer(api.engine, "pos-43", email="other@example.com", phone="+32470123456")
    shopify(api, SHOPIFY_ORDER, "orders/create", "w1")
    assert rows(api.engine, Order)[0].customer_id == "pos-43"


def test_shopify_customer_who_was_erased_comes_back_as_a_new_customer(api: Api) -> None:
    shopify(api, SHOPIFY_ORDER, "orders/create", "w1")
    with session_scope(api.engine) as session:
        erase(session, customer_id="shopify:115310627314723954", at=datetime.now(UTC))
    response = shopify(api, {**SHOPIFY_ORDER, "id": 820982911946154509}, "orders/create", "w2")
    assert response.json()["status"] == "accepted"
    owners = {o.id: o.customer_id for o in rows(api.engine, Order)}
    assert owners == {
        "shopify:820982911946154508": "shopify:115310627314723954",
        "shopify:820982911946154509": "shopify:115310627314723954:2",
    }
    tombstone = customer(api.engine, "shopify:115310627314723954")
    assert tombstone is not None and tombstone.erased and tombstone.email is None
    new = customer(api.engine, "shopify:115310627314723954:2")
    assert new is not None and not new.erased and new.email == "jon@example.com"


def test_shopify_repeat_delivery_changes_nothing(api: Api) -> None:
    first = shopify(api, SHOPIFY_ORDER, "orders/create", "w1")
    again = shopify(api, SHOPIFY_ORDER, "orders/create", "w1")
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    # A second subscription delivering the same order under another webhook id: one order still.
    other = shopify(api, SHOPIFY_ORDER, "orders/create", "w2")
    assert other.json() == first.json()
    assert len(events(api.engine)) == 1
    assert len(rows(api.engine, Order)) == 1
    assert len(consents(api.engine, "shopify:115310627314723954")) == 1


def test_shopify_fulfillment_and_refund(api: Api) -> None:
    shopify(api, SHOPIFY_ORDER, "orders/create", "w1")
    delivered = shopify(api, SHOPIFY_FULFILLMENT, "fulfillments/create", "w2")
    assert delivered.json()["events"] == ["shopify:delivered:820982911946154508"]
    # orders/fulfilled reports the same delivery: still one delivered event.
    fulfilled = shopify(
        api, {**SHOPIFY_ORDER, "fulfillment_status": "fulfilled"}, "orders/fulfilled", "w3"
    )
    assert fulfilled.json()["events"] == ["shopify:delivered:820982911946154508"]
    returned = shopify(api, SHOPIFY_REFUND, "refunds/create", "w4")
    assert returned.json()["events"] == ["shopify:refund:929361462"]
    assert sorted(e.type for e in events(api.engine)) == ["delivered", "purchase", "returned"]
    order = rows(api.engine, Order)[0]
    assert order.delivered_at is not None and order.returned_at is not None


def test_shopify_fulfillment_for_an_unknown_order_is_ignored(api: Api) -> None:
    response = shopify(api, SHOPIFY_FULFILLMENT, "fulfillments/create", "w2")
    assert response.status_code == 200 and response.json()["status"] == "ignored"
    assert events(api.engine) == []


@pytest.mark.parametrize(
    "tamper",
    ["wrong secret", "changed body", "no signature", "garbage signature"],
)
def test_shopify_bad_signature_is_401_and_changes_nothing(api: Api, tamper: str) -> None:
    body = dumps(SHOPIFY_ORDER)
    headers = shopify_headers(
        body, "orders/create", "w1", secret="x" if tamper == "wrong secret" else "shpss_test_secret"
    )
    if tamper == "changed body":
        body = body.replace(b"24.95", b"0.01")
    if tamper == "no signature":
        del headers["X-Shopify-Hmac-Sha256"]
    if tamper == "garbage signature":
        headers["X-Shopify-Hmac-Sha256"] = "ééé not base64".encode("latin-1")  # type: ignore[assignment]
    response = api.client.post("/v1/webhooks/shopify", content=body, headers=headers)
    assert response.status_code == 401
    assert events(api.engine) == [] and rows(api.engine, Order) == []


def test_unconfigured_secret_refuses_everything(api: Api) -> None:
    api.settings.shopify_webhook_secret = None
    assert shopify(api, SHOPIFY_ORDER, "orders/create", "w1").status_code == 401
    assert events(api.engine) == []


def test_woocommerce_paid_order_completed_and_refunded(api: Api) -> None:
    response = woo(api, WOO_ORDER)
    assert response.json() == {"status": "accepted", "events": ["woocommerce:order:727"]}
    order = rows(api.engine, Order)[0]
    assert (order.id, order.customer_id, order.channel) == (
        "woocommerce:727",
        "woocommerce:26",
        "web",
    )
    new = customer(api.engine, "woocommerce:26")
    assert new is not None and (new.email, new.phone) == (
        "sophie.dubois@example.com",
        "+32470000002",
    )

    completed = woo(
        api,
        {**WOO_ORDER, "status": "completed", "date_completed_gmt": "2026-03-04T10:00:00"},
        "order.updated",
    )
    assert completed.json()["events"] == ["woocommerce:order:727", "woocommerce:delivered:727"]
    refunded = woo(
        api,
        {**WOO_ORDER, "status": "refunded", "refunds": [{"id": 730, "total": "-29.35"}]},
        "order.updated",
    )
    assert refunded.json()["events"][-1] == "woocommerce:refund:727:730"
    assert sorted(e.type for e in events(api.engine)) == ["delivered", "purchase", "returned"]


def test_woocommerce_unpaid_order_starts_nothing(api: Api) -> None:
    response = woo(api, {**WOO_ORDER, "status": "pending"})
    assert response.json()["status"] == "ignored"
    assert events(api.engine) == []


def test_woocommerce_guest_is_matched_by_email(api: Api) -> None:
    add_customer(api.engine, "pos-7", email="sophie.dubois@example.com", phone=None)
    woo(api, {**WOO_ORDER, "customer_id": 0})
    assert rows(api.engine, Order)[0].customer_id == "pos-7"


def test_woocommerce_ping_is_answered_and_bad_signature_refused(api: Api) -> None:
    ping = api.client.post(
        "/v1/webhooks/woocommerce",
        content=b"webhook_id=7",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert ping.status_code == 200 and ping.json() == {"status": "ping"}
    assert woo(api, WOO_ORDER, secret="wrong").status_code == 401
    assert events(api.engine) == []


def test_hmac_helpers() -> None:
    signature = hmac_sha256_base64("secret", b"{}")
    assert verify_hmac_base64("secret", b"{}", signature)
    assert not verify_hmac_base64("secret", b"{} ", signature)
    assert not verify_hmac_base64(None, b"{}", signature)
    assert not verify_hmac_base64("secret", b"{}", None)


def test_match_customer_order(api: Api) -> None:
    add_customer(api.engine, "a", email="x@example.com", phone="+32470000009")
    add_customer(api.engine, "b", email="y@example.com", phone="+32470000008")
    with Session(api.engine) as session:

        def match(**kw: Any) -> str | None:
            found = match_customer(
                session, **{"customer_id": None, "email": None, "phone": None, **kw}
            )
            return found.id if found else None

        assert match(customer_id="b", email="x@example.com") == "b"
        assert match(customer_id="zz", email="X@Example.com ", phone="+32470000008") == "a"
        assert match(email="nobody@example.com", phone="0032 470 00 00 08") == "b"
        assert match(email="nobody@example.com") is None
        assert match() is None


# --- the shops' own published examples (tests/api/data/webshops/README.md names the sources) ---

DATA = Path(__file__).parent / "data" / "webshops"
TEMPLATES = Path(__file__).parents[2] / "templates"


def official(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def test_shopify_official_order_keeps_currency_name_phone_and_line_names(api: Api) -> None:
    order = official("shopify/order.json")["order"]
    response = shopify(api, order, "orders/create", "official-1")
    assert response.json() == {"status": "accepted", "events": ["shopify:order:450789469"]}
    [stored] = rows(api.engine, Order)
    assert (stored.id, stored.name, stored.currency, str(stored.total)) == (
        "shopify:450789469",
        "#1001",
        "USD",
        "409.94",
    )
    lines = sorted(rows(api.engine, OrderLine), key=lambda line: line.line_no)
    assert [line.name for line in lines][0] == "IPod Nano - 8gb - green"
    bob = customer(api.engine, "shopify:207119551")
    # "555-625-1199" is national: read with the billing address's country (US).
    assert bob is not None and bob.phone == "+15556251199"


def test_shopify_confirmation_shows_order_name_and_dollars_never_our_id(api: Api) -> None:
    shopify(api, official("shopify/order.json")["order"], "orders/create", "official-1")
    store = TemplateStore(TEMPLATES)
    with Session(api.engine) as session:
        context = build_context(
            session,
            customer_id="shopify:207119551",
            order_id="shopify:450789469",
            skus=[],
            now=datetime.now(UTC),
        )
    context.update(sample_context("order_confirmation", "en-US") | {"order": context["order"]})
    email = store.render_email("order_confirmation", "en-US", context)
    assert "#1001" in email.subject and "$409.94" in email.html and "$199.00" in email.text
    for part in (email.subject, email.html, email.text):
        assert "shopify:450789469" not in part and "€" not in part
    dutch = store.render_email("order_confirmation", "nl-BE", context)
    assert "US$\u00a0409,94" in dutch.html


def test_shopify_official_fulfillment_and_refund(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    order = official("shopify/order.json")["order"]
    fulfillment = official("shopify/fulfillment.json")["fulfillment"]
    refund = official("shopify/refund.json")["refund"]
    caplog.set_level(logging.INFO, logger="trouw.api.webshops")
    # Before its order came: ignored, and the log says why.
    early = shopify(api, {**fulfillment, "status": "success"}, "fulfillments/create", "f0")
    assert early.json()["status"] == "ignored"
    assert "unknown order shopify:450789469" in early.json()["reason"]
    assert "ignored: fulfilment of unknown order shopify:450789469" in caplog.text
    shopify(api, order, "orders/create", "o1")
    # The example fulfilment is still pending: nothing has left the shop yet.
    pending = shopify(api, fulfillment, "fulfillments/create", "f1")
    assert pending.json()["status"] == "ignored" and "'pending'" in pending.json()["reason"]
    fulfilled = shopify(api, {**order, "fulfillment_status": "fulfilled"}, "orders/fulfilled", "f2")
    assert fulfilled.json()["events"] == ["shopify:delivered:450789469"]
    returned = shopify(api, refund, "refunds/create", "r1")
    assert returned.json()["events"] == ["shopify:refund:509562969"]
    assert sorted(e.type for e in events(api.engine)) == ["delivered", "purchase", "returned"]


def test_woocommerce_official_order_lifecycle(api: Api) -> None:
    created = woo(api, official("woocommerce/order_processing.json"))
    assert created.json() == {"status": "accepted", "events": ["woocommerce:order:727"]}
    [stored] = rows(api.engine, Order)
    assert (stored.name, stored.currency, str(stored.total)) == ("727", "USD", "29.35")
    names = sorted(line.name for line in rows(api.engine, OrderLine))
    assert names == ["Ship Your Idea \u2013 Color: Black, Size: M Test", "Woo Single #1"]
    # A guest: no customer id, so the order names the customer; "(555) 555-5555" with US.
    [guest] = [c for c in rows(api.engine, Customer) if c.email == "john.doe@example.com"]
    assert guest.phone == "+15555555555"
    completed = woo(api, official("woocommerce/order_completed.json"), "order.updated")
    assert completed.json()["events"] == ["woocommerce:order:727", "woocommerce:delivered:727"]
    refunded = woo(api, official("woocommerce/order_refunded.json"), "order.updated")
    assert refunded.json()["events"][-1] == "woocommerce:refund:727:726"
    assert sorted(e.type for e in events(api.engine)) == ["delivered", "purchase", "returned"]


def test_woocommerce_unpaid_order_is_logged_with_its_reason(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trouw.api.webshops")
    pending = {**official("woocommerce/order_processing.json"), "status": "pending"}
    response = woo(api, pending)
    assert response.json()["reason"] == "order woocommerce:727 is 'pending': only paid orders count"
    assert "woocommerce webhook - (order.created) ignored: order woocommerce:727" in caplog.text


def test_unreadable_phone_keeps_the_order_and_logs_why(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trouw.api.webshops")
    order = official("woocommerce/order_processing.json")
    order = {**order, "billing": {**order["billing"], "phone": "+1 555 555 5555 ext. 12"}}
    assert woo(api, order).json()["status"] == "accepted"
    [guest] = rows(api.engine, Customer)
    assert guest.phone is None
    assert "phone not stored" in caplog.text and "extension" in caplog.text


def test_shopify_presentment_currency_and_customer_locale(api: Api) -> None:
    # Shopify's *_set fields (MoneyBag: shop_money and presentment_money) on the fixture order:
    # the shop books USD, the customer paid in EUR and must see euros.
    order = official("shopify/order.json")["order"]

    def bag(usd: str, eur: str) -> dict[str, Any]:
        return {
            "shop_money": {"amount": usd, "currency_code": "USD"},
            "presentment_money": {"amount": eur, "currency_code": "EUR"},
        }

    lines = [{**item, "price_set": bag(item["price"], "183.50")} for item in order["line_items"]]
    paid_in_euro = {
        **order,
        "presentment_currency": "EUR",
        "total_price_set": bag(order["total_price"], "378.01"),
        "line_items": lines,
        "customer_locale": "fr_CA",  # POSIX-style from a storefront: still one tag
    }
    shopify(api, paid_in_euro, "orders/create", "eur-1")
    [stored] = rows(api.engine, Order)
    assert (stored.currency, str(stored.total)) == ("EUR", "378.01")
    assert {str(line.unit_price) for line in rows(api.engine, OrderLine)} == {"183.50"}
    bob = customer(api.engine, "shopify:207119551")
    assert bob is not None and bob.locale == "fr-CA"


def test_a_national_webshop_phone_is_matched_by_sms_stop(api: Api) -> None:
    # Before, "(555) 555-5555" was stored as NULL: no SMS, and a STOP from it matched nobody.
    woo(api, official("woocommerce/order_processing.json"))
    [guest] = rows(api.engine, Customer)
    response = twilio_post(
        api, "/v1/callbacks/twilio/inbound", inbound("STOP", From="+15555555555")
    )
    assert response.status_code == 200
    assert [(s.customer_id, s.reason) for s in suppressions(api.engine)] == [(guest.id, "sms_stop")]
    assert [(e.customer_id, e.type) for e in events(api.engine)][-1] == (guest.id, "sms_stop")


def test_shopify_body_under_the_wrong_topic_marks_nothing(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    order = official("shopify/order.json")["order"]
    fulfillment = {**official("shopify/fulfillment.json")["fulfillment"], "status": "success"}
    refund = official("shopify/refund.json")["refund"]
    caplog.set_level(logging.INFO, logger="trouw.api.webshops")
    shopify(api, order, "orders/create", "o1")
    # Each body signed with the shop's secret, re-sent under another resource's topic.
    as_refund = shopify(api, fulfillment, "refunds/create", "x1")
    assert as_refund.status_code == 200 and as_refund.json() == {
        "status": "ignored",
        "events": [],
        "reason": "topic 'refunds/create' carries a refund, but the body is a fulfillment",
    }
    assert "(refunds/create) ignored: topic 'refunds/create' carries a refund" in caplog.text
    as_fulfillment = shopify(api, order, "fulfillments/create", "x2")
    assert as_fulfillment.json()["reason"] == (
        "topic 'fulfillments/create' carries a fulfillment, but the body is an order"
    )
    as_fulfilled = shopify(api, refund, "orders/fulfilled", "x3")
    assert as_fulfilled.json()["status"] == "ignored"
    assert [e.type for e in events(api.engine)] == ["purchase"]
    [stored] = rows(api.engine, Order)
    assert stored.delivered_at is None and stored.returned_at is None
    # The same bodies under their own topics still count.
    assert shopify(api, fulfillment, "fulfillments/create", "y1").json()["status"] == "accepted"
    assert shopify(api, refund, "refunds/create", "y2").json()["status"] == "accepted"


def test_woocommerce_non_order_body_under_an_order_topic_marks_nothing(api: Api) -> None:
    woo(api, official("woocommerce/order_processing.json"))
    completed = official("woocommerce/order_completed.json")
    # A signed body of another resource (no order lines) under order.updated.
    product = {k: v for k, v in completed.items() if k != "line_items"}
    response = woo(api, product, "order.updated")
    assert response.status_code == 200 and response.json() == {
        "status": "ignored",
        "events": [],
        "reason": "topic 'order.updated' carries an order, but the body has no line_items",
    }
    [stored] = rows(api.engine, Order)
    assert stored.delivered_at is None
