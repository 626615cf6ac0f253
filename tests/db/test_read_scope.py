"""read_scope: a read-only session takes no write lock on SQLite, and a write in it fails
loudly instead of vanishing at the scope's rollback."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import select

from trouw.domain.db.engine import ReadOnlyWriteError, read_scope, session_scope
from trouw.domain.db.models import ApiKey
from trouw.ways_in.api.auth import create_api_key


def test_a_read_does_not_wait_for_a_writer_and_commits_nothing(engine: Engine) -> None:
    with session_scope(engine) as session:
        create_api_key(session, name="till", scopes=["read"])
    holding, done = threading.Event(), threading.Event()
    # Which ended first: the read, or the write transaction it must not wait for. A read that
    # waited would only go on once the writer gave up waiting for it (below) and committed.
    order: list[str] = []

    def writer() -> None:
        with session_scope(engine) as session:
            session.connection().execute(sa.update(ApiKey.__table__).values(name="renamed"))  # type: ignore[attr-defined]
            holding.set()
            done.wait(10)  # the write transaction stays open until the read is done
        order.append("write committed")

    thread = threading.Thread(target=writer)
    thread.start()
    assert holding.wait(10)
    try:
        with read_scope(engine) as session:
            names = session.exec(select(ApiKey.name)).all()
        order.append("read done")
    finally:
        done.set()
        thread.join()
    # It saw the last committed state, done while the write transaction was still open.
    assert order == ["read done", "write committed"]
    assert names == ["till"]
    with read_scope(engine) as session:
        assert session.exec(select(ApiKey.name)).all() == ["renamed"]


def names(engine: Engine) -> list[str]:
    with read_scope(engine) as session:
        return list(session.exec(select(ApiKey.name).order_by(ApiKey.name)).all())


def test_an_object_added_in_a_read_scope_is_refused_not_dropped(engine: Engine) -> None:
    with pytest.raises(ReadOnlyWriteError, match="read_scope"):
        with read_scope(engine) as session:
            session.add(ApiKey(name="never", key_hash="x" * 64, scopes=[]))
    assert names(engine) == []


def test_a_change_flushed_by_a_query_in_a_read_scope_is_refused(engine: Engine) -> None:
    with session_scope(engine) as session:
        create_api_key(session, name="till", scopes=["read"])
    with pytest.raises(ReadOnlyWriteError):
        with read_scope(engine) as session:
            key = session.exec(select(ApiKey)).one()
            key.name = "renamed"
            session.exec(select(ApiKey.id)).all()  # autoflush: the change would be written here
    assert names(engine) == ["till"]


def test_a_write_statement_in_a_read_scope_is_refused(engine: Engine) -> None:
    with session_scope(engine) as session:
        create_api_key(session, name="till", scopes=["read"])
    with pytest.raises(ReadOnlyWriteError):
        with read_scope(engine) as session:
            session.execute(sa.update(ApiKey).values(name="renamed"))
    assert names(engine) == ["till"]


def test_an_error_inside_a_read_scope_is_not_masked(engine: Engine) -> None:
    with pytest.raises(KeyError):
        with read_scope(engine) as session:
            session.add(ApiKey(name="never", key_hash="x" * 64, scopes=[]))
            raise KeyError("the caller's own error")
