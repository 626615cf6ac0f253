"""The outbox relay: a crash between the database commit and the hand-off never loses or doubles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.services import Services
from tests.e2e.test_slice import free_port
from tests.time_skipping import time_skipping
from trouw.domain.db.engine import get_engine, session_scope
from trouw.domain.db.models import (
    InboundEvent,
    JourneyRun,
    JourneyVersion,
    Message,
    WorkerPresence,
)
from trouw.domain.ingest import EventIn, ingest_event, wire_event
from trouw.language.contracts import customer_workflow_id
from trouw.language.journey.model import Journey
from trouw.settings import Settings
from trouw.stack.relay import Listeners, parked_events, record_failure, relay_pending
from trouw.stack.temporal import binary, deliver
from trouw.stack.worker import build_worker

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
    async with time_skipping() as env:
        async with build_worker(env.client, services, task_queue=QUEUE):
            await deliver(env.client, twice, task_queue=QUEUE, search_attributes=False)
            relayed = await relay_pending(
                engine, env.client, task_queue=QUEUE, search_attributes=False
            )
            again = await relay_pending(
                engine, env.client, task_queue=QUEUE, search_attributes=False
            )
            await env.sleep(timedelta(seconds=5))
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


async def test_poison_event_is_retried_then_parked_and_never_blocks_others(
    settings: Settings, engine: Engine
) -> None:
    services = Services.from_settings(settings, engine=engine)
    with session_scope(engine) as session:
        ingest_event(session, purchase("e-good-1", "g1"))
        poison, _ = ingest_event(session, purchase("e-poison", "p1"))
        # a stored payload the hand-off cannot send (written by a bad import, say)
        poison.payload = {**poison.payload, "skus": [{"not": "a sku"}]}
        session.add(poison)
        ingest_event(session, purchase("e-good-2", "g2"))
    t0 = datetime.now(UTC)
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(binary("temporal-test-server")),
        data_converter=pydantic_data_converter,
    )

    async def relay(at: datetime) -> int:
        return await relay_pending(
            engine, env.client, task_queue=QUEUE, search_attributes=False, max_attempts=3, now=at
        )

    def stored() -> InboundEvent:
        with session_scope(engine) as session:
            return session.exec(
                select(InboundEvent).where(InboundEvent.source_id == "e-poison")
            ).one()

    try:
        async with build_worker(env.client, services, task_queue=QUEUE):
            first = await relay(t0)
            after_first = stored()
            backing_off = await relay(t0)  # too early for the retry
            rounds = [await relay(t0 + timedelta(hours=h)) for h in (1, 2, 3)]
            await env.sleep(timedelta(seconds=5))
    finally:
        await env.shutdown()
    assert first == 2  # both good events went through in the round the poison one failed
    assert (after_first.relay_attempts, after_first.parked_at) == (1, None)
    assert after_first.relay_next_at is not None and after_first.relay_next_at > t0
    assert backing_off == 0 and rounds == [0, 0, 0]
    parked = stored()
    assert parked.relay_attempts == 3  # parked at the third attempt, never tried again
    assert parked.parked_at is not None and parked.relayed_at is None
    assert parked.relay_error is not None and "ValidationError" in parked.relay_error
    assert [e.source_id for e in parked_events(engine)] == ["e-poison"]
    with session_scope(engine) as session:
        for customer in ("g1", "g2"):
            sent = session.exec(
                select(Message).where(
                    Message.customer_id == customer, Message.template == "order_confirmation"
                )
            ).all()
            assert [m.state for m in sent] == ["sent"], customer
        assert not session.exec(select(JourneyRun).where(JourneyRun.customer_id == "p1")).all()


def test_status_lists_parked_events(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from trouw.commands.cli import run_command

    engine = get_engine(settings.effective_database_url)
    with session_scope(engine) as session:
        ingest_event(session, purchase("e-big", "s1"))
        ingest_event(session, purchase("e-fine", "s2"))
    now = datetime.now(UTC)
    assert not record_failure(engine, "e-big", "RPCError: too big", max_attempts=2, now=now)
    monkeypatch.setenv("TROUW_HOME", str(settings.home))
    monkeypatch.setenv("TROUW_DATABASE_URL", settings.effective_database_url)
    monkeypatch.setenv("TROUW_JOURNEYS_DIR", str(settings.journeys_dir))
    monkeypatch.setenv("TROUW_TEMPLATES_DIR", str(settings.templates_dir))
    monkeypatch.setenv("TROUW_TEMPORAL_PORT", str(free_port()))  # no Temporal: exit 1 anyway
    assert run_command(["status"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert "ok    parked events: 0 parked event(s)" in out  # retrying is not parked yet
    assert any(line.startswith("ok    relay: 2 event(s) waiting, oldest received ") for line in out)
    assert record_failure(engine, "e-big", "RPCError: too big", max_attempts=2, now=now)
    assert run_command(["status"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert "FAIL  parked events: 1 parked event(s)" in out
    assert (
        "      e-big (purchase, customer s1): parked after 2 attempt(s): RPCError: too big" in out
    )
    assert any(line.startswith("ok    relay: 1 event(s) waiting, oldest received ") for line in out)


def custom(event_id: str, customer: str, name: str) -> EventIn:
    return EventIn.model_validate(
        {
            "id": event_id,
            "type": "custom",
            "name": name,
            "customer": customer,
            "at": datetime.now(UTC),
            "profile": {"id": customer, "email": f"{customer}@example.com"},
        }
    )


async def _signals(client: Client, customer: str) -> int | None:
    """Signals in the customer's workflow history; None when it never started."""
    handle = client.get_workflow_handle(customer_workflow_id(customer))
    try:
        history = await handle.fetch_history()
    except RPCError:
        return None
    return sum(
        event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        for event in history.events
    )


async def test_an_event_nobody_listens_to_is_marked_relayed_without_a_signal(
    settings: Settings, engine: Engine
) -> None:
    services = Services.from_settings(settings, engine=engine)
    with session_scope(engine) as session:
        ingest_event(session, purchase("e-heard", "h1"))  # journeys start on it
        ingest_event(session, custom("e-unheard", "u1", "nobody_listens"))
        # A run of a version no longer in the catalog exits on custom:old_exit.
        session.add(
            JourneyVersion(version="v-old", journey="voucher_expiry", listens=["custom:old_exit"])
        )
        session.add(
            JourneyRun(
                workflow_id="journey:o1:voucher_expiry:old",
                customer_id="o1",
                journey="voucher_expiry",
                version="v-old",
                reentry_key="old",
                event_source_id="e-before",
                started_at=datetime.now(UTC),
            )
        )
        ingest_event(session, custom("e-old-exit", "o1", "old_exit"))
        ingest_event(session, custom("e-no-run", "o2", "old_exit"))  # o2 has no such run
        # v1's voucher_expiring was signalled, match_journeys has not answered it yet: the
        # voucher_expiry run it may start exits on voucher_redeemed. v2 has nothing of it.
        moment = datetime.now(UTC)
        session.add(
            InboundEvent(
                source_id="e-expiring",
                type="voucher_expiring",
                customer_id="v1",
                occurred_at=moment,
                relayed_at=moment,
            )
        )
        for customer in ("v1", "v2"):
            session.add(
                InboundEvent(
                    source_id=f"e-redeemed-{customer}",
                    type="voucher_redeemed",
                    customer_id=customer,
                    occurred_at=moment,
                )
            )
    async with time_skipping() as env:
        async with build_worker(env.client, services, task_queue=QUEUE):
            relayed = await relay_pending(
                engine,
                env.client,
                task_queue=QUEUE,
                search_attributes=False,
                listeners=Listeners(engine, services.content),
            )
            customers = ("h1", "u1", "o1", "o2", "v1", "v2")
            signals = {c: await _signals(env.client, c) for c in customers}
    assert relayed == 6
    with session_scope(engine) as session:
        assert all(e.relayed_at is not None for e in session.exec(select(InboundEvent)).all())
    assert signals == {"h1": 1, "u1": None, "o1": 1, "o2": None, "v1": 1, "v2": None}


class _Content:
    """A content source whose journeys a test swaps (as a publish does)."""

    def __init__(self, *journeys: Journey) -> None:
        self.journeys = {journey.name: journey for journey in journeys}

    def latest(self) -> Any:
        catalog = SimpleNamespace(journeys=lambda: dict(self.journeys))
        return SimpleNamespace(catalog=catalog)

    current = latest


def _journey(trigger: str) -> Journey:
    return Journey.model_validate(
        {
            "journey": "poll",
            "trigger": {"event": trigger},
            "steps": [{"id": "mail", "send": "email", "template": "x"}],
        }
    )


def test_a_published_journey_is_heard_at_once_and_the_one_it_replaced_for_a_grace(
    engine: Engine,
) -> None:
    content = _Content(_journey("custom:first"))
    now = [0.0]
    listeners = Listeners(engine, content, grace=60.0, clock=lambda: now[0])  # type: ignore[arg-type]
    heard = listeners().interest
    assert heard.wants("custom:first") and not heard.wants("custom:second")
    content.journeys["poll"] = _journey("custom:second")  # published: the next round sees it
    now[0] = 30.0
    heard = listeners().interest
    # A worker with the older copy may still start the first version for a while.
    assert heard.wants("custom:second") and heard.wants("custom:first")
    now[0] = 91.0
    heard = listeners().interest
    assert heard.wants("custom:second") and not heard.wants("custom:first")


def _presence(identity: str, types: list[str] | None, *, seen: datetime) -> WorkerPresence:
    return WorkerPresence(
        identity=identity, host="h", pid=1, task_queue=QUEUE, event_types=types, seen_at=seen
    )


def test_a_type_another_worker_hears_is_heard_here_for_everyone(engine: Engine) -> None:
    now = datetime.now(UTC)
    listeners = Listeners(engine, _Content(_journey("custom:first")), identity="me")  # type: ignore[arg-type]
    with session_scope(engine) as session:
        # This worker's own row says nothing yet: it does not widen its own judgement.
        session.add(_presence("me", None, seen=now))
        session.add(_presence("other", ["custom:first", "custom:elsewhere"], seen=now))
        session.add(_presence("gone", None, seen=now - timedelta(hours=1)))
    heard = listeners()
    assert heard.for_everyone("custom:elsewhere") and heard.for_everyone("custom:first")
    assert not heard.interest.wants("custom:nobody")
    with session_scope(engine) as session:
        # A worker of an older release names no types: every type is heard.
        session.add(_presence("older", None, seen=now))
    assert listeners().for_everyone("custom:nobody")
