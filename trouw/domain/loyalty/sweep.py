"""The loyalty sweep: what becomes due with time alone (points expiring, vouchers about to
expire) is written to the ledger and derived as events, once; run by the worker's stack every
few minutes, by `trouw loyalty sweep`, and by the simulator at each due moment."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import InboundEvent, Voucher
from trouw.domain.loyalty.ledger import add_derived, derive_events, entries_of, sweep_expiries
from trouw.domain.loyalty.rules import next_expiry

log = logging.getLogger("trouw.loyalty")


def _open_vouchers(session: Session, customer_ids: Sequence[str] | None) -> list[Voucher]:
    query = select(Voucher).where(
        col(Voucher.redeemed_at).is_(None), col(Voucher.voided_at).is_(None)
    )
    if customer_ids is not None:
        query = query.where(col(Voucher.customer_id).in_(customer_ids))
    return list(session.exec(query).all())


def sweep(
    session: Session,
    *,
    now: datetime,
    expiring_days: int,
    customer_ids: Sequence[str] | None = None,
) -> int:
    """Writes expiries due by `now` and derives voucher_expiring events; returns events added."""
    added = 0
    for change in sweep_expiries(session, now=now, customer_ids=customer_ids):
        added += derive_events(session, change)
    window = timedelta(days=expiring_days)
    for voucher in _open_vouchers(session, customer_ids):
        if not voucher.expires_at - window <= now < voucher.expires_at:
            continue
        added += add_derived(
            session,
            customer_id=voucher.customer_id,
            source_id=f"voucher_expiring:{voucher.code}",
            type="voucher_expiring",
            at=max(voucher.expires_at - window, voucher.issued_at),
            data={
                "code": voucher.code,
                "value": str(voucher.value),
                "currency": voucher.currency,
                "expires_at": voucher.expires_at.isoformat(),
            },
        )
    return added


def next_due(
    session: Session, customer_id: str, *, after: datetime, expiring_days: int
) -> datetime | None:
    """The next moment after `after` when the sweep has something to do for this customer."""
    moments: list[datetime] = []
    expiry = next_expiry(entries_of(session, customer_id), now=after)
    if expiry is not None:
        moments.append(expiry)
    window = timedelta(days=expiring_days)
    announced = set(
        session.exec(
            select(InboundEvent.source_id).where(
                InboundEvent.customer_id == customer_id,
                InboundEvent.type == "voucher_expiring",
            )
        ).all()
    )
    for voucher in _open_vouchers(session, [customer_id]):
        if f"voucher_expiring:{voucher.code}" in announced or voucher.expires_at <= after:
            continue
        moments.append(max(voucher.expires_at - window, after + timedelta(seconds=1)))
    return min(moments, default=None)


async def sweep_forever(engine: Engine, *, expiring_days: int, every: float = 300.0) -> None:
    """The stack's sweep: every `every` seconds; the relay hands off what it derives."""
    while True:
        try:

            def run() -> int:
                with session_scope(engine) as session:
                    return sweep(session, now=datetime.now(UTC), expiring_days=expiring_days)

            added = await asyncio.to_thread(run)
            if added:
                log.info("loyalty sweep derived %d event(s)", added)
        except Exception:  # a bad moment (database restarting): try again next round
            log.exception("loyalty sweep failed")
        await asyncio.sleep(every)
