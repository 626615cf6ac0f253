"""A worker that dies holding a send: before its request left, the message waits for the
provider's listing lag (TROUW_SENDGRID_LOOKUP_SETTLE_SECONDS) and goes out once; after,
it is found and counted sent once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.engine import Engine
from sqlmodel import select
from temporalio.exceptions import ApplicationError

from activities.services import Services
from tests.activities.test_send_message import (
    add_customer,
    keys_sent,
    ledger,
    request,
    send,
    send_settings,
    send_with_retries,
)
from tests.fakes import FakeSendGrid, FakeTwilio
from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import Message
from trouw.providers import aclose_provider
from workflows.options import SEND_ATTEMPT_TIMEOUT

Build = Callable[..., Services]


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeSendGrid, FakeTwilio]]:
    with FakeSendGrid() as sendgrid, FakeTwilio() as twilio:
        yield sendgrid, twilio


@pytest.fixture
async def build(
    tmp_path: Path, engine: Engine, fakes: tuple[FakeSendGrid, FakeTwilio]
) -> AsyncIterator[Build]:
    """Services over the fakes with these settings changed."""
    made: list[Services] = []

    def services_with(**settings: Any) -> Services:
        base = send_settings(tmp_path, *fakes)
        services = Services.from_settings(base.model_copy(update=settings), engine=engine)
        made.append(services)
        add_customer(engine)
        return services

    yield services_with
    for services in made:
        for provider in services._providers.values():
            await aclose_provider(provider)


async def claim_then_die(services: Services, engine: Engine, key: str) -> None:
    """The first attempt commits its claim and dies before its request leaves (SIGKILL)."""
    provider: Any = services.provider("email")
    never = asyncio.Event()

    async def stuck(*_args: Any, **_kwargs: Any) -> Any:
        await never.wait()

    provider.send_email = stuck
    first = asyncio.create_task(send(services, request(key)))
    for _ in range(200):
        await asyncio.sleep(0.05)
        with session_scope(engine) as session:
            row = session.exec(select(Message).where(Message.message_key == key)).first()
            if row is not None and row.state == "in_flight":
                break
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    del provider.send_email  # the provider's own method again
    assert ledger(engine, key).state == "in_flight"


def age_attempt(engine: Engine, key: str, by: timedelta) -> None:
    """Move the attempt's start and lease back: Temporal retries it this much later."""
    with session_scope(engine) as session:
        row = session.exec(select(Message).where(Message.message_key == key)).one()
        moved = []
        for entry in row.status_history:
            entry = dict(entry)
            for field in ("started", "lease_until"):
                if entry.get(field):
                    entry[field] = (datetime.fromisoformat(entry[field]) - by).isoformat()
            moved.append(entry)
        row.status_history = moved
        session.add(row)


KEY = "journey:k-2001:post_purchase:W-2001#0:confirmation:email"


async def test_by_default_the_message_waits_for_sendgrids_listing_lag_then_goes_out_once(
    build: Build, engine: Engine, fakes: tuple[FakeSendGrid, FakeTwilio]
) -> None:
    sendgrid = fakes[0]
    services = build()
    assert services.provider("email").lookup_settle_seconds == 600  # type: ignore[attr-defined]
    await claim_then_die(services, engine, KEY)
    # Temporal retries the lost attempt after its start-to-close timeout: the lease is over.
    age_attempt(engine, KEY, SEND_ATTEMPT_TIMEOUT)
    with pytest.raises(ApplicationError) as raised:
        await send(services, request(KEY), attempt=2)
    assert raised.value.type == "OutcomeUnknownError"
    assert raised.value.next_retry_delay == timedelta(seconds=60)  # asks again each minute
    assert ledger(engine, KEY).state == "reconciling"
    assert keys_sent(sendgrid) == []
    # Ten minutes after the attempt, "not in Email Activity" is final: resent, once.
    age_attempt(engine, KEY, timedelta(seconds=600) - SEND_ATTEMPT_TIMEOUT)
    assert (await send_with_retries(services, request(KEY))).outcome == "sent"
    assert keys_sent(sendgrid) == [KEY]


async def test_with_the_listing_lag_set_the_first_attempt_after_the_lease_resends(
    build: Build, engine: Engine, fakes: tuple[FakeSendGrid, FakeTwilio]
) -> None:
    sendgrid = fakes[0]
    services = build(sendgrid_lookup_settle_seconds=5)
    await claim_then_die(services, engine, KEY)
    age_attempt(engine, KEY, SEND_ATTEMPT_TIMEOUT)
    with pytest.raises(ApplicationError) as raised:
        await send(services, request(KEY), attempt=2)
    assert raised.value.type == "ResendAfterUnknownOutcome"
    assert raised.value.next_retry_delay == timedelta(seconds=1)
    assert (await send(services, request(KEY), attempt=3)).outcome == "sent"
    assert keys_sent(sendgrid) == [KEY]
    statuses = [entry["status"] for entry in ledger(engine, KEY).status_history]
    assert statuses[-5:] == ["outcome_unknown", "resending", "allowed", "sending", "sent"]


def sends_counted(outcome: str) -> float:
    labels = {"channel": "email", "category": "transactional", "outcome": outcome}
    return REGISTRY.get_sample_value("trouw_sends_total", labels) or 0.0


async def test_a_message_its_dead_worker_did_hand_over_is_found_and_counted_sent_once(
    build: Build, engine: Engine, fakes: tuple[FakeSendGrid, FakeTwilio]
) -> None:
    sendgrid = fakes[0]
    services = build()
    before = sends_counted("sent")
    sendgrid.hang_next(1.0)  # SendGrid takes the request, and answers after the worker died
    first = asyncio.create_task(send(services, request(KEY)))
    for _ in range(200):
        if sendgrid.requests:
            break
        await asyncio.sleep(0.05)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.sleep(1.5)  # processed meanwhile: listed in Email Activity
    age_attempt(engine, KEY, SEND_ATTEMPT_TIMEOUT)
    result = await send(services, request(KEY), attempt=2)
    assert result.outcome == "sent"
    assert ledger(engine, KEY).status_history[-1]["status"] == "reconciled"
    assert keys_sent(sendgrid) == [KEY]
    # Counted by the attempt that settled it: the one that sent it recorded nothing.
    assert sends_counted("sent") == before + 1
    await send(services, request(KEY), attempt=3)
    assert sends_counted("sent") == before + 1
