"""GET /c/{code}: a tracked link. Records the click, then redirects to the message's own link."""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
import uuid
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import sqlalchemy as sa
from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.engine import Engine

from trouw.api.state import ApiState, api_state
from trouw.db.engine import READ_ONLY
from trouw.db.models import Engagement, Message, TrackedLink
from trouw.measure.engagement import engagement_row
from trouw.measure.links import CLICK_PARAM

log = logging.getLogger("trouw.api.clicks")

router = APIRouter(include_in_schema=False)
_CODE = re.compile(r"[A-Za-z0-9_-]{22}")
_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
_BATCH = 500  # clicks per transaction at most
_COMMIT_WAIT_SECONDS = 30.0  # as long as SQLite's busy timeout
PARKED_FILE = "clicks-parked.jsonl"  # in the home folder: clicks the database refused


class ClickWriter:
    """Writes clicks to the engagement ledger from one thread, all waiting clicks per commit.

    One per app, started and stopped with it (its lifespan). A click's redirect waits for the
    commit that holds it (a redirected click is recorded) but not for a write lock of its own:
    on SQLite, one transaction per click made concurrent clicks queue for the database's single
    write lock, sleeping in its busy handler. A row the database refuses (a constraint) fails
    alone: the others of its batch are written, it is logged and kept in `parked`.
    """

    def __init__(self, engine: Engine, *, parked: Path) -> None:
        self.engine = engine
        self.parked = parked
        self._queue: queue.SimpleQueue[tuple[Engagement, Future[None]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="click writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        """Writes what is queued, then ends the thread."""
        self._queue.put(None)
        self._thread.join()

    def record(self, row: Engagement) -> Future[None]:
        """Queues one engagement row; the future is done when it is committed (or failed)."""
        done: Future[None] = Future()
        self._queue.put((row, done))
        return done

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < _BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._write(batch)
                    return
                batch.append(item)
            self._write(batch)

    def _write(self, batch: list[tuple[Engagement, Future[None]]]) -> None:
        table = Engagement.__table__  # type: ignore[attr-defined]
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    table.insert(), [row.model_dump(exclude={"id"}) for row, _ in batch]
                )
        except sa.exc.OperationalError as exc:  # the database, not a row: all answer alike
            for _, done in batch:
                done.set_exception(exc)
        except sa.exc.DBAPIError as exc:
            if len(batch) > 1:  # some row was refused: the others still go in
                for one in batch:
                    self._write([one])
                return
            row, done = batch[0]
            self._park(row, exc)
            done.set_result(None)
        else:
            for _, done in batch:
                done.set_result(None)

    def _park(self, row: Engagement, exc: Exception) -> None:
        reason = str(getattr(exc, "orig", exc)).splitlines()[0]
        log.error("click %s refused by the database (%s): kept in %s", row.key, reason, self.parked)
        self.parked.parent.mkdir(parents=True, exist_ok=True)
        with self.parked.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"reason": reason, "row": row.model_dump(mode="json")}) + "\n")


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
def follow_link(code: str, state: ApiState = Depends(api_state)) -> Response:
    """Only a code that a message holds leads anywhere, and only to that message's link:
    query strings, other hosts or a tampered code lead nowhere (404)."""
    if not _CODE.fullmatch(code):
        return _page(404, "This link is not known.")
    now = datetime.now(UTC)
    link = TrackedLink.__table__  # type: ignore[attr-defined]
    m = Message.__table__  # type: ignore[attr-defined]
    # One lookup by primary key, joined on the message's unique key; a read that waits for no
    # writer (trouw.db.engine.READ_ONLY).
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
    state.clicks.record(row).result(timeout=_COMMIT_WAIT_SECONDS)
    return RedirectResponse(with_click(found.url, click_id), status_code=302, headers=_HEADERS)
