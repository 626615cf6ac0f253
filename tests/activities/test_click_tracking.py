"""Sending rewrites a message's links to tracked ones; never the unsubscribe link; off by rule."""

from __future__ import annotations

import re

from sqlalchemy.engine import Engine
from sqlmodel import select

from activities.services import Services
from tests.activities.test_send_message import (  # noqa: F401 - fixtures
    request,
    send,
    sendgrid,
    services,
    twilio,
)
from tests.fakes import FakeSendGrid
from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import TrackedLink

KEY = "journey:k-2001:post_purchase:W-2001#0:tips:email"


def _html(sendgrid: FakeSendGrid) -> str:  # noqa: F811
    mail = sendgrid.mails[-1]
    return next(c["value"] for c in mail["content"] if c["type"] == "text/html")


def _links(engine: Engine) -> list[TrackedLink]:
    with session_scope(engine) as session:
        return list(session.exec(select(TrackedLink)).all())


async def test_links_go_through_the_redirect_but_unsubscribe_does_not(
    services: Services,  # noqa: F811
    sendgrid: FakeSendGrid,  # noqa: F811
    engine: Engine,
) -> None:
    result = await send(services, request(KEY, template="care_tips", category="service"))
    assert result.outcome == "sent"
    html = _html(sendgrid)
    hrefs = re.findall(r'href="([^"]+)"', html)
    tracked = [h for h in hrefs if h.startswith("https://trouw.example/c/")]
    assert tracked, hrefs
    assert any(h.startswith("https://trouw.example/u/") for h in hrefs)  # unsubscribe, as is
    assert not any(h.startswith("https://trouw.example/c/") and "/u/" in h for h in hrefs)
    rows = _links(engine)
    assert {f"https://trouw.example/c/{r.code}" for r in rows} == set(tracked)
    assert all(r.message_key == KEY for r in rows)
    # The List-Unsubscribe header still names the real unsubscribe link.
    headers = sendgrid.mails[-1].get("headers", {})
    assert "/u/" in headers.get("List-Unsubscribe", "/u/")


async def test_tracking_is_off_for_a_listed_journey(
    services: Services,  # noqa: F811
    sendgrid: FakeSendGrid,  # noqa: F811
    engine: Engine,
) -> None:
    services.settings.click_tracking_off_journeys = ["post_purchase"]
    await send(services, request(KEY, template="care_tips", category="service"))
    assert "https://trouw.example/c/" not in _html(sendgrid)
    assert _links(engine) == []


async def test_tracking_needs_consent_where_the_settings_ask_for_it(
    services: Services,  # noqa: F811
    sendgrid: FakeSendGrid,  # noqa: F811
    engine: Engine,
) -> None:
    services.settings.click_tracking_consent = "promotional"  # Bart never opted in
    await send(services, request(KEY, template="care_tips", category="service"))
    assert "https://trouw.example/c/" not in _html(sendgrid)
    assert _links(engine) == []
