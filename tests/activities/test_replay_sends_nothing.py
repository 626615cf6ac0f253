"""Replaying a journey's history re-runs its workflow code and sends nothing to the provider.

The post_purchase run lives inside its customer workflow (workflows/inline.py): that workflow's
history, still running (other runs are held for weeks), is the one replayed."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlmodel import select
from temporalio.api.enums.v1 import EventType
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from activities.services import Services
from tests.conftest import ROOT
from tests.fakes import FakeSendGrid
from tests.time_skipping import time_skipping
from trouw.domain.db.engine import make_engine, migrate, session_scope
from trouw.domain.db.models import JourneyRun, Message
from trouw.domain.ingest import EventIn, ProductIn, ingest_event, upsert_product, wire_event
from trouw.language.contracts import customer_workflow_id
from trouw.providers import aclose_provider
from trouw.settings import Settings
from trouw.stack.temporal import deliver
from trouw.stack.worker import WORKFLOWS, build_worker, workflow_runner

TASK_QUEUE = "replay-sends-nothing"
JOURNEY_ID = "journey:k-3001:post_purchase:P-3001"


def marker_data(event: Any) -> bytes:
    return b"".join(p.data for p in event.marker_recorded_event_attributes.details["data"].payloads)


async def test_replaying_a_post_purchase_history_sends_nothing(tmp_path: Path) -> None:
    with FakeSendGrid() as sendgrid:
        settings = Settings(
            home=tmp_path / "home",
            database_url=f"sqlite:///{tmp_path / 'replay.db'}",
            journeys_dir=ROOT / "journeys",
            templates_dir=ROOT / "templates",
            signing_keys=["test-key"],
            email_provider="sendgrid",
            sendgrid_api_key=sendgrid.api_key,
            sendgrid_host=sendgrid.url,
            send_rate_per_second=10_000,
            task_queue=TASK_QUEUE,
            # The test server's clock is the wall clock: without sending hours, a run started
            # at night sends on the same schedule as one started by day.
            sending_hours_email_service="always",
        )
        engine = make_engine(settings.effective_database_url)
        migrate(engine)
        services = Services.from_settings(settings, engine=engine)
        async with time_skipping() as env:
            async with build_worker(env.client, services, task_queue=TASK_QUEUE):
                now = await env.get_current_time()
                with session_scope(engine) as session:
                    upsert_product(
                        session,
                        ProductIn(
                            sku="LAWN-10",
                            name="Gazonmest 10 kg",
                            care={"summary": "Strooi op een droog gazon.", "tips": ["Water."]},
                        ),
                    )
                    row, _new = ingest_event(
                        session,
                        EventIn(
                            id="evt-3001",
                            type="purchase",
                            customer="k-3001",
                            order="P-3001",
                            channel="pos",
                            at=now,
                            lines=[{"sku": "LAWN-10", "unit_price": "24.95"}],
                            profile={"id": "k-3001", "first_name": "An", "email": "an@example.com"},
                        ),
                        now=now,
                    )
                    event = wire_event(row)
                await deliver(env.client, event, task_queue=TASK_QUEUE, search_attributes=False)
                handle = env.client.get_workflow_handle(customer_workflow_id("k-3001"))
                await env.sleep(timedelta(days=10))  # past the tips (1 d) and the review (7 d)
                history = await handle.fetch_history()
            for provider in services._providers.values():
                await aclose_provider(provider)

        with session_scope(engine) as session:
            sent = session.exec(
                select(Message.template).where(
                    Message.workflow_id == JOURNEY_ID, Message.state == "sent"
                )
            ).all()
            run = session.exec(select(JourneyRun).where(JourneyRun.workflow_id == JOURNEY_ID)).one()
        assert run.status == "completed"
        assert sorted(sent) == ["care_tips", "order_confirmation", "review_request"]
        journey_keys = [
            key
            for key in (m["custom_args"]["message_key"] for m in sendgrid.mails)
            if key.startswith(JOURNEY_ID)
        ]
        assert len(journey_keys) == 3 == len(set(journey_keys))
        # Each send's first attempt is a local activity: its marker holds the result a replay
        # reads back instead of sending.
        markers = [
            e
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
            and b'"send_message"' in marker_data(e)
        ]
        assert len(markers) == 3  # the customer's only sends in these 10 days

        before = len(sendgrid.requests)
        replayer = Replayer(
            workflows=list(WORKFLOWS),
            data_converter=pydantic_data_converter,
            workflow_runner=workflow_runner(),
        )
        replayed = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert replayed.replay_failure is None
        await asyncio.sleep(0.5)  # a send from workflow code would have reached the fake by now
        assert len(sendgrid.requests) == before, "replay must never reach the provider"
        engine.dispose()
