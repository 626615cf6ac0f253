"""The tracked click's session reaches the order (Shopify, WooCommerce, the API) and links it.

The shops' own published payloads (tests/api/data/webshops/README.md), each changed in one
named field: Shopify's `note_attributes` (cart attributes) and `landing_site`, WooCommerce's
order `meta_data`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.api.conftest import Api, add_customer, add_message, clicks_recorded, now, rows
from tests.api.test_webshops import official, shopify, woo
from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import Order, TrackedLink
from trouw.domain.measure.attribution import AttributionRules
from trouw.domain.measure.links import link_code
from trouw.domain.measure.report import journey_report

CLICK = "5f1c0a2e9b7d4c3a8e6f1b2d3c4a5e6f"


def test_shopify_cart_attribute_carries_the_click() -> None:
    order = official("shopify/order.json")["order"]
    # The fixture's own cart attributes stay; the theme added one from the landing URL.
    notes = [*order["note_attributes"], {"name": "trouw_click", "value": CLICK}]
    assert _shopify_session({**order, "note_attributes": notes}) == CLICK


def test_shopify_landing_site_carries_the_click() -> None:
    order = official("shopify/order.json")["order"]
    # The fixture lands on "http://www.example.com?source=abc": no click in it.
    assert _shopify_session(order) is None
    landing = f"{order['landing_site']}&trouw_click={CLICK}"
    assert _shopify_session({**order, "landing_site": landing}) == CLICK


def test_woocommerce_order_meta_carries_the_click() -> None:
    order = official("woocommerce/order_processing.json")
    assert _woo_session(order) is None  # only _download_permissions_granted in the example
    meta = [*order["meta_data"], {"id": 13107, "key": "_trouw_click", "value": CLICK}]
    assert _woo_session({**order, "meta_data": meta}) == CLICK


def test_a_malformed_click_is_left_out_and_the_order_kept() -> None:
    order = official("woocommerce/order_processing.json")
    for bad in ("", "a b", "x" * 101, 42, "<script>"):
        meta = [{"id": 1, "key": "_trouw_click", "value": bad}]
        assert _woo_session({**order, "meta_data": meta}) is None, bad


def _shopify_session(order: dict[str, Any]) -> str | None:
    from trouw.ways_in.webshops.shopify import _order

    return _order(order).session_id


def _woo_session(order: dict[str, Any]) -> str | None:
    from trouw.ways_in.webshops.woocommerce import _order

    return _order(order).session_id


def test_shopify_webhook_stores_the_session_on_the_order(api: Api) -> None:
    order = official("shopify/order.json")["order"]
    landing = f"{order['landing_site']}&trouw_click={CLICK}"
    assert (
        shopify(api, {**order, "landing_site": landing}, "orders/create", "w1").status_code == 200
    )
    [stored] = rows(api.engine, Order)
    assert stored.session_id == CLICK


def test_woocommerce_webhook_stores_the_session_on_the_order(api: Api) -> None:
    order = official("woocommerce/order_processing.json")
    meta = [*order["meta_data"], {"id": 13107, "key": "_trouw_click", "value": CLICK}]
    assert woo(api, {**order, "meta_data": meta}).status_code == 200
    [stored] = rows(api.engine, Order)
    assert stored.session_id == CLICK


def _purchase(order: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"e-{order}",
        "type": "purchase",
        "customer": "c1",
        "order": order,
        "channel": "pos",
        "store": "Gent",
        "lines": [{"sku": "X", "qty": 1, "unit_price": "10.00"}],
        **extra,
    }


def test_a_pos_or_api_purchase_carries_the_session(api: Api) -> None:
    add_customer(api.engine, "c1")
    assert api.post("/v1/events", _purchase("o1", session_id=CLICK)).status_code == 202
    refused = api.post("/v1/events", _purchase("o2", session_id="a b"))
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["field"].endswith("session_id")
    [stored] = rows(api.engine, Order)
    assert stored.session_id == CLICK


@pytest.fixture
def two_clicks(api: Api) -> tuple[str, str]:
    """c1 clicks the care tips, then (later) the reactivation mail: two click sessions."""
    add_customer(api.engine, "c1", email="bob.norman@hostmail.com")
    sessions = []
    for key, journey in (("r1:tips:email", "post_purchase"), ("r2:win:email", "reactivation")):
        add_message(api.engine, key, journey=journey, step="mail")
        target = f"https://shop.example/{journey}"
        code = link_code(b"test-key", key, target)
        with session_scope(api.engine) as s:
            s.add(
                TrackedLink(
                    code=code,
                    message_key=key,
                    url=target,
                    created_at=now(),
                    expires_at=now() + timedelta(days=30),
                )
            )
        answer = api.client.get(f"/c/{code}", follow_redirects=False)
        sessions.append(parse_qs(urlsplit(answer.headers["location"]).query)["trouw_click"][0])
    assert clicks_recorded(api.engine, 2)
    return sessions[0], sessions[1]


def _report(api: Api) -> Any:
    with api.engine.connect() as c:
        return journey_report(
            c, AttributionRules(), start=now() - timedelta(days=1), end=now() + timedelta(days=1)
        )


def test_the_clicked_session_wins_over_a_later_click(api: Api, two_clicks: tuple[str, str]) -> None:
    first, _later = two_clicks
    order = official("shopify/order.json")["order"]
    # The customer landed through the first click; the reactivation click came after it.
    placed = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    landing = f"https://shop.example/post_purchase?trouw_click={first}"
    body = {**order, "landing_site": landing, "created_at": placed}
    assert shopify(api, body, "orders/create", "w1").status_code == 200
    report = _report(api)
    assert report.methods == {"click_session": 1}
    [journey] = [j for j in report.journeys if j.orders]
    assert journey.journey == "post_purchase"
    assert journey.revenue == 409.94


def test_without_the_session_the_last_click_wins(api: Api, two_clicks: tuple[str, str]) -> None:
    order = official("shopify/order.json")["order"]
    placed = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    assert shopify(api, {**order, "created_at": placed}, "orders/create", "w1").status_code == 200
    report = _report(api)
    assert report.methods == {"click": 1}
    assert [j.journey for j in report.journeys if j.orders] == ["reactivation"]


def test_a_guest_checkout_with_the_clicked_session_is_that_clicks_order(
    api: Api, two_clicks: tuple[str, str]
) -> None:
    """The order arrives under another customer (a guest checkout with another address): the
    session still links it to c1's click, so the report must read that order too."""
    first, _later = two_clicks
    order = official("shopify/order.json")["order"]
    guest = "guest.buyer@example.org"
    placed = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    landing = f"https://shop.example/post_purchase?trouw_click={first}"
    body = {
        **order,
        "email": guest,
        "contact_email": guest,
        "customer": {**order["customer"], "id": 1, "email": guest},
        "landing_site": landing,
        "created_at": placed,
    }
    assert shopify(api, body, "orders/create", "w1").status_code == 200
    [stored] = rows(api.engine, Order)
    assert stored.customer_id != "c1"  # not matched to the clicker
    report = _report(api)
    assert report.methods == {"click_session": 1}
    [journey] = [j for j in report.journeys if j.orders]
    assert journey.journey == "post_purchase"
