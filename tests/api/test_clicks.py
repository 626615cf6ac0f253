"""The click redirect: records the click, leads only to the message's own link (security)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.api.conftest import Api, ApiSettings, add_customer, add_message, now, rows
from trouw.api.app import create_app
from trouw.api.clicks import ClickWriter
from trouw.db.engine import session_scope
from trouw.db.models import Engagement, TrackedLink
from trouw.measure.links import link_code

KEY = "run-1:tips:email"
TARGET = "https://shop.example/tips?utm_source=trouw"


@pytest.fixture
def link(api: Api) -> str:
    add_customer(api.engine, "c1")
    add_message(api.engine, KEY, journey="post_purchase", step="tips")
    code = link_code(b"test-key", KEY, TARGET)
    with session_scope(api.engine) as s:
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


def test_a_click_is_recorded_and_redirected_to_the_messages_link(api: Api, link: str) -> None:
    answer = api.client.get(f"/c/{link}", follow_redirects=False)
    assert answer.status_code == 302
    location = urlsplit(answer.headers["location"])
    assert (location.scheme, location.netloc, location.path) == ("https", "shop.example", "/tips")
    query = parse_qs(location.query)
    assert query["utm_source"] == ["trouw"]
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
    parked = tmp_path / "parked.jsonl"
    writer = ClickWriter(api.engine, parked=parked)
    # Queued before the thread starts: the three are one batch, the middle one refused.
    done = [
        writer.record(_click("redirect:a")),
        writer.record(_click("redirect:bad", customer_id=None)),
        writer.record(_click("redirect:b")),
    ]
    writer.start()
    writer.close()
    assert all(d.exception() is None for d in done)
    assert sorted(c.key for c in rows(api.engine, Engagement)) == ["redirect:a", "redirect:b"]
    [kept] = [json.loads(line) for line in parked.read_text().splitlines()]
    assert kept["row"]["key"] == "redirect:bad"


def test_the_click_writer_starts_and_ends_with_the_app(
    engine: Engine, api_settings: ApiSettings
) -> None:
    app = create_app(api_settings, engine)
    with TestClient(app):
        writer = app.state.trouw.clicks
        assert writer is not None and writer.engine is engine and writer.running
    assert app.state.trouw.clicks is None and not writer.running
