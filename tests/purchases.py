"""A purchase as Trouw takes it in, for tests: ingested into the database, and the event the
customer workflow receives (what `deliver` signals)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from trouw.domain.db.engine import session_scope
from trouw.domain.ingest import EventIn, ingest_event, wire_event
from trouw.language.contracts import CustomerEvent

SEED_PACKET: dict[str, Any] = {"sku": "X-1", "unit_price": "5.00", "name": "Zakje zaad"}


def ingest_purchase(
    engine: Engine,
    *,
    id: str,
    customer: str,
    order: str,
    at: datetime | None = None,
    channel: str = "pos",
    lines: list[dict[str, Any]] | None = None,
    profile: dict[str, Any] | None = None,
) -> CustomerEvent:
    """One purchase (of a packet of seeds unless `lines` says otherwise), committed; its event."""
    fields: dict[str, Any] = {
        "id": id,
        "type": "purchase",
        "customer": customer,
        "order": order,
        "channel": channel,
        "lines": lines if lines is not None else [SEED_PACKET],
        "at": at,
    }
    if profile is not None:
        fields["profile"] = profile
    with session_scope(engine) as session:
        row, _new = ingest_event(session, EventIn.model_validate(fields))
        return wire_event(row)
