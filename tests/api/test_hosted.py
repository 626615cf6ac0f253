"""The hosted copy ("view in browser"): sent through SMTP or SendGrid, read back by its signed link."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import select
from temporalio.testing import ActivityEnvironment

from activities.messaging import MessagingActivities
from activities.services import Services
from tests.conftest import ROOT
from tests.fakes import FakeSendGrid, FakeSmtpServer
from trouw.domain import gdpr
from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import MessageCopy
from trouw.domain.hosted import keep_copy, purge_expired_copies
from trouw.domain.ingest import CustomerIn, EventIn, ingest_event
from trouw.domain.tokens import (
    ExpiredTokenError,
    InvalidTokenError,
    TokenPayload,
    sign_token,
    sign_view_token,
    verify_view_token,
)
from trouw.language.contracts import SendMessageInput
from trouw.providers import aclose_provider
from trouw.settings import Settings
from trouw.ways_in.api.app import create_app

# The route reads the wall clock, so the send happens "now" too (the link lasts 90 days from it).
NOW = datetime.now(UTC).replace(microsecond=0)
KEY = "journey:k-3001:post_purchase:W-3001#0:confirmation:email"
VIEW_LINK = re.compile(r'href="https://trouw\.example(/m/[A-Za-z0-9_.-]+)"')


# --- the token ----------------------------------------------------------------------------------


def test_view_token_names_its_message_until_it_expires() -> None:
    token = sign_view_token(KEY, NOW + timedelta(days=90), [b"k1"])
    view = verify_view_token(token, [b"k1"], now=NOW)
    assert (view.message_key, view.expires_at) == (KEY, NOW + timedelta(days=90))
    with pytest.raises(ExpiredTokenError):
        verify_view_token(token, [b"k1"], now=NOW + timedelta(days=90))


def test_view_token_survives_key_rotation_and_refuses_foreign_keys() -> None:
    token = sign_view_token(KEY, NOW + timedelta(days=1), [b"old"])
    assert verify_view_token(token, [b"new", b"old"], now=NOW).message_key == KEY
    with pytest.raises(InvalidTokenError):
        verify_view_token(token, [b"new"], now=NOW)


def test_an_unsubscribe_token_is_no_view_token_and_vice_versa() -> None:
    from trouw.domain.tokens import verify_token

    unsubscribe = sign_token(TokenPayload(customer_id="k-3001", message_key=KEY), [b"k1"])
    with pytest.raises(InvalidTokenError):
        verify_view_token(unsubscribe, [b"k1"], now=NOW)
    with pytest.raises(InvalidTokenError):
        verify_token(sign_view_token(KEY, NOW + timedelta(days=1), [b"k1"]), [b"k1"])


def test_a_changed_expiry_breaks_the_signature() -> None:
    import base64
    import json

    token = sign_view_token(KEY, NOW + timedelta(days=1), [b"k1"])
    encoded, mac = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    body["exp"] += 86_400 * 365
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidTokenError):
        verify_view_token(f"{forged}.{mac}", [b"k1"], now=NOW)


# --- sent through a real provider, read back through the API ------------------------------------


@dataclass
class Sent:
    """One email sent by the send activity, and the app that serves its copy."""

    html: str
    path: str
    client: TestClient
    engine: Engine
    settings: Settings


def base_settings(tmp_path: Path, **providers: Any) -> Settings:
    return Settings(
        home=tmp_path / "home",
        journeys_dir=ROOT / "journeys",
        templates_dir=ROOT / "templates",
        signing_keys=["view-key"],
        public_url="https://trouw.example",
        send_rate_per_second=10_000,
        provider_timeout_seconds=5,
        **providers,
    )


def add_customer(engine: Engine) -> None:
    with session_scope(engine) as session:
        ingest_event(
            session,
            EventIn(
                id="evt-3001",
                type="purchase",
                customer="k-3001",
                order="W-3001",
                channel="web",
                at=NOW - timedelta(minutes=5),
                lines=[{"sku": "LAWN-10", "qty": 1, "unit_price": "24.95", "name": "Gazonmest"}],
                profile=CustomerIn(
                    id="k-3001",
                    first_name="Zoë",
                    last_name="Peeters",
                    email="zoe@example.com",
                    locale="fr-BE",
                    timezone="Europe/Brussels",
                ),
            ),
        )


def confirmation() -> SendMessageInput:
    return SendMessageInput(
        message_key=KEY,
        customer_id="k-3001",
        journey="post_purchase",
        journey_version="1",
        workflow_id="journey:k-3001:post_purchase:W-3001",
        step="confirmation",
        channel="email",
        template="order_confirmation",
        category="transactional",
        triggered_at=NOW - timedelta(minutes=5),
        service_cutoff_days=180,
        now=NOW,
        order_id="W-3001",
        skus=["LAWN-10"],
    )


@pytest.fixture
def sendgrid() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as fake:
        yield fake


@pytest.fixture
def smtp() -> Iterator[FakeSmtpServer]:
    with FakeSmtpServer() as fake:
        yield fake


def settings_for(provider: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    if provider == "sendgrid":
        fake: FakeSendGrid = request.getfixturevalue("sendgrid")
        return base_settings(
            tmp_path,
            email_provider="sendgrid",
            sendgrid_api_key=fake.api_key,
            sendgrid_host=fake.url,
        )
    server: FakeSmtpServer = request.getfixturevalue("smtp")
    return base_settings(
        tmp_path,
        email_provider="smtp",
        smtp_host=server.host,
        smtp_port=server.port,
        smtp_starttls=False,
    )


def received_html(provider: str, request: pytest.FixtureRequest) -> str:
    if provider == "sendgrid":
        [mail] = request.getfixturevalue("sendgrid").mails
        return str(next(c["value"] for c in mail["content"] if c["type"] == "text/html"))
    [mail] = request.getfixturevalue("smtp").received
    body = mail.message.get_body(("html",))
    assert body is not None
    # MIME text travels with CRLF line ends, and set_content ends the part with one.
    return str(body.get_content()).replace("\r\n", "\n").removesuffix("\n")


async def send_confirmation(settings: Settings, engine: Engine) -> None:
    """Zoë's order confirmation, through the real send activity and the configured provider."""
    services = Services.from_settings(settings, engine=engine)
    add_customer(engine)
    result = await ActivityEnvironment().run(
        MessagingActivities(services).send_message, confirmation()
    )
    assert result.outcome == "sent"
    for built in services._providers.values():
        await aclose_provider(built)


def view_path(html: str) -> str:
    match = VIEW_LINK.search(html)
    assert match, "no view-in-browser link in the sent email"
    return match.group(1)


@pytest.fixture(params=["smtp", "sendgrid"])
async def sent(
    request: pytest.FixtureRequest, tmp_path: Path, engine: Engine
) -> AsyncIterator[Sent]:
    provider = request.param
    settings = settings_for(provider, tmp_path, request)
    await send_confirmation(settings, engine)
    html = received_html(provider, request)
    with TestClient(create_app(settings, engine)) as client:
        yield Sent(html, view_path(html), client, engine, settings)


def test_the_link_in_the_email_shows_the_email_as_sent(sent: Sent) -> None:
    response = sent.client.get(sent.path)

    assert response.status_code == 200
    assert response.text == sent.html
    assert 'lang="fr-BE"' in response.text and "Zoë" in response.text
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "private, no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "noindex" in response.headers["x-robots-tag"]
    assert "script-src" not in response.headers["content-security-policy"]  # default 'none'


def test_a_tampered_or_foreign_link_shows_nothing(sent: Sent) -> None:
    token = sent.path.removeprefix("/m/")
    other_key = sign_view_token(KEY, NOW + timedelta(days=90), [b"someone-else"])
    unsubscribe = sign_token(TokenPayload(customer_id="k-3001", message_key=KEY), [b"view-key"])
    for bad in (token[:-2] + "AA", other_key, unsubscribe, "x", "a" * 2000):
        response = sent.client.get(f"/m/{bad}")
        assert response.status_code == 404
        assert "Zoë" not in response.text and "Gazonmest" not in response.text


def test_an_expired_link_is_gone(sent: Sent) -> None:
    expired = sign_view_token(KEY, datetime.now(UTC) - timedelta(seconds=1), [b"view-key"])
    response = sent.client.get(f"/m/{expired}", headers={"Accept-Language": "nl-BE"})
    assert response.status_code == 410
    assert "niet meer online" in response.text and "Zoë" not in response.text


def test_a_copy_past_its_time_is_deleted_when_asked_for(sent: Sent) -> None:
    with session_scope(sent.engine) as session:
        row = session.get(MessageCopy, KEY)
        assert row is not None
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
        session.add(row)
    assert sent.client.get(sent.path).status_code == 404
    with session_scope(sent.engine) as session:
        assert session.get(MessageCopy, KEY) is None


async def test_forget_removes_the_copy_and_the_link_stops_working(sent: Sent) -> None:
    with session_scope(sent.engine) as session:
        exported = gdpr.export(session, customer_id="k-3001")
    assert [c["html"] for c in exported["message_copies"]] == [sent.html]

    async def no_workflows(ids: list[str]) -> list[str]:
        return []

    report = await gdpr.forget(sent.engine, customer_id="k-3001", cancel=no_workflows)

    assert report.copies_deleted == 1
    assert "1 hosted email copies deleted (their links answer 404)" in report.lines()
    response = sent.client.get(sent.path)
    assert response.status_code == 404
    assert "Zoë" not in response.text
    with session_scope(sent.engine) as session:
        assert session.exec(select(MessageCopy)).all() == []


def test_purge_deletes_only_expired_copies(engine: Engine, tmp_path: Path) -> None:
    settings = base_settings(tmp_path)
    with session_scope(engine) as session:
        for key, at in (("old", NOW - timedelta(days=91)), ("new", NOW - timedelta(days=89))):
            keep_copy(session, settings, message_key=key, customer_id="c", html="<p>x</p>", now=at)
    with session_scope(engine) as session:
        assert purge_expired_copies(session, now=NOW) == 1
    with session_scope(engine) as session:
        assert [c.message_key for c in session.exec(select(MessageCopy)).all()] == ["new"]
