"""The relay's judgement under faults: a relay killed inside its round, a run recorded while
its customer's events are judged. Each prints what was lost or doubled."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import col, select
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.services import Services
from tests.conftest import ROOT
from tests.fakes import FakeSendGrid
from tests.reliability.relay_kill import KILLED, POINTS
from tests.workflows.test_relay import _signals, custom, purchase
from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import InboundEvent, JourneyRun, Message
from trouw.domain.ingest import ingest_event
from trouw.domain.interest import mark_matched, register_versions
from trouw.language.journey.model import Journey
from trouw.providers import aclose_provider
from trouw.settings import Settings
from trouw.stack import relay
from trouw.stack.relay import Listed, Listeners, relay_pending
from trouw.stack.temporal import binary
from trouw.stack.worker import build_worker

QUEUE = "relay-faults"
HEARD = [f"k{n}" for n in range(4)]  # purchases: journeys start on them
UNHEARD = [f"n{n}" for n in range(4)]  # custom events no journey and no run listens to


def child_url(engine: Engine) -> str:
    """The database URL a child process reaches this test's database with (its own schema on
    PostgreSQL, which the fixture sets by connect_args)."""
    url = engine.url.render_as_string(hide_password=False)
    if engine.dialect.name != "postgresql":
        return url
    with engine.connect() as connection:
        schema = connection.execute(sa.text("select current_schema()")).scalar_one()
    return f"{url}?options=-csearch_path%3D{schema}"


def relayed(engine: Engine) -> set[str]:
    with session_scope(engine) as session:
        return set(
            session.exec(
                select(InboundEvent.source_id).where(col(InboundEvent.relayed_at).is_not(None))
            ).all()
        )


@pytest.mark.parametrize("point", POINTS)
async def test_a_relay_killed_inside_its_round_loses_and_doubles_nothing(
    point: str, settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    # Copies are counted where they arrive: a SendGrid fake that keeps every request it gets
    # (no deduplication), not the ledger, which holds one row per message key whatever happens.
    with FakeSendGrid() as sendgrid:
        await _kill_and_recover(point, settings, engine, tmp_path, sendgrid)


async def _kill_and_recover(
    point: str, settings: Settings, engine: Engine, tmp_path: Path, sendgrid: FakeSendGrid
) -> None:
    settings = settings.model_copy(
        update={
            "email_provider": "sendgrid",
            "sendgrid_api_key": sendgrid.api_key,
            "sendgrid_host": sendgrid.url,
            "send_rate_per_second": 10_000,
        }
    )
    services = Services.from_settings(settings, engine=engine)
    with session_scope(engine) as session:
        for customer in HEARD:
            ingest_event(session, purchase(f"e-{customer}", customer))
        for customer in UNHEARD:
            ingest_event(session, custom(f"e-{customer}", customer, "nobody_listens"))
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(binary("temporal-test-server")),
        data_converter=pydantic_data_converter,
    )
    try:
        target = env.client.service_client.config.target_host
        command = [sys.executable, "-m", "tests.reliability.relay_kill"]
        child = await asyncio.to_thread(
            subprocess.run,
            [*command, child_url(engine), target, QUEUE, point, str(tmp_path / "child")],
            cwd=ROOT,
            capture_output=True,
            timeout=180,
        )
        assert child.returncode == KILLED, child.stderr.decode()[-3000:]
        left = relayed(engine)  # what the killed round had marked
        started_by_child = [c for c in HEARD if await _signals(env.client, c) is not None]
        async with build_worker(env.client, services, task_queue=QUEUE):
            await relay_pending(
                engine,
                env.client,
                task_queue=QUEUE,
                search_attributes=False,
                listeners=Listeners(engine, services.content),
            )
            await env.sleep(timedelta(seconds=5))
            signals = {c: await _signals(env.client, c) for c in HEARD + UNHEARD}
    finally:
        await env.shutdown()
        for provider in services._providers.values():
            await aclose_provider(provider)
    with session_scope(engine) as session:
        sent = {
            customer: len(
                session.exec(
                    select(Message).where(
                        Message.customer_id == customer,
                        Message.template == "order_confirmation",
                        Message.state == "sent",
                    )
                ).all()
            )
            for customer in HEARD
        }
    keys = [m["custom_args"]["message_key"] for m in sendgrid.mails]
    copies = {c: sum(k.startswith(f"journey:{c}:post_purchase:") for k in keys) for c in HEARD}
    lost = [c for c in HEARD if copies[c] == 0 or sent[c] == 0]
    duplicated = [c for c in HEARD if copies[c] > 1]
    twice = [c for c in HEARD if signals[c] == 2]
    unheard_signalled = [c for c in UNHEARD if signals[c] is not None]
    print(
        f"relay killed at {point}: {len(HEARD)} heard and {len(UNHEARD)} unheard events; "
        f"marked before the kill {len(left)}; confirmations at the SendGrid fake "
        f"{sum(copies.values())}, lost {len(lost)}, "
        f"duplicated {len(duplicated)}; heard events signalled twice {len(twice)} "
        f"(the workflow dropped the repeat); unheard events signalled {len(unheard_signalled)}"
    )
    # The kill hit the window it names.
    expected_left = {"judged": set(), "unheard-marked": {f"e-{c}" for c in UNHEARD}}
    assert left == expected_left.get(point, {f"e-{c}" for c in UNHEARD})
    assert len(started_by_child) == (2 if point == "mid-batch" else 0)
    # And nothing was lost, doubled or signalled that nobody hears.
    assert relayed(engine) == {f"e-{c}" for c in HEARD + UNHEARD}
    assert (lost, duplicated, unheard_signalled) == ([], [], [])
    assert sorted(twice) == sorted(started_by_child)


def _start_and_stop() -> Journey:
    """A journey that starts on custom:start; its runs exit on custom:stop."""
    return Journey.model_validate(
        {
            "journey": "race",
            "trigger": {"event": "custom:start"},
            "settings": {"exit_on": [{"event": "custom:stop"}]},
            "steps": [
                {"id": "later", "wait": "30d"},
                {"id": "mail", "send": "email", "template": "x"},
            ],
        }
    )


class _Content:
    def __init__(self, journey: Journey) -> None:
        self.journey = journey

    def latest(self) -> Any:
        from types import SimpleNamespace

        catalog = SimpleNamespace(journeys=lambda: {self.journey.name: self.journey})
        return SimpleNamespace(catalog=catalog)


def test_a_run_recorded_while_its_customers_events_are_judged_is_heard(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the relay's order of reads is for: match_journeys answers the starting event
    and records its run in one transaction that commits between the relay's two reads (of
    unanswered starting events, of live runs). Whichever read comes first, the stop event must
    be heard; read the other way round on PostgreSQL, each read misses it."""
    journey = _start_and_stop()
    with session_scope(engine) as session:
        start, _ = ingest_event(session, custom("e-start", "c1", "start"))
        start.relayed_at = datetime.now(UTC)  # signalled, not answered by match_journeys yet
        session.add(start)
        stop, _ = ingest_event(session, custom("e-stop", "c1", "stop"))
        listed = [Listed(stop.id or 0, "c1", stop.type)]

    def match_commits() -> None:
        # What match_journeys writes for the starting event, in its one transaction.
        with session_scope(engine) as session:
            register_versions(session, [journey])
            session.add(
                JourneyRun(
                    workflow_id="journey:c1:race:e-start",
                    customer_id="c1",
                    journey="race",
                    version=journey.version,
                    reentry_key="e-start",
                    event_source_id="e-start",
                    started_at=datetime.now(UTC),
                )
            )
            mark_matched(session, "e-start", datetime.now(UTC))

    reads: list[str] = []

    def after_first_read(name: str, read: Any) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            answer = read(*args, **kwargs)
            reads.append(name)
            if len(reads) == 1:
                match_commits()
            return answer

        return wrapped

    monkeypatch.setattr(
        relay, "unmatched_starts", after_first_read("unmatched", relay.unmatched_starts)
    )
    monkeypatch.setattr(relay, "live_versions", after_first_read("live", relay.live_versions))
    judged = Listeners(engine, _Content(journey)).judge(listed)  # type: ignore[arg-type]
    print(f"reads in order {reads}; the stop event heard: {judged == [True]}")
    assert len(reads) == 2  # the commit fell between the two reads
    assert judged == [True]
