"""A worker SIGKILLed while the provider holds a send: the next worker asks SendGrid and sends
nothing again, whatever the resend setting."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select

from tests.conftest import ROOT
from tests.e2e.test_slice import free_port
from tests.fakes import FakeSendGrid
from tests.worker_process import start_worker, stop
from trouw.domain.db.engine import get_engine, session_scope
from trouw.domain.db.models import Message
from trouw.domain.ingest import EventIn, ingest_event
from trouw.settings import Settings
from trouw.stack.relay import relay_pending
from trouw.stack.temporal import (
    connect,
    register_search_attributes,
    start_dev_server,
    wait_for_port,
)

pytestmark = pytest.mark.slow

HOLD_SECONDS = 8.0  # the fake keeps the first answer this long: the worker dies meanwhile


@pytest.fixture
def sendgrid() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as fake:
        yield fake


def kill_settings(tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database_url=f"sqlite:///{tmp_path / 'kill.db'}",
        journeys_dir=ROOT / "journeys",
        templates_dir=ROOT / "templates",
        temporal_port=free_port(),
        temporal_ui_port=free_port(),
        temporal_persist=False,
        signing_keys=["e2e-key"],
        task_queue=f"trouw-kill-{tmp_path.name}",
    )


def start_worker_sending(
    settings: Settings, sendgrid: FakeSendGrid, tmp_path: Path, name: str, *, resend: bool
) -> subprocess.Popen[bytes]:
    """A worker process that sends through the fake SendGrid."""
    return start_worker(
        settings,
        tmp_path,
        name,
        {
            "TROUW_EMAIL_PROVIDER": "sendgrid",
            "TROUW_SENDGRID_API_KEY": sendgrid.api_key,
            "TROUW_SENDGRID_HOST": sendgrid.url,
            "TROUW_RESEND_UNKNOWN_TRANSACTIONAL": "true" if resend else "false",
        },
    )


async def wait_for(predicate: object, *, within: float, what: str) -> object:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        value = predicate()  # type: ignore[operator]
        if value:
            return value
        await asyncio.sleep(0.25)
    raise AssertionError(f"{what}: not within {within:.0f} s")


def confirmation(settings: Settings) -> Message | None:
    with session_scope(get_engine(settings.effective_database_url)) as session:
        row = session.exec(
            select(Message).where(
                Message.customer_id == "k-4001", Message.template == "order_confirmation"
            )
        ).first()
        if row is not None:
            session.expunge(row)
        return row


@pytest.mark.parametrize("resend", [False, True], ids=["no-resend", "resend"])
async def test_worker_killed_mid_send_is_reconciled_with_the_provider(
    resend: bool, tmp_path: Path, sendgrid: FakeSendGrid
) -> None:
    settings = kill_settings(tmp_path)
    engine = get_engine(settings.effective_database_url)
    with session_scope(engine) as session:
        ingest_event(
            session,
            EventIn(
                id="shop-4001",
                type="purchase",
                customer="k-4001",
                order="W-4001",
                channel="web",
                lines=[{"sku": "LAWN-10", "unit_price": "24.95", "name": "Gazonmest 10 kg"}],
                profile={"id": "k-4001", "first_name": "Bart", "email": "bart@example.com"},
            ),
        )
    sendgrid.hang_next(HOLD_SECONDS)
    server = start_dev_server(settings)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        await wait_for_port("127.0.0.1", settings.temporal_port, within=60, process=server.process)
        client = await connect(settings)
        await register_search_attributes(client, settings.temporal_namespace)
        workers.append(
            start_worker_sending(settings, sendgrid, tmp_path, "worker-1", resend=resend)
        )
        await relay_pending(engine, client, task_queue=settings.task_queue)

        await wait_for(lambda: sendgrid.requests, within=60, what="the first send request")
        row = confirmation(settings)
        assert row is not None and row.state == "in_flight"
        os.kill(workers[0].pid, signal.SIGKILL)  # the provider has the mail; the worker dies
        assert workers[0].wait(timeout=10) == -signal.SIGKILL

        workers.append(
            start_worker_sending(settings, sendgrid, tmp_path, "worker-2", resend=resend)
        )
        final = await wait_for(
            lambda: (r := confirmation(settings)) is not None and r.state in ("sent", "unknown"),
            within=100,
            what="a final ledger state for the confirmation",
        )
        assert final
        await asyncio.sleep(3)  # a duplicate would have reached the fake by now
    finally:
        for worker in workers:
            stop(worker)
        server.stop()

    row = confirmation(settings)
    assert row is not None
    keys = [
        mail["custom_args"]["message_key"]
        for mail in sendgrid.mails
        if mail["custom_args"]["message_key"] == row.message_key
    ]
    statuses = [entry["status"] for entry in row.status_history]
    # SendGrid took the held request; the Email Activity API (which the fake answers, and
    # which does not deduplicate) shows it, so neither setting sends a second copy.
    assert len(keys) == 1
    assert len(sendgrid.activity) == 1
    assert row.state == "sent"
    assert "outcome_unknown" in statuses
    assert statuses[-1] == "reconciled"
    assert "resending" not in statuses
