"""SQLite writers of one process queue in the process (trouw.domain.db.engine.QueuedConnection): the
place is taken at BEGIN IMMEDIATE and given back however the transaction ends."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from trouw.domain.db.engine import QueuedConnection, make_engine, migrate, read_scope, session_scope
from trouw.domain.db.models import ApiKey


@pytest.fixture
def sqlite(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'queue.db'}")
    migrate(engine)
    return engine


def queue_of(engine: Engine) -> threading.Lock:
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


def test_writers_of_two_engines_on_one_file_share_the_queue(sqlite: Engine, tmp_path: Path) -> None:
    other = make_engine(f"sqlite:///{tmp_path / 'queue.db'}")
    assert queue_of(other) is queue_of(sqlite)
    first_open, order = threading.Event(), []

    def second() -> None:
        first_open.wait(10)
        with session_scope(other) as session:
            session.connection().execute(sa.update(ApiKey.__table__).values(name="second"))  # type: ignore[attr-defined]
            order.append("second")

    thread = threading.Thread(target=second)
    thread.start()
    with session_scope(sqlite) as session:
        session.connection()
        first_open.set()
        order.append("first")
    thread.join(30)
    assert order == ["first", "second"] and not queue_of(sqlite).locked()
    other.dispose()
