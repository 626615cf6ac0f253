"""While the database cannot be reached the API answers 503 with Retry-After (never 500), and
works again once it is back: PostgreSQL behind a proxy that is cut, a SQLite file whose folder
goes away."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlalchemy.engine.url import make_url

from tests.api.conftest import ApiSettings, make_keys
from tests.conftest import _PG, POSTGRES_URL
from tests.fakes.tcp_proxy import CuttableProxy
from trouw.domain.db.engine import make_engine, migrate
from trouw.ways_in.api.app import create_app


@dataclass
class Outage:
    """A migrated database and the switch that takes it away and brings it back."""

    engine: Engine
    down: Callable[[], None]
    up: Callable[[], None]


@pytest.fixture
def sqlite_outage(tmp_path: Path) -> Iterator[Outage]:
    folder = tmp_path / "volume"
    engine = make_engine(f"sqlite:///{folder / 'trouw.db'}")
    migrate(engine)

    def down() -> None:
        engine.dispose()  # open connections would still reach the moved file
        folder.rename(tmp_path / "unmounted")

    def up() -> None:
        (tmp_path / "unmounted").rename(folder)

    yield Outage(engine, down, up)
    engine.dispose()


@pytest.fixture
def postgres_outage() -> Iterator[Outage]:
    if not _PG:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432 (CI must test it)")
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    real = make_url(POSTGRES_URL)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    with CuttableProxy((real.host or "127.0.0.1", real.port or 5432)) as proxy:
        engine = sa.create_engine(
            real.set(host="127.0.0.1", port=proxy.port),
            connect_args={"options": f"-csearch_path={schema}", "connect_timeout": 3},
            pool_pre_ping=True,
        )
        migrate(engine)
        try:
            yield Outage(engine, proxy.cut, proxy.restore)
        finally:
            engine.dispose()
    with admin.begin() as connection:
        connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


EVENT = {"id": "e1", "type": "register", "customer": "c1", "profile": {"id": "c1"}}


def _check(outage: Outage, settings: ApiSettings) -> None:
    keys = make_keys(outage.engine)
    ingest = {"X-API-Key": keys["ingest"]}
    read = {"X-API-Key": keys["read"]}
    with TestClient(create_app(settings, outage.engine), raise_server_exceptions=False) as client:
        assert client.post("/v1/events", json=EVENT, headers=ingest).status_code == 202

        outage.down()
        answers = [
            client.post("/v1/events", json={**EVENT, "id": "e2"}, headers=ingest),
            client.get("/v1/customers/c1", headers=read),
            client.post("/v1/customers", json={"id": "c2"}, headers=ingest),
            client.post("/v1/events", content=b"{broken", headers={"X-API-Key": "trw_x"}),
        ]
        for answer in answers:
            assert answer.status_code == 503, answer.text
            assert answer.headers["retry-after"] == str(settings.api_retry_after_seconds)
            assert answer.json()["detail"][0]["message"].startswith(
                "the database cannot be reached"
            )
        assert client.get("/healthz").status_code == 200  # the process itself is alive
        assert client.get("/metrics").status_code == 200  # and still scraped (our counters)

        outage.up()
        again = client.post("/v1/events", json={**EVENT, "id": "e2"}, headers=ingest)
        assert again.status_code == 202, again.text
        assert client.get("/v1/customers/c1", headers=read).status_code == 200


def test_sqlite_unreachable_is_503_then_recovers(
    sqlite_outage: Outage, api_settings: ApiSettings
) -> None:
    _check(sqlite_outage, api_settings.model_copy(update={"api_retry_after_seconds": 7}))


@pytest.mark.postgres
def test_postgres_unreachable_is_503_then_recovers(
    postgres_outage: Outage, api_settings: ApiSettings
) -> None:
    _check(postgres_outage, api_settings)
