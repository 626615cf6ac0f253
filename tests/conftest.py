"""Shared fixtures: a migrated database on SQLite and on PostgreSQL, settings in a temp home."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from trouw.domain.db.engine import make_engine, migrate
from trouw.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get(
    "TROUW_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def postgres_available() -> bool:
    try:
        engine = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 2})
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


_PG = postgres_available()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A freshly migrated database: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        db = make_engine(f"sqlite:///{tmp_path / 'test.db'}")
        migrate(db)
        yield db
        db.dispose()
        return
    if not _PG:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432 (CI must test it)")
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    db = sa.create_engine(
        POSTGRES_URL, connect_args={"options": f"-csearch_path={schema}"}, pool_pre_ping=True
    )
    migrate(db)
    try:
        yield db
    finally:
        db.dispose()
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for a test: a temp home, the repo's journeys and templates, the outbox."""
    return Settings(
        home=tmp_path / "home",
        database_url=f"sqlite:///{tmp_path / 'home' / 'trouw.db'}",
        journeys_dir=ROOT / "journeys",
        templates_dir=ROOT / "templates",
        signing_keys=["test-key"],
    )
