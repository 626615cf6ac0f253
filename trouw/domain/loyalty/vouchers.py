"""Vouchers as one account across shop and webshop: issue, look up (by code or customer), redeem.

A redemption is idempotent by the till's receipt id: the same receipt gets the same answer, any
other receipt is refused once a code is used. The row is claimed with one conditional UPDATE
... RETURNING, so two tills redeeming one code at the same moment get one redemption (SQLite and
PostgreSQL).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from trouw.domain.db.models import Customer, Voucher
from trouw.domain.loyalty import codes
from trouw.domain.loyalty.ledger import add_derived, config

Refusal = Literal["unknown", "expired", "used", "voided", "foreign", "below_minimum"]
VoucherStatus = Literal["open", "redeemed", "expired", "voided"]
LookupField = Literal["customer", "email", "phone", "card"]

# A till's clock may be off: its time is believed within this much of the server's, and the
# server's time is used beyond it (docs/loyalty.md "Clock skew").
CLOCK_TOLERANCE = timedelta(minutes=5)


class RedeemRefusedError(ValueError):
    """A redemption the voucher does not allow; `reason` is the machine-readable why."""

    def __init__(self, reason: Refusal, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def status_of(voucher: Voucher, now: datetime) -> VoucherStatus:
    if voucher.voided_at is not None:
        return "voided"
    if voucher.redeemed_at is not None:
        return "redeemed"
    if voucher.expires_at <= now:
        return "expired"
    return "open"


def public(voucher: Voucher, *, now: datetime) -> dict[str, Any]:
    """What the till and the webshop see of a voucher."""
    status = status_of(voucher, now)
    return {
        "code": voucher.code,
        "customer": voucher.customer_id,
        "status": status,
        "valid": status == "open",
        "value": str(voucher.value),
        "currency": voucher.currency,
        "issued_at": voucher.issued_at.isoformat(),
        "expires_at": voucher.expires_at.isoformat(),
        "conditions": {
            "min_order_total": None
            if voucher.min_order_total is None
            else str(voucher.min_order_total),
            "channels": ["pos", "web"],
            "single_use": True,
        },
        "reason": voucher.reason,
        "redemption": None
        if voucher.redeemed_at is None
        else {
            "receipt": voucher.redeemed_receipt,
            "order": voucher.redeemed_order_id,
            "channel": voucher.redeemed_channel,
            "store": voucher.redeemed_store,
            "at": voucher.redeemed_at.isoformat(),
            "recorded_at": voucher.redeemed_recorded_at.isoformat()
            if voucher.redeemed_recorded_at
            else None,
        },
    }


# --- issuing ------------------------------------------------------------------------------


def _new_code(
    session: Session, customer_id: str, prefix: str, issued_key: str, attempt: int
) -> str:
    settings = config()
    if settings.scenario_codes:
        # The n-th code of this prefix for this customer: what a scenario can name.
        start = f"{codes.clean_prefix(prefix)}-{codes.clean_prefix(customer_id)}-"
        taken = session.exec(
            select(func.count()).select_from(Voucher).where(col(Voucher.code).startswith(start))
        ).one()
        return codes.scenario_code(prefix, customer_id, int(taken) + 1 + attempt)
    return codes.secret_code(settings.key, issued_key, prefix, attempt=attempt)


def issue(
    session: Session,
    *,
    customer_id: str,
    value: Decimal,
    expires_at: datetime,
    issued_key: str,
    now: datetime,
    prefix: str = "TROUW",
    journey: str | None = None,
    workflow_id: str | None = None,
    issued_by: Literal["journey", "operator"] = "journey",
    reason: str | None = None,
    min_order_total: Decimal | None = None,
    handed_over: bool = False,
) -> tuple[Voucher, bool]:
    """A voucher, once per `issued_key` (a retry returns the first); and whether it is new.

    Derives `voucher_issued` for the customer's workflow (journeys start on it).
    """
    existing = session.exec(select(Voucher).where(Voucher.issued_key == issued_key)).first()
    if existing is not None:
        return existing, False
    for attempt in range(5):
        code = _new_code(session, customer_id, prefix, issued_key, attempt)
        if session.get(Voucher, code) is not None:
            continue
        voucher = Voucher(
            code=code,
            customer_id=customer_id,
            value=value,
            issued_at=now,
            expires_at=expires_at,
            journey=journey,
            workflow_id=workflow_id,
            issued_key=issued_key,
            issued_by=issued_by,
            reason=reason,
            min_order_total=min_order_total,
        )
        savepoint = session.begin_nested()
        try:
            session.add(voucher)
            session.flush()
            savepoint.commit()
        except IntegrityError:
            savepoint.rollback()
            again = session.exec(select(Voucher).where(Voucher.issued_key == issued_key)).first()
            if again is not None:
                return again, False  # another worker issued it first
            continue
        add_derived(
            session,
            customer_id=customer_id,
            source_id=f"voucher_issued:{code}",
            type="voucher_issued",
            at=now,
            data={
                "code": code,
                "value": str(value),
                "currency": voucher.currency,
                "expires_at": expires_at.isoformat(),
            },
            # A journey run signals it to the customer workflow itself: the relay must not.
            relayed_at=now if handed_over else None,
        )
        return voucher, True
    raise RuntimeError("no free voucher code after 5 attempts")


def operator_key() -> str:
    return f"operator:{uuid.uuid4().hex}"


# --- finding -------------------------------------------------------------------------------


def lookup(session: Session, code: str) -> Voucher | None:
    return session.get(Voucher, codes.normalise(code))


def find_customer(session: Session, by: LookupField, value: str) -> Customer | None:
    """The customer a till names: by id, email, phone (E.164) or loyalty card number."""
    value = value.strip()
    if by == "customer":
        return session.get(Customer, value)
    if by == "email":
        return session.exec(
            select(Customer).where(func.lower(Customer.email) == value.lower())
        ).first()
    if by == "phone":
        return session.exec(select(Customer).where(Customer.phone == value)).first()
    card = (
        Customer.attributes.op("->>")("loyalty_card")  # type: ignore[attr-defined]
        if session.get_bind().dialect.name == "postgresql"
        else func.json_extract(Customer.attributes, "$.loyalty_card")
    )
    return session.exec(select(Customer).where(card == value)).first()


def of_customer(
    session: Session, customer_id: str, *, now: datetime, only_open: bool = True
) -> list[Voucher]:
    query = select(Voucher).where(Voucher.customer_id == customer_id)
    if only_open:
        query = query.where(
            col(Voucher.redeemed_at).is_(None),
            col(Voucher.voided_at).is_(None),
            col(Voucher.expires_at) > now,
        )
    return list(session.exec(query.order_by(col(Voucher.expires_at), col(Voucher.code))).all())


# --- redeeming -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Redemption:
    voucher: Voucher
    replayed: bool  # the same receipt asked before: the same answer again


def till_time(at: datetime | None, now: datetime) -> datetime:
    """The till's time when it is within CLOCK_TOLERANCE of ours, else ours."""
    if at is None or abs(at - now) > CLOCK_TOLERANCE:
        return now
    return at


def redeem(
    session: Session,
    code: str,
    *,
    receipt: str,
    now: datetime,
    at: datetime | None = None,
    customer_id: str | None = None,
    order_id: str | None = None,
    channel: str | None = None,
    store: str | None = None,
    order_total: Decimal | None = None,
) -> Redemption:
    """Redeem a code on a receipt, once. Raises LookupError (unknown) or RedeemRefusedError.

    The first statement claims the code: one conditional UPDATE ... RETURNING that only an
    open, valid code (of this customer, over its minimum) satisfies; then its derived event;
    nothing is read before and nothing computed in between, so on SQLite the write lock is held
    for two statements. Only when nothing was claimed is the voucher read, to say why.
    """
    code = codes.normalise(code)
    when = till_time(at, now)
    table = Voucher.__table__  # type: ignore[attr-defined]
    conditions = [
        table.c.code == code,
        table.c.redeemed_at.is_(None),
        table.c.voided_at.is_(None),
        table.c.expires_at > when,
    ]
    if customer_id is not None:
        conditions.append(table.c.customer_id == customer_id)
    if order_total is not None:
        conditions.append(
            table.c.min_order_total.is_(None) | (table.c.min_order_total <= order_total)
        )
    claimed = (
        session.connection()
        .execute(
            sa.update(table)
            .where(*conditions)
            .values(
                redeemed_at=when,
                redeemed_receipt=receipt,
                redeemed_order_id=order_id,
                redeemed_channel=channel,
                redeemed_store=store,
                redeemed_recorded_at=now,
            )
            .returning(*table.c)
        )
        .mappings()
        .first()
    )
    if claimed is None:
        return _unclaimed(session, code, receipt=receipt, when=when, customer_id=customer_id)
    add_derived(
        session,
        customer_id=claimed["customer_id"],
        source_id=f"voucher_redeemed:{code}",
        type="voucher_redeemed",
        at=when,
        data={"code": code},
        order_id=order_id,
    )
    stale = session.identity_map.get(session.identity_key(Voucher, code))
    if stale is not None:
        session.expire(stale)  # loaded earlier in this session: read it again when used
    return Redemption(voucher=Voucher(**claimed), replayed=False)


def _unclaimed(
    session: Session, code: str, *, receipt: str, when: datetime, customer_id: str | None
) -> Redemption:
    """Why a code could not be claimed (raised), or the same receipt's earlier redemption."""
    voucher = lookup(session, code)
    if voucher is None:
        raise LookupError(f"unknown voucher code {code!r}")
    if customer_id is not None and voucher.customer_id != customer_id:
        raise RedeemRefusedError("foreign", "this voucher belongs to another customer")
    if voucher.redeemed_at is not None:
        return _already(voucher, receipt)
    if voucher.voided_at is not None:
        raise RedeemRefusedError("voided", "this voucher was cancelled")
    if voucher.expires_at <= when:
        raise RedeemRefusedError(
            "expired", f"this voucher expired on {voucher.expires_at.isoformat()}"
        )
    raise RedeemRefusedError(
        "below_minimum", f"this voucher needs an order of at least {voucher.min_order_total}"
    )


def _already(voucher: Voucher, receipt: str) -> Redemption:
    if voucher.redeemed_receipt == receipt:
        return Redemption(voucher=voucher, replayed=True)
    when = voucher.redeemed_at.isoformat() if voucher.redeemed_at else "earlier"
    raise RedeemRefusedError("used", f"this voucher was already redeemed on {when}")


def redeem_on_order(
    session: Session,
    codes_given: list[str],
    *,
    customer_id: str,
    order_id: str,
    channel: str,
    store: str | None,
    at: datetime,
    now: datetime,
    total: Decimal,
) -> tuple[list[str], list[dict[str, str]]]:
    """The codes a purchase carries: each redeemed on the order (or linked to it when the till
    redeemed it before with the order id as receipt). Returns accepted codes and refusals; a
    refused code never refuses the order (the till already sold it)."""
    accepted: list[str] = []
    refused: list[dict[str, str]] = []
    for given in codes_given:
        try:
            done = redeem(
                session,
                given,
                receipt=order_id,
                now=now,
                at=at,
                customer_id=customer_id,
                order_id=order_id,
                channel=channel,
                store=store,
                order_total=total,
            )
        except LookupError:
            refused.append({"code": given, "reason": "unknown"})
            continue
        except RedeemRefusedError as exc:
            voucher = lookup(session, given)
            if (
                exc.reason == "used"
                and voucher is not None
                and voucher.redeemed_order_id
                in (
                    None,
                    order_id,
                )
            ):
                pass  # fall through: see below
            else:
                refused.append({"code": given, "reason": exc.reason})
                continue
            assert voucher is not None
            if voucher.redeemed_order_id is None and voucher.customer_id == customer_id:
                # Redeemed at the till under its receipt id, now known as this order.
                voucher.redeemed_order_id = order_id
                session.add(voucher)
                accepted.append(voucher.code)
            else:
                refused.append({"code": given, "reason": exc.reason})
            continue
        if done.voucher.redeemed_order_id is None:
            # Redeemed at the till under this receipt before (a replay: the session's own row).
            done.voucher.redeemed_order_id = order_id
            session.add(done.voucher)
        accepted.append(done.voucher.code)
    return accepted, refused


def note_message(session: Session, code: str, message_key: str) -> None:
    """Records the first message that showed a code to its customer."""
    table = Voucher.__table__  # type: ignore[attr-defined]
    session.connection().execute(
        sa.update(table)
        .where(table.c.code == code, table.c.message_key.is_(None))
        .values(message_key=message_key)
    )
