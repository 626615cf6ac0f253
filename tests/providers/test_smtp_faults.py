"""The SMTP provider against a server that fails at every phase: one total deadline per call,
and an outcome classified by the phase the call reached (only "after the final dot" is unknown)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from tests.fakes.faulty_smtp import Fault, FaultySmtpServer
from trouw.providers.base import (
    AmbiguousDeliveryError,
    DeliveryError,
    OutgoingEmail,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from trouw.providers.smtp import SmtpProvider

DEADLINE = 1.0  # the provider's total budget per call, in seconds
HOLD = 3 * DEADLINE  # a fault that holds an answer holds it well past the deadline


@pytest.fixture
def server() -> Iterator[FaultySmtpServer]:
    with FaultySmtpServer() as fake:
        yield fake


def provider(server: FaultySmtpServer) -> SmtpProvider:
    return SmtpProvider(
        host=server.host,
        port=server.port,
        email_from="Tuincentrum De Linde <hallo@delinde.example>",
        starttls=False,
        timeout=DEADLINE,
    )


async def settle(server: FaultySmtpServer, seconds: float) -> None:
    """Give a server-side fault time to play out (a held answer, a slow session)."""
    await asyncio.sleep(seconds)
    await asyncio.sleep(0.2)


@pytest.mark.parametrize(
    "fault",
    [
        Fault("refuse"),
        Fault("reply", "connect", "421 4.3.2 Service not available"),
        Fault("drop", "ehlo"),
        Fault("reply", "mail", "451 4.3.0 Try again later"),
        Fault("drop", "mail"),
        Fault("reply", "rcpt", "451 4.7.1 Greylisted"),
        Fault("drop", "rcpt"),
        Fault("reply", "data", "421 4.3.2 Closing connection"),
        Fault("drop", "data"),
        Fault("reply", "dot", "451 4.3.0 Queue write failed"),
    ],
    ids=lambda fault: fault.label,
)
async def test_failures_before_the_final_dot_or_with_an_answer_are_not_accepted(
    fault: Fault, server: FaultySmtpServer, email: OutgoingEmail
) -> None:
    server.script(fault)
    with pytest.raises(TransientDeliveryError):
        await provider(server).send_email(email)
    assert server.copies == []
    # Not accepted means safe to send again: the retry delivers exactly one copy.
    await provider(server).send_email(email)
    assert len(server.copies) == 1


async def test_a_disconnect_at_the_data_command_is_not_an_unknown_outcome(
    server: FaultySmtpServer, email: OutgoingEmail
) -> None:
    # Reproduces: a disconnect at DATA (no byte of the message sent) was recorded as "the
    # provider may have sent it", and service mail was then never resent.
    server.script(Fault("drop", "data"))
    with pytest.raises(DeliveryError) as caught:
        await provider(server).send_email(email)
    assert not isinstance(caught.value, AmbiguousDeliveryError)
    assert isinstance(caught.value, TransientDeliveryError)
    assert caught.value.code == "data"


async def test_a_5xx_answer_is_permanent_and_nothing_was_taken(
    server: FaultySmtpServer, email: OutgoingEmail
) -> None:
    server.script(Fault("reply", "mail", "554 5.7.1 Sender rejected"))
    with pytest.raises(PermanentDeliveryError):
        await provider(server).send_email(email)
    assert server.copies == []


async def test_only_a_connection_lost_after_the_final_dot_is_unknown(
    server: FaultySmtpServer, email: OutgoingEmail
) -> None:
    server.script(Fault("drop", "dot"))
    with pytest.raises(AmbiguousDeliveryError) as caught:
        await provider(server).send_email(email)
    assert caught.value.code == "reply"
    assert len(server.copies) == 1 and not server.copies[0].answered


async def test_an_answer_held_past_the_deadline_after_the_dot_is_unknown(
    server: FaultySmtpServer, email: OutgoingEmail
) -> None:
    server.script(Fault("hold", "dot", seconds=HOLD))
    with pytest.raises(AmbiguousDeliveryError) as caught:
        await provider(server).send_email(email)
    assert "deadline passed" in caught.value.detail
    await settle(server, HOLD)
    assert len(server.copies) == 1
    assert not server.copies[0].answered, "the client hung up before the held answer"


async def test_a_slow_server_cannot_stretch_a_call_past_its_deadline(
    server: FaultySmtpServer, email: OutgoingEmail
) -> None:
    # Reproduces the orphaned session: every reply comes in under the per-operation timeout,
    # so smtplib alone kept one session open for minutes and delivered after its lease ended.
    server.script(Fault("slow", seconds=DEADLINE / 3))
    with pytest.raises(TransientDeliveryError) as caught:
        await provider(server).send_email(email)
    assert caught.value.code == "deadline"
    await settle(server, 8 * DEADLINE / 3)  # long enough for the whole slow session
    assert server.copies == [], "the aborted call must not deliver later"
    connection = server.connections[-1]
    assert connection.closed_at is not None
    assert "dot" not in connection.commands


async def test_a_held_answer_before_the_dot_ends_the_call_as_not_accepted(
    server: FaultySmtpServer, email: OutgoingEmail
) -> None:
    server.script(Fault("hold", "mail", seconds=HOLD))
    with pytest.raises(TransientDeliveryError) as caught:
        await provider(server).send_email(email)
    assert caught.value.code == "deadline"
    await settle(server, HOLD)
    assert server.copies == []
    assert server.connections[-1].commands == ["ehlo", "mail"]


async def test_a_cancelled_send_leaves_no_thread_that_can_still_send(
    server: FaultySmtpServer, email: OutgoingEmail
) -> None:
    # The activity is cancelled (Temporal's timeout) while the server holds MAIL's answer; the
    # session must end with it, not deliver once the server answers.
    server.script(Fault("hold", "mail", seconds=DEADLINE / 2))
    slow = SmtpProvider(
        host=server.host,
        port=server.port,
        email_from="hallo@delinde.example",
        starttls=False,
        timeout=30.0,
    )
    task = asyncio.create_task(slow.send_email(email))
    for _ in range(200):  # until the server holds the answer to MAIL
        if server.connections and "mail" in server.connections[-1].commands:
            break
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await settle(server, DEADLINE)
    assert server.copies == []
    assert server.connections[-1].closed_at is not None


async def test_an_earlier_deadline_from_the_caller_wins(
    server: FaultySmtpServer, email: OutgoingEmail
) -> None:
    server.script(Fault("hold", "mail", seconds=HOLD))
    relaxed = SmtpProvider(
        host=server.host,
        port=server.port,
        email_from="hallo@delinde.example",
        starttls=False,
        timeout=60.0,
    )
    with pytest.raises(TransientDeliveryError) as caught:
        await relaxed.send_email(email, deadline=time.monotonic() + DEADLINE)
    assert caught.value.code == "deadline"


async def test_no_call_starts_when_its_deadline_has_passed(
    server: FaultySmtpServer, email: OutgoingEmail
) -> None:
    with pytest.raises(TransientDeliveryError) as caught:
        await provider(server).send_email(email, deadline=time.monotonic() - 1)
    assert caught.value.code == "deadline"
    assert server.connections == [] or all(c.number == 0 for c in server.connections)
