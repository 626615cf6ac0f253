"""The pure loyalty rules: points per line, returns, lots and expiry, levels (milliseconds)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError

from trouw.domain.loyalty.rules import (
    Campaign,
    Entry,
    LineFacts,
    LoyaltyRules,
    Tier,
    balance,
    due_expiries,
    level_of,
    levels_reached,
    line_points,
    order_bonuses,
    returned_points,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
YEAR = timedelta(days=365)
WINDOW = timedelta(days=30)


def line(price: str, qty: int = 1, category: str | None = "garden") -> LineFacts:
    return LineFacts(line_no=1, sku="S", category=category, qty=qty, unit_price=Decimal(price))


def test_points_per_euro_rounded_down_per_line() -> None:
    rules = LoyaltyRules()
    assert line_points(rules, line("24.95"), at=T0, channel="pos") == 24
    assert line_points(rules, line("24.95", qty=2), at=T0, channel="pos") == 49


def test_category_multiplier_and_campaign() -> None:
    campaign = Campaign(
        name="voorjaar",
        start=T0,
        end=T0 + timedelta(days=14),
        multiplier=Decimal(2),
        bonus_points=50,
        min_order_total=Decimal(50),
        categories=["garden"],
        channels=["web"],
    )
    rules = LoyaltyRules(category_multipliers={"garden": Decimal("1.5")}, campaigns=[campaign])
    assert line_points(rules, line("10"), at=T0, channel="web") == 30
    assert line_points(rules, line("10"), at=T0, channel="pos") == 15  # not this channel
    assert line_points(rules, line("10", category="tools"), at=T0, channel="web") == 10
    assert line_points(rules, line("10"), at=T0 + timedelta(days=14), channel="web") == 15
    assert order_bonuses(rules, total=Decimal(60), at=T0, channel="web") == [("voorjaar", 50)]
    assert order_bonuses(rules, total=Decimal(40), at=T0, channel="web") == []


def test_rules_refuse_bad_tiers() -> None:
    with pytest.raises(ValidationError, match="starts at 0"):
        LoyaltyRules(tiers=[Tier(name="zilver", threshold=10)])
    with pytest.raises(ValidationError, match="rise strictly"):
        LoyaltyRules(tiers=[Tier(name="a", threshold=0), Tier(name="b", threshold=0)])


@pytest.mark.parametrize("seed", range(50))
def test_returning_every_unit_takes_back_exactly_what_was_earned(seed: int) -> None:
    rng = random.Random(seed)
    earned, qty = rng.randint(0, 997), rng.randint(1, 12)
    back, done = 0, 0
    while done < qty:
        units = rng.randint(1, qty - done)
        part = returned_points(earned, qty=qty, returned_before=done, returning=units)
        assert part >= 0
        back += part
        done += units
    assert back == earned
    assert returned_points(earned, qty=qty, returned_before=qty, returning=1) == 0


def earn(key: str, days: int, points: int) -> Entry:
    at = T0 + timedelta(days=days)
    return Entry(key=key, at=at, points=points, kind="earn", expires_at=at + YEAR)


def test_points_expire_a_year_after_they_were_earned() -> None:
    entries = [earn("a", 0, 100), earn("b", 100, 50)]
    assert balance(entries, now=T0 + timedelta(days=364), window=WINDOW).points == 150
    soon = balance(entries, now=T0 + timedelta(days=340), window=WINDOW)
    assert (soon.expiring_points, soon.expiring_at) == (100, T0 + YEAR)
    later = balance(entries, now=T0 + timedelta(days=365), window=WINDOW)
    assert later.points == 50
    assert [(e.lot, e.points) for e in later.expired] == [("a", 100)]


def test_a_return_takes_its_own_lot_first_and_an_adjustment_the_oldest() -> None:
    entries = [
        earn("a", 0, 100),
        earn("b", 10, 40),
        Entry("r", T0 + timedelta(days=20), -40, "return", lot="b"),
        Entry("x", T0 + timedelta(days=30), -30, "adjust"),
    ]
    held = balance(entries, now=T0 + timedelta(days=31), window=WINDOW)
    assert held.points == 70
    assert held.lots["a"].remaining == 70 and held.lots["b"].remaining == 0


def test_a_negative_entry_without_points_leaves_a_debt_the_next_points_pay() -> None:
    entries = [
        earn("a", 0, 100),
        Entry("x", T0 + timedelta(days=1), -100, "adjust"),
        Entry("r", T0 + timedelta(days=2), -30, "return", lot="a"),
        earn("b", 3, 50),
    ]
    assert balance(entries[:3], now=T0 + timedelta(days=2), window=WINDOW).points == -30
    held = balance(entries, now=T0 + timedelta(days=3), window=WINDOW)
    assert (held.points, held.debt, held.lots["b"].remaining) == (20, 0, 20)
    # Only what is left of a lot expires: the debt it paid is not expired again.
    expired = balance(entries, now=T0 + timedelta(days=400), window=WINDOW)
    assert expired.points == 0


def random_ledger(rng: random.Random) -> list[Entry]:
    entries: list[Entry] = []
    for number in range(rng.randint(1, 30)):
        day = rng.randint(0, 900)
        at = T0 + timedelta(days=day, minutes=number)
        roll = rng.random()
        if roll < 0.6 or not entries:
            entries.append(
                Entry(f"e{number}", at, rng.randint(1, 500), "earn", expires_at=at + YEAR)
            )
        elif roll < 0.8:
            lot = rng.choice(entries).key
            entries.append(Entry(f"r{number}", at, -rng.randint(1, 200), "return", lot=lot))
        else:
            entries.append(Entry(f"x{number}", at, rng.randint(-150, 150) or 1, "adjust"))
    entries.sort(key=lambda e: e.at)
    return entries


@pytest.mark.parametrize("seed", range(200))
def test_once_swept_the_balance_is_the_sum_of_the_entries(seed: int) -> None:
    rng = random.Random(seed)
    entries = random_ledger(rng)
    now = T0 + timedelta(days=rng.randint(0, 1400))
    swept = [
        *entries,
        *(
            Entry(f"expire:{e.lot}", e.at, -e.points, "expire", lot=e.lot)
            for e in due_expiries(entries, now=now)
        ),
    ]
    held = balance(swept, now=now, window=WINDOW)
    assert held.points == sum(e.points for e in swept if e.at <= now)
    assert held == balance(entries, now=now, window=WINDOW)  # sweeping changes nothing
    assert due_expiries(swept, now=now) == []  # and a second sweep writes nothing
    assert all(lot.remaining >= 0 for lot in held.lots.values())
    assert 0 <= held.expiring_points <= max(held.points + held.debt, 0)


def test_levels() -> None:
    tiers = LoyaltyRules().tiers
    assert level_of(tiers, -5).name == "brons"
    top = level_of(tiers, 1500)
    assert (top.name, top.next_at) == ("goud", None)
    middle = level_of(tiers, 700)
    assert (middle.name, middle.next_name, middle.next_at) == ("zilver", "goud", 1500)
    assert levels_reached(tiers, 100, 1600) == ["zilver", "goud"]
    assert levels_reached(tiers, 1600, 100) == []
    assert levels_reached(tiers, 600, 700) == []


def moments_balance(entries: list[Entry], now: datetime) -> tuple[int, dict[str, int], int]:
    """The rules written the plain way (every entry and expiry as a moment, sorted), to hold
    the fast `balance` against: points, what is left of each lot, and the debt."""
    left: dict[str, int] = {}
    expiry: dict[str, datetime | None] = {}
    made: dict[str, datetime] = {}
    debt = 0
    moments = []
    for seq, entry in enumerate(entries):
        if entry.kind == "expire" or entry.at > now:
            continue
        moments.append((entry.at, 1, seq, entry))
        if entry.points > 0 and entry.expires_at is not None and entry.expires_at <= now:
            moments.append((entry.expires_at, 0, seq, entry))
    for _at, kind, _seq, entry in sorted(moments, key=lambda m: (m[0], m[1], m[2])):
        if kind == 0:
            left[entry.key] = 0
        elif entry.points > 0:
            paid = min(debt, entry.points)
            debt -= paid
            left[entry.key] = entry.points - paid
            expiry[entry.key], made[entry.key] = entry.expires_at, entry.at
        elif entry.points < 0:
            need = -entry.points
            keys = sorted(
                (k for k in left if left[k] > 0 and k != entry.lot),
                key=lambda k: (expiry[k] is None, expiry[k] or made[k], made[k], k),
            )
            if entry.lot in left:
                keys.insert(0, entry.lot)
            for key in keys:
                used = min(left[key], need)
                left[key] -= used
                need -= used
            debt += need
    return sum(left.values()) - debt, left, debt


@pytest.mark.parametrize("seed", range(300))
def test_balance_agrees_with_the_rules_written_plainly(seed: int) -> None:
    rng = random.Random(seed)
    entries = random_ledger(rng)
    rng.shuffle(entries)  # the ledger's order need not be the time order
    now = T0 + timedelta(days=rng.randint(0, 1400))
    held = balance(entries, now=now, window=WINDOW)
    points, left, debt = moments_balance(entries, now)
    assert (held.points, held.debt) == (points, debt)
    assert {key: lot.remaining for key, lot in held.lots.items()} == left


def test_a_lot_used_up_before_its_end_is_due_as_settled() -> None:
    entries = [
        Entry("a", T0, 50, "earn", expires_at=T0 + YEAR),
        Entry("b", T0 + timedelta(days=1), 30, "earn", expires_at=T0 + timedelta(days=1) + YEAR),
        Entry("x", T0 + timedelta(days=2), -60, "adjust"),
    ]
    due = due_expiries(entries, now=T0 + 2 * YEAR)
    assert [(e.lot, e.points) for e in due] == [("a", 0), ("b", 20)]  # a was used up: 0
    assert [e.at for e in due] == [T0 + YEAR, T0 + timedelta(days=1) + YEAR]
