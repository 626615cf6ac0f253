"""Worker presence rows: a worker records its digest at start and at once on a reload, removes
its row on a clean stop, and `trouw status` flags a worker behind the published digest."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from trouw.domain.content import files_digest, set_digest
from trouw.domain.db.engine import make_engine, session_scope
from trouw.domain.db.models import ContentBundle, WorkerPresence, utcnow
from trouw.domain.publish import pack
from trouw.settings import Settings
from trouw.stack.health import Check, catalog_state, content_checks, gather
from trouw.stack.presence import FORGOTTEN_AFTER, beat, forget_old, report_presence, workers_seen


def row(identity: str, digest: str | None, age: timedelta = timedelta(0)) -> WorkerPresence:
    return WorkerPresence(
        identity=identity,
        host="h",
        pid=7,
        task_queue="trouw",
        digest=digest,
        seen_at=utcnow() - age,
    )


async def wait_for(
    engine: Engine, predicate: Callable[[list[WorkerPresence]], bool], *, within: float = 10.0
) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate(await asyncio.to_thread(workers_seen, engine)):
        assert asyncio.get_running_loop().time() < deadline, "presence not recorded in time"
        await asyncio.sleep(0.1)


async def test_a_worker_records_its_digest_follows_a_reload_and_removes_itself(
    engine: Engine,
) -> None:
    set_digest("aaaaaaaaaaaa")
    task = asyncio.create_task(report_presence(engine, identity="1@host", task_queue="q"))
    try:
        await wait_for(engine, lambda rows: [r.digest for r in rows] == ["aaaaaaaaaaaa"])
        first = (await asyncio.to_thread(workers_seen, engine))[0]
        assert (first.task_queue, first.host) == ("q", socket.gethostname())
        set_digest("bbbbbbbbbbbb")  # a reload: recorded within a second, not a heartbeat
        await wait_for(engine, lambda rows: [r.digest for r in rows] == ["bbbbbbbbbbbb"], within=5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert await asyncio.to_thread(workers_seen, engine) == []


def versions(settings: Settings, engine: Engine) -> Check:
    return content_checks(settings, engine, utcnow())[1]


def test_status_flags_a_worker_behind_the_published_digest(
    engine: Engine, settings: Settings
) -> None:
    settings.content_source = "database"
    new = files_digest({})
    with session_scope(engine) as session:
        session.add(ContentBundle(digest=new, published_by="t", files=0, payload=pack({})))
    beat(engine, row("1@a", new))
    assert versions(settings, engine).ok
    beat(engine, row("2@b", "old000000000"))
    check = versions(settings, engine)
    assert not check.ok
    assert [item["digest"] for item in check.items] == [new, "old000000000"]
    assert f"NOT the expected {new}" in check.details[1]
    beat(engine, row("2@b", new))  # the same worker again: one row, updated
    assert versions(settings, engine).ok
    assert len(workers_seen(engine)) == 2


def test_a_starting_worker_forgets_rows_a_day_old(engine: Engine) -> None:
    beat(engine, row("old@a", "x", FORGOTTEN_AFTER + timedelta(minutes=1)))
    beat(engine, row("new@b", "x"))
    forget_old(engine, now=utcnow())
    assert [r.identity for r in workers_seen(engine)] == ["new@b"]


async def test_an_unreachable_database_at_start_does_not_stop_the_worker(tmp_path: Path) -> None:
    """forget_old at start and the first heartbeat fail (the database file cannot be opened):
    the presence task logs and keeps going instead of raising into the worker's run stack."""
    failures: list[str] = []
    beat_failed = asyncio.Event()

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            failures.append(record.getMessage().split(":")[0])
            if record.getMessage().startswith("cannot record"):
                beat_failed.set()

    seen = Seen(logging.WARNING)
    logging.getLogger("trouw.presence").addHandler(seen)
    unreachable = make_engine(f"sqlite:///{tmp_path / 'missing' / 'trouw.db'}")
    task = asyncio.create_task(report_presence(unreachable, identity="1@host", task_queue="q"))
    try:
        # In order, not in time: the forget failed, then the first beat; the task goes on.
        waiting = asyncio.ensure_future(beat_failed.wait())
        await asyncio.wait([task, waiting], return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        assert not task.done(), task.exception() if task.done() else None
        assert failures == [
            "cannot forget old presence rows",
            "cannot record this worker's presence",
        ]
    finally:
        logging.getLogger("trouw.presence").removeHandler(seen)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        unreachable.dispose()


class _TemporalDown:
    """A client whose server does not answer: `trouw status` goes on with the other checks."""

    class workflow_service:  # noqa: N801 - the attribute name of temporalio's Client
        @staticmethod
        async def get_system_info(request: object) -> None:
            raise RuntimeError("down")


def test_status_reads_the_folders_digest_once(
    engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The content check and the workers' check compare against one digest, computed once
    (a folders' digest reads every journey and template file)."""
    import trouw.domain.content

    real = trouw.domain.content.content_digest
    calls: list[tuple[Path, ...]] = []

    def counted(*folders: Path) -> str:
        calls.append(folders)
        return real(*folders)

    monkeypatch.setattr(trouw.domain.content, "content_digest", counted)
    beat(engine, row("1@a", real(settings.journeys_dir, settings.templates_dir)))
    health = asyncio.run(
        gather(settings, engine, catalog=catalog_state(settings), client=_TemporalDown())  # type: ignore[arg-type]
    )
    checks = {check.name: check for check in health.checks}
    assert checks["content"].ok and checks["worker versions"].ok
    assert len(calls) == 1
