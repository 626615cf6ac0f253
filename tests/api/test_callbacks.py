"""Provider callbacks: SendGrid signed events and Twilio status and inbound SMS, applied once."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator

from tests.api.conftest import (
    PUBLIC_URL,
    TWILIO_TOKEN,
    Api,
    SendGridSigner,
    add_customer,
    add_message,
    consents,
    customer,
    events,
    message,
    rows,
    suppressions,
)
from trouw.domain.consent import address_hash
from trouw.domain.db.models import CallbackEvent
from trouw.providers.twilio.callbacks import help_text

KEY = "run-1:confirm:email"


def sg_event(event: str, event_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "email": "bart@example.com",
        "timestamp": 1772442000,
        "event": event,
        "sg_event_id": event_id,
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "message_key": KEY,
        **fields,
    }


def post_sendgrid(api: Api, signer: SendGridSigner, batch: list[dict[str, Any]]) -> Any:
    # SendGrid's raw body, byte for byte as signed (it ends with CRLF in their own vector).
    body = (json.dumps(batch) + "\r\n").encode()
    return api.client.post("/v1/callbacks/sendgrid", content=body, headers=signer.headers(body))


@pytest.fixture
def mail(api: Api) -> Api:
    add_customer(api.engine, "c1")
    add_message(api.engine, KEY, provider_id="14c5d75ce93.dfd.64b469")
    return api


def test_sendgrid_statuses_advance_and_never_go_back(
    mail: Api, sendgrid_signer: SendGridSigner
) -> None:
    batch = [sg_event("open", "e2"), sg_event("delivered", "e1"), sg_event("processed", "e0")]
    response = post_sendgrid(mail, sendgrid_signer, batch)
    assert response.status_code == 200 and response.json() == {"received": 3, "duplicates": 0}
    sent = message(mail.engine, KEY)
    assert sent.status == "opened"
    assert [h["event"] for h in sent.status_history] == ["open", "delivered", "processed"]


def test_sendgrid_duplicates_are_applied_once(mail: Api, sendgrid_signer: SendGridSigner) -> None:
    batch = [sg_event("delivered", "e1"), sg_event("delivered", "e1")]
    assert post_sendgrid(mail, sendgrid_signer, batch).json()["duplicates"] == 1
    again = post_sendgrid(mail, sendgrid_signer, [sg_event("delivered", "e1")])
    assert again.json() == {"received": 1, "duplicates": 1}
    assert len(message(mail.engine, KEY).status_history) == 1
    assert [row.event_id for row in rows(mail.engine, CallbackEvent)] == ["sendgrid:e1"]


def test_sendgrid_bounce_suppresses_and_tells_the_workflow(
    mail: Api, sendgrid_signer: SendGridSigner
) -> None:
    # Bounces may lack custom_args: found through sg_message_id.
    bounce = sg_event("bounce", "b1", type="bounce", reason="550 5.1.1 no such user")
    del bounce["message_key"]
    post_sendgrid(mail, sendgrid_signer, [bounce])
    assert message(mail.engine, KEY).status == "bounced"
    assert {(s.channel, s.reason) for s in suppressions(mail.engine)} == {("email", "hard_bounce")}
    assert [(e.source_id, e.type) for e in events(mail.engine)] == [("sendgrid:b1", "bounce")]


def test_sendgrid_blocked_is_not_a_hard_bounce(mail: Api, sendgrid_signer: SendGridSigner) -> None:
    post_sendgrid(mail, sendgrid_signer, [sg_event("bounce", "b2", type="blocked")])
    assert message(mail.engine, KEY).status == "blocked"
    assert suppressions(mail.engine) == []


def test_sendgrid_spamreport_and_unsubscribe(mail: Api, sendgrid_signer: SendGridSigner) -> None:
    post_sendgrid(mail, sendgrid_signer, [sg_event("spamreport", "s1")])
    # The provider's suppression (spam_complaint) is tied to the message's customer too.
    reasons = {(s.reason, s.customer_id) for s in suppressions(mail.engine)}
    assert reasons == {("spam_complaint", "c1"), ("unsubscribe", "c1")}
    assert message(mail.engine, KEY).status == "spam_complaint"
    withdrawn = {(r.channel, r.scope) for r in consents(mail.engine) if not r.granted}
    assert withdrawn == {("email", "promotional"), ("email", "service")}
    assert [e.type for e in events(mail.engine)] == ["unsubscribe"]


def test_sendgrid_unsubscribe_withdraws_consent(mail: Api, sendgrid_signer: SendGridSigner) -> None:
    post_sendgrid(mail, sendgrid_signer, [sg_event("unsubscribe", "u1")])
    assert {s.reason for s in suppressions(mail.engine)} == {"unsubscribe"}
    assert {r.source for r in consents(mail.engine)} == {"sendgrid"}
    assert message(mail.engine, KEY).status == "unsubscribed"
    [event] = events(mail.engine)
    # The journeys learn what the unsubscribe covers: all email, receipts excepted.
    assert (event.type, event.payload["data"]) == (
        "unsubscribe",
        {"channel": "email", "scope": "all"},
    )


def test_sendgrid_event_for_an_unknown_address_still_suppresses(
    api: Api, sendgrid_signer: SendGridSigner
) -> None:
    event = sg_event("dropped", "d1", reason="Bounced Address", email="ghost@example.com")
    del event["message_key"]
    assert post_sendgrid(api, sendgrid_signer, [event]).status_code == 200
    [row] = suppressions(api.engine)
    assert (row.address_hash, row.reason, row.customer_id) == (
        address_hash("ghost@example.com"),
        "hard_bounce",
        None,
    )


@pytest.mark.parametrize("tamper", ["body", "timestamp", "signature", "other key", "missing"])
def test_sendgrid_unverified_is_401_and_changes_nothing(
    mail: Api, sendgrid_signer: SendGridSigner, tamper: str
) -> None:
    body = (json.dumps([sg_event("bounce", "b1", type="bounce")]) + "\r\n").encode()
    headers = sendgrid_signer.headers(body)
    if tamper == "body":
        body = body.rstrip()
    elif tamper == "timestamp":
        headers["X-Twilio-Email-Event-Webhook-Timestamp"] = "1700000001"
    elif tamper == "signature":
        headers["X-Twilio-Email-Event-Webhook-Signature"] = "bm90IGEgc2lnbmF0dXJl"
    elif tamper == "other key":
        headers = SendGridSigner().headers(body)
    else:
        del headers["X-Twilio-Email-Event-Webhook-Signature"]
    response = mail.client.post("/v1/callbacks/sendgrid", content=body, headers=headers)
    assert response.status_code == 401
    assert message(mail.engine, KEY).status == "sent"
    assert suppressions(mail.engine) == [] and events(mail.engine) == []
    assert rows(mail.engine, CallbackEvent) == []


# --- Twilio ---------------------------------------------------------------------------------

SMS_KEY = "run-1:tip:sms"


def twilio_post(
    api: Api,
    path: str,
    params: dict[str, str],
    *,
    signed_url: str | None = None,
    headers: dict[str, str] | None = None,
    token: str = TWILIO_TOKEN,
) -> Any:
    url = signed_url or f"{PUBLIC_URL}{path}"
    signature = RequestValidator(token).compute_signature(url, params)
    return api.client.post(
        path,
        content=urlencode(params).encode(),
        headers={
            "X-Twilio-Signature": signature,
            "Content-Type": "application/x-www-form-urlencoded",
            **(headers or {}),
        },
    )


@pytest.fixture
def sms(api: Api) -> Api:
    add_customer(api.engine, "c1", locale="fr-BE")
    add_message(api.engine, SMS_KEY, channel="sms", provider="twilio", provider_id="SM123")
    return api


def status_params(status: str, **extra: str) -> dict[str, str]:
    return {
        "MessageSid": "SM123",
        "SmsSid": "SM123",
        "MessageStatus": status,
        "SmsStatus": status,
        "To": "+32470000001",
        "From": "+32460000000",
        "AccountSid": "AC123",
        **extra,
    }


def test_twilio_status_updates_the_message(sms: Api) -> None:
    path = f"/v1/callbacks/twilio/status?mk={SMS_KEY.replace(':', '%3A')}"
    response = twilio_post(sms, path, status_params("delivered"))
    assert response.status_code == 204
    assert message(sms.engine, SMS_KEY).status == "delivered"
    # Late "sent" after "delivered": recorded in history, status stays.
    twilio_post(sms, path, status_params("sent"))
    sent = message(sms.engine, SMS_KEY)
    assert sent.status == "delivered"
    assert [h["event"] for h in sent.status_history] == ["delivered", "sent"]
    twilio_post(sms, path, status_params("sent"))
    assert len(message(sms.engine, SMS_KEY).status_history) == 2


def test_twilio_status_behind_a_proxy(sms: Api) -> None:
    # Public URL unset (default) and a proxy in front: the forwarded scheme and host are signed.
    sms.settings.public_url = "http://127.0.0.1:8000"
    response = twilio_post(
        sms,
        "/v1/callbacks/twilio/status",
        status_params("delivered"),
        signed_url="https://shop.example/v1/callbacks/twilio/status",
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "shop.example"},
    )
    assert response.status_code == 204
    assert message(sms.engine, SMS_KEY).status == "delivered"


def test_twilio_undelivered_to_an_opted_out_number(sms: Api) -> None:
    twilio_post(sms, "/v1/callbacks/twilio/status", status_params("undelivered", ErrorCode="21610"))
    assert message(sms.engine, SMS_KEY).status == "bounced"
    assert {(s.channel, s.reason) for s in suppressions(sms.engine)} == {("sms", "sms_stop")}
    assert [e.type for e in events(sms.engine)] == ["sms_stop"]


def test_twilio_invalid_number_marks_the_phone(sms: Api) -> None:
    twilio_post(sms, "/v1/callbacks/twilio/status", status_params("failed", ErrorCode="21211"))
    assert {s.reason for s in suppressions(sms.engine)} == {"invalid_address"}
    found = customer(sms.engine, "c1")
    assert found is not None and found.phone_invalid


@pytest.mark.parametrize("tamper", ["url", "param", "token", "missing"])
def test_twilio_unverified_is_401_and_changes_nothing(sms: Api, tamper: str) -> None:
    path = "/v1/callbacks/twilio/status"
    params = status_params("delivered")
    kwargs: dict[str, Any] = {}
    if tamper == "url":
        kwargs["signed_url"] = f"{PUBLIC_URL}{path}?mk=other"
    elif tamper == "token":
        kwargs["token"] = "54321"
    signature = RequestValidator(kwargs.get("token", TWILIO_TOKEN)).compute_signature(
        kwargs.get("signed_url", f"{PUBLIC_URL}{path}"), params
    )
    if tamper == "param":
        params = {**params, "MessageStatus": "read"}
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if tamper != "missing":
        headers["X-Twilio-Signature"] = signature
    response = sms.client.post(path, content=urlencode(params).encode(), headers=headers)
    assert response.status_code == 401
    assert message(sms.engine, SMS_KEY).status == "sent"
    assert rows(sms.engine, CallbackEvent) == []


def inbound(body: str, sid: str = "SMin1", **extra: str) -> dict[str, str]:
    return {
        "MessageSid": sid,
        "SmsSid": sid,
        "From": "+32470000001",
        "To": "+32460000000",
        "Body": body,
        "AccountSid": "AC123",
        **extra,
    }


def test_inbound_stop_suppresses_withdraws_and_tells_the_workflow(sms: Api) -> None:
    response = twilio_post(sms, "/v1/callbacks/twilio/inbound", inbound("Stop"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert "<Message>" not in response.text  # Twilio itself confirms a STOP
    assert {(s.channel, s.reason) for s in suppressions(sms.engine)} == {("sms", "sms_stop")}
    withdrawn = {(r.channel, r.scope, r.source) for r in consents(sms.engine) if not r.granted}
    assert withdrawn == {("sms", "promotional", "sms"), ("sms", "service", "sms")}
    assert [(e.source_id, e.type, e.payload["data"]) for e in events(sms.engine)] == [
        ("twilio:inbound:SMin1", "sms_stop", {"channel": "sms", "scope": "all"})
    ]
    # Twilio retrying the same inbound message: nothing new.
    twilio_post(sms, "/v1/callbacks/twilio/inbound", inbound("Stop"))
    assert len(consents(sms.engine)) == 2


def test_inbound_dutch_stop_from_an_unknown_number(api: Api) -> None:
    twilio_post(api, "/v1/callbacks/twilio/inbound", inbound("afmelden", From="+32479999999"))
    [row] = suppressions(api.engine)
    assert (row.address_hash, row.reason) == (address_hash("+32479999999"), "sms_stop")


def test_inbound_start_grants_service_sms_only(sms: Api) -> None:
    twilio_post(sms, "/v1/callbacks/twilio/inbound", inbound("STOP", sid="SM1"))
    twilio_post(sms, "/v1/callbacks/twilio/inbound", inbound("START", sid="SM2"))
    assert suppressions(sms.engine) == []
    latest = {(r.channel, r.scope): r.granted for r in consents(sms.engine)}
    assert latest == {("sms", "service"): True, ("sms", "promotional"): False}


def test_inbound_opt_out_type_wins_over_the_body(sms: Api) -> None:
    twilio_post(sms, "/v1/callbacks/twilio/inbound", inbound("stop please", OptOutType="STOP"))
    assert {s.reason for s in suppressions(sms.engine)} == {"sms_stop"}


def test_inbound_help_replies_in_the_customer_language(sms: Api) -> None:
    response = twilio_post(sms, "/v1/callbacks/twilio/inbound", inbound("HELP"))
    assert response.status_code == 200
    assert "<Message>Tuincentrum De Linde : répondez STOP" in response.text
    assert suppressions(sms.engine) == [] and consents(sms.engine) == []


def test_inbound_other_text_changes_nothing(sms: Api) -> None:
    response = twilio_post(sms, "/v1/callbacks/twilio/inbound", inbound("Is de winkel open?"))
    assert response.text.endswith("<Response></Response>")
    assert suppressions(sms.engine) == []


def test_inbound_unverified_is_401(sms: Api) -> None:
    response = twilio_post(sms, "/v1/callbacks/twilio/inbound", inbound("STOP"), token="wrong")
    assert response.status_code == 401
    assert suppressions(sms.engine) == []


def test_help_text_languages() -> None:
    assert help_text("nl-BE", shop="S", url="u").startswith("S: antwoord STOP")
    assert help_text("en", shop="S", url="u").startswith("S: reply STOP")
    assert help_text(None, shop="S", url="u").startswith("S: antwoord")
