"""Storing events once and handing them to Temporal: shared by the API, webhooks, pages, callbacks."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import InboundEvent
from trouw.domain.ingest import EventIn, ingest_event, wire_event
from trouw.domain.loyalty.ledger import take_derived
from trouw.language.contracts import CustomerEvent
from trouw.stack.relay import hand_off
from trouw.ways_in.api.state import ApiState

log = logging.getLogger("trouw.api")

# A race between two requests for the same new customer or order surfaces as an IntegrityError
# on the loser's insert; its retry then finds the winner's event. Three rounds cover chains of it.
_ATTEMPTS = 3


@dataclass(frozen=True)
class StoredEvent:
    """An event as stored: the same for the first request and for every repeat."""

    id: str
    customer: str
    type: str
    new: bool
    # What the customer workflow receives, read from the row in the storing transaction: the
    # hand-off right after needs no second read.
    wire: CustomerEvent | None = None
    # Events derived from it (points_changed, ...), handed after it: (source id, stored type).
    derived: tuple[tuple[str, str], ...] = ()

    def body(self) -> dict[str, str]:
        """The API's answer: built from the stored row, so a repeat gets the first answer again."""
        return {"id": self.id, "customer": self.customer, "type": self.type, "status": "accepted"}


def _wire(row: InboundEvent) -> CustomerEvent | None:
    try:
        return wire_event(row)
    except ValidationError:
        return None  # the hand-off reads it again and fails; the relay retries and parks it


def _stored(row: InboundEvent, new: bool) -> StoredEvent:
    # Custom events are stored as "custom:<name>"; the caller posted type "custom".
    return StoredEvent(
        id=row.source_id,
        customer=row.customer_id,
        type=row.type.split(":", 1)[0],
        new=new,
        wire=_wire(row) if new else None,
    )


def store_event(engine: Engine, event: EventIn, *, now: datetime | None = None) -> StoredEvent:
    """Store and apply an event in its own transaction, once; raises IngestError if invalid."""
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            with session_scope(engine) as session:
                row, new = ingest_event(session, event, now=now)
                derived = tuple((each.source_id, each.type) for each in take_derived(session))
                stored = _stored(row, new)
                return replace(stored, derived=derived) if derived else stored
        except IntegrityError:
            if attempt == _ATTEMPTS:
                raise
            log.info("event %s raced another request; looking again", event.id)
    raise AssertionError("unreachable")


async def deliver_new(state: ApiState, events: Iterable[StoredEvent]) -> None:
    """Hand new events to their customer workflow now; the relay sweeps up any that fail here.

    An event of a type the workers do not hand to Temporal (no journey starts on it, no live
    run listens to it: trouw.stack.relay.Listeners) is left to the relay, which marks it
    relayed without a signal, or signals it if a journey published meanwhile listens."""
    if state.client is None:
        return
    heard = await state.heard.now(state.engine)
    for event in events:
        if not event.new:
            continue
        wires = {event.id: event.wire}
        kinds = {event.id: event.wire.type if event.wire else None, **dict(event.derived)}
        for source_id in kinds:
            kind = kinds[source_id]
            if kind is not None and not heard.wants(kind):
                break  # the relay judges it and the ones after it, in their order
            try:
                await hand_off(
                    state.engine,
                    state.client,
                    source_id,
                    task_queue=state.settings.task_queue,
                    event=wires.get(source_id),
                )
            except Exception:  # noqa: BLE001 - stored: the relay hands it off when Temporal is back
                log.warning("hand-off of %s deferred to the relay", source_id, exc_info=True)
                break  # the ones after it wait for the relay too, in their order
