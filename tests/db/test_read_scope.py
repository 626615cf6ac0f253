"""read_scope: a read-only session takes no write lock on SQLite and commits nothing."""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import select

from trouw.api.auth import create_api_key
from trouw.db.engine import read_scope, session_scope
from trouw.db.models import ApiKey


def test_a_read_does_not_wait_for_a_writer_and_commits_nothing(engine: Engine) -> None:
    with session_scope(engine) as session:
        create_api_key(session, name="till", scopes=["read"])
    holding, done = threading.Event(), threading.Event()

    def writer() -> None:
        with session_scope(engine) as session:
            session.connection().execute(sa.update(ApiKey.__table__).values(name="renamed"))  # type: ignore[attr-defined]
            holding.set()
            done.wait(10)  # the write transaction stays open until the read is done

    thread = threading.Thread(target=writer)
    thread.start()
    assert holding.wait(10)
    began = time.monotonic()
    try:
        with read_scope(engine) as session:
            names = session.exec(select(ApiKey.name)).all()
            session.add(ApiKey(name="never", key_hash="x" * 64, scopes=[]))
    finally:
        waited = time.monotonic() - began
        done.set()
        thread.join()
    # It saw the last committed state without waiting for the open write transaction.
    assert names == ["till"] and waited < 5
    with read_scope(engine) as session:
        assert session.exec(select(ApiKey.name)).all() == ["renamed"]
