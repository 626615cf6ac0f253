"""SQLite writers of one process queue in the process (trouw.domain.db.engine.QueuedConnection): the
place is taken at BEGIN IMMEDIATE and given back however the transaction ends."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

import trouw.domain.db.engine as engine_module
from trouw.domain.db.engine import (
    NestedWriteError,
    QueuedConnection,
    WriterQueue,
    make_engine,
    migrate,
    read_scope,
    session_scope,
)
from trouw.domain.db.models import ApiKey

KEY = {"name": "k", "key_hash": "0" * 64, "scopes": [], "created_at": datetime.now(UTC)}


@pytest.fixture
def sqlite(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'queue.db'}")
    migrate(engine)
    return engine


def queue_of(engine: Engine) -> WriterQueue:
    with engine.connect() as connection:
        raw = connection.connection.driver_connection
        assert isinstance(raw, QueuedConnection)
        return raw.writer_queue


def test_a_writer_gives_its_place_back_however_its_transaction_ends(sqlite: Engine) -> None:
    queue = queue_of(sqlite)
    with session_scope(sqlite) as session:
        session.connection()
        assert queue.locked()  # taken with the write transaction
    assert not queue.locked()  # committed
    with pytest.raises(RuntimeError), session_scope(sqlite) as session:
        session.connection()
        raise RuntimeError("the work failed")
    assert not queue.locked()  # rolled back
    # A session hands its connection back to the pool, whose reset rolls back: each way out is
    # checked on a connection kept open, so that reset cannot stand in for it.
    connection = sqlite.connect()
    connection.begin()
    assert queue.locked()
    connection.commit()
    assert not queue.locked()  # committed, the connection still out of the pool
    connection.begin()
    connection.rollback()
    assert not queue.locked()  # rolled back, still out of the pool
    connection.begin()
    connection.invalidate()  # the driver's connection closed in its transaction
    assert not queue.locked()
    connection.close()
    connection = sqlite.connect()
    connection.begin()
    connection.close()  # back to the pool without a commit: the pool's reset
    assert not queue.locked()
    with read_scope(sqlite) as session:
        session.connection()
        assert not queue.locked()  # a read takes no place


def test_a_writer_waits_in_the_queue_not_in_sqlite(
    sqlite: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The second engine's SQLite gives up at once when the file is locked: its write can only
    # succeed if it waited for the first in the process's queue (shared by both engines).
    other = make_engine(f"sqlite:///{tmp_path / 'queue.db'}")

    @sa.event.listens_for(other, "connect")
    def _no_wait(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=0")

    assert queue_of(other) is queue_of(sqlite)
    behind = threading.Event()  # the second came to the queue while the first held it
    queue_for_write = QueuedConnection.queue_for_write

    def watched(connection: QueuedConnection) -> None:
        if connection.writer_queue.locked():
            behind.set()
        queue_for_write(connection)

    monkeypatch.setattr(QueuedConnection, "queue_for_write", watched)
    first_open, outcome = threading.Event(), []

    def second() -> None:
        first_open.wait(10)
        try:
            with session_scope(other) as session:
                session.connection().execute(sa.update(ApiKey.__table__).values(name="second"))  # type: ignore[attr-defined]
            outcome.append("written")
        except BaseException as exc:  # without the queue: "database is locked"
            outcome.append(repr(exc))

    thread = threading.Thread(target=second)
    thread.start()
    with session_scope(sqlite) as session:
        session.connection()
        first_open.set()
        # Held until the second waits behind it, or has given up without waiting.
        while not behind.wait(0.01) and thread.is_alive():
            pass
    thread.join()
    assert outcome == ["written"] and behind.is_set() and not queue_of(sqlite).locked()
    other.dispose()


def test_a_second_write_transaction_in_the_thread_that_holds_the_queue_fails_at_once(
    sqlite: Engine,
) -> None:
    # Before: it waited QUEUE_TIMEOUT (30 s) for itself, then busy_timeout (30 s) for its own
    # write lock, and failed with "database is locked".
    with session_scope(sqlite) as session:
        session.connection()
        with pytest.raises(NestedWriteError, match="already holds a write transaction"):
            with session_scope(sqlite) as inner:
                inner.connection()
    assert not queue_of(sqlite).locked()
    with session_scope(sqlite) as session:  # the thread writes again once the first has ended
        session.connection().execute(sa.update(ApiKey.__table__).values(name="again"))  # type: ignore[attr-defined]


def test_a_nested_write_fails_on_any_engine_of_the_file_and_the_outer_one_still_commits(
    sqlite: Engine, tmp_path: Path
) -> None:
    # Two engines of one file share its queue (the API's and a helper's make_engine, say).
    other = make_engine(f"sqlite:///{tmp_path / 'queue.db'}")
    with session_scope(sqlite) as session:
        session.connection().execute(sa.insert(ApiKey.__table__).values(**KEY))  # type: ignore[attr-defined]
        with pytest.raises(NestedWriteError), session_scope(other) as inner:
            inner.connection()
        with read_scope(other) as reader:  # a read needs no place: it answers (not written yet)
            assert reader.connection().execute(sa.select(ApiKey.__table__)).all() == []  # type: ignore[attr-defined]
    with read_scope(other) as reader:
        assert [row.name for row in reader.connection().execute(sa.select(ApiKey.__table__))] == [  # type: ignore[attr-defined]
            KEY["name"]
        ]
    other.dispose()


def test_a_place_never_given_back_holds_the_other_writers_up_only_for_the_queue_timeout(
    sqlite: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "QUEUE_TIMEOUT", 0.2)
    # A transaction ended in SQL text (not by commit, rollback or close) keeps its place: the
    # file's write lock is free, the process's queue is not.
    lost = sqlite3.connect(tmp_path / "queue.db", factory=QueuedConnection, isolation_level=None)
    lost.queue_for_write()
    lost.execute("BEGIN IMMEDIATE")
    lost.execute("ROLLBACK")
    queue = lost.writer_queue
    assert queue is queue_of(sqlite) and queue.locked()
    outcome: list[str] = []

    def write() -> None:
        try:
            with session_scope(sqlite) as session:
                session.connection().execute(sa.insert(ApiKey.__table__).values(**KEY))  # type: ignore[attr-defined]
            outcome.append("written")
        except BaseException as exc:
            outcome.append(repr(exc))

    writer = threading.Thread(target=write)  # another thread: the lost place is not its own
    writer.start()
    try:
        writer.join(60)  # bounds a writer that waits for good; the timeout above is the wait
        assert outcome == ["written"]
        assert queue.locked()  # the writer that went past gave back no place it had not taken
    finally:
        lost.close()  # gives the place back (and so ends a writer still waiting for it)
        writer.join()
    with read_scope(sqlite) as reader:
        assert len(reader.connection().execute(sa.select(ApiKey.__table__)).all()) == 1  # type: ignore[attr-defined]
