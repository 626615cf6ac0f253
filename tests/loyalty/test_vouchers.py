"""Vouchers across channels: issued once, found by code or customer, redeemed once per receipt
(also by two tills at the same moment), on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select

from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import InboundEvent, Order, Voucher
from trouw.domain.ingest import (
    CustomerIn,
    EventIn,
    ingest_event,
    redeem_order_vouchers,
    upsert_customer,
)
from trouw.domain.loyalty import codes, ledger, vouchers
from trouw.domain.loyalty.vouchers import RedeemRefusedError

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def customers(engine: Engine) -> None:
    with session_scope(engine) as session:
        upsert_customer(
            session,
            CustomerIn(
                id="c1",
                email="Bart@Example.com",
                phone="+32470000001",
                attributes={"loyalty_card": "2200001234567"},
            ),
            at=T0,
            source="pos",
        )
        upsert_customer(session, CustomerIn(id="c2", email="an@example.com"), at=T0, source="pos")


def issue(engine: Engine, key: str = "run-1#0:gift", customer: str = "c1", **extra: Any) -> str:
    with session_scope(engine) as session:
        voucher, _new = vouchers.issue(
            session,
            customer_id=customer,
            value=Decimal("10"),
            expires_at=T0 + timedelta(days=30),
            issued_key=key,
            now=T0,
            prefix="welkom",
            workflow_id="run-1",
            **extra,
        )
        return voucher.code


def redeem(engine: Engine, code: str, receipt: str, **extra: Any) -> dict[str, Any]:
    with session_scope(engine) as session:
        extra.setdefault("now", T0 + timedelta(days=1))
        done = vouchers.redeem(session, code, receipt=receipt, **extra)
        return {**vouchers.public(done.voucher, now=T0), "replayed": done.replayed}


def test_codes_are_unguessable_unique_and_issued_once_per_request(engine: Engine) -> None:
    customers(engine)
    first = issue(engine)
    assert issue(engine) == first  # a retried issue: the same voucher
    other = issue(engine, key="run-2#0:gift")
    assert re.fullmatch(r"WELKOM-[0-9A-HJKMNP-TV-Z]{12}", first) and other != first
    # Without the key, nobody can make one: the code is an HMAC of the request.
    assert codes.secret_code(b"other-key", "run-1#0:gift", "welkom") != first
    with session_scope(engine) as session:
        row = session.get(Voucher, first)
        assert row is not None and row.workflow_id == "run-1" and row.issued_key == "run-1#0:gift"
        issued = session.exec(
            select(InboundEvent.source_id).where(InboundEvent.type == "voucher_issued")
        ).all()
        assert sorted(issued) == sorted([f"voucher_issued:{first}", f"voucher_issued:{other}"])


def test_scenario_codes_are_readable_and_numbered_per_customer(engine: Engine) -> None:
    customers(engine)
    ledger.configure(ledger.LoyaltyConfig(key=b"k", scenario_codes=True))
    assert [issue(engine, key=f"k{n}") for n in range(2)] == ["WELKOM-C1-1", "WELKOM-C1-2"]
    assert issue(engine, key="k3", customer="c2") == "WELKOM-C2-1"


def test_a_code_is_redeemed_once_per_receipt_with_clear_refusals(engine: Engine) -> None:
    customers(engine)
    code = issue(engine)
    first = redeem(engine, code, "R-1", channel="pos", store="Gent")
    again = redeem(engine, code.lower(), "R-1", channel="pos", store="Gent")
    assert (first["replayed"], again["replayed"]) == (False, True)
    assert {**first, "replayed": True} == again  # the same answer
    with pytest.raises(RedeemRefusedError, match="already redeemed") as used:
        redeem(engine, code, "R-2")
    assert used.value.reason == "used"
    other = issue(engine, key="run-3#0:gift", customer="c2")
    with pytest.raises(RedeemRefusedError) as foreign:
        redeem(engine, other, "R-3", customer_id="c1")
    assert foreign.value.reason == "foreign"
    with pytest.raises(RedeemRefusedError) as expired:
        redeem(engine, other, "R-4", now=T0 + timedelta(days=31))
    assert expired.value.reason == "expired"
    with pytest.raises(LookupError):
        redeem(engine, "WELKOM-NOPE", "R-5")
    # The redemption tells the customer's journeys (voucher_expiry exits on it), once.
    with session_scope(engine) as session:
        rows = session.exec(
            select(InboundEvent).where(InboundEvent.type == "voucher_redeemed")
        ).all()
        assert [row.payload["data"] for row in rows] == [{"code": code}]


def test_clock_skew_the_tills_time_counts_within_five_minutes(engine: Engine) -> None:
    customers(engine)
    code = issue(engine)
    expiry = T0 + timedelta(days=30)
    # Scanned a minute before expiry, reaching us two minutes after it: still valid.
    done = redeem(
        engine, code, "R-1", at=expiry - timedelta(minutes=1), now=expiry + timedelta(minutes=2)
    )
    assert done["redemption"]["at"] == (expiry - timedelta(minutes=1)).isoformat()
    late = issue(engine, key="run-9#0:gift")
    # A till clock a day behind is not believed: the server's time decides.
    with pytest.raises(RedeemRefusedError) as refused:
        redeem(engine, late, "R-2", at=expiry - timedelta(days=1), now=expiry + timedelta(hours=1))
    assert refused.value.reason == "expired"


def test_tills_redeeming_one_code_at_once_get_one_redemption(engine: Engine) -> None:
    customers(engine)
    code = issue(engine)
    tills = 6  # more than two: on SQLite they also queue in the process (QueuedConnection)
    barrier = threading.Barrier(tills)
    outcomes: dict[str, str] = {}

    def till(receipt: str) -> None:
        barrier.wait()
        try:
            redeem(engine, code, receipt)
            outcomes[receipt] = "redeemed"
        except RedeemRefusedError as exc:
            outcomes[receipt] = exc.reason

    threads = [threading.Thread(target=till, args=(f"R-{n}",)) for n in range(tills)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes.values()) == ["redeemed"] + ["used"] * (tills - 1)
    with session_scope(engine) as session:
        row = session.get(Voucher, code)
        assert row is not None and outcomes[row.redeemed_receipt or ""] == "redeemed"
        events = session.exec(
            select(InboundEvent.source_id).where(InboundEvent.type == "voucher_redeemed")
        ).all()
        assert events == [f"voucher_redeemed:{code}"]
    # The winning receipt again gets the same answer; every other one stays refused.
    winner = row.redeemed_receipt or ""
    assert redeem(engine, code, winner)["redemption"]["receipt"] == winner
    with pytest.raises(RedeemRefusedError, match="already redeemed"):
        redeem(engine, code, "R-other")


def test_a_purchase_carries_the_codes_it_redeemed(engine: Engine) -> None:
    customers(engine)
    code = issue(engine)
    foreign = issue(engine, key="run-5#0:gift", customer="c2")
    # The till redeemed the first under its receipt, then sends the order naming both codes.
    redeem(engine, code, "R-77")
    event = EventIn.model_validate(
        {
            "id": "e1",
            "type": "purchase",
            "customer": "c1",
            "order": "R-77",
            "channel": "pos",
            "at": T0 + timedelta(days=1),
            "lines": [{"sku": "X", "unit_price": "30"}],
            "vouchers": [code, foreign],
        }
    )
    with session_scope(engine) as session:
        row, _new = ingest_event(session, event, now=T0 + timedelta(days=1))
        assert row.payload["data"]["vouchers"] == [code]
        assert row.payload["data"]["vouchers_refused"] == [{"code": foreign, "reason": "foreign"}]
        voucher = session.get(Voucher, code)
        assert voucher is not None and voucher.redeemed_order_id == "R-77"


def test_codes_redeemed_on_an_order_stored_before_replace_what_its_event_said(
    engine: Engine,
) -> None:
    # The simulator stores a shop's purchases up front without codes and redeems them at the
    # purchase's moment: on the stored order, noting afresh which took and which were refused.
    customers(engine)
    code = issue(engine)
    foreign = issue(engine, key="run-5#0:gift", customer="c2")
    at = T0 + timedelta(days=1)
    event = EventIn.model_validate(
        {
            "id": "e1",
            "type": "purchase",
            "customer": "c1",
            "order": "R-78",
            "channel": "web",
            "at": at,
            "lines": [{"sku": "X", "unit_price": "30"}],
        }
    )
    with session_scope(engine) as session:
        ingest_event(session, event, now=at)
    with session_scope(engine) as session:
        order = session.get(Order, "R-78")
        assert order is not None
        data: dict[str, Any] = {"channel": "web", "vouchers_refused": [{"code": "OLD"}]}
        redeem_order_vouchers(session, order, [code], data, at=at, now=at)
        assert data["vouchers"] == [code] and "vouchers_refused" not in data
        redeem_order_vouchers(session, order, [foreign], data, at=at, now=at)
        assert data["vouchers"] == [] and data["vouchers_refused"] == [
            {"code": foreign, "reason": "foreign"}
        ]
        voucher = session.get(Voucher, code)
        assert voucher is not None and voucher.redeemed_order_id == "R-78"
        assert voucher.redeemed_channel == "web"


def test_a_customer_is_found_by_id_email_phone_or_card(engine: Engine) -> None:
    customers(engine)
    with session_scope(engine) as session:
        for by, value in (
            ("customer", "c1"),
            ("email", "bart@example.com"),
            ("phone", "+32470000001"),
            ("card", "2200001234567"),
        ):
            found = vouchers.find_customer(session, by, value)  # type: ignore[arg-type]
            assert found is not None and found.id == "c1", by
        assert vouchers.find_customer(session, "card", "nope") is None
