"""The consent ledger and suppression list: append-only records, the current state derived."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, or_
from sqlmodel import Session, col, select

from trouw.domain.control import contact_pause
from trouw.domain.db.models import ConsentRecord, ContactPause, Customer, Suppression
from trouw.language.vocabulary import CHANNELS


def address_hash(address: str) -> str:
    """A stable hash of a normalised address: what survives erasure on the suppression list."""
    normalised = address.strip().lower()
    if not normalised.count("@"):
        normalised = "".join(ch for ch in normalised if ch.isdigit() or ch == "+")
    return hashlib.sha256(normalised.encode()).hexdigest()


@dataclass
class ConsentState:
    """The state the ledger adds up to, with the record each answer rests on."""

    records: dict[tuple[str, str], ConsentRecord] = field(default_factory=dict)
    suppressions: list[Suppression] = field(default_factory=list)
    # An operator's pause of the customer's non-transactional messages (a complaint), if any.
    pause: ContactPause | None = None

    def promotional(self, channel: str) -> bool:
        record = self.records.get((channel, "promotional"))
        return bool(record and record.granted)

    def service_objection(self, channel: str) -> bool:
        record = self.records.get((channel, "service"))
        return bool(record and not record.granted)

    def snapshot(self) -> dict[str, Any]:
        """What a decision relied on, stored with the message as proof."""
        return {
            "consent": {
                f"{channel}:{scope}": {
                    "granted": record.granted,
                    "at": record.at.isoformat(),
                    "source": record.source,
                    "wording_version": record.wording_version,
                }
                for (channel, scope), record in sorted(self.records.items())
            },
            "suppressions": [
                {"channel": s.channel, "reason": s.reason, "at": s.at.isoformat()}
                for s in self.suppressions
            ]
            + (
                [
                    {
                        "channel": "all",
                        "reason": "operator_pause",
                        "at": self.pause.at.isoformat(),
                        "by": self.pause.by,
                        "detail": self.pause.reason,
                    }
                ]
                if self.pause is not None
                else []
            ),
        }


# Built once (a statement built per call cost more than running it); values are bound.
_RECORDS = (
    select(ConsentRecord)
    .where(col(ConsentRecord.customer_id) == bindparam("customer_id"))
    .order_by(col(ConsentRecord.at), col(ConsentRecord.id))
)
_SUPPRESSIONS = (
    select(Suppression)
    .where(col(Suppression.customer_id) == bindparam("customer_id"))
    .order_by(col(Suppression.at))
)
_SUPPRESSIONS_OR_ADDRESS = (
    select(Suppression)
    .where(
        or_(
            col(Suppression.customer_id) == bindparam("customer_id"),
            col(Suppression.address_hash).in_(bindparam("hashes", expanding=True)),
        )
    )
    .order_by(col(Suppression.at))
)


def current_consent(session: Session, customer_id: str) -> ConsentState:
    """Latest record per (channel, scope) wins; suppressions by customer or by address hash."""
    state = ConsentState()
    records = session.exec(_RECORDS, params={"customer_id": customer_id}).all()
    for record in records:
        channels: Sequence[str] = CHANNELS if record.channel == "all" else (record.channel,)
        for channel in channels:
            state.records[(channel, record.scope)] = record
    customer = session.get(Customer, customer_id)
    hashes = []
    if customer is not None:
        hashes = [address_hash(a) for a in (customer.email, customer.phone) if a]
    if hashes:
        found = session.exec(
            _SUPPRESSIONS_OR_ADDRESS, params={"customer_id": customer_id, "hashes": hashes}
        )
    else:
        found = session.exec(_SUPPRESSIONS, params={"customer_id": customer_id})
    state.suppressions = list(found.all())
    state.pause = contact_pause(session, customer_id)
    return state


def record_consent(
    session: Session,
    *,
    customer_id: str,
    channel: str,
    scope: str,
    granted: bool,
    at: datetime,
    source: str,
    wording_version: str | None = None,
    wording_text: str | None = None,
) -> ConsentRecord:
    """Append one record; nothing in the ledger is ever updated or deleted (except by erasure)."""
    record = ConsentRecord(
        customer_id=customer_id,
        channel=channel,
        scope=scope,
        granted=granted,
        at=at,
        source=source,
        wording_version=wording_version,
        wording_text=wording_text,
    )
    session.add(record)
    return record


def suppress(
    session: Session,
    *,
    customer: Customer,
    channel: str,
    reason: str,
    at: datetime,
    source: str | None = None,
) -> None:
    """Suppress the customer's address on a channel (all: both) for good."""
    channels = CHANNELS if channel == "all" else (channel,)
    for each in channels:
        address = customer.email if each == "email" else customer.phone
        key = address_hash(address) if address else address_hash(f"customer:{customer.id}")
        add_suppression(
            session,
            key=key,
            customer_id=customer.id,
            channel=each,
            reason=reason,
            at=at,
            source=source,
        )


def add_suppression(
    session: Session,
    *,
    key: str,
    customer_id: str | None,
    channel: str,
    reason: str,
    at: datetime,
    source: str | None,
) -> bool:
    """Record a suppression of an address hash once; False when it was already there."""
    exists = session.exec(
        select(Suppression.id).where(
            Suppression.address_hash == key,
            Suppression.channel == channel,
            Suppression.reason == reason,
        )
    ).first()
    if exists is not None:
        return False
    session.add(
        Suppression(
            address_hash=key,
            customer_id=customer_id,
            channel=channel,
            reason=reason,
            at=at,
            source=source,
        )
    )
    return True
