"""The outbox relay: a crash between the database commit and the hand-off never loses or doubles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import select
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.services import Services
from trouw.db.engine import get_engine, session_scope
from trouw.db.models import InboundEvent, JourneyRun, Message
from trouw.ingest import EventIn, ingest_event, wire_event
from trouw.relay import relay_pending
from trouw.settings import Settings
from trouw.temporal import binary, deliver
from trouw.worker import build_worker

QUEUE = "relay-test"


def purchase(event_id: str, customer: str) -> EventIn:
    return EventIn.model_validate(
        {
            "id": event_id,
            "type": "purchase",
            "customer": customer,
            "order": f"o-{customer}",
            "channel": "pos",
            "at": datetime.now(UTC),
            "lines": [{"sku": "X-1", "unit_price": "5.00", "name": "Zaad"}],
            "profile": {
                "id": customer,
                "email": f"{customer}@example.com",
                "birthday": "1990-05-05",
            },
        }
    )


async def test_crash_before_and_after_hand_off_is_repaired(settings: Settings) -> None:
    engine = get_engine(settings.effective_database_url)
    services = Services.from_settings(settings, engine=engine)
    with session_scope(engine) as session:
        # committed, then the API process died before the hand-off
        ingest_event(session, purchase("e-lost", "r1"))
        # handed off, then the process died before it could mark the row relayed
        row, _ = ingest_event(session, purchase("e-twice", "r2"))
        twice = wire_event(row)
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(binary("temporal-test-server")),
        data_converter=pydantic_data_converter,
    )
    try:
        async with build_worker(env.client, services, task_queue=QUEUE):
            await deliver(env.client, twice, task_queue=QUEUE, search_attributes=False)
            relayed = await relay_pending(
                engine, env.client, task_queue=QUEUE, search_attributes=False
            )
            again = await relay_pending(
                engine, env.client, task_queue=QUEUE, search_attributes=False
            )
            await env.sleep(timedelta(seconds=5))
    finally:
        await env.shutdown()
    assert (relayed, again) == (2, 0)
    with session_scope(engine) as session:
        assert all(e.relayed_at is not None for e in session.exec(select(InboundEvent)).all())
        for customer in ("r1", "r2"):
            runs = session.exec(
                select(JourneyRun.journey).where(JourneyRun.customer_id == customer)
            ).all()
            sent = session.exec(
                select(Message).where(
                    Message.customer_id == customer, Message.template == "order_confirmation"
                )
            ).all()
            assert sorted(runs) == ["birthday", "post_purchase", "reactivation"], customer
            assert [m.state for m in sent] == ["sent"], customer
