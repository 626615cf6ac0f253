"""The till's and the webshop's loyalty endpoints: vouchers by code or customer, redeem once
per receipt with clear refusals, operator issue and points adjustment; SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Api, add_customer


def issue(api: Api, **body: Any) -> dict[str, Any]:
    response = api.post(
        "/v1/customers/c1/vouchers",
        {"value": "10", "reason": "goodwill", **body},
        scope="admin",
    )
    assert response.status_code == 201, response.text
    found: dict[str, Any] = response.json()
    return found


def test_the_till_finds_and_redeems_a_voucher_once(api: Api) -> None:
    add_customer(api.engine, "c1", attributes={"loyalty_card": "2200001234567"})
    voucher = issue(api, request_id="req-1", min_order_total="20")
    assert issue(api, request_id="req-1")["code"] == voucher["code"]  # a repeat: the same one
    code = voucher["code"]
    looked = api.get(f"/v1/vouchers/{code.lower()}").json()
    assert (looked["valid"], looked["status"], looked["value"]) == (True, "open", "10.00")
    assert looked["conditions"]["min_order_total"] == "20.00"
    for query in (
        "customer=c1",
        "email=bart@example.com",
        "phone=%2B32470000001",
        "card=2200001234567",
    ):
        listed = api.get(f"/v1/vouchers?{query}").json()
        assert [v["code"] for v in listed["vouchers"]] == [code], query
    assert api.get("/v1/vouchers?email=nobody@example.com").status_code == 404
    assert api.get("/v1/vouchers").status_code == 422

    low = api.post(f"/v1/vouchers/{code}/redeem", {"receipt": "R-1", "order_total": "5"})
    assert low.status_code == 409 and low.headers["Voucher-Refusal"] == "below_minimum"
    first = api.post(f"/v1/vouchers/{code}/redeem", {"receipt": "R-1", "store": "Gent"})
    again = api.post(f"/v1/vouchers/{code}/redeem", {"receipt": "R-1", "store": "Gent"})
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json() and again.headers["Idempotent-Replayed"] == "true"
    assert first.json()["redemption"]["receipt"] == "R-1"
    other = api.post(f"/v1/vouchers/{code}/redeem", {"receipt": "R-2"})
    assert other.status_code == 409 and other.headers["Voucher-Refusal"] == "used"
    assert "already redeemed" in other.json()["detail"][0]["message"]
    assert api.post("/v1/vouchers/NOPE-1/redeem", {"receipt": "R-3"}).status_code == 404
    assert api.get("/v1/customers/c1/vouchers").json()["vouchers"] == []
    assert len(api.get("/v1/customers/c1/vouchers?all=true").json()["vouchers"]) == 1


def test_a_foreign_code_is_refused_at_the_till(api: Api) -> None:
    add_customer(api.engine, "c1")
    add_customer(api.engine, "c2", email="an@example.com", phone="+32470000002")
    code = issue(api)["code"]
    refused = api.post(f"/v1/vouchers/{code}/redeem", {"receipt": "R-1", "customer": "c2"})
    assert refused.status_code == 409 and refused.headers["Voucher-Refusal"] == "foreign"


def test_an_operator_adjusts_points_with_a_reason_never_below_zero(api: Api) -> None:
    add_customer(api.engine, "c1")
    added = api.post("/v1/customers/c1/points", {"points": 50, "reason": "goodwill"}, scope="admin")
    assert added.status_code == 201 and added.json()["points"] == 50
    too_much = api.post(
        "/v1/customers/c1/points", {"points": -60, "reason": "correction"}, scope="admin"
    )
    assert too_much.status_code == 409 and "negative" in too_much.json()["detail"][0]["message"]
    assert api.post("/v1/customers/c1/points", {"points": 5, "reason": "x"}).status_code == 403
    loyalty = api.get("/v1/customers/c1/loyalty").json()
    assert (loyalty["points"], loyalty["member"]) == (50, True)
    assert [(h["kind"], h["points"], h["reason"]) for h in loyalty["history"]] == [
        ("adjust", 50, "goodwill")
    ]
