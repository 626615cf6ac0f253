"""Locales and phone numbers through the API: any BCP 47 tag kept, national numbers read, 422s."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api, customer, rows
from trouw.domain.db.models import Order


def register(profile: dict[str, Any], event_id: str = "r1") -> dict[str, Any]:
    return {"id": event_id, "type": "register", "customer": profile["id"], "profile": profile}


@pytest.mark.parametrize("tag", ["en-GB", "fr-FR", "nl", "de-BE", "zh-Hant-TW"])
def test_any_valid_locale_is_accepted_and_stored_as_given(api: Api, tag: str) -> None:
    response = api.post("/v1/events", register({"id": "c1", "locale": tag}))
    assert response.status_code == 202, response.text
    stored = customer(api.engine, "c1")
    assert stored is not None and stored.locale == tag


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("locale", "nl_BE", "locale 'nl_BE' is not BCP 47: write 'nl-BE' (with -)"),
        ("locale", "xx-YY", "locale 'xx-YY': unknown language 'xx'"),
        ("phone", "0470 12 34 56", "no country is known"),
        ("phone", "+32 470 12 34 56 ext. 9", "has an extension (9): SMS cannot reach it"),
    ],
)
def test_bad_locale_or_phone_is_a_clear_422(api: Api, field: str, value: str, message: str) -> None:
    response = api.post("/v1/events", register({"id": "c1", field: value}))
    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert problem["field"].endswith(field) and message in problem["message"]
    assert customer(api.engine, "c1") is None


def test_national_phone_is_read_in_the_locales_region(api: Api) -> None:
    body = register({"id": "c1", "locale": "nl-BE", "phone": "0470 12 34 56"})
    assert api.post("/v1/events", body).status_code == 202
    stored = customer(api.engine, "c1")
    assert stored is not None and stored.phone == "+32470123456"


def test_order_name_and_currency_are_stored(api: Api) -> None:
    purchase = {
        "id": "p1",
        "type": "purchase",
        "customer": "c1",
        "order": "pos:2026-0001",
        "order_name": "Bon 0001",
        "currency": "GBP",
        "channel": "pos",
        "lines": [{"sku": "LAWN-10", "qty": 1, "unit_price": "9.99"}],
    }
    assert api.post("/v1/events", purchase).status_code == 202
    [order] = rows(api.engine, Order)
    assert (order.name, order.currency) == ("Bon 0001", "GBP")
    bad = api.post("/v1/events", {**purchase, "id": "p2", "currency": "XYZ"})
    assert bad.status_code == 422 and "unknown currency 'XYZ'" in bad.text
