"""The click redirect: records the click, leads only to the message's own link (security)."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.api.conftest import (
    Api,
    ApiSettings,
    add_customer,
    add_message,
    clicks_recorded,
    now,
    rows,
    until,
)
from trouw.domain.db.engine import make_engine, migrate, session_scope
from trouw.domain.db.models import Engagement, TrackedLink
from trouw.domain.measure.links import link_code
from trouw.ways_in.api.app import create_app
from trouw.ways_in.api.clicks import PARKED_FILE, UNWRITTEN_FILE, ClickWriter

KEY = "run-1:tips:email"
TARGET = "https://shop.example/tips?utm_source=trouw"


def _store_link(engine: Engine) -> str:
    """c1's message KEY with its link to TARGET; the link's code."""
    add_customer(engine, "c1")
    add_message(engine, KEY, journey="post_purchase", step="tips")
    code = link_code(b"test-key", KEY, TARGET)
    with session_scope(engine) as s:
        s.add(
            TrackedLink(
                code=code,
                message_key=KEY,
                url=TARGET,
                created_at=now(),
                expires_at=now() + timedelta(days=30),
            )
        )
    return code


@pytest.fixture
def link(api: Api) -> str:
    return _store_link(api.engine)


def test_a_click_is_recorded_and_redirected_to_the_messages_link(api: Api, link: str) -> None:
    answer = api.client.get(f"/c/{link}", follow_redirects=False)
    assert answer.status_code == 302
    # The code is not passed on to the shop as the referrer, nor kept in a cache.
    assert (answer.headers["referrer-policy"], answer.headers["cache-control"]) == (
        "no-referrer",
        "no-store",
    )
    location = urlsplit(answer.headers["location"])
    assert (location.scheme, location.netloc, location.path) == ("https", "shop.example", "/tips")
    query = parse_qs(location.query)
    assert query["utm_source"] == ["trouw"]
    assert clicks_recorded(api.engine, 1)  # written behind the answer
    [click] = rows(api.engine, Engagement)
    assert (click.kind, click.source, click.message_key, click.link) == (
        "clicked",
        "redirect",
        KEY,
        TARGET,
    )
    assert query["trouw_click"] == [click.session_id]
    assert (click.journey, click.step, click.customer_id) == ("post_purchase", "tips", "c1")


def test_a_tampered_code_leads_nowhere(api: Api, link: str) -> None:
    flipped = ("A" if link[0] != "A" else "B") + link[1:]
    for code in (flipped, link[:-1], link + "x", "x" * 22, "..%2F..%2Fevil"):
        answer = api.client.get(f"/c/{code}", follow_redirects=False)
        assert answer.status_code == 404, code
        assert "location" not in answer.headers
    assert rows(api.engine, Engagement) == []


def test_a_foreign_url_in_the_request_is_never_followed(api: Api, link: str) -> None:
    for query in ("?url=https://evil.example/", "?next=//evil.example", "?u=https%3A%2F%2Fe.x"):
        answer = api.client.get(f"/c/{link}{query}", follow_redirects=False)
        assert answer.status_code == 302
        assert urlsplit(answer.headers["location"]).netloc == "shop.example"
    assert api.client.get("/c/https://evil.example", follow_redirects=False).status_code == 404


def test_an_expired_link_is_gone(api: Api, link: str) -> None:
    with session_scope(api.engine) as s:
        row = s.get(TrackedLink, link)
        assert row is not None
        row.expires_at = now() - timedelta(seconds=1)
        s.add(row)
    answer = api.client.get(f"/c/{link}", follow_redirects=False)
    assert answer.status_code == 410 and "location" not in answer.headers
    assert rows(api.engine, Engagement) == []


def _click(key: str, **fields: Any) -> Engagement:
    values: dict[str, Any] = {
        "key": key,
        "message_key": KEY,
        "customer_id": "c1",
        "journey": "post_purchase",
        "step": "tips",
        "channel": "email",
        "kind": "clicked",
        "at": now(),
        "source": "redirect",
        "link": TARGET,
        "session_id": key,
        **fields,
    }
    return Engagement(**values)


def test_a_refused_click_is_parked_and_the_rest_of_its_batch_written(
    api: Api, tmp_path: Path
) -> None:
    writer = ClickWriter(api.engine, folder=tmp_path)
    # Queued before the thread starts: the three are one batch, the middle one refused.
    writer.record(_click("redirect:a"))
    writer.record(_click("redirect:bad", customer_id=None))
    writer.record(_click("redirect:b"))
    writer.start()
    writer.close()
    assert sorted(c.key for c in rows(api.engine, Engagement)) == ["redirect:a", "redirect:b"]
    [kept] = [json.loads(line) for line in (tmp_path / PARKED_FILE).read_text().splitlines()]
    assert kept["key"] == "redirect:bad"


def test_a_row_the_driver_refuses_is_parked_and_the_writer_goes_on(
    api: Api, tmp_path: Path
) -> None:
    writer = ClickWriter(api.engine, folder=tmp_path)
    writer.record(_click("redirect:a"))
    writer.record(_click("redirect:bad", at="yesterday"))  # not a time: refused before the database
    writer.record(_click("redirect:b"))
    writer.start()
    assert clicks_recorded(api.engine, 2)
    writer.record(_click("redirect:c"))  # the writer still runs
    writer.close()
    assert sorted(c.key for c in rows(api.engine, Engagement)) == [
        "redirect:a",
        "redirect:b",
        "redirect:c",
    ]
    [kept] = [json.loads(line) for line in (tmp_path / PARKED_FILE).read_text().splitlines()]
    assert (kept["key"], kept["at"]) == ("redirect:bad", "yesterday")


def test_the_click_writer_starts_and_ends_with_the_app(
    engine: Engine, api_settings: ApiSettings
) -> None:
    app = create_app(api_settings, engine)
    with TestClient(app):
        writer = app.state.trouw.clicks
        assert writer is not None and writer.engine is engine and writer.running
    assert app.state.trouw.clicks is None and not writer.running


@contextmanager
def _ledger_locked(engine: Engine) -> Iterator[None]:
    """Holds what a click's write needs: SQLite's one write lock, PostgreSQL's engagement table."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql("SELECT 1")  # its transaction is BEGIN IMMEDIATE
        else:
            connection.execute(sa.text("LOCK TABLE engagement IN EXCLUSIVE MODE"))
        try:
            yield
        finally:
            connection.rollback()


def test_a_click_is_answered_while_the_ledger_is_locked(api: Api, link: str) -> None:
    held, answered, released = threading.Event(), threading.Event(), threading.Event()

    def hold() -> None:
        with _ledger_locked(api.engine):
            held.set()
            # Until the answer came; the wait only bounds the test when it never comes (before:
            # the redirect waited for the click's commit, so for this lock to go).
            answered.wait(60)
            released.set()

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    answer = api.client.get(f"/c/{link}", follow_redirects=False)
    while_held = not released.is_set()  # in order, not in time
    answered.set()
    holder.join()
    assert answer.status_code == 302 and while_held
    # Recorded behind the answer, once the lock is gone.
    assert clicks_recorded(api.engine, 1)
    [click] = rows(api.engine, Engagement)
    assert parse_qs(urlsplit(answer.headers["location"]).query)["trouw_click"] == [click.session_id]


def test_a_click_written_twice_is_recorded_once(api: Api, tmp_path: Path) -> None:
    writer = ClickWriter(api.engine, folder=tmp_path)
    for _ in range(2):  # a batch again after its commit's answer was lost, say
        writer.record(_click("redirect:again"))
    writer.start()
    writer.close()
    assert [c.key for c in rows(api.engine, Engagement)] == ["redirect:again"]


def test_clicks_not_written_at_a_stop_are_written_at_the_next_start(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'trouw.db'}"
    engine = make_engine(url)
    migrate(engine)
    impatient = make_engine(url)  # a busy database refuses its writes at once

    @sa.event.listens_for(impatient, "connect")
    def _no_wait(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=0")

    refused = threading.Event()

    class Refusals(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "wait to be written: database is locked" in record.getMessage():
                refused.set()

    seen = Refusals(logging.WARNING)
    logging.getLogger("trouw.api.clicks").addHandler(seen)
    writer = ClickWriter(impatient, folder=tmp_path)
    writer.start()
    # SQLite's write lock, held by a connection outside the process's writer queue: the
    # writer is refused by the database itself, not kept waiting in the queue.
    other = sqlite3.connect(tmp_path / "trouw.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        for n in range(3):
            writer.record(_click(f"redirect:{n}"))
        # In order, not in time: the database refused the clicks, then the API stops and the
        # writer tries no more (timeout 0). The wait only bounds a writer that never tries.
        assert refused.wait(60)
        writer.close(timeout=0)
    finally:
        other.rollback()
        other.close()
        logging.getLogger("trouw.api.clicks").removeHandler(seen)
    assert rows(engine, Engagement) == []  # the writer had ended before the lock went
    assert len((tmp_path / UNWRITTEN_FILE).read_text().splitlines()) == 3
    again = ClickWriter(impatient, folder=tmp_path)
    again.start()
    again.close()
    assert sorted(c.key for c in rows(engine, Engagement)) == [f"redirect:{n}" for n in range(3)]
    assert list(tmp_path.glob("clicks-*")) == []


def test_a_line_cut_in_the_unwritten_file_is_parked_and_the_writer_goes_on(
    api: Api, tmp_path: Path
) -> None:
    # A crash while the last stop kept its clicks: the file's last line is cut short.
    whole = json.dumps(_click("redirect:kept").model_dump(exclude={"id"}), default=str)
    (tmp_path / UNWRITTEN_FILE).write_text(whole + "\n" + whole[:40] + "\n", encoding="utf-8")
    writer = ClickWriter(api.engine, folder=tmp_path)
    writer.start()
    writer.record(_click("redirect:new"))
    writer.close()
    assert sorted(c.key for c in rows(api.engine, Engagement)) == ["redirect:kept", "redirect:new"]
    [kept] = [json.loads(line) for line in (tmp_path / PARKED_FILE).read_text().splitlines()]
    assert kept == {"unreadable": whole[:40]}


_SERVE = """
import sys, uvicorn
from trouw.ways_in.api.app import create_app
from trouw.domain.db.engine import make_engine
from trouw.settings import Settings
home, url, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
settings = Settings(home=home, database_url=url, signing_keys=["test-key"])
uvicorn.run(create_app(settings, make_engine(url)), port=port, log_level="warning")
"""


@pytest.mark.slow
def test_a_crash_loses_only_the_clicks_not_committed_yet(tmp_path: Path) -> None:
    """docs/measurement.md: a crash loses what the writer had queued and not committed."""
    url = f"sqlite:///{tmp_path / 'trouw.db'}"
    engine = make_engine(url)
    migrate(engine)
    code = _store_link(engine)

    def clicks_then_crash(n: int, locked: bool) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen(
            [sys.executable, "-c", _SERVE, str(tmp_path / "home"), url, str(port)]
        )
        try:
            base = f"http://127.0.0.1:{port}"

            def up() -> bool:
                try:
                    return httpx.get(f"{base}/healthz").status_code == 200
                except httpx.HTTPError:
                    return False

            assert until(up)
            with _ledger_locked(engine) if locked else contextlib.nullcontext():
                for _ in range(n):
                    answer = httpx.get(f"{base}/c/{code}", follow_redirects=False, timeout=30)
                    assert answer.status_code == 302
                if not locked:  # the writer commits on its own, soon after
                    assert clicks_recorded(engine, n)
                server.send_signal(signal.SIGKILL)
                server.wait()
        finally:
            server.kill()
            server.wait()

    # Killed while the database refused every write: the 3 answered clicks were in memory.
    clicks_then_crash(3, locked=True)
    assert rows(engine, Engagement) == []
    # Killed after the writer committed: nothing of the 3 is lost.
    clicks_then_crash(3, locked=False)
    assert len(rows(engine, Engagement)) == 3
