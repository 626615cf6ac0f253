"""SQLite writers of one process queue in the process (trouw.domain.db.engine.QueuedConnection): the
place is taken at BEGIN IMMEDIATE and given back however the transaction ends."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

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
    connection = sqlite.connect()
    connection.begin()
    assert queue.locked()
    connection.close()  # back to the pool without a commit
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
    first_open, failed = threading.Event(), []

    def second() -> None:
        first_open.wait(10)
        try:
            with session_scope(other) as session:
                session.connection().execute(sa.update(ApiKey.__table__).values(name="second"))  # type: ignore[attr-defined]
        except sa.exc.OperationalError as exc:  # without the queue: "database is locked"
            failed.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    with session_scope(sqlite) as session:
        session.connection()
        first_open.set()
        # Held until the second waits behind it, or has given up without waiting.
        while not behind.wait(0.01) and thread.is_alive():
            pass
    thread.join()
    assert failed == [] and behind.is_set() and not queue_of(sqlite).locked()
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
