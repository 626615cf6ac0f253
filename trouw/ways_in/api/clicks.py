"""GET /c/{code}: a tracked link. Redirects to the message's own link at once; a writer thread
records the click behind it."""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from trouw.domain.db.engine import READ_ONLY
from trouw.domain.db.models import Engagement, Message, TrackedLink
from trouw.domain.measure.engagement import engagement_row
from trouw.domain.measure.links import CLICK_PARAM
from trouw.ways_in.api.state import api_state

log = logging.getLogger("trouw.api.clicks")

router = APIRouter(include_in_schema=False)
_CODE = re.compile(r"[A-Za-z0-9_-]{22}")
_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
_BATCH = 500  # clicks per transaction at most
_RETRY_SECONDS = 1.0  # after the database refused a write as a whole (locked, unreachable)
_DRAIN_SECONDS = 10.0  # at shutdown, how long the writer may try before keeping the rest
# In the home folder: clicks the database refused row by row (kept for a person to look at),
# and clicks not written when the API stopped (written at its next start).
PARKED_FILE = "clicks-parked.jsonl"
UNWRITTEN_FILE = "clicks-unwritten.jsonl"


class ClickWriter:
    """Writes clicks to the engagement ledger from one thread, all queued clicks per commit.

    One per app, started and stopped with it (its lifespan). The redirect only queues its
    click and answers: it waits for no commit. On SQLite a commit waits for the one write lock
    (sends, callbacks, imports, the roll-up fold) and now and then runs a checkpoint whose fsync
    other work on the disk stalls for seconds; the redirect's p99 was that wait.

    What a crash of the process loses is what it had queued and not committed yet
    (docs/measurement.md, "Click tracking"). A shutdown writes the queue first; what the
    database still refuses after `close`'s timeout is kept in `unwritten` and written at the
    next start. Every click is written once: its key (`redirect:<click id>`) is unique and a
    repeat of a batch inserts nothing again. A row the database refuses (a constraint) fails
    alone: the others of its batch are written, it is logged and kept in `parked`.
    """

    def __init__(self, engine: Engine, *, folder: Path) -> None:
        self.engine = engine
        self.parked = folder / PARKED_FILE
        self.unwritten = folder / UNWRITTEN_FILE
        self._queue: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="click writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def record(self, row: Engagement) -> None:
        """Queues one engagement row (returns at once)."""
        self._queue.put(row.model_dump(exclude={"id"}))

    def close(self, timeout: float | None = None) -> None:
        """Writes what is queued and ends the thread; a database that still refuses after
        `timeout` seconds (default _DRAIN_SECONDS) gets no more tries: the rest is kept in
        `unwritten`."""
        self._queue.put(None)
        self._thread.join(_DRAIN_SECONDS if timeout is None else timeout)
        if self._thread.is_alive():
            self._stopping.set()
            self._thread.join()

    def _run(self) -> None:
        try:
            self._restore()
        except Exception:  # the writer must outlive it too: the file stays for the next start
            log.exception("the clicks kept at the last stop could not be written")
        while True:
            batch = [self._queue.get()]
            while len(batch) < _BATCH and batch[-1] is not None:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            rows = [row for row in batch if row is not None]
            if rows:
                try:
                    self._write(rows)
                except Exception as exc:  # the writer must outlive any one batch
                    log.exception("click writer failed on %d click(s)", len(rows))
                    self._keep(self.parked, rows, str(exc))
            if batch[-1] is None:
                return

    def _restore(self) -> None:
        """The clicks a previous stop could not write: written first (a repeat is harmless)."""
        kept = self.unwritten.with_suffix(".restoring")
        if self.unwritten.exists():  # one file to work from, whatever stopped a restore
            with kept.open("a", encoding="utf-8") as out:
                out.write(self.unwritten.read_text("utf-8"))
            self.unwritten.unlink()
        if not kept.exists():
            return
        rows = []
        for line in kept.read_text("utf-8").splitlines():
            try:
                row = json.loads(line)
                row["at"] = datetime.fromisoformat(row["at"])
            except (ValueError, TypeError, KeyError):  # a line cut by a crash while it was kept
                self._keep(self.parked, [{"unreadable": line}], f"not a click in {kept.name}")
                continue
            rows.append(row)
        if rows:
            self._write(rows)  # what it cannot write goes to a new `unwritten`
        kept.unlink()
        log.info("%d click(s) kept at the last stop: written", len(rows))

    def _write(self, rows: list[dict[str, Any]]) -> None:
        """Commits rows, trying again while the database refuses as a whole; alone, a row it
        refuses is parked."""
        while not self._stopping.is_set():
            try:
                with self.engine.begin() as connection:
                    _insert_new(connection, rows)
                return
            except sa.exc.OperationalError as exc:  # the database, not a row: the same again
                reason = str(exc.orig or exc).splitlines()[0]
                log.warning("%d click(s) wait to be written: %s", len(rows), reason)
                self._stopping.wait(_RETRY_SECONDS)
            except sa.exc.StatementError as exc:  # a row refused, by the database or the driver
                if len(rows) > 1:  # some row was refused: the others still go in
                    for row in rows:
                        self._write([row])
                    return
                self._keep(self.parked, rows, str(exc.orig or exc).splitlines()[0])
                return
        self._keep(self.unwritten, rows, "not written before the API stopped")

    def _keep(self, path: Path, rows: list[dict[str, Any]], reason: str) -> None:
        log.error("%d click(s) not written (%s): kept in %s", len(rows), reason, path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps(row, default=_plain) + "\n")


def _plain(value: Any) -> str:
    """A row's value that JSON has no type for, as text (times in ISO 8601, read back so)."""
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _insert_new(connection: Connection, rows: list[dict[str, Any]]) -> None:
    """Inserts the rows whose key is not in the ledger yet."""
    table = Engagement.__table__  # type: ignore[attr-defined]
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).on_conflict_do_nothing(index_elements=["key"])
    connection.execute(statement, rows)


def _page(status: int, text: str) -> HTMLResponse:
    body = (
        f"<!doctype html><html lang=en><meta charset=utf-8><title>Link</title><p>{text}</p></html>"
    )
    return HTMLResponse(body, status_code=status, headers=_HEADERS)


def with_click(url: str, click_id: str) -> str:
    parts = urlsplit(url)
    extra = urlencode({CLICK_PARAM: click_id})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


@router.get("/c/{code}")
def follow_link(code: str, request: Request) -> Response:
    """Only a code that a message holds leads anywhere, and only to that message's link:
    query strings, other hosts or a tampered code lead nowhere (404)."""
    # Not Depends(api_state): FastAPI runs a plain-function dependency in a worker thread of its
    # own, one more hand-over (and wait for a core) per click.
    state = api_state(request)
    if not _CODE.fullmatch(code):
        return _page(404, "This link is not known.")
    now = datetime.now(UTC)
    link = TrackedLink.__table__  # type: ignore[attr-defined]
    m = Message.__table__  # type: ignore[attr-defined]
    # One lookup by primary key, joined on the message's unique key; a read that waits for no
    # writer (trouw.domain.db.engine.READ_ONLY).
    with state.engine.connect().execution_options(**{READ_ONLY: True}) as connection:
        found: Any = connection.execute(
            sa.select(
                link.c.url,
                link.c.expires_at,
                m.c.message_key,
                m.c.customer_id,
                m.c.journey,
                m.c.journey_version,
                m.c.step,
                m.c.channel,
            )
            .join(m, m.c.message_key == link.c.message_key)
            .where(link.c.code == code)
        ).first()
    if found is None:
        return _page(404, "This link is not known.")
    if now >= found.expires_at:
        return _page(410, "This link has expired.")
    click_id = uuid.uuid4().hex
    # `found` carries the message's key, customer, journey, version, step and channel.
    row = engagement_row(
        found,
        "clicked",
        key=f"redirect:{click_id}",
        at=now,
        source="redirect",
        link=found.url,
        session_id=click_id,
    )
    assert state.clicks is not None, "the app's lifespan starts the click writer"
    state.clicks.record(row)  # written behind the answer: see ClickWriter
    return RedirectResponse(with_click(found.url, click_id), status_code=302, headers=_HEADERS)
