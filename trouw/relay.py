"""The outbox relay: events committed to the database reach their customer workflow, once."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from sqlmodel import select
from temporalio.client import Client

from trouw.contracts import CustomerEvent
from trouw.db.engine import session_scope
from trouw.db.models import InboundEvent
from trouw.ingest import pending_events, wire_event
from trouw.temporal import deliver

log = logging.getLogger("trouw.relay")


async def hand_off(
    engine: Engine,
    client: Client,
    source_id: str,
    *,
    task_queue: str,
    search_attributes: bool = True,
) -> None:
    """Signal-with-start for one stored event, then mark it relayed.

    A crash between the two leaves relayed_at empty and the sweep sends it again; the customer
    workflow drops the repeat by event id, so the journey starts once.
    """

    def load() -> CustomerEvent:
        with session_scope(engine) as session:
            row = session.exec(
                select(InboundEvent).where(InboundEvent.source_id == source_id)
            ).one()
            return wire_event(row)

    def mark() -> None:
        with session_scope(engine) as session:
            row = session.exec(
                select(InboundEvent).where(InboundEvent.source_id == source_id)
            ).one()
            if row.relayed_at is None:
                row.relayed_at = datetime.now(UTC)
                session.add(row)

    # Database work off the event loop: the API serves other requests meanwhile.
    event = await asyncio.to_thread(load)
    await deliver(client, event, task_queue=task_queue, search_attributes=search_attributes)
    await asyncio.to_thread(mark)


async def relay_pending(
    engine: Engine, client: Client, *, task_queue: str, search_attributes: bool = True
) -> int:
    """Hand off every event not yet relayed, oldest first; returns how many."""

    def pending() -> list[str]:
        with session_scope(engine) as session:
            return [row.source_id for row in pending_events(session)]

    ids = await asyncio.to_thread(pending)
    for source_id in ids:
        await hand_off(
            engine, client, source_id, task_queue=task_queue, search_attributes=search_attributes
        )
    return len(ids)


async def relay_forever(
    engine: Engine, client: Client, *, task_queue: str, every: float = 2.0
) -> None:
    while True:
        try:
            count = await relay_pending(engine, client, task_queue=task_queue)
            if count:
                log.info("relayed %d event(s)", count)
        except Exception:  # a bad moment (Temporal restarting): try again next round
            log.exception("relay round failed")
        await asyncio.sleep(every)
