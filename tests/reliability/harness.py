"""Drives sends through real Temporal workers that are SIGKILLed into their send windows, against
a provider that fails on purpose and never deduplicates, then counts what reached recipients.

Used by tests/reliability/ (small counts, in CI) and bench/provider_faults.py (1,000 sends).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from sqlmodel import select

from tests.conftest import ROOT
from tests.e2e.test_slice import free_port
from tests.fakes import FakeSendGrid, FakeTwilio, ScriptedResponse
from tests.fakes.faulty_smtp import FaultySmtpServer, random_faults
from tests.reliability.workload import ReliabilitySendWorkflow
from trouw.domain.db.engine import get_engine, session_scope
from trouw.domain.db.models import Message
from trouw.domain.ingest import CustomerIn, EventIn, ingest_event
from trouw.language.contracts import SendMessageInput
from trouw.providers.mime import message_id_for
from trouw.settings import Settings
from trouw.stack.temporal import connect, start_dev_server, wait_for_port

# A Monday morning in Brussels: no quiet hours stand between a message and its send.
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
EMAIL_FROM = "Tuincentrum De Linde <hallo@delinde.example>"
ProviderName = Literal["smtp", "sendgrid", "twilio"]


@dataclass(frozen=True)
class Scenario:
    """One reliability run. Faulty calls draw from the provider's fault catalogue."""

    sends: int
    provider: ProviderName = "smtp"
    fault_rate: float = 0.3
    call_seconds: float = 3.0  # the provider call budget (TROUW_*_TIMEOUT_SECONDS)
    kill_every: tuple[float, float] | None = (2.0, 8.0)
    latency: tuple[float, float] = (0.2, 0.2)  # random pause before / after the provider call
    hold_only: bool = False  # every faulty call holds its answer past the deadline
    transactional_share: float = 0.5  # the rest are service messages (not resent when unknown)
    workers: int = 2
    concurrency: int = 8  # sends at once per worker
    seed: int = 11
    within: float = 900.0  # give up waiting for the workflows after this many seconds


@dataclass
class Report:
    """What happened to every message, counted from the recipient's side and the ledger's."""

    scenario: Scenario
    seconds: float = 0.0
    provider_calls: int = 0
    faulty_calls: int = 0
    kills: int = 0
    kills_in_send_window: int = 0
    delivered: int = 0  # messages with at least one copy
    copies: int = 0
    duplicated: int = 0  # messages with more than one copy
    extra_copies: int = 0
    extra_after_lost_answer: int = 0  # resent by the category rule after an unknown outcome
    extra_unexplained: int = 0  # anything else: must be 0
    orphaned_copies: int = 0  # accepted outside every lease of the message (SMTP): must be 0
    longest_accepted_call: float = 0.0  # connect to final dot, seen by the server (SMTP)
    lost_silently: int = 0  # no copy, and nothing in the ledger says so: must be 0
    lost_recorded: int = 0  # no copy, the ledger says unknown or failed
    unknown: int = 0  # final state unknown (the provider could not be asked or answer)
    unknown_delivered: int = 0  # of those, the recipient did get it
    unfinished: int = 0  # still claimed/in_flight/reconciling when the run ended
    failed: int = 0
    states: Counter[str] = field(default_factory=Counter)

    def lines(self) -> list[str]:
        s = self.scenario
        kills = f"{self.kills} ({self.kills_in_send_window} during a provider call)"
        return [
            f"provider {s.provider}: {s.sends} sends, {s.fault_rate:.0%} of calls faulty"
            + (" (all holding their answer past the deadline)" if s.hold_only else "")
            + f", call budget {s.call_seconds:g} s, latency up to {s.latency[0]:g} s before"
            + f" / {s.latency[1]:g} s after the call",
            f"  run: {self.seconds:.0f} s, {self.provider_calls} provider calls"
            f" ({self.faulty_calls} faulty), worker SIGKILLs: {kills}",
            f"  delivered: {self.delivered} messages, {self.copies} copies;"
            f" duplicated: {self.duplicated} messages, {self.extra_copies} extra copies"
            f" ({self.extra_after_lost_answer} after an answer lost past the final dot,"
            f" {self.extra_unexplained} unexplained)",
            f"  orphaned copies: {self.orphaned_copies} (longest call that delivered:"
            f" {self.longest_accepted_call:.1f} s, server clock); lost silently: {self.lost_silently};"
            f" lost and recorded: {self.lost_recorded}",
            f"  final unknown: {self.unknown} ({self.unknown_delivered} of them delivered);"
            f" failed: {self.failed}; unfinished: {self.unfinished}",
            f"  ledger states: {dict(sorted(self.states.items()))}",
        ]


class FaultyProvider:
    """The provider side of a run: a faulty server or fake, and what it accepted per key."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.rng = random.Random(scenario.seed)
        hold = 2.0 * scenario.call_seconds
        self.smtp: FaultySmtpServer | None = None
        self.http: FakeSendGrid | FakeTwilio | None = None
        if scenario.provider == "smtp":
            plan = random_faults(scenario.fault_rate, hold_seconds=hold, seed=scenario.seed)
            if scenario.hold_only:
                from tests.fakes.faulty_smtp import Fault

                rng = random.Random(scenario.seed)

                def holding(number: int) -> Fault | None:
                    if rng.random() >= scenario.fault_rate:
                        return None
                    return Fault("hold", rng.choice(["mail", "rcpt", "dot"]), seconds=hold)

                plan = holding
            self.smtp = FaultySmtpServer(plan=plan)
        else:
            self.http = FakeSendGrid() if scenario.provider == "sendgrid" else FakeTwilio()
            self.http.record = True
            self.faulty = 0
            self.http.plan = self._http_fault

    def _http_fault(self) -> ScriptedResponse | None:
        """Refused for now (503), or held past the deadline and then processed (accepted,
        answer lost) or answered 500 (not accepted, answer lost)."""
        if self.rng.random() >= self.scenario.fault_rate:
            return None
        self.faulty += 1
        hold = 2.0 * self.scenario.call_seconds
        kind = "hold" if self.scenario.hold_only else self.rng.choice(["503", "hold", "hold500"])
        if kind == "503":
            return ScriptedResponse(status=503, body={"errors": [{"message": "unavailable"}]})
        if kind == "hold":
            return ScriptedResponse(hang_seconds=hold)
        return ScriptedResponse(status=500, body={"errors": [{"message": "x"}]}, hang_seconds=hold)

    def start(self) -> None:
        if self.smtp is not None:
            self.smtp.start()
        else:
            assert self.http is not None
            self.http.start()

    def stop(self) -> None:
        if self.smtp is not None:
            self.smtp.stop()
        elif self.http is not None:
            self.http.stop()

    @property
    def calls_in_progress(self) -> int:
        if self.smtp is not None:
            return self.smtp.open_connections
        assert self.http is not None
        return self.http.in_progress

    def settings(self) -> dict[str, Any]:
        s = self.scenario
        if self.smtp is not None:
            return {
                "email_provider": "smtp",
                "smtp_host": self.smtp.host,
                "smtp_port": self.smtp.port,
                "smtp_starttls": False,
                "smtp_timeout_seconds": s.call_seconds,
            }
        if isinstance(self.http, FakeSendGrid):
            return {
                "email_provider": "sendgrid",
                "sendgrid_api_key": self.http.api_key,
                "sendgrid_host": self.http.url,
                "provider_timeout_seconds": s.call_seconds,
            }
        assert isinstance(self.http, FakeTwilio)
        return {
            "sms_provider": "twilio",
            "twilio_account_sid": self.http.account_sid,
            "twilio_auth_token": self.http.auth_token,
            "twilio_from_number": "+3225550100",
            "twilio_base_url": self.http.url,
            "provider_timeout_seconds": s.call_seconds,
        }

    def copies(self, keys: list[str]) -> dict[str, int]:
        """Copies the recipients got, per message key."""
        counts: Counter[str] = Counter()
        if self.smtp is not None:
            by_id = {message_id_for(key, sender=EMAIL_FROM): key for key in keys}
            for copy in self.smtp.copies:
                counts[by_id.get(copy.message_id or "", "?")] += 1
        elif isinstance(self.http, FakeSendGrid):
            for entry in self.http.activity:
                counts[entry["unique_args"].get("message_key", "?")] += 1
        else:
            assert isinstance(self.http, FakeTwilio)
            for callback in self.http.callbacks:
                key = (callback or "").partition("mk=")[2]
                from urllib.parse import unquote

                counts[unquote(key)] += 1
        return counts

    def call_counts(self) -> tuple[int, int]:
        if self.smtp is not None:
            conns = [c for c in self.smtp.connections if c.number > 0]
            return len(conns), sum(1 for c in conns if c.fault is not None)
        assert self.http is not None
        posts = [r for r in self.http.requests if r.method == "POST"]
        return len(posts), self.faulty

    def longest_accepted_call(self) -> float:
        if self.smtp is None or not self.smtp.copies:
            return 0.0
        opened = {c.number: c.opened_at for c in self.smtp.connections}
        return max(copy.accepted_at - opened[copy.connection] for copy in self.smtp.copies)

    def orphaned(self, leases: dict[str, list[tuple[float, float]]]) -> int:
        """Copies the server took outside every lease of their message: from a call that
        outlived its claim. Only the SMTP server can tell when it took a copy."""
        if self.smtp is None:
            return 0
        by_id = {message_id_for(key, sender=EMAIL_FROM): key for key in leases}
        return sum(
            1
            for copy in self.smtp.copies
            if not any(
                start <= copy.accepted_wall <= end
                for start, end in leases.get(by_id.get(copy.message_id or "", ""), [])
            )
        )


def run_settings(scenario: Scenario, workdir: Path, provider: FaultyProvider) -> Settings:
    return Settings(
        home=workdir / "home",
        database_url=os.environ.get("RELIABILITY_DATABASE_URL")
        or f"sqlite:///{workdir / 'reliability.db'}",
        journeys_dir=ROOT / "journeys",
        templates_dir=ROOT / "templates",
        temporal_port=free_port(),
        temporal_ui_port=free_port(),
        temporal_persist=False,
        signing_keys=["reliability-key"],
        public_url="https://trouw.example",
        email_from=EMAIL_FROM,
        send_rate_per_second=10_000,
        task_queue=f"reliability-{uuid.uuid4().hex[:8]}",
        **provider.settings(),
    )


def worker_env(settings: Settings, scenario: Scenario, workdir: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TROUW_", "RELIABILITY_")) and key != "TEMPORAL_ADDRESS"
    }
    values = settings.model_dump(mode="json")
    for name in (
        "home",
        "database_url",
        "task_queue",
        "journeys_dir",
        "templates_dir",
        "public_url",
        "email_from",
        "send_rate_per_second",
        "email_provider",
        "sms_provider",
        "smtp_host",
        "smtp_port",
        "smtp_starttls",
        "smtp_timeout_seconds",
        "sendgrid_api_key",
        "sendgrid_host",
        "twilio_account_sid",
        "twilio_auth_token",
        "twilio_from_number",
        "twilio_base_url",
        "provider_timeout_seconds",
    ):
        value = values.get(name)
        if value is not None:
            env[f"TROUW_{name.upper()}"] = (
                str(value).lower() if isinstance(value, bool) else str(value)
            )
    env.update(
        {
            "TROUW_CONFIG": str(workdir / "no-config.toml"),
            "TEMPORAL_ADDRESS": settings.temporal_target,
            "TROUW_SIGNING_KEYS": json.dumps(settings.signing_keys),
            "RELIABILITY_LATENCY_BEFORE": str(scenario.latency[0]),
            "RELIABILITY_LATENCY_AFTER": str(scenario.latency[1]),
            # The fakes list a message the moment they take it, but hold a faulty request for
            # up to 2 call budgets first: "not found" is final once that is over.
            "RELIABILITY_SETTLE": str(3 * scenario.call_seconds),
            "RELIABILITY_ANSWER_WITHIN": "120",
            "RELIABILITY_CONCURRENCY": str(scenario.concurrency),
        }
    )
    return env


def add_customers(settings: Settings, count: int) -> None:
    engine = get_engine(settings.effective_database_url)
    with session_scope(engine) as session:
        for i in range(count):
            ingest_event(
                session,
                EventIn(
                    id=f"rel-evt-{i}",
                    type="purchase",
                    customer=f"r-{i}",
                    order=f"R-{i}",
                    channel="web",
                    at=NOW - timedelta(minutes=5),
                    lines=[
                        {"sku": "LAWN-10", "qty": 1, "unit_price": "24.95", "name": "Gazonmest"}
                    ],
                    profile=CustomerIn(
                        id=f"r-{i}",
                        first_name="Bart",
                        email=f"r{i}@example.com",
                        phone=f"+3247{i:07d}",
                        locale="nl-BE",
                        timezone="Europe/Brussels",
                    ),
                ),
            )


def inputs(scenario: Scenario) -> list[SendMessageInput]:
    channel = "sms" if scenario.provider == "twilio" else "email"
    rng = random.Random(scenario.seed + 1)
    made = []
    for i in range(scenario.sends):
        category = "transactional" if rng.random() < scenario.transactional_share else "service"
        made.append(
            SendMessageInput(
                message_key=f"reliability:r-{i}:{category}:{channel}",
                customer_id=f"r-{i}",
                journey="post_purchase",
                journey_version="1",
                workflow_id=f"reliability-{i}",
                step=category,
                channel=channel,  # type: ignore[arg-type]
                template="order_confirmation" if channel == "email" else "delivery_notice",
                category=category,  # type: ignore[arg-type]
                triggered_at=NOW - timedelta(minutes=5),
                service_cutoff_days=180,
                now=NOW,
                order_id=f"R-{i}",
                skus=["LAWN-10"],
            )
        )
    return made


class Workers:
    """Worker processes; one is SIGKILLed and replaced at a time, and only while another one
    is up, so the run always makes progress however slowly a replacement starts."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env = env
        self.workdir = workdir
        self.processes: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.started = 0

    def start(self) -> None:
        self.started += 1
        path = self.workdir / f"worker-{self.started}.log"
        log = open(path, "wb")  # noqa: SIM115 - the child owns it
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.worker"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append((process, path))

    def ready(self) -> list[subprocess.Popen[bytes]]:
        """Live workers that are polling their task queue."""
        return [
            process
            for process, log in self.processes
            if process.poll() is None and b"worker ready" in log.read_bytes()
        ]

    def kill(self, victim: subprocess.Popen[bytes]) -> None:
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(10)
        self.processes = [(p, log) for p, log in self.processes if p is not victim]

    def stop(self) -> None:
        for process, _ in self.processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)


async def kill_loop(
    scenario: Scenario, workers: Workers, provider: FaultyProvider, report: Report
) -> None:
    assert scenario.kill_every is not None
    rng = random.Random(scenario.seed + 2)
    low, high = scenario.kill_every
    await first_kill_in_a_call(workers, provider, report)
    while True:
        await asyncio.sleep(rng.uniform(low, high))
        ready = workers.ready()
        for _ in range(600):  # a replacement worker may take a while to start on a busy machine
            if len(ready) >= 2:
                break
            await asyncio.sleep(0.1)
            ready = workers.ready()
        if not ready:
            continue
        # Timed into the send window: wait (briefly) for a provider call in progress.
        for _ in range(40):
            if provider.calls_in_progress:
                break
            await asyncio.sleep(0.025)
        in_window = provider.calls_in_progress > 0
        workers.kill(ready[0])
        report.kills += 1
        report.kills_in_send_window += int(in_window)
        workers.start()


async def first_kill_in_a_call(workers: Workers, provider: FaultyProvider, report: Report) -> None:
    """The first kill, at the first provider call seen in progress (looked for every 10 ms from
    the first send on) with another worker up: timed on that state, not on a random pause that
    a quick run could end before. Seen and killed with nothing awaited in between, so the kill
    lands while that call is still open; a run in which no call is ever seen has no kill, and
    its test fails on `kills_in_send_window`."""
    while True:
        ready = workers.ready() if provider.calls_in_progress else []
        if len(ready) >= 2 and provider.calls_in_progress:
            workers.kill(ready[0])
            report.kills += 1
            report.kills_in_send_window += 1
            workers.start()
            return
        await asyncio.sleep(0.01)


def prepare(
    scenario: Scenario, workdir: Path
) -> tuple[FaultyProvider, Settings, list[SendMessageInput]]:
    """The provider running, the database holding one customer and order per send."""
    workdir.mkdir(parents=True, exist_ok=True)
    provider = FaultyProvider(scenario)
    provider.start()
    settings = run_settings(scenario, workdir, provider)
    add_customers(settings, scenario.sends)
    return provider, settings, inputs(scenario)


async def run(scenario: Scenario, workdir: Path) -> Report:
    """One run, start to finish (dev server, workers, provider); returns the counts."""
    report = Report(scenario=scenario)
    provider, settings, sends = prepare(scenario, workdir)
    server = start_dev_server(settings)
    workers = Workers(worker_env(settings, scenario, workdir), workdir)
    killer: asyncio.Task[None] | None = None
    started = time.monotonic()
    try:
        await wait_for_port("127.0.0.1", settings.temporal_port, within=60, process=server.process)
        client = await connect(settings)
        for _ in range(scenario.workers):
            workers.start()
        # Every worker polls before the first send, so the first kill (from the first provider
        # call on) finds another worker up to carry on.
        for _ in range(1200):  # a busy machine starts workers slowly; a dead one never starts
            if len(workers.ready()) >= scenario.workers:
                break
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError(f"workers not ready after 120 s: see {workdir}/worker-*.log")
        if scenario.kill_every is not None:  # from the first send on
            killer = asyncio.create_task(kill_loop(scenario, workers, provider, report))
        starting = asyncio.Semaphore(32)

        async def start(send: SendMessageInput) -> Any:
            async with starting:
                return await client.start_workflow(
                    ReliabilitySendWorkflow.run,
                    send,
                    id=f"{settings.task_queue}-{send.workflow_id}",
                    task_queue=settings.task_queue,
                )

        handles = await asyncio.gather(*(start(send) for send in sends))
        done = asyncio.gather(*(handle.result() for handle in handles))
        try:
            await asyncio.wait_for(done, scenario.within)
        except TimeoutError:
            pass  # counted below as unfinished
    finally:
        if killer is not None:
            killer.cancel()
        workers.stop()
        server.stop()
        report.seconds = time.monotonic() - started
        await asyncio.sleep(2 * scenario.call_seconds + 0.5)  # held answers play out
        provider.stop()
    count(report, provider, settings, [send.message_key for send in sends])
    return report


def leases(row: Message | None) -> list[tuple[float, float]]:
    """Each attempt's lease, from its claim to its end, as Unix times."""
    return [
        (
            datetime.fromisoformat(entry["started"]).timestamp(),
            datetime.fromisoformat(entry["lease_until"]).timestamp(),
        )
        for entry in (row.status_history if row is not None else [])
        if entry.get("status") == "sending" and entry.get("started")
    ]


def count(report: Report, provider: FaultyProvider, settings: Settings, keys: list[str]) -> None:
    copies = provider.copies(keys)
    report.provider_calls, report.faulty_calls = provider.call_counts()
    engine = get_engine(settings.effective_database_url)
    with session_scope(engine) as session:
        rows = {
            row.message_key: row
            for row in session.exec(select(Message).where(Message.message_key.in_(keys)))  # type: ignore[attr-defined]
        }
        report.orphaned_copies = provider.orphaned({key: leases(rows.get(key)) for key in keys})
        report.longest_accepted_call = provider.longest_accepted_call()
        for key in keys:
            row = rows.get(key)
            state = row.state if row is not None else "missing"
            report.states[state] += 1
            got = copies.get(key, 0)
            report.copies += got
            report.delivered += int(got > 0)
            if got > 1:
                report.duplicated += 1
                report.extra_copies += got - 1
                history = row.status_history if row is not None else []
                # A resend after an unknown outcome, decided by the category rule: the only
                # sanctioned source of a second copy.
                sanctioned = sum(
                    1
                    for entry in history
                    if entry.get("status") == "resending"
                    and "does not have it" not in (entry.get("detail") or "")
                )
                explained = min(got - 1, sanctioned)
                report.extra_after_lost_answer += explained
                report.extra_unexplained += got - 1 - explained
            if state in ("claimed", "in_flight", "reconciling", "missing"):
                report.unfinished += 1
            if state == "unknown":
                report.unknown += 1
                report.unknown_delivered += int(got > 0)
            if state == "failed":
                report.failed += 1
            if got == 0:
                if state in ("unknown", "failed"):
                    report.lost_recorded += 1
                elif state not in ("suppressed",):
                    report.lost_silently += 1
