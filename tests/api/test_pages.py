"""Unsubscribe (RFC 8058 one-click) and preference pages, over HTTP without a browser."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from tests.api.conftest import Api, add_customer, consents, events, rows, suppressions
from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import Customer, ProfileChange
from trouw.domain.gdpr import erase
from trouw.domain.tokens import TokenPayload, sign_token

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
    assert event.payload["data"] == {"channel": "email", "scope": "all"}
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


# --- the profile part: what the enrichment email asks for -------------------------------------


def profile_changes(api: Api) -> list[tuple[str, str]]:
    return [(r.field, r.source) for r in rows(api.engine, ProfileChange) if r.source != "pos"]


def customer(api: Api, customer_id: str = "c1") -> Customer:
    [row] = rows(api.engine, Customer, Customer.id == customer_id)
    return row


def keep_consent(**fields: str) -> dict[str, str]:
    """The form as sent with the consent boxes left as they are (email promotional ticked)."""
    return {"email_promotional": "yes", "email_service": "yes", "sms_service": "yes", **fields}


def test_the_page_asks_for_the_birthday_the_email_promises(shopper: Api) -> None:
    page = shopper.client.get(f"/preferences/{token()}").text
    assert '<input type="date" name="birthday" id="birthday"' in page
    assert 'min="1900-01-01"' in page
    assert 'name="first_name"' in page and 'name="last_name"' in page
    assert 'name="preferred_channel"' in page and 'value="sms"' in page


def test_birthday_is_stored_with_source_and_time_and_announced(shopper: Api) -> None:
    before = datetime.now(UTC)
    saved = shopper.client.post(f"/preferences/{token()}", data=keep_consent(birthday="1979-04-24"))
    assert saved.status_code == 200 and "Je voorkeuren zijn opgeslagen" in saved.text
    assert customer(shopper).birthday == date(1979, 4, 24)
    assert 'value="1979-04-24"' in saved.text
    [change] = rows(shopper.engine, ProfileChange, ProfileChange.source == "preferences")
    assert (change.field, change.source) == ("birthday", "preferences") and change.at >= before
    # The customer's workflow hears of it (the enrichment journey ends), without the value.
    [register] = [e for e in events(shopper.engine) if e.type == "register"]
    assert register.payload["data"] == {"changed": ["birthday"]}
    assert "1979" not in str(register.payload)
    # Consent untouched, nothing recorded twice when saved again unchanged.
    assert [r for r in consents(shopper.engine) if r.source == "preferences"] == []
    shopper.client.post(f"/preferences/{token()}", data=keep_consent(birthday="1979-04-24"))
    assert len(profile_changes(shopper)) == 1


def test_a_belgian_date_is_understood(shopper: Api) -> None:
    shopper.client.post(f"/preferences/{token()}", data=keep_consent(birthday="24/04/1979"))
    assert customer(shopper).birthday == date(1979, 4, 24)


@pytest.mark.parametrize(
    ("birthday", "message"),
    [
        ("2999-01-01", "Een verjaardag kan niet in de toekomst liggen."),
        ("1899-12-31", "Een verjaardag vóór 1900 kan niet kloppen: kijk het jaar na."),
        ("31-02-1980", "Schrijf je verjaardag als dag-maand-jaar, bijvoorbeeld 24-04-1979."),
    ],
)
def test_an_impossible_birthday_is_refused_with_a_clear_message(
    shopper: Api, birthday: str, message: str
) -> None:
    page = shopper.client.post(
        f"/preferences/{token()}",
        data={"email_service": "yes", "sms_service": "yes", "birthday": birthday},
    )
    assert page.status_code == 422
    assert f'<p class="field-error" id="birthday-error">{message}</p>' in page.text
    assert 'aria-invalid="true"' in page.text and "Je voorkeuren zijn opgeslagen" not in page.text
    # What was typed stays in the form; nothing is saved (the promotional box too).
    assert f'value="{birthday}"' in page.text
    assert customer(shopper).birthday is None and profile_changes(shopper) == []
    assert [r for r in consents(shopper.engine) if r.source == "preferences"] == []


def test_the_future_is_refused_in_every_language(api: Api) -> None:
    add_customer(api.engine, "fr1", locale="fr-BE")
    add_customer(api.engine, "en1", locale="en")
    future = {"birthday": "2999-01-01"}
    assert (
        "ne peut pas être dans le futur"
        in api.client.post(f"/preferences/{token('fr1')}", data=future).text
    )
    assert (
        "cannot be in the future"
        in api.client.post(f"/preferences/{token('en1')}", data=future).text
    )


def test_name_and_preferred_channel_are_corrected(shopper: Api) -> None:
    link = f"/preferences/{token()}"
    shopper.client.post(
        link,
        data=keep_consent(first_name=" Barbara ", last_name="Peeters", preferred_channel="sms"),
    )
    row = customer(shopper)
    assert (row.first_name, row.last_name, row.preferred_channel) == ("Barbara", "Peeters", "sms")
    assert sorted(profile_changes(shopper)) == [
        ("first_name", "preferences"),
        ("last_name", "preferences"),
        ("preferred_channel", "preferences"),
    ]
    page = shopper.client.get(link).text
    assert 'value="Barbara"' in page and 'value="sms" checked' in page
    # A name on two lines is refused; no preference clears the channel.
    bad = shopper.client.post(link, data=keep_consent(first_name="Bar\nbara"))
    assert bad.status_code == 422 and 'id="first_name-error"' in bad.text
    shopper.client.post(link, data=keep_consent(first_name="Barbara", preferred_channel=""))
    assert customer(shopper).preferred_channel is None


def test_the_birthday_can_be_removed_as_the_email_promises(shopper: Api) -> None:
    link = f"/preferences/{token()}"
    shopper.client.post(link, data=keep_consent(birthday="1979-04-24"))
    shopper.client.post(link, data=keep_consent(birthday=""))
    assert customer(shopper).birthday is None
    assert profile_changes(shopper) == [("birthday", "preferences"), ("birthday", "preferences")]


def test_a_form_without_the_profile_fields_changes_no_profile(shopper: Api) -> None:
    # An old page still open in a tab posts only the boxes: the profile stays as it is.
    add_customer(shopper.engine, "c1", first_name="Bart", birthday=date(1979, 4, 24))
    shopper.client.post(f"/preferences/{token()}", data={"email_service": "yes"})
    assert (customer(shopper).first_name, customer(shopper).birthday) == (
        "Bart",
        date(1979, 4, 24),
    )
    assert profile_changes(shopper) == []
