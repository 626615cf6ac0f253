"""Helpers for workflow tests that store events as the API does and relay them to Temporal."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import col, select
from temporalio.client import Client

from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import InboundEvent
from trouw.domain.ingest import EventIn, wire_event
from trouw.language.contracts import CustomerInput, customer_workflow_id
from workflows.customer import CustomerWorkflow


def purchase(customer: str, now: datetime, **profile: Any) -> EventIn:
    """A till purchase of one packet of seeds, with the customer's profile fields."""
    return EventIn(
        id=f"{customer}-buy",
        type="purchase",
        customer=customer,
        order=f"{customer}-o1",
        channel="pos",
        lines=[{"sku": "SEED-1", "unit_price": "3.50", "name": "Zakje zaad"}],
        profile={"id": customer, **profile},
        at=now,
    )


async def relay(engine: Engine, client: Client, task_queue: str) -> None:
    """What the relay does: every stored, unrelayed event to its customer's workflow."""
    with session_scope(engine) as session:
        rows = session.exec(
            select(InboundEvent)
            .where(col(InboundEvent.relayed_at).is_(None))
            .order_by(col(InboundEvent.id))
        ).all()
        pending = [wire_event(row) for row in rows]
        for row in rows:
            row.relayed_at = datetime.now(UTC)
            session.add(row)
    for event in pending:
        await client.start_workflow(
            CustomerWorkflow.run,
            CustomerInput(customer_id=event.customer_id, search_attributes=False),
            id=customer_workflow_id(event.customer_id),
            task_queue=task_queue,
            start_signal="record_event",
            start_signal_args=[event],
        )
