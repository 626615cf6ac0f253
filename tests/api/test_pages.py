"""Unsubscribe (RFC 8058 one-click) and preference pages, over HTTP without a browser."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.api.conftest import Api, add_customer, consents, events, suppressions
from trouw.db.engine import session_scope
from trouw.gdpr import erase
from trouw.tokens import TokenPayload, sign_token

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def token(customer_id: str = "c1", **fields: str) -> str:
    return sign_token(TokenPayload(customer_id=customer_id, **fields), [b"test-key"])  # type: ignore[arg-type]


@pytest.fixture
def shopper(api: Api) -> Api:
    add_customer(api.engine, "c1", opt_in={"email": True})
    return api


def test_get_shows_a_confirmation_and_changes_nothing(shopper: Api) -> None:
    link = f"/u/{token(channel='email', category='all', message_key='run-1:tip:email')}"
    page = shopper.client.get(link)
    assert page.status_code == 200
    assert 'lang="nl-BE"' in page.text and "Wil je geen e-mails meer ontvangen" in page.text
    assert (
        f'action="{link}"' in page.text and 'name="List-Unsubscribe" value="One-Click"' in page.text
    )
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert len(consents(shopper.engine)) == 1 and suppressions(shopper.engine) == []


def test_one_click_post_unsubscribes_at_once(shopper: Api) -> None:
    link = f"/u/{token(channel='email', category='all', message_key='run-1:tip:email')}"
    response = shopper.client.post(link, data=ONE_CLICK)
    assert response.status_code == 200 and "Je bent afgemeld" in response.text
    assert not response.is_redirect
    withdrawn = [r for r in consents(shopper.engine) if not r.granted]
    assert {(r.channel, r.scope) for r in withdrawn} == {
        ("email", "promotional"),
        ("email", "service"),
    }
    assert all(r.source == "unsubscribe" for r in withdrawn)
    assert all(
        r.wording_text == "one-click unsubscribe link in message run-1:tip:email" for r in withdrawn
    )
    assert {(s.channel, s.reason) for s in suppressions(shopper.engine)} == {
        ("email", "unsubscribe")
    }
    [event] = events(shopper.engine)
    assert event.type == "unsubscribe" and event.source_id.startswith("unsubscribe:")
    # A mail client retrying the POST: the same answer, no second effect.
    assert shopper.client.post(link, data=ONE_CLICK).status_code == 200
    assert len(events(shopper.engine)) == 1 and len(consents(shopper.engine)) == 3


def test_one_click_as_multipart_and_for_all_channels(shopper: Api) -> None:
    response = shopper.client.post(f"/u/{token()}", files={"List-Unsubscribe": (None, "One-Click")})
    assert response.status_code == 200
    assert {(s.channel, s.reason) for s in suppressions(shopper.engine)} == {
        ("email", "unsubscribe"),
        ("sms", "unsubscribe"),
    }


def test_promotional_only_link_keeps_service_messages(shopper: Api) -> None:
    shopper.client.post(f"/u/{token(category='promotional', channel='email')}", data=ONE_CLICK)
    latest = {(r.channel, r.scope): r.granted for r in consents(shopper.engine)}
    assert latest == {("email", "promotional"): False}
    assert suppressions(shopper.engine) == []
    assert [e.type for e in events(shopper.engine)] == ["opt_out"]


@pytest.mark.parametrize(
    "bad",
    [
        "garbage",
        token()[:-2] + "xx",
        sign_token(TokenPayload(customer_id="c1"), [b"another-key"]),
        "a" * 2000,
    ],
)
def test_bad_token_is_400_and_changes_nothing(shopper: Api, bad: str) -> None:
    for method in ("get", "post"):
        page = getattr(shopper.client, method)(f"/u/{bad}")
        assert page.status_code == 400 and "Deze link werkt niet" in page.text
    assert shopper.client.get(f"/preferences/{bad}").status_code == 400
    assert shopper.client.post(f"/preferences/{bad}", data={}).status_code == 400
    assert len(consents(shopper.engine)) == 1 and suppressions(shopper.engine) == []


def test_pages_speak_the_customer_language(api: Api) -> None:
    add_customer(api.engine, "fr1", locale="fr-BE", email="claire@example.com", phone=None)
    add_customer(api.engine, "en1", locale="en", email="olivia@example.com", phone=None)
    assert "Vous ne souhaitez plus recevoir" in api.client.get(f"/u/{token('fr1')}").text
    assert "Your preferences" in api.client.get(f"/preferences/{token('en1')}").text


def test_preferences_are_prefilled_and_saved_as_ledger_records(shopper: Api) -> None:
    link = f"/preferences/{token()}"
    page = shopper.client.get(link).text
    assert 'id="email_promotional" value="yes" checked' in page
    assert 'id="sms_promotional" value="yes">' in page
    assert 'id="email_service" value="yes" checked' in page
    # Untick promotional email, keep the rest.
    saved = shopper.client.post(link, data={"email_service": "yes", "sms_service": "yes"})
    assert saved.status_code == 200 and "Je voorkeuren zijn opgeslagen" in saved.text
    new = [r for r in consents(shopper.engine) if r.source == "preferences"]
    assert [(r.channel, r.scope, r.granted) for r in new] == [("email", "promotional", False)]
    assert new[0].wording_text == "E-mail: Aanbiedingen en nieuws"
    assert [e.type for e in events(shopper.engine)] == ["opt_out"]
    # Saving the same choices again appends nothing.
    shopper.client.post(link, data={"email_service": "yes", "sms_service": "yes"})
    assert len([r for r in consents(shopper.engine) if r.source == "preferences"]) == 1
    # Ticking promotional SMS and unticking service SMS.
    shopper.client.post(link, data={"email_service": "yes", "sms_promotional": "yes"})
    latest = {(r.channel, r.scope): r.granted for r in consents(shopper.engine)}
    assert latest[("sms", "promotional")] is True and latest[("sms", "service")] is False


def test_suppressed_channel_is_shown_but_not_changed(shopper: Api) -> None:
    shopper.client.post(f"/u/{token(channel='email')}", data=ONE_CLICK)
    link = f"/preferences/{token()}"
    page = shopper.client.get(link).text
    assert "Je hebt je hiervoor afgemeld op" in page and "disabled" in page
    before = len(consents(shopper.engine))
    shopper.client.post(link, data={"email_promotional": "yes", "sms_service": "yes"})
    assert len(consents(shopper.engine)) == before


def test_an_erased_customer_is_unknown(shopper: Api) -> None:
    with session_scope(shopper.engine) as session:
        erase(session, customer_id="c1", at=datetime.now(UTC))
    before = len(consents(shopper.engine))
    link = f"/u/{token(channel='email', category='all')}"
    assert shopper.client.post(link, data=ONE_CLICK).status_code == 200
    assert shopper.client.get(f"/preferences/{token()}").status_code == 400
    assert events(shopper.engine) == [] and len(consents(shopper.engine)) == before


def test_unknown_customer(api: Api) -> None:
    # Nothing to unsubscribe, but the person asked: say it is done; preferences need a customer.
    assert api.client.post(f"/u/{token('gone')}", data=ONE_CLICK).status_code == 200
    assert api.client.get(f"/preferences/{token('gone')}").status_code == 400
