"""GET /c/{code}: a tracked link. Records the click, then redirects to the message's own link."""

from __future__ import annotations

import queue
import re
import threading
import uuid
from concurrent.futures import Future
from datetime import UTC, datetime
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

router = APIRouter(include_in_schema=False)
_CODE = re.compile(r"[A-Za-z0-9_-]{22}")
_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
_BATCH = 500  # clicks per transaction at most
_IDLE_SECONDS = 5.0  # the writer thread ends after this long without a click
_COMMIT_WAIT_SECONDS = 30.0  # as long as SQLite's busy timeout


class ClickWriter:
    """Writes clicks to the engagement ledger from one thread, all waiting clicks per commit.

    A click's redirect waits for the commit that holds it (a redirected click is recorded) but
    not for a write lock of its own: on SQLite, one transaction per click made concurrent
    clicks queue for the database's single write lock, sleeping in its busy handler.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._queue: queue.SimpleQueue[tuple[Engagement, Future[None]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def record(self, row: Engagement) -> Future[None]:
        """Queues one engagement row; the future is done when it is committed (or failed)."""
        done: Future[None] = Future()
        with self._lock:
            self._queue.put((row, done))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="click writer", daemon=True)
                self._thread.start()
        return done

    def _run(self) -> None:
        table = Engagement.__table__  # type: ignore[attr-defined]
        while True:
            try:
                batch = [self._queue.get(timeout=_IDLE_SECONDS)]
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():  # record() starts a new thread for the next one
                        self._thread = None
                        return
                continue
            while len(batch) < _BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                with self.engine.begin() as connection:
                    rows = [row.model_dump(exclude={"id"}) for row, _ in batch]
                    connection.execute(table.insert(), rows)
            except Exception as exc:  # every click of the batch answers as the database did
                for _, done in batch:
                    done.set_exception(exc)
            else:
                for _, done in batch:
                    done.set_result(None)


_writers: dict[int, ClickWriter] = {}
_writers_lock = threading.Lock()


def click_writer(engine: Engine) -> ClickWriter:
    """The one writer per engine (per API process)."""
    with _writers_lock:
        writer = _writers.get(id(engine))
        if writer is None or writer.engine is not engine:
            writer = _writers[id(engine)] = ClickWriter(engine)
        return writer


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
    recorded = click_writer(state.engine).record(row)
    recorded.result(timeout=_COMMIT_WAIT_SECONDS)
    return RedirectResponse(with_click(found.url, click_id), status_code=302, headers=_HEADERS)
