"""The click redirect: records the click, leads only to the message's own link (security)."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.api.conftest import Api, add_customer, add_message, now, rows
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
