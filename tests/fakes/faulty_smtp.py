"""An aiosmtpd server that injects faults per connection: refuses, answers 4xx/5xx, drops the
connection at any phase, holds an answer, or drips every reply slowly. It keeps every copy it
accepted (a message counts once the final dot is in, as a real MTA queues it then)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.fakes.smtp import ControlledServer, PortZeroController

FaultPhase = Literal["connect", "ehlo", "mail", "rcpt", "data", "dot"]
FaultKind = Literal["refuse", "drop", "reply", "hold", "slow"]


@dataclass(frozen=True)
class Fault:
    """What goes wrong on one connection. `phase` is the command whose answer is affected
    ("dot": the answer to the final dot of the message)."""

    kind: FaultKind
    phase: FaultPhase = "connect"
    reply: str = ""
    seconds: float = 0.0  # hold: how long the answer is held; slow: the delay before each reply

    @property
    def label(self) -> str:
        detail = self.reply.split(" ")[0] if self.reply else ""
        return "-".join(filter(None, [self.kind, self.phase, detail]))


def fault_catalogue(hold_seconds: float) -> list[Fault]:
    """Every fault the issue names, once: refused, 421/451/5xx, dropped at each phase, held
    past the deadline, and a server that answers every command slowly."""
    return [
        Fault("refuse"),
        Fault("reply", "connect", "421 4.3.2 Service not available"),
        Fault("drop", "ehlo"),
        Fault("reply", "mail", "451 4.3.0 Try again later"),
        Fault("drop", "mail"),
        Fault("reply", "rcpt", "451 4.7.1 Greylisted, try again"),
        Fault("drop", "rcpt"),
        Fault("reply", "data", "421 4.3.2 Closing connection"),
        Fault("drop", "data"),
        Fault("reply", "dot", "451 4.3.0 Queue write failed"),
        Fault("drop", "dot"),
        Fault("hold", "mail", seconds=hold_seconds),
        Fault("hold", "dot", seconds=hold_seconds),
        Fault("slow", seconds=hold_seconds / 4),
    ]


@dataclass
class Connection:
    """One client connection as the server saw it."""

    number: int
    fault: Fault | None
    opened_at: float  # time.monotonic()
    closed_at: float | None = None
    commands: list[str] = field(default_factory=list)


@dataclass
class Copy:
    """One message the server took responsibility for (its final dot arrived)."""

    connection: int
    message_id: str | None
    rcpt_tos: list[str]
    accepted_at: float  # time.monotonic()
    accepted_wall: float  # time.time(), to compare with the ledger's lease times
    answered: bool  # whether the 250 was written (False: dropped or held past the client)
    data: bytes

    @property
    def message(self) -> email.message.EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        return parsed


class _FaultySMTP(SMTP):
    def __init__(self, fake: FaultySmtpServer, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fake = fake
        self.conn = fake._open()

    @property
    def fault(self) -> Fault | None:
        return self.conn.fault

    def connection_lost(self, error: Exception | None) -> None:
        self.conn.closed_at = time.monotonic()
        super().connection_lost(error)

    async def push(self, status: Any) -> None:
        if self.fault is not None and self.fault.kind == "slow":
            await asyncio.sleep(self.fault.seconds)
        await super().push(status)

    async def _handle_client(self) -> None:
        fault = self.fault
        if fault is not None and fault.phase == "connect" and fault.kind in ("refuse", "reply"):
            if fault.kind == "reply":
                await super().push(fault.reply)
            assert self.transport is not None
            self.transport.close()
            return
        await super()._handle_client()

    async def _faulted(self, phase: FaultPhase) -> bool:
        """Apply this connection's fault at `phase`; True when the command must not run."""
        self.conn.commands.append(phase)
        fault = self.fault
        if fault is None or fault.phase != phase or phase == "dot":
            return False
        if fault.kind == "drop":
            assert self.transport is not None
            self.transport.abort()
            return True
        if fault.kind == "reply":
            await self.push(fault.reply)
            if fault.reply.startswith("421"):
                assert self.transport is not None
                self.transport.close()
            return True
        if fault.kind == "hold":
            await asyncio.sleep(fault.seconds)
        return False

    async def smtp_EHLO(self, hostname: str) -> None:
        if not await self._faulted("ehlo"):
            await super().smtp_EHLO(hostname)

    async def smtp_MAIL(self, arg: str | None) -> None:
        if not await self._faulted("mail"):
            await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str | None) -> None:
        if not await self._faulted("rcpt"):
            await super().smtp_RCPT(arg)

    async def smtp_DATA(self, arg: str) -> None:
        if not await self._faulted("data"):
            await super().smtp_DATA(arg)


class _Handler:
    def __init__(self, fake: FaultySmtpServer) -> None:
        self.fake = fake

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(server, _FaultySMTP)
        fault = server.fault
        if fault is not None and fault.phase == "dot" and fault.kind == "reply":
            return fault.reply  # refused: the server did not take it
        copy = self.fake._accept(server.conn, envelope)
        if fault is not None and fault.phase == "dot" and fault.kind == "drop":
            # Taken, but the answer never leaves: the RFC 1047 window.
            assert server.transport is not None
            server.transport.abort()
            return "250 OK"
        if fault is not None and fault.phase == "dot" and fault.kind == "hold":
            await asyncio.sleep(fault.seconds)  # cancelled when the client hangs up first
        copy.answered = server.transport is not None and not server.transport.is_closing()
        return "250 2.0.0 OK: queued"


class _Controller(PortZeroController):
    def __init__(self, fake: FaultySmtpServer, **kwargs: Any) -> None:
        self.fake = fake
        super().__init__(_Handler(fake), **kwargs)

    def factory(self) -> SMTP:
        return _FaultySMTP(self.fake, self.handler, **self.SMTP_kwargs)


class FaultySmtpServer(ControlledServer):
    """A context manager; `host`/`port` after start. Faults come from `script(...)` (the next
    connections, in order) and then from `plan(connection number)`, e.g. `random_faults`.
    It never deduplicates: every final dot that arrives is a copy in the recipient's box."""

    def __init__(self, *, plan: Callable[[int], Fault | None] | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self.plan = plan or (lambda number: None)
        self.lock = threading.Lock()
        self.connections: list[Connection] = []
        self.copies: list[Copy] = []
        self._scripted: list[Fault | None] = []
        # The readiness probe of aiosmtpd's Controller is connection number 0: never faulted.
        self._probe_seen = False
        self._controller = _Controller(self, hostname=self.host, port=0, ready_timeout=10)

    def script(self, *faults: Fault | None) -> None:
        with self.lock:
            self._scripted.extend(faults)

    def _open(self) -> Connection:
        with self.lock:
            if not self._probe_seen:
                self._probe_seen = True
                fault = None
            elif self._scripted:
                fault = self._scripted.pop(0)
            else:
                fault = self.plan(len(self.connections))
            conn = Connection(number=len(self.connections), fault=fault, opened_at=time.monotonic())
            self.connections.append(conn)
            return conn

    def _accept(self, conn: Connection, envelope: Envelope) -> Copy:
        data = bytes(envelope.original_content or b"")
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        copy = Copy(
            connection=conn.number,
            message_id=str(parsed["Message-ID"]) if parsed["Message-ID"] else None,
            rcpt_tos=list(envelope.rcpt_tos),
            accepted_at=time.monotonic(),
            accepted_wall=time.time(),
            answered=False,
            data=data,
        )
        with self.lock:
            self.copies.append(copy)
        return copy

    @property
    def open_connections(self) -> int:
        """Sessions in progress now: a kill now lands in a send window."""
        with self.lock:
            return sum(1 for c in self.connections if c.number > 0 and c.closed_at is None)

    def copies_by_message_id(self) -> Counter[str | None]:
        with self.lock:
            return Counter(copy.message_id for copy in self.copies)


def random_faults(
    rate: float, *, hold_seconds: float, seed: int = 11
) -> Callable[[int], Fault | None]:
    """A plan: each connection is faulty with probability `rate`, the fault drawn uniformly
    from fault_catalogue(hold_seconds). Seeded, so a run can be repeated."""
    rng = random.Random(seed)
    catalogue = fault_catalogue(hold_seconds)
    lock = threading.Lock()

    def plan(number: int) -> Fault | None:
        with lock:
            return rng.choice(catalogue) if rng.random() < rate else None

    return plan
