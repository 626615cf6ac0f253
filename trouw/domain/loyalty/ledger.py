"""The points ledger in the database: earning on purchases, returns, adjustments, expiry sweeps,
and the balance, level and derived events (points_changed, level_reached) computed from it."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from trouw.domain.db.models import (
    Customer,
    InboundEvent,
    LoyaltyAccount,
    Order,
    OrderLine,
    PointsEntry,
    Product,
)
from trouw.domain.loyalty import codes
from trouw.domain.loyalty.rules import (
    Balance,
    Entry,
    LineFacts,
    LoyaltyRules,
    balance,
    due_expiries,
    level_of,
    levels_reached,
    line_points,
    order_bonuses,
    returned_points,
)

if TYPE_CHECKING:
    from trouw.settings import Settings


@dataclass(frozen=True)
class LoyaltyConfig:
    """The rules, the key codes are made with, and whether codes are the simulation's readable
    ones. Set once per process from the settings (`configure`); ingest reads it."""

    rules: LoyaltyRules = field(default_factory=LoyaltyRules)
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    scenario_codes: bool = False
    referral_url: str = "https://delinde.example/word-lid?ref={code}"


_config = LoyaltyConfig()


def configure(config: LoyaltyConfig) -> None:
    global _config
    _config = config


def configure_from(settings: Settings) -> LoyaltyConfig:
    """Sets (and returns) the process's loyalty config from its settings."""
    configure(
        LoyaltyConfig(
            rules=settings.loyalty,
            key=settings.active_signing_keys[0],
            scenario_codes=settings.voucher_codes == "scenario",
            referral_url=settings.referral_url,
        )
    )
    return _config


def config() -> LoyaltyConfig:
    return _config


class AdjustmentError(ValueError):
    """An operator adjustment that cannot be applied (it would take the balance below zero)."""


# --- reading -----------------------------------------------------------------------------------


def _entry(row: PointsEntry) -> Entry:
    return Entry(
        key=row.key,
        at=row.at,
        points=row.points,
        kind=row.kind,  # type: ignore[arg-type]
        expires_at=row.expires_at,
        lot=row.lot,
    )


# Built once (every context reads the balance); the customer is bound.
_ENTRIES = (
    select(PointsEntry)
    .where(col(PointsEntry.customer_id) == sa.bindparam("customer_id"))
    .order_by(col(PointsEntry.at), col(PointsEntry.id))
)


def entries_of(session: Session, customer_id: str) -> list[Entry]:
    rows = session.exec(_ENTRIES, params={"customer_id": customer_id}).all()
    return [_entry(row) for row in rows]


def balance_of(
    session: Session, customer_id: str, *, now: datetime, rules: LoyaltyRules | None = None
) -> Balance:
    rules = rules or _config.rules
    return balance(
        entries_of(session, customer_id),
        now=now,
        window=timedelta(days=rules.expiring_window_days),
    )


def loyalty_dict(
    session: Session, customer_id: str, *, now: datetime, rules: LoyaltyRules | None = None
) -> dict[str, Any]:
    """`loyalty.*` in the context: points, level, next level, expiring points, referral link."""
    rules = rules or _config.rules
    held = balance_of(session, customer_id, now=now, rules=rules)
    level = level_of(rules.tiers, held.points)
    account = session.get(LoyaltyAccount, customer_id)
    code = account.referral_code if account else None
    return {
        "member": account is not None,
        "points": held.points,
        "level": level.name,
        "next_level": level.next_name,
        "next_level_at": level.next_at,
        "points_to_next_level": None if level.next_at is None else level.next_at - held.points,
        "expiring_points": held.expiring_points,
        "expiring_at": held.expiring_at,
        "referral_code": code,
        "referral_link": _config.referral_url.format(code=code) if code else None,
    }


def history(session: Session, customer_id: str, *, limit: int = 100) -> list[PointsEntry]:
    """The newest entries first (the customer page and `trouw why`)."""
    return list(
        session.exec(
            select(PointsEntry)
            # A settled lot's 0-point `expire` entry is bookkeeping, not history to show.
            .where(PointsEntry.customer_id == customer_id, PointsEntry.points != 0)
            .order_by(col(PointsEntry.at).desc(), col(PointsEntry.id).desc())
            .limit(limit)
        ).all()
    )


# --- membership --------------------------------------------------------------------------------


def ensure_account(
    session: Session, customer_id: str, *, at: datetime, referred_by: str | None = None
) -> tuple[LoyaltyAccount, bool]:
    """The customer's loyalty account, created on first need; returns it and whether it is new."""
    account = session.get(LoyaltyAccount, customer_id)
    if account is not None:
        if referred_by and account.referred_by is None and referred_by != customer_id:
            account.referred_by = referred_by
            session.add(account)
        return account, False
    for attempt in range(5):
        code = (
            f"REF-{codes.clean_prefix(customer_id)}"
            if _config.scenario_codes
            else codes.referral_code(_config.key, customer_id, attempt=attempt)
        )
        if (
            session.exec(
                select(LoyaltyAccount.customer_id).where(LoyaltyAccount.referral_code == code)
            ).first()
            is None
        ):
            break
    account = LoyaltyAccount(
        customer_id=customer_id,
        joined_at=at,
        referral_code=code,
        referred_by=referred_by if referred_by != customer_id else None,
    )
    session.add(account)
    session.flush()
    return account, True


def account_by_referral(session: Session, code: str) -> LoyaltyAccount | None:
    return session.exec(
        select(LoyaltyAccount).where(LoyaltyAccount.referral_code == code.strip().upper())
    ).first()


# --- writing -----------------------------------------------------------------------------------


@dataclass
class Change:
    """What one ledger write did, for the events it derives."""

    customer_id: str
    cause: str  # the source id of the event (or the request) that caused it
    at: datetime
    entries: list[PointsEntry] = field(default_factory=list)
    joined: bool = False


def _add(session: Session, change: Change, row: PointsEntry) -> None:
    if session.exec(select(PointsEntry.id).where(PointsEntry.key == row.key)).first() is not None:
        return  # written before: the same purchase or sweep again adds nothing
    session.add(row)
    change.entries.append(row)


def earn_for_order(
    session: Session, order: Order, *, cause: str, rules: LoyaltyRules | None = None
) -> Change:
    """Points for each line of a new order (rounded down per line) and campaign bonuses."""
    rules = rules or _config.rules
    at = order.placed_at
    change = Change(customer_id=order.customer_id, cause=cause, at=at)
    lines = session.exec(
        select(OrderLine).where(OrderLine.order_id == order.id).order_by(col(OrderLine.line_no))
    ).all()
    skus = {line.sku for line in lines}
    categories = {
        product.sku: product.category
        for product in session.exec(select(Product).where(col(Product.sku).in_(skus))).all()
    }
    expires = at + timedelta(days=rules.expiry_days)
    for line in lines:
        facts = LineFacts(
            line_no=line.line_no,
            sku=line.sku,
            category=categories.get(line.sku),
            qty=line.qty,
            unit_price=Decimal(line.unit_price),
        )
        points = line_points(rules, facts, at=at, channel=order.channel)
        if points <= 0:
            continue
        _add(
            session,
            change,
            PointsEntry(
                key=f"earn:{order.id}:{line.line_no}",
                customer_id=order.customer_id,
                at=at,
                kind="earn",
                points=points,
                expires_at=expires,
                order_id=order.id,
                line_no=line.line_no,
                qty=line.qty,
                reason=f"{line.qty} x {line.name}",
            ),
        )
    for name, points in order_bonuses(
        rules, total=Decimal(order.total), at=at, channel=order.channel
    ):
        _add(
            session,
            change,
            PointsEntry(
                key=f"bonus:{order.id}:{name}",
                customer_id=order.customer_id,
                at=at,
                kind="bonus",
                points=points,
                expires_at=expires,
                order_id=order.id,
                reason=f"campaign {name}",
            ),
        )
    return change


def reverse_for_return(
    session: Session,
    order: Order,
    *,
    at: datetime,
    cause: str,
    returning: dict[int, int] | None = None,
    rules: LoyaltyRules | None = None,
) -> Change:
    """Takes back the points of the returned lines (line_no -> units; None: the whole order).

    Each line gives back exactly its share of what it earned; points of a lot that already
    expired are not taken twice. A whole return also takes back the order's campaign bonuses.
    """
    rules = rules or _config.rules
    change = Change(customer_id=order.customer_id, cause=cause, at=at)
    rows = session.exec(select(PointsEntry).where(PointsEntry.order_id == order.id)).all()
    earned = {row.key: row for row in rows if row.kind in ("earn", "bonus")}
    back: dict[str, int] = {}
    for row in rows:
        if row.kind == "return" and row.lot:
            back[row.lot] = back.get(row.lot, 0) + (row.qty or 0)
    held = balance_of(session, order.customer_id, now=at, rules=rules)
    for key, row in sorted(earned.items()):
        lot = held.lots.get(key)
        if lot is not None and lot.expired:
            continue  # expired before the return: nothing left to take back
        if row.kind == "bonus":
            if returning is not None or back.get(key):
                continue
            units, qty, before = 1, 1, 0
        else:
            qty = row.qty or 1
            before = back.get(key, 0)
            units = qty - before if returning is None else returning.get(row.line_no or 0, 0)
        if units <= 0:
            continue
        points = returned_points(row.points, qty=qty, returned_before=before, returning=units)
        _add(
            session,
            change,
            PointsEntry(
                key=f"return:{key}:{before}+{units}",
                customer_id=order.customer_id,
                at=at,
                kind="return",
                points=-points,
                lot=key,
                order_id=order.id,
                line_no=row.line_no,
                qty=units,
                reason=f"returned: {row.reason}",
            ),
        )
    return change


def adjust(
    session: Session,
    customer_id: str,
    *,
    points: int,
    reason: str,
    at: datetime,
    key: str,
    source: str = "operator",
    rules: LoyaltyRules | None = None,
) -> Change:
    """An operator's correction, with its reason; never below zero (AdjustmentError)."""
    if not reason.strip():
        raise AdjustmentError("an adjustment needs a reason")
    if points == 0:
        raise AdjustmentError("an adjustment of 0 points changes nothing")
    rules = rules or _config.rules
    if session.get(Customer, customer_id) is None:
        raise LookupError(f"unknown customer {customer_id!r}")
    held = balance_of(session, customer_id, now=at, rules=rules)
    if held.points + points < 0:
        raise AdjustmentError(
            f"the balance is {held.points} points: taking {-points} would make it negative"
        )
    change = Change(customer_id=customer_id, cause=key, at=at)
    _add(
        session,
        change,
        PointsEntry(
            key=key,
            customer_id=customer_id,
            at=at,
            kind="adjust",
            points=points,
            expires_at=at + timedelta(days=rules.expiry_days) if points > 0 else None,
            reason=reason.strip(),
            source=source,
        ),
    )
    if change.entries:
        change.joined = ensure_account(session, customer_id, at=at)[1]
    return change


def sweep_expiries(
    session: Session, *, now: datetime, customer_ids: Iterable[str] | None = None
) -> list[Change]:
    """Writes every expiry due by `now` as an `expire` entry (once per lot); a lot used up
    before its end gets a 0-point one (settled), which derives no event. Without
    `customer_ids`, only customers with a due lot not yet written are read."""
    if customer_ids is None:
        customer_ids = behind(session, now=now, future=False)
    changes = []
    for customer_id in customer_ids:
        due = due_expiries(entries_of(session, customer_id), now=now)
        if not due:
            continue
        change = Change(customer_id=customer_id, cause=f"expiry:{due[0].lot}", at=due[-1].at)
        settled = Change(customer_id=customer_id, cause=change.cause, at=change.at)
        for expiry in due:
            _add(
                session,
                change if expiry.points else settled,
                PointsEntry(
                    key=f"expire:{expiry.lot}",
                    customer_id=customer_id,
                    at=expiry.at,
                    kind="expire",
                    points=-expiry.points,
                    lot=expiry.lot,
                    reason="expired" if expiry.points else "used up before it expired",
                    source="sweep",
                ),
            )
        if change.entries:
            changes.append(change)
    return changes


# --- derived events ----------------------------------------------------------------------------


def derive_events(session: Session, change: Change, *, rules: LoyaltyRules | None = None) -> int:
    """points_changed (and level_reached for each level climbed into) for a ledger write.

    The levels compare the balance just before and just after the write under today's rules:
    a threshold changed later moves customers' levels at once, but derives no event by itself
    (no message is sent again for it). Returns the number of events added.
    """
    if not change.entries and not change.joined:
        return 0
    rules = rules or _config.rules
    keys = {row.key for row in change.entries}
    entries = entries_of(session, change.customer_id)
    window = timedelta(days=rules.expiring_window_days)
    after = balance(entries, now=change.at, window=window)
    before = balance([e for e in entries if e.key not in keys], now=change.at, window=window)
    delta = sum(row.points for row in change.entries)
    level = level_of(rules.tiers, after.points)
    first_expiry = min(
        (lot.expires_at for lot in after.lots.values() if lot.remaining > 0 and lot.expires_at),
        default=None,
    )
    events: list[tuple[str, dict[str, Any]]] = [
        (
            "points_changed",
            {
                "delta": delta,
                "points": after.points,
                "level": level.name,
                "kinds": sorted({row.kind for row in change.entries}),
                "joined": change.joined,
                "next_expiry_at": first_expiry.isoformat() if first_expiry else None,
            },
        )
    ]
    for name in levels_reached(rules.tiers, before.points, after.points):
        events.append(("level_reached", {"level": name, "points": after.points}))
    for kind, data in events:
        suffix = f":{data['level']}" if kind == "level_reached" else ""
        add_derived(
            session,
            customer_id=change.customer_id,
            source_id=f"{change.cause}>{kind}{suffix}",
            type=kind,
            at=change.at,
            data=data,
        )
    return len(events)


# Marks an event Trouw derived itself (in its payload): it did not come in from outside.
DERIVED = "derived"


def is_derived(row: InboundEvent) -> bool:
    return bool((row.payload or {}).get(DERIVED))


def add_derived(
    session: Session,
    *,
    customer_id: str,
    source_id: str,
    type: str,
    at: datetime,
    data: dict[str, Any],
    order_id: str | None = None,
    relayed_at: datetime | None = None,
) -> bool:
    """An event Trouw derives itself, stored once by its source id for the relay to hand off."""
    if (
        session.exec(select(InboundEvent.id).where(InboundEvent.source_id == source_id)).first()
        is not None
    ):
        return False
    row = InboundEvent(
        source_id=source_id,
        type=type,
        customer_id=customer_id,
        occurred_at=at,
        received_at=at,
        payload={"order_id": order_id, "skus": [], "data": data, DERIVED: True},
        relayed_at=relayed_at,
    )
    session.add(row)
    session.info.setdefault(_NEW_DERIVED, []).append(row)
    return True


_NEW_DERIVED = "trouw.domain.loyalty.derived"


def derived_from(session: Session, cause: str) -> list[InboundEvent]:
    """The ledger events an event derived (points_changed, level_reached, joining), in order."""
    rows = session.exec(
        select(InboundEvent)
        .where(
            col(InboundEvent.source_id).startswith(f"{cause}>")
            | col(InboundEvent.source_id).startswith(f"{cause}:joined>")
        )
        .order_by(col(InboundEvent.id))
    ).all()
    return list(rows)


def take_derived(session: Session) -> list[InboundEvent]:
    """The events derived in this session since the last call (a backfill marks them handed
    off with the event they came from; the API hands them off after it)."""
    rows: list[InboundEvent] = session.info.pop(_NEW_DERIVED, [])
    return rows


# --- many customers at once --------------------------------------------------------------------


def _ledger_counts(now: datetime) -> sa.Select[Any]:
    """Per customer, in one pass: the sum of the entries, the lots due by `now` without their
    `expire` entry, and the entries after `now`.

    Each `expire` entry (key `expire:<lot>`, once) belongs to one lot of its customer and is
    dated at that lot's end, so the lots due by `now` minus the `expire` entries up to `now` is
    the number of due lots not written yet, never below 0.
    """
    table = PointsEntry.__table__  # type: ignore[attr-defined]
    return sa.select(
        table.c.customer_id,
        sa.func.sum(table.c.points),
        sa.func.sum(
            sa.case(
                (sa.and_(table.c.points > 0, table.c.expires_at <= now), 1),
                (sa.and_(table.c.kind == "expire", table.c.at <= now), -1),
                else_=0,
            )
        ),
        sa.func.sum(sa.case((table.c.at > now, 1), else_=0)),
    ).group_by(table.c.customer_id)


def behind(session: Session, *, now: datetime, future: bool = True) -> list[str]:
    """Customers the sweep has not caught up with at `now`: a lot due without its `expire`
    entry, or (`future`) entries after `now`."""
    return sorted(
        customer_id
        for customer_id, _total, unwritten, later in session.connection().execute(
            _ledger_counts(now)
        )
        if unwritten or (future and later)
    )


def balances(
    session: Session, *, now: datetime, rules: LoyaltyRules | None = None, batch: int = 50_000
) -> dict[str, int]:
    """Every customer's balance at `now`.

    Once swept, a balance is the sum of the entries (rules.balance's property): one pass of the
    database sums and counts (`_ledger_counts`); only the customers the sweep has not caught up
    with (a due lot without its `expire` entry, or entries after `now`) go through the lots in
    Python.
    """
    result: dict[str, int] = {}
    lagging: list[str] = []
    for customer_id, total, unwritten, later in session.connection().execute(_ledger_counts(now)):
        if unwritten or later:
            lagging.append(customer_id)
        else:
            result[customer_id] = int(total)
    for customer_id, points in _recomputed(
        session, sorted(lagging), now=now, rules=rules, batch=batch
    ):
        result[customer_id] = points
    return result


def _recomputed(
    session: Session,
    customer_ids: list[str],
    *,
    now: datetime,
    rules: LoyaltyRules | None,
    batch: int,
) -> Iterable[tuple[str, int]]:
    """Balances through the lots, for these customers, reading their entries in one pass."""
    rules = rules or _config.rules
    window = timedelta(days=rules.expiring_window_days)
    table = PointsEntry.__table__  # type: ignore[attr-defined]
    columns = ("customer_id", "key", "at", "points", "kind", "expires_at", "lot")
    # Many behind: one pass over the whole ledger beats looking them up 500 at a time.
    everyone = len(customer_ids) > 20_000
    for first in range(0, 1 if everyone else len(customer_ids), 500):
        chunk = customer_ids[first : first + 500]
        query = (
            sa.select(*(table.c[name] for name in columns))
            .where(table.c.kind != "expire")
            .order_by(table.c.customer_id, table.c.at, table.c.id)
            .execution_options(yield_per=batch)
        )
        if not everyone:
            query = query.where(table.c.customer_id.in_(chunk))
        current: str | None = None
        pending: list[Entry] = []
        wanted = set(customer_ids) if everyone else None
        for customer_id, key, at, points, kind, expires_at, lot in session.connection().execute(
            query
        ):
            if wanted is not None and customer_id not in wanted:
                continue
            if customer_id != current:
                if current is not None:
                    yield current, balance(pending, now=now, window=window).points
                current, pending = customer_id, []
            pending.append(Entry(key, at, points, kind, expires_at, lot))
        if current is not None:
            yield current, balance(pending, now=now, window=window).points


def sum_of_entries(session: Session, customer_id: str) -> int:
    total = session.exec(
        select(func.coalesce(func.sum(PointsEntry.points), 0)).where(
            PointsEntry.customer_id == customer_id
        )
    ).one()
    return int(total)
