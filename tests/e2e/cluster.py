"""The production shape on this machine: a Temporal dev server, PostgreSQL, `trouw api` and N
`trouw worker` processes, SendGrid as a local fake; used by the two-worker test and the bench."""

from __future__ import annotations

import asyncio
import json
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

from tests.conftest import POSTGRES_URL, ROOT
from tests.e2e.test_slice import free_port
from tests.fakes import FakeSendGrid
from trouw.api.auth import ensure_key
from trouw.db.engine import get_engine, session_scope
from trouw.settings import Settings
from trouw.temporal import register_search_attributes, start_dev_server, wait_for_port

TROUW = Path(sys.executable).parent / "trouw"


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
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self, name: str, command: str, **extra: str) -> subprocess.Popen[bytes]:
        log = open(self.home / f"{name}.log", "wb")  # noqa: SIM115 - the child owns it
        process = subprocess.Popen(
            [str(TROUW), command],
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

    def confirmation_keys(self) -> set[str]:
        """Message keys of the confirmations the ledger holds as sent."""
        with session_scope(get_engine(self.settings.effective_database_url)) as session:
            rows = session.execute(
                sa.text(
                    "SELECT message_key FROM message "
                    "WHERE template = 'order_confirmation' AND state = 'sent'"
                )
            ).all()
        return {row[0] for row in rows}

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


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


async def wait_until(predicate: Any, *, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.25)
    raise AssertionError(f"{what}: not within {within:.0f} s")


@asynccontextmanager
async def cluster(home: Path, *, workers: int) -> AsyncIterator[Cluster]:
    """Dev server + PostgreSQL schema + `trouw api` + `workers` x `trouw worker`."""
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
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("TROUW_") and name != "TEMPORAL_ADDRESS"
        }
        env.update(
            {
                "TROUW_CONFIG": str(home / "no-config.toml"),
                "TEMPORAL_ADDRESS": settings.temporal_target,
                "TROUW_HOME": str(settings.home),
                "TROUW_DATABASE_URL": url,
                "TROUW_TASK_QUEUE": settings.task_queue,
                "TROUW_JOURNEYS_DIR": str(ROOT / "journeys"),
                "TROUW_TEMPLATES_DIR": str(ROOT / "templates"),
                "TROUW_SIGNING_KEYS": json.dumps(settings.signing_keys),
                "TROUW_PUBLIC_URL": settings.public_url,
                "TROUW_API_PORT": str(api_port),
                "TROUW_EMAIL_PROVIDER": "sendgrid",
                "TROUW_SENDGRID_API_KEY": sendgrid.api_key,
                "TROUW_SENDGRID_HOST": sendgrid.url,
            }
        )
        state = Cluster(settings, env, sendgrid, home, f"http://127.0.0.1:{api_port}", key)
        try:
            await wait_for_port(
                "127.0.0.1", settings.temporal_port, within=60, process=server.process
            )
            from trouw.temporal import connect

            client = await connect(settings)
            await register_search_attributes(client, settings.temporal_namespace)
            for number in range(1, workers + 1):
                state.spawn(f"worker-{number}", "worker")
            state.spawn("api", "api")
            await wait_for_port("127.0.0.1", api_port, within=60)
            yield state
        finally:
            for process in state.processes:
                stop(process)
            server.stop()
            engine.dispose()
            _drop(schema)
