"""Worker presence: each worker records the content digest it runs and a heartbeat in the database.

`trouw status` reads these rows to show which digest every running worker has loaded, so a worker
stuck on an old version of the journeys and templates, or gone without stopping, is visible.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import col, delete, select

from trouw.domain.content import running_digest
from trouw.domain.db.engine import read_scope, session_scope
from trouw.domain.db.models import WorkerPresence, utcnow
from trouw.language.journey.interest import EVERYTHING, Interest

log = logging.getLogger("trouw.presence")

HEARTBEAT = timedelta(seconds=10)
# A heartbeat older than this: the worker is stuck or was killed (a clean stop removes its row).
STALE_AFTER = 3 * HEARTBEAT
# A row older than this is a worker long gone (killed, its host lost): listed, no longer flagged.
GONE_AFTER = timedelta(minutes=10)
# Rows older than this are deleted when a worker starts, so the table does not grow with restarts.
FORGOTTEN_AFTER = timedelta(days=1)
# How often the worker looks at its own digest: a reload is recorded within this, not a heartbeat.
LOOK_SECONDS = 1.0


def beat(engine: Engine, row: WorkerPresence) -> None:
    """Insert or update this worker's row (only this worker writes it: no race on the key)."""
    with session_scope(engine) as session:
        found = session.get(WorkerPresence, row.identity)
        if found is None:
            session.add(row)
            return
        found.host, found.pid, found.task_queue = row.host, row.pid, row.task_queue
        found.digest, found.seen_at = row.digest, row.seen_at


def remove(engine: Engine, identity: str) -> None:
    with session_scope(engine) as session:
        session.exec(delete(WorkerPresence).where(col(WorkerPresence.identity) == identity))


def forget_old(engine: Engine, *, now: datetime) -> None:
    with session_scope(engine) as session:
        session.exec(
            delete(WorkerPresence).where(col(WorkerPresence.seen_at) < now - FORGOTTEN_AFTER)
        )


def set_event_types(engine: Engine, identity: str, heard: Interest) -> bool:
    """Record what this worker's relay hands to Temporal (None: every type); False when the
    worker has no row yet (its first heartbeat is still to come)."""
    types = None if heard.everything else sorted(heard.types)
    with session_scope(engine) as session:
        found = session.get(WorkerPresence, identity)
        if found is None:
            return False
        found.event_types = types
        return True


def heard_by_workers(
    engine: Engine, *, but: str | None = None, now: datetime | None = None
) -> Interest | None:
    """What the workers that beat lately (other than `but`) say their relays hand to Temporal,
    together; every type when one has not said (an older release, or its relay's first round
    still to come); None when no such worker beat. The API's hint takes None as every type (the
    relay judges the rest itself); a relay widens its own judgement by the others' answer."""
    since = (now or utcnow()) - STALE_AFTER
    query = select(WorkerPresence.event_types).where(col(WorkerPresence.seen_at) >= since)
    if but is not None:
        query = query.where(col(WorkerPresence.identity) != but)
    with read_scope(engine) as session:
        rows = session.exec(query).all()
    if not rows:
        return None
    heard = Interest()
    for types in rows:
        heard |= EVERYTHING if types is None else Interest(frozenset(types))
    return heard


def workers_seen(engine: Engine) -> list[WorkerPresence]:
    with read_scope(engine) as session:
        rows = session.exec(select(WorkerPresence).order_by(col(WorkerPresence.identity))).all()
        session.expunge_all()
        return list(rows)


async def report_presence(engine: Engine, *, identity: str, task_queue: str) -> None:
    """Record this worker at start, at once when its digest changes and every HEARTBEAT; remove
    the row when cancelled (a clean stop). A database error is logged and tried again later."""
    started = utcnow()

    def row_of(digest: str | None) -> WorkerPresence:
        return WorkerPresence(
            identity=identity,
            host=socket.gethostname(),
            pid=os.getpid(),
            task_queue=task_queue,
            digest=digest,
            started_at=started,
            seen_at=utcnow(),
        )

    written: str | None = None
    last = float("-inf")
    try:
        try:
            await asyncio.to_thread(forget_old, engine, now=started)
        except sa.exc.SQLAlchemyError as exc:  # a diagnostic must never stop the worker
            log.warning("cannot forget old presence rows: %s", exc)
        while True:
            digest = running_digest()
            if digest != written or time.monotonic() - last >= HEARTBEAT.total_seconds():
                last = time.monotonic()
                try:
                    await asyncio.to_thread(beat, engine, row_of(digest))
                except sa.exc.SQLAlchemyError as exc:
                    log.warning("cannot record this worker's presence: %s", exc)
                else:
                    written = digest  # a new digest not written is tried again at once
            await asyncio.sleep(LOOK_SECONDS)
    finally:
        try:
            await asyncio.to_thread(remove, engine, identity)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("cannot remove this worker's presence row: %s", exc)
