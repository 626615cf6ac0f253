"""The databases a bench runs on: SQLite in a temporary folder, PostgreSQL in a schema of its own."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Collection

import sqlalchemy as sa

POSTGRES_URL = os.environ.get(
    "TROUW_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def on_each_database(
    run: Callable[[str, str], object], *, skip: Collection[str], file: str = "bench.db"
) -> None:
    """run(url, label) on SQLite, then on PostgreSQL in a fresh schema, dropped afterwards
    (`skip` may name "sqlite" and "postgres")."""
    if "sqlite" not in skip:
        with tempfile.TemporaryDirectory() as folder:
            run(f"sqlite:///{folder}/{file}", "SQLite")
    if "postgres" not in skip:
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(POSTGRES_URL)
        with admin.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        try:
            joiner = "&" if "?" in POSTGRES_URL else "?"
            run(f"{POSTGRES_URL}{joiner}options=-csearch_path%3D{schema}", "PostgreSQL")
        finally:
            with admin.begin() as connection:
                connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
