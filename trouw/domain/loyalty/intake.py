"""What an incoming event does to loyalty: points for a new order, back for a return, a
referral noted, and the events derived from it (stored beside the event, relayed after it)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlmodel import Session, col, select

from trouw.domain.db.models import Customer, InboundEvent, LoyaltyAccount, Order, OrderLine
from trouw.domain.loyalty.ledger import (
    Change,
    account_by_referral,
    add_derived,
    config,
    derive_events,
    earn_for_order,
    ensure_account,
    reverse_for_return,
)

if TYPE_CHECKING:
    from trouw.domain.ingest import EventIn

# The declared customer attribute holding the loyalty card number (trouw/settings.py).
CARD_ATTRIBUTE = "loyalty_card"


def returned_units(session: Session, order: Order, event: EventIn) -> dict[int, int] | None:
    """line_no -> units for a return naming its lines by sku (None: the whole order)."""
    if not event.lines:
        return None
    lines = session.exec(
        select(OrderLine).where(OrderLine.order_id == order.id).order_by(col(OrderLine.line_no))
    ).all()
    units: dict[int, int] = {}
    for wanted in event.lines:
        left = wanted.qty
        for line in lines:
            if line.sku != wanted.sku or left <= 0:
                continue
            take = min(left, line.qty - units.get(line.line_no, 0))
            if take > 0:
                units[line.line_no] = units.get(line.line_no, 0) + take
                left -= take
    return units


def _joins(session: Session, customer_id: str, *, purchase: bool, referred: bool) -> bool:
    """Whether this customer is (now) a member: a loyalty card, a referral, or everyone."""
    if referred or session.get(LoyaltyAccount, customer_id) is not None:
        return True
    if purchase and config().rules.enrol == "everyone":
        return True
    customer = session.get(Customer, customer_id)
    return customer is not None and bool((customer.attributes or {}).get(CARD_ATTRIBUTE))


def on_event(session: Session, event: EventIn, row: InboundEvent, *, at: datetime) -> None:
    """Loyalty's part of ingesting `event` (already stored as `row`): members join, purchases
    earn, returns take back, and a referred friend's first order converts the referral."""
    if row.type not in ("purchase", "returned", "register"):
        return
    referrer = _referrer(session, event)
    purchase = row.type == "purchase" and event.order is not None
    if row.type != "returned" and _joins(
        session, row.customer_id, purchase=purchase, referred=referrer is not None
    ):
        _account, joined = ensure_account(session, row.customer_id, at=at, referred_by=referrer)
        if joined:
            # A new member: points_changed with `joined` (the welcome journey starts on it).
            cause = f"{row.source_id}:joined"
            derive_events(session, Change(row.customer_id, cause, at, joined=True))
    if purchase and event.order:
        order = session.get(Order, event.order)
        account = session.get(LoyaltyAccount, row.customer_id)
        if order is None or account is None:
            return
        derive_events(session, earn_for_order(session, order, cause=row.source_id))
        _referral_converted(session, account, order, at=at, cause=row.source_id)
    elif row.type == "returned" and event.order:
        order = session.get(Order, event.order)
        if order is None:
            return
        change = reverse_for_return(
            session,
            order,
            at=at,
            cause=row.source_id,
            returning=returned_units(session, order, event),
        )
        derive_events(session, change)


def _referrer(session: Session, event: EventIn) -> str | None:
    if not event.referral:
        return None
    account = account_by_referral(session, event.referral)
    return account.customer_id if account is not None else None


def _referral_converted(
    session: Session, account: LoyaltyAccount, order: Order, *, at: datetime, cause: str
) -> None:
    """The friend's first order: a referral_converted event for both sides, once."""
    if account.referred_by is None or account.referral_converted_at is not None:
        return
    earlier = session.exec(
        select(Order.id).where(Order.customer_id == order.customer_id, Order.id != order.id)
    ).first()
    if earlier is not None:
        return  # not the first order: a referral rewards bringing a new customer
    account.referral_converted_at = at
    session.add(account)
    pair = {"referrer": account.referred_by, "friend": account.customer_id}
    for customer_id, role in ((account.referred_by, "referrer"), (account.customer_id, "friend")):
        add_derived(
            session,
            customer_id=customer_id,
            source_id=f"referral:{account.customer_id}>{role}",
            type="referral_converted",
            at=at,
            data={"role": role, "friend": pair["friend"]},
            order_id=order.id if role == "friend" else None,
        )
