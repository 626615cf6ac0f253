"""A derived event is stored at most once per source id, also by two transactions at once
(SQLite and PostgreSQL): the second finds the first's row, or fails on the unique key."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import select

from trouw.domain.db.engine import QueuedConnection, session_scope
from trouw.domain.db.models import InboundEvent
from trouw.domain.ingest import CustomerIn, upsert_customer
from trouw.domain.loyalty import ledger

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SOURCE = "buy-o1>points_changed"


def derive(engine: Engine) -> bool:
    with session_scope(engine) as session:
        added = ledger.add_derived(
            session, customer_id="c1", source_id=SOURCE, type="points_changed", at=T0, data={}
        )
        session.flush()
        return added


def held_up_by(engine: Engine, pid: int) -> bool:
    """Whether a PostgreSQL backend waits for a lock the backend `pid` holds."""
    with engine.connect() as connection:
        found = connection.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"
            ),
            {"pid": pid},
        ).scalar()
    return bool(found)


def test_two_transactions_deriving_one_source_id_at_once_store_it_once(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with session_scope(engine) as session:
        upsert_customer(session, CustomerIn(id="c1"), at=T0, source="api")
    inserted, second_waits = threading.Event(), threading.Event()
    if engine.dialect.name == "sqlite":  # the second waits for the first's write lock
        queue_for_write = QueuedConnection.queue_for_write

        def watched(connection: QueuedConnection) -> None:
            if inserted.is_set():
                second_waits.set()
            queue_for_write(connection)

        monkeypatch.setattr(QueuedConnection, "queue_for_write", watched)
    outcome: dict[str, Any] = {}

    def first() -> None:
        with session_scope(engine) as session:
            outcome["first"] = ledger.add_derived(
                session, customer_id="c1", source_id=SOURCE, type="points_changed", at=T0, data={}
            )
            session.flush()  # the row is written, not committed
            postgres = engine.dialect.name == "postgresql"
            pid = (
                session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
                if postgres
                else 0
            )
            inserted.set()
            # Until the second is held up by this transaction (or, in a broken test, ended).
            while not second_waits.wait(0.01) and not outcome.get("second_done"):
                if postgres and held_up_by(engine, pid):
                    second_waits.set()

    def second() -> None:
        inserted.wait(60)
        try:
            outcome["second"] = derive(engine)
        except sa.exc.IntegrityError:
            outcome["second"] = "refused by the unique key"
        finally:
            outcome["second_done"] = True

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert second_waits.is_set(), "the second ran before the first had committed or after it"
    assert outcome["first"] is True
    # SQLite: the second waited for the write lock, then found the row; PostgreSQL: its read
    # did not see the uncommitted row, and its insert waited for the first, then was refused.
    assert outcome["second"] == (
        False if engine.dialect.name == "sqlite" else "refused by the unique key"
    )
    with session_scope(engine) as session:
        rows = session.exec(select(InboundEvent).where(InboundEvent.source_id == SOURCE)).all()
    assert len(rows) == 1
