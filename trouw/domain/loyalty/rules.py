"""The pure loyalty rules: points per line, campaigns, tiers, lots, expiry and the balance."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

EntryKind = Literal["earn", "bonus", "return", "adjust", "expire"]


class Tier(BaseModel):
    """A level: reached when the balance is at least `threshold` points."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_]*$")
    threshold: int = Field(ge=0)
    # The gift voucher (in euro) a member gets on reaching this level, valid `voucher_days`
    # (`call: issue_level_voucher`, the shipped loyalty_level journey); none: no gift.
    voucher: Decimal | None = Field(default=None, gt=0, le=10_000)
    voucher_days: int = Field(default=60, ge=1, le=3650)


class Campaign(BaseModel):
    """Extra points for a while: a multiplier on matching lines, bonus points per order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64)
    start: datetime
    end: datetime
    multiplier: Decimal = Field(default=Decimal("1"), ge=0, le=100)
    bonus_points: int = Field(default=0, ge=0, le=1_000_000)
    categories: list[str] = Field(default_factory=list)  # empty: every category
    channels: list[Literal["pos", "web"]] = Field(default_factory=list)  # empty: both
    min_order_total: Decimal = Field(default=Decimal("0"), ge=0)

    @model_validator(mode="after")
    def _period(self) -> Campaign:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("a campaign's start and end need their offset")
        if self.end <= self.start:
            raise ValueError("a campaign ends after it starts")
        return self

    def applies(self, *, at: datetime, channel: str, category: str | None = None) -> bool:
        if not self.start <= at < self.end:
            return False
        if self.channels and channel not in self.channels:
            return False
        return category is None or not self.categories or category in self.categories


def _default_tiers() -> list[Tier]:
    return [
        Tier(name="brons", threshold=0),
        Tier(name="zilver", threshold=500, voucher=Decimal(5)),
        Tier(name="goud", threshold=1500, voucher=Decimal(10)),
    ]


class LoyaltyRules(BaseModel):
    """How points are earned, how long they last, and the levels (config/trouw.toml [loyalty])."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Who collects points: customers with a loyalty card (customer.attributes.loyalty_card, or
    # who came with a referral code), or every customer from their first purchase.
    enrol: Literal["card", "everyone"] = "card"
    points_per_euro: Decimal = Field(default=Decimal("1"), ge=0, le=1000)
    category_multipliers: dict[str, Decimal] = Field(default_factory=dict)
    campaigns: list[Campaign] = Field(default_factory=list)
    expiry_days: int = Field(default=365, ge=1, le=3650)
    # `loyalty.expiring_points` counts the points that expire within this many days.
    expiring_window_days: int = Field(default=30, ge=1, le=365)
    tiers: list[Tier] = Field(default_factory=_default_tiers, min_length=1)

    @field_validator("category_multipliers")
    @classmethod
    def _multipliers(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        for name, factor in value.items():
            if not Decimal(0) <= factor <= Decimal(100):
                raise ValueError(f"multiplier of {name!r} must be between 0 and 100")
        return value

    @field_validator("tiers")
    @classmethod
    def _ordered_tiers(cls, value: list[Tier]) -> list[Tier]:
        if value[0].threshold != 0:
            raise ValueError("the first tier starts at 0 points")
        thresholds = [tier.threshold for tier in value]
        if thresholds != sorted(set(thresholds)):
            raise ValueError("tier thresholds must rise strictly")
        if len({tier.name for tier in value}) != len(value):
            raise ValueError("tier names must be unique")
        return value


# --- earning -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineFacts:
    line_no: int
    sku: str
    category: str | None
    qty: int
    unit_price: Decimal


def line_points(rules: LoyaltyRules, line: LineFacts, *, at: datetime, channel: str) -> int:
    """Whole points for one order line, rounded down (a return takes back exactly these)."""
    amount = line.unit_price * line.qty * rules.points_per_euro
    amount *= rules.category_multipliers.get(line.category or "", Decimal(1))
    for campaign in rules.campaigns:
        if campaign.applies(at=at, channel=channel, category=line.category):
            amount *= campaign.multiplier
    return max(0, int(amount.to_integral_value(rounding=ROUND_FLOOR)))


def order_bonuses(
    rules: LoyaltyRules, *, total: Decimal, at: datetime, channel: str
) -> list[tuple[str, int]]:
    """Campaign bonus points for an order: (campaign name, points) per campaign that applies."""
    return [
        (campaign.name, campaign.bonus_points)
        for campaign in rules.campaigns
        if campaign.bonus_points
        and campaign.applies(at=at, channel=channel)
        and total >= campaign.min_order_total
    ]


def returned_points(earned: int, *, qty: int, returned_before: int, returning: int) -> int:
    """Points a return of `returning` of `qty` units takes back, given `returned_before` already
    returned: shares are rounded down cumulatively, so returning every unit takes back exactly
    `earned`, however the units came back."""
    if qty <= 0 or returning <= 0:
        return 0
    before = min(returned_before, qty)
    after = min(returned_before + returning, qty)
    return earned * after // qty - earned * before // qty


# --- the ledger as lots ----------------------------------------------------------------------


class Entry(NamedTuple):
    """One ledger row as the rules see it. A positive entry is a lot that expires at
    `expires_at`; a negative one takes from `lot` first (a return: its own earning), then from
    the lots that expire first. Written `expire` entries only record what the rules compute."""

    key: str
    at: datetime
    points: int
    kind: EntryKind
    expires_at: datetime | None = None
    lot: str | None = None


@dataclass(slots=True)
class Lot:
    key: str
    at: datetime
    points: int
    expires_at: datetime | None
    remaining: int
    expired: int = 0  # what expiry took from it


@dataclass(frozen=True)
class Expiry:
    """Points of one lot that expired (or will), at its expiry time."""

    lot: str
    at: datetime
    points: int


@dataclass(frozen=True)
class Balance:
    points: int
    expiring_points: int
    expiring_at: datetime | None
    lots: dict[str, Lot] = field(default_factory=dict)
    expired: list[Expiry] = field(default_factory=list)  # every expiry up to `now`
    debt: int = 0


def _at(entry: Entry) -> datetime:
    return entry.at


def _expire(lots: dict[str, Lot], expired: list[Expiry], at: datetime, _seq: int, key: str) -> None:
    lot = lots[key]
    if lot.remaining > 0:
        expired.append(Expiry(lot=key, at=at, points=lot.remaining))
        lot.expired += lot.remaining
        lot.remaining = 0


def _take(lots: dict[str, Lot], amount: int, first: str | None) -> int:
    """Takes `amount` from `first`, then from the lots that expire first; returns what no lot held."""
    order = sorted(
        (lot for lot in lots.values() if lot.remaining > 0 and lot.key != first),
        key=lambda lot: (lot.expires_at is None, lot.expires_at or lot.at, lot.at, lot.key),
    )
    if first is not None and first in lots:
        order.insert(0, lots[first])
    for lot in order:
        if amount <= 0:
            break
        used = min(lot.remaining, amount)
        lot.remaining -= used
        amount -= used
    return amount


def balance(entries: Iterable[Entry], *, now: datetime, window: timedelta) -> Balance:
    """The balance at `now`: every entry up to now, and every lot expired by now.

    Written `expire` entries are ignored: expiry is computed from the lots, so a ledger that was
    swept and one that was not give the same balance (and once swept, balance = sum of entries).
    A negative entry that finds no lot leaves a debt, which the next points pay off first.
    """
    lots: dict[str, Lot] = {}
    expired: list[Expiry] = []
    debt = 0
    # Entries in time order (a stable sort: the ledger's own order breaks ties), and the lots'
    # expiries in a heap: an expiry at the same moment as an entry comes first.
    ordered = sorted(
        (entry for entry in entries if entry.kind != "expire" and entry.at <= now),
        key=_at,
    )
    due: list[tuple[datetime, int, str]] = []
    for seq, entry in enumerate(ordered):
        while due and due[0][0] <= entry.at:
            _expire(lots, expired, *heapq.heappop(due))
        if entry.points > 0:
            paid = min(debt, entry.points)
            debt -= paid
            lots[entry.key] = Lot(
                entry.key, entry.at, entry.points, entry.expires_at, entry.points - paid
            )
            if entry.expires_at is not None and entry.expires_at <= now:
                heapq.heappush(due, (entry.expires_at, seq, entry.key))
        elif entry.points < 0:
            debt += _take(lots, -entry.points, entry.lot)
    while due:
        _expire(lots, expired, *heapq.heappop(due))
    points = sum(lot.remaining for lot in lots.values()) - debt
    soon = [
        lot
        for lot in lots.values()
        if lot.remaining > 0 and lot.expires_at is not None and lot.expires_at <= now + window
    ]
    expiring_at = min((lot.expires_at for lot in soon if lot.expires_at), default=None)
    return Balance(
        points=points,
        expiring_points=sum(lot.remaining for lot in soon),
        expiring_at=expiring_at,
        lots=lots,
        expired=expired,
        debt=debt,
    )


def due_expiries(entries: Sequence[Entry], *, now: datetime) -> list[Expiry]:
    """The expiries up to `now` not yet written to the ledger (what a sweep appends), in time
    order: what each lot due by `now` had left at its end, and 0 for a lot used up before it
    (a settled lot: written too, so that every due lot has its `expire` entry and a caught-up
    customer is found by counting, docs/loyalty.md "Balances of everyone")."""
    written = {entry.lot for entry in entries if entry.kind == "expire"}
    held = balance(entries, now=now, window=timedelta(0))
    expired = {expiry.lot for expiry in held.expired}
    settled = [
        Expiry(lot=lot.key, at=lot.expires_at, points=0)
        for lot in held.lots.values()
        if lot.expires_at is not None and lot.expires_at <= now and lot.key not in expired
    ]
    due = sorted([*held.expired, *settled], key=lambda expiry: expiry.at)
    return [expiry for expiry in due if expiry.lot not in written]


def next_expiry(entries: Sequence[Entry], *, now: datetime) -> datetime | None:
    """When the next lot with points left expires (after `now`), or None."""
    lots = balance(entries, now=now, window=timedelta(0)).lots.values()
    return min(
        (lot.expires_at for lot in lots if lot.remaining > 0 and lot.expires_at), default=None
    )


# --- levels ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Level:
    name: str
    rank: int
    next_name: str | None
    next_at: int | None  # the points at which the next level starts; None at the top


def level_of(tiers: Sequence[Tier], points: int) -> Level:
    """The highest tier whose threshold the points reach (the first tier below 0 points too)."""
    rank = 0
    for index, tier in enumerate(tiers):
        if points >= tier.threshold:
            rank = index
    upper = tiers[rank + 1] if rank + 1 < len(tiers) else None
    return Level(
        name=tiers[rank].name,
        rank=rank,
        next_name=upper.name if upper else None,
        next_at=upper.threshold if upper else None,
    )


def tier_named(tiers: Sequence[Tier], name: str) -> Tier | None:
    """The tier of that name under today's rules (none when it was renamed or removed)."""
    return next((tier for tier in tiers if tier.name == name), None)


def levels_reached(tiers: Sequence[Tier], before: int, after: int) -> list[str]:
    """The levels a change from `before` to `after` points climbs into (none when it falls)."""
    low, high = level_of(tiers, before).rank, level_of(tiers, after).rank
    return [tier.name for tier in tiers[low + 1 : high + 1]]
