"""The production shape on this machine: a Temporal dev server, PostgreSQL, `trouw api` and N
`trouw worker` processes, SendGrid as a local fake; used by the two-worker test and the bench."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import sqlalchemy as sa
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client

from tests.conftest import POSTGRES_URL, ROOT
from tests.e2e.test_slice import free_port
from tests.fakes import FakeSendGrid
from tests.worker_process import process_environment, stop
from trouw.domain.db.engine import get_engine, session_scope
from trouw.settings import Settings
from trouw.stack.temporal import (
    connect,
    register_search_attributes,
    start_dev_server,
    wait_for_port,
)
from trouw.ways_in.api.auth import ensure_key

TROUW = Path(sys.executable).parent / "trouw"
# How long after an attempt the SendGrid fake's "not found" is final: it lists a message when it
# accepts it; a margin for a request still being read when its sender died.
FAKE_LISTING_LAG_SECONDS = 5.0


def purchase(index: int) -> dict[str, Any]:
    customer = f"k-{index:05d}"
    return {
        "id": f"pos-{index:05d}",
        "type": "purchase",
        "customer": customer,
        "order": f"W-{index:05d}",
        "channel": "web",
        "lines": [{"sku": "LAWN-10", "qty": 1, "unit_price": "24.95", "name": "Gazonmest 10 kg"}],
        "profile": {"id": customer, "first_name": "Bart", "email": f"{customer}@example.com"},
    }


@dataclass
class Cluster:
    settings: Settings
    env: dict[str, str]
    sendgrid: FakeSendGrid
    home: Path
    api_url: str
    key: str
    verbose: bool = True
    client: Client | None = None
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self, name: str, command: str, **extra: str) -> subprocess.Popen[bytes]:
        log = open(self.home / f"{name}.log", "wb")  # noqa: SIM115 - the child owns it
        process = subprocess.Popen(
            # INFO: the work each process handled (a bench measures without those lines)
            [str(TROUW), command, *(["--verbose"] if self.verbose else [])],
            cwd=ROOT,
            env={**self.env, **extra},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(process)
        if command == "worker":
            self.workers[name] = process
        return process

    def mail_keys(self) -> Counter[str]:
        """Message keys of every email SendGrid accepted, with how often each came."""
        return Counter(mail["custom_args"]["message_key"] for mail in self.sendgrid.mails)

    def rows(self, query: str) -> list[Any]:
        """The rows one SQL query returns from the cluster's database."""
        with session_scope(get_engine(self.settings.effective_database_url)) as session:
            return list(session.execute(sa.text(query)).all())

    def confirmation_keys(self) -> set[str]:
        """Message keys of the confirmations the ledger holds as sent."""
        rows = self.rows(
            "SELECT message_key FROM message WHERE template = 'order_confirmation' AND state = 'sent'"
        )
        return {row[0] for row in rows}

    def reconciled_keys(self) -> dict[str, bool]:
        """Messages whose outcome was unknown (their worker died mid-send): resent or not."""
        rows = self.rows("SELECT message_key, status_history FROM message")
        return {
            key: any(entry.get("status") == "resending" for entry in history)
            for key, history in rows
            if any(entry.get("status") == "outcome_unknown" for entry in history or [])
        }

    async def pending_in_temporal(self, *, limit: int = 20) -> list[str]:
        """Running workflows that wait on an activity: which one, its attempt and last failure."""
        if self.client is None:
            return []
        found: list[str] = []
        async for execution in self.client.list_workflows("ExecutionStatus = 'Running'"):
            described = await self.client.get_workflow_handle(execution.id).describe()
            for pending in described.raw_description.pending_activities:
                failure = pending.last_failure.message if pending.HasField("last_failure") else ""
                found.append(
                    f"  {execution.id}: {pending.activity_type.name} "
                    f"{PendingActivityState.Name(pending.state)} attempt={pending.attempt} "
                    f"worker={pending.last_worker_identity or '-'} {failure[:200]}"
                )
            if len(found) >= limit:
                break
        return found

    async def report(self) -> str:
        """`diagnose` with the activities Temporal still waits on."""
        try:
            pending = await self.pending_in_temporal()
        except Exception as exc:  # noqa: BLE001 - a diagnosis never hides the failure
            pending = [f"  (Temporal not asked: {exc})"]
        return self.diagnose() + "\n--- pending activities ---\n" + "\n".join(pending)

    def diagnose(self, *, log_lines: int = 80) -> str:
        """What a failed run leaves to read: the ledger rows not yet sent with their history,
        the outbox (events not handed off, parked), what the SendGrid fake received, and the
        tail of every process's log (the whole logs stay in `home`)."""
        lines = [f"--- diagnosis (logs kept in {self.home}) ---"]
        states = self.rows(
            "SELECT template, state, count(*) FROM message GROUP BY template, state "
            "ORDER BY template, state"
        )
        lines.append("ledger: " + ", ".join(f"{t}/{s}={n}" for t, s, n in states))
        for key, state, attempts, history in self.rows(
            "SELECT message_key, state, attempts, status_history FROM message "
            "WHERE state <> 'sent' ORDER BY id"
        ):
            steps = [
                f"{entry.get('status')}@{str(entry.get('at', ''))[11:19]}"
                + (f" ({entry['detail']})" if entry.get("detail") else "")
                for entry in history or []
            ]
            lines.append(f"  not sent: {key} {state} attempts={attempts}: {steps}")
        [(total, waiting, parked)] = self.rows(
            "SELECT count(*), count(*) FILTER (WHERE relayed_at IS NULL AND parked_at IS NULL), "
            "count(parked_at) FROM inbound_event"
        )
        lines.append(f"outbox: {total} events, {waiting} not handed off, {parked} parked")
        for source, attempts, error in self.rows(
            "SELECT source_id, relay_attempts, relay_error FROM inbound_event "
            "WHERE relayed_at IS NULL ORDER BY id LIMIT 20"
        ):
            lines.append(f"  not handed off: {source} attempts={attempts} {error or ''}")
        requests = self.sendgrid.requests
        lookups = sum(1 for request in requests if request.path == "/v3/messages")
        mails = self.mail_keys()
        lines.append(
            f"SendGrid fake: {len(requests)} requests, {sum(mails.values())} mails "
            f"({len(mails)} distinct), {lookups} Email Activity lookups, "
            f"{self.sendgrid.in_progress} in progress"
        )
        for log in sorted(self.home.glob("*.log")):
            text = log.read_text(errors="replace").splitlines()
            lines.append(f"--- {log.name}: {len(text)} lines, the last {log_lines} ---")
            lines += text[-log_lines:]
        return "\n".join(lines)

    async def post(self, bodies: list[dict[str, Any]]) -> list[int]:
        headers = {"Authorization": f"Bearer {self.key}"}
        async with httpx.AsyncClient(base_url=self.api_url, timeout=60, headers=headers) as http:
            codes: list[int] = []
            for start in range(0, len(bodies), 10):  # ten at a time, as tills do
                answers = await asyncio.gather(
                    *(http.post("/v1/events", json=body) for body in bodies[start : start + 10])
                )
                codes += [answer.status_code for answer in answers]
            return codes


def _schema_url() -> tuple[str, str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    return f"{POSTGRES_URL}?options={quote(f'-csearch_path={schema}')}", schema


def _drop(schema: str) -> None:
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


async def wait_until(predicate: Any, *, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.25)
    raise AssertionError(f"{what}: not within {within:.0f} s")


@asynccontextmanager
async def cluster(
    home: Path,
    *,
    workers: int,
    verbose: bool = True,
    worker_env: dict[str, str] | None = None,
) -> AsyncIterator[Cluster]:
    """Dev server + PostgreSQL schema + `trouw api` + `workers` x `trouw worker` (with
    `worker_env` added to their environment)."""
    os.makedirs(home, exist_ok=True)
    url, schema = _schema_url()
    api_port = free_port()
    settings = Settings(
        home=home / "trouw",
        database_url=url,
        temporal_port=free_port(),
        temporal_ui_port=free_port(),
        temporal_persist=False,
        task_queue=f"trouw-cluster-{uuid.uuid4().hex[:6]}",
        api_port=api_port,
        public_url=f"http://127.0.0.1:{api_port}",
        signing_keys=["cluster-key"],
    )
    engine = get_engine(settings.effective_database_url)  # migrated once, before the processes
    with session_scope(engine) as session:
        key = ensure_key(session, "cluster", ["ingest"])
    server = start_dev_server(settings)
    with FakeSendGrid() as sendgrid:
        env = process_environment(
            settings,
            home,
            {
                "TROUW_DATABASE_URL": url,
                "TROUW_JOURNEYS_DIR": str(ROOT / "journeys"),
                "TROUW_TEMPLATES_DIR": str(ROOT / "templates"),
                "TROUW_PUBLIC_URL": settings.public_url,
                "TROUW_API_PORT": str(api_port),
                "TROUW_EMAIL_PROVIDER": "sendgrid",
                "TROUW_SENDGRID_API_KEY": sendgrid.api_key,
                "TROUW_SENDGRID_HOST": sendgrid.url,
                "TROUW_LOG_FORMAT": "json",
                # The fake lists a message in Email Activity the moment it accepts it (no lag):
                # "not found" is final at once, as it is only after 10 min at SendGrid.
                "TROUW_SENDGRID_LOOKUP_SETTLE_SECONDS": str(FAKE_LISTING_LAG_SECONDS),
            },
        )
        state = Cluster(
            settings, env, sendgrid, home, f"http://127.0.0.1:{api_port}", key, verbose=verbose
        )
        try:
            await wait_for_port(
                "127.0.0.1", settings.temporal_port, within=60, process=server.process
            )
            client = await connect(settings)
            state.client = client
            await register_search_attributes(client, settings.temporal_namespace)
            for number in range(1, workers + 1):
                state.spawn(f"worker-{number}", "worker", **(worker_env or {}))
            state.spawn("api", "api")
            await wait_for_port("127.0.0.1", api_port, within=60)
            yield state
        finally:
            for process in state.processes:
                stop(process, within=20)
            server.stop()
            engine.dispose()
            _drop(schema)
