"""The points ledger in the database: purchases earn, returns take back exactly, expiry, levels,
the derived events and the context, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tests.loyalty.test_rules import WINDOW, random_ledger
from trouw.domain.context import build_context
from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import InboundEvent, LoyaltyAccount, PointsEntry, Voucher
from trouw.domain.gdpr import erase, export
from trouw.domain.ingest import EventIn, ProductIn, ingest_event, upsert_product
from trouw.domain.loyalty import ledger, vouchers
from trouw.domain.loyalty.rules import Entry, LoyaltyRules, Tier, balance
from trouw.domain.why import explain, render

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def purchase(
    order: str, *, at: datetime = T0, lines: list[dict[str, Any]], **extra: Any
) -> EventIn:
    return EventIn.model_validate(
        {
            "id": f"buy-{order}",
            "type": "purchase",
            "customer": "c1",
            "order": order,
            "channel": "pos",
            "at": at,
            "lines": lines,
            # c1 has a loyalty card: a member (without one, a purchase earns no points).
            "profile": {"id": "c1", "attributes": {"loyalty_card": "2200001234567"}},
            **extra,
        }
    )


def returned(
    order: str, *, at: datetime, lines: list[dict[str, Any]] | None = None, id: str = ""
) -> EventIn:
    return EventIn.model_validate(
        {
            "id": id or f"ret-{order}-{at.isoformat()}",
            "type": "returned",
            "customer": "c1",
            "order": order,
            "at": at,
            "lines": lines or [],
        }
    )


def ingest(engine: Engine, *events: EventIn) -> None:
    for event in events:
        with session_scope(engine) as session:
            ingest_event(session, event, now=event.at)


def points(session: Session, now: datetime) -> int:
    return ledger.balance_of(session, "c1", now=now).points


def derived(engine: Engine, kind: str) -> list[dict[str, Any]]:
    with session_scope(engine) as session:
        rows = session.exec(
            select(InboundEvent).where(InboundEvent.type == kind).order_by(col(InboundEvent.id))
        ).all()
        return [dict(row.payload["data"]) for row in rows]


def test_a_purchase_earns_points_per_line_and_a_return_takes_back_exactly_those(
    engine: Engine,
) -> None:
    with session_scope(engine) as session:
        upsert_product(session, ProductIn(sku="LAWN-10", name="Gazonmest", price=Decimal("24.95")))
    ingest(
        engine,
        purchase("o1", lines=[{"sku": "LAWN-10", "qty": 3}, {"sku": "X", "unit_price": "9.99"}]),
        purchase("o2", at=T0 + timedelta(days=1), lines=[{"sku": "X", "unit_price": "100"}]),
    )
    with session_scope(engine) as session:
        assert points(session, T0 + timedelta(days=2)) == 74 + 9 + 100
        assert ledger.sum_of_entries(session, "c1") == 183
    # Two of the three bags come back, one at a time, then the last one.
    ingest(engine, returned("o1", at=T0 + timedelta(days=3), lines=[{"sku": "LAWN-10", "qty": 1}]))
    ingest(engine, returned("o1", at=T0 + timedelta(days=4), lines=[{"sku": "LAWN-10", "qty": 1}]))
    ingest(engine, returned("o1", at=T0 + timedelta(days=5), lines=[{"sku": "LAWN-10", "qty": 1}]))
    with session_scope(engine) as session:
        rows = session.exec(
            select(PointsEntry).where(PointsEntry.kind == "return").order_by(col(PointsEntry.id))
        ).all()
        assert [row.points for row in rows] == [-24, -25, -25]
        assert points(session, T0 + timedelta(days=6)) == 9 + 100
        assert ledger.sum_of_entries(session, "c1") == 109
    # The same return again (same event id) takes nothing more; a whole-order return takes the rest.
    ingest(engine, returned("o1", at=T0 + timedelta(days=5), lines=[{"sku": "LAWN-10", "qty": 1}]))
    ingest(engine, returned("o1", at=T0 + timedelta(days=7), id="ret-all"))
    ingest(engine, returned("o1", at=T0 + timedelta(days=8), id="ret-all-again"))
    with session_scope(engine) as session:
        assert points(session, T0 + timedelta(days=9)) == 100
        assert ledger.sum_of_entries(session, "c1") == 100


def test_points_expire_and_the_sweep_writes_them_once(engine: Engine) -> None:
    ingest(engine, purchase("o1", lines=[{"sku": "X", "unit_price": "80"}]))
    ingest(
        engine,
        purchase("o2", at=T0 + timedelta(days=200), lines=[{"sku": "X", "unit_price": "20"}]),
    )
    now = T0 + timedelta(days=366)
    with session_scope(engine) as session:
        state = ledger.loyalty_dict(session, "c1", now=T0 + timedelta(days=340))
        assert (state["points"], state["expiring_points"]) == (100, 80)
        assert state["expiring_at"] == T0 + timedelta(days=365)
        assert points(session, now) == 20
        assert ledger.sum_of_entries(session, "c1") == 100  # not swept yet
    for _ in range(2):
        with session_scope(engine) as session:
            for change in ledger.sweep_expiries(session, now=now):
                ledger.derive_events(session, change)
    with session_scope(engine) as session:
        assert ledger.sum_of_entries(session, "c1") == points(session, now) == 20
        assert ledger.balances(session, now=now) == {"c1": 20}
        assert ledger.balances(session, now=T0 + timedelta(days=300)) == {"c1": 100}
    assert [e["delta"] for e in derived(engine, "points_changed")] == [0, 80, 20, -80]


def test_level_reached_once_per_climb_and_a_threshold_change_sends_nothing(engine: Engine) -> None:
    ingest(engine, purchase("o1", lines=[{"sku": "X", "unit_price": "450"}]))
    ingest(
        engine,
        purchase("o2", at=T0 + timedelta(days=1), lines=[{"sku": "X", "unit_price": "1100"}]),
    )
    assert [e["level"] for e in derived(engine, "level_reached")] == ["zilver", "goud"]
    joined, first = derived(engine, "points_changed")[:2]
    assert (joined["joined"], joined["delta"], first["joined"], first["points"]) == (
        True,
        0,
        False,
        450,
    )
    # Thresholds raised: the level is recomputed at once, and no event is derived for it.
    ledger.configure(
        ledger.LoyaltyConfig(
            rules=LoyaltyRules(
                tiers=[Tier(name="brons", threshold=0), Tier(name="zilver", threshold=2000)]
            ),
            key=b"test-key",
        )
    )
    with session_scope(engine) as session:
        assert ledger.loyalty_dict(session, "c1", now=T0 + timedelta(days=2))["level"] == "brons"
    assert len(derived(engine, "level_reached")) == 2


def test_an_adjustment_needs_a_reason_and_never_makes_the_balance_negative(engine: Engine) -> None:
    ingest(engine, purchase("o1", lines=[{"sku": "X", "unit_price": "30"}]))
    at = T0 + timedelta(days=1)
    with session_scope(engine) as session:
        with pytest.raises(ledger.AdjustmentError, match="negative"):
            ledger.adjust(session, "c1", points=-31, reason="typo", at=at, key="adj-1")
        with pytest.raises(ledger.AdjustmentError, match="reason"):
            ledger.adjust(session, "c1", points=5, reason=" ", at=at, key="adj-1")
        ledger.adjust(session, "c1", points=-30, reason="goodwill undone", at=at, key="adj-2")
        assert points(session, at) == 0
    # A return after the points were taken leaves a debt the next purchase pays off first.
    ingest(engine, returned("o1", at=T0 + timedelta(days=2)))
    with session_scope(engine) as session:
        assert points(session, T0 + timedelta(days=2)) == -30
    ingest(
        engine, purchase("o2", at=T0 + timedelta(days=3), lines=[{"sku": "X", "unit_price": "50"}])
    )
    with session_scope(engine) as session:
        assert points(session, T0 + timedelta(days=3)) == 20 == ledger.sum_of_entries(session, "c1")


def test_the_context_why_export_and_erasure_know_the_points(engine: Engine) -> None:
    ingest(engine, purchase("o1", lines=[{"sku": "X", "unit_price": "620"}]))
    now = T0 + timedelta(days=1)
    with session_scope(engine) as session:
        context = build_context(session, customer_id="c1", order_id=None, skus=[], now=now)
        loyalty = context["loyalty"]
        assert (loyalty["points"], loyalty["level"], loyalty["next_level_at"]) == (
            620,
            "zilver",
            1500,
        )
        assert loyalty["referral_code"] and loyalty["referral_link"].endswith(
            loyalty["referral_code"]
        )
        explanation = explain(session, "c1")
        assert explanation.loyalty is not None and explanation.loyalty.points == 620
        console = Console(record=True, width=120)
        render(explanation, console)
        assert "loyalty: 620 points, level zilver" in console.export_text()
        document = export(session, customer_id="c1")
        assert [entry["points"] for entry in document["points_entries"]] == [620]
        report = erase(session, customer_id="c1", at=now)
        assert report.points_entries_deleted == 1 and report.loyalty_account_deleted
    with session_scope(engine) as session:
        assert session.exec(select(PointsEntry)).all() == []
        assert session.get(LoyaltyAccount, "c1") is None


def test_only_members_collect_points(engine: Engine) -> None:
    with session_scope(engine) as session:
        event = purchase("o1", lines=[{"sku": "X", "unit_price": "30"}])
        ingest_event(session, event.model_copy(update={"profile": None, "customer": "c9"}), now=T0)
        assert ledger.balance_of(session, "c9", now=T0).points == 0
        assert session.get(LoyaltyAccount, "c9") is None
    ledger.configure(ledger.LoyaltyConfig(rules=LoyaltyRules(enrol="everyone"), key=b"test-key"))
    with session_scope(engine) as session:
        event = purchase("o2", lines=[{"sku": "X", "unit_price": "30"}])
        ingest_event(
            session,
            event.model_copy(update={"profile": None, "customer": "c9", "id": "b2"}),
            now=T0,
        )
        assert ledger.balance_of(session, "c9", now=T0).points == 30


def test_a_return_after_a_redemption_takes_back_the_points_and_leaves_the_voucher_used(
    engine: Engine,
) -> None:
    ingest(engine, purchase("o0", lines=[{"sku": "X", "unit_price": "5"}]))
    with session_scope(engine) as session:
        voucher, _new = vouchers.issue(
            session,
            customer_id="c1",
            value=Decimal("10"),
            expires_at=T0 + timedelta(days=30),
            issued_key="gift",
            now=T0,
        )
    day = T0 + timedelta(days=1)
    ingest(
        engine,
        purchase("o1", at=day, lines=[{"sku": "X", "unit_price": "40"}], vouchers=[voucher.code]),
    )
    ingest(engine, returned("o1", at=day + timedelta(days=1)))
    with session_scope(engine) as session:
        assert points(session, day + timedelta(days=2)) == 5  # o1's 40 points taken back
        again = session.get(Voucher, voucher.code)
        assert again is not None and again.redeemed_order_id == "o1"  # still used, on o1
        with pytest.raises(vouchers.RedeemRefusedError) as refused:
            vouchers.redeem(session, voucher.code, receipt="o2", now=day + timedelta(days=3))
        assert refused.value.reason == "used"


def _stored(customer_id: str, entry: Entry) -> PointsEntry:
    return PointsEntry(
        key=f"{customer_id}:{entry.key}",
        customer_id=customer_id,
        at=entry.at,
        kind=entry.kind,
        points=entry.points,
        expires_at=entry.expires_at,
        lot=f"{customer_id}:{entry.lot}" if entry.lot else None,
    )


@pytest.mark.parametrize("seed", range(3))
def test_balances_of_everyone_equal_the_lots_computed_per_customer(
    engine: Engine, seed: int
) -> None:
    """Random ledgers, swept for some customers, at some earlier moment or not at all: every
    balance `ledger.balances` gives is what rules.balance computes from the customer's entries."""
    rng = random.Random(seed)
    ledgers = {f"c{n}": random_ledger(rng) for n in range(40)}
    with session_scope(engine) as session:
        for customer_id, entries in ledgers.items():
            session.add_all(_stored(customer_id, entry) for entry in entries)
    for moment in sorted(T0 + timedelta(days=rng.randint(0, 1400)) for _ in range(3)):
        some = [customer_id for customer_id in ledgers if rng.random() < 0.5]
        with session_scope(engine) as session:
            ledger.sweep_expiries(session, now=moment, customer_ids=some)
    for now in (T0 + timedelta(days=rng.randint(0, 1400)) for _ in range(4)):
        with session_scope(engine) as session:
            expected = {
                customer_id: balance(
                    ledger.entries_of(session, customer_id), now=now, window=WINDOW
                ).points
                for customer_id in ledgers
            }
            assert ledger.balances(session, now=now) == expected
    # Swept to the end: every due lot has its entry (0 for a used-up one), nobody is behind, and
    # each balance is the bare sum of the entries.
    end = T0 + timedelta(days=1500)
    with session_scope(engine) as session:
        ledger.sweep_expiries(session, now=end)
    with session_scope(engine) as session:
        assert ledger.behind(session, now=end) == []
        assert ledger.balances(session, now=end) == {
            customer_id: ledger.sum_of_entries(session, customer_id) for customer_id in ledgers
        }


def test_a_used_up_lot_is_settled_by_the_sweep_without_an_event(engine: Engine) -> None:
    ingest(engine, purchase("o1", lines=[{"sku": "X", "unit_price": "30"}]))
    with session_scope(engine) as session:
        ledger.adjust(session, "c1", points=-30, reason="spent", at=T0, key="adj-1")
    end = T0 + timedelta(days=400)
    with session_scope(engine) as session:
        assert ledger.behind(session, now=end) == ["c1"]
        assert ledger.sweep_expiries(session, now=end) == []  # nothing expired: no change
    with session_scope(engine) as session:
        marker = session.exec(select(PointsEntry).where(PointsEntry.kind == "expire")).one()
        assert (marker.key, marker.points) == ("expire:earn:o1:1", 0)
        assert ledger.behind(session, now=end) == []
        assert [row.kind for row in ledger.history(session, "c1")] == ["adjust", "earn"]
    with session_scope(engine) as session:
        assert ledger.sweep_expiries(session, now=end) == []  # a second sweep reads nobody
    assert [e["delta"] for e in derived(engine, "points_changed")] == [0, 30]  # the purchase only
