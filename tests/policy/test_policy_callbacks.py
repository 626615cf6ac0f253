"""Provider callbacks: official signature vectors, event parsing, status order, SMS keywords."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trouw.providers.callback_effects import MESSAGE_STATUSES, CallbackPayloadError, advance_status
from trouw.providers.sendgrid.callbacks import parse_sendgrid_events, verify_sendgrid_signature
from trouw.providers.twilio.callbacks import (
    classify_inbound_sms,
    parse_twilio_status,
    public_url_for,
    verify_twilio_signature,
)

# --- SendGrid: the vector from sendgrid-python test/unit/test_eventwebhook.py ---------------

SG_PUBLIC_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw"
    "+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
)
SG_OTHER_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntl"
    "o7aNDthvj+y7GjUuFDb/R1NGe1OPzpA=="
)
SG_SIGNATURE = (
    "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM"
    "+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM="
)
SG_OTHER_SIGNATURE = (
    "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6"
    "BpSzoQsbVRamr2nlxFDWYNH3j/0="
)
SG_TIMESTAMP = "1600112502"
SG_PAYLOAD = (
    json.dumps(
        [
            {
                "email": "hello@world.com",
                "event": "dropped",
                "reason": "Bounced Address",
                "sg_event_id": "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",
                "sg_message_id": (
                    "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0"
                ),
                "smtp-id": "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>",
                "timestamp": 1600112492,
            }
        ],
        sort_keys=True,
        separators=(",", ":"),
    )
    + "\r\n"  # the official vector's raw body ends with CRLF
).encode()


def test_sendgrid_official_vector_verifies():
    assert verify_sendgrid_signature(SG_PUBLIC_KEY, SG_PAYLOAD, SG_SIGNATURE, SG_TIMESTAMP)


@pytest.mark.parametrize(
    ("key", "payload", "signature", "timestamp"),
    [
        (SG_OTHER_KEY, SG_PAYLOAD, SG_SIGNATURE, SG_TIMESTAMP),  # bad key
        (SG_PUBLIC_KEY, b"payload", SG_SIGNATURE, SG_TIMESTAMP),  # bad payload
        (SG_PUBLIC_KEY, SG_PAYLOAD, SG_OTHER_SIGNATURE, SG_TIMESTAMP),  # bad signature
        (SG_PUBLIC_KEY, SG_PAYLOAD, SG_SIGNATURE, "timestamp"),  # bad timestamp
        (SG_PUBLIC_KEY, SG_PAYLOAD.rstrip(), SG_SIGNATURE, SG_TIMESTAMP),  # CRLF lost
        (SG_PUBLIC_KEY, SG_PAYLOAD, "not base64!!", SG_TIMESTAMP),  # malformed signature
        (SG_PUBLIC_KEY, SG_PAYLOAD, "", SG_TIMESTAMP),
        ("not a key", SG_PAYLOAD, SG_SIGNATURE, SG_TIMESTAMP),  # malformed key
        ("", SG_PAYLOAD, SG_SIGNATURE, SG_TIMESTAMP),
        (SG_PUBLIC_KEY, b"\xff\xfe", SG_SIGNATURE, SG_TIMESTAMP),  # not UTF-8
    ],
)
def test_sendgrid_rejects_every_change_without_raising(key, payload, signature, timestamp):
    assert verify_sendgrid_signature(key, payload, signature, timestamp) is False


def test_sendgrid_reserialised_json_fails():
    pretty = json.dumps(json.loads(SG_PAYLOAD), indent=2).encode()
    assert not verify_sendgrid_signature(SG_PUBLIC_KEY, pretty, SG_SIGNATURE, SG_TIMESTAMP)


def _sign_like_sendgrid(
    private_key: ec.EllipticCurvePrivateKey, timestamp: str, body: bytes
) -> str:
    return base64.b64encode(
        private_key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    ).decode()


def test_sendgrid_with_our_own_key_pair():
    private_key = ec.generate_private_key(ec.SECP256R1())
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public_key = base64.b64encode(der).decode()  # what the SendGrid console shows
    body = b'[{"event":"delivered","message_key":"mk-1","sg_event_id":"e1","timestamp":1}]'
    signature = _sign_like_sendgrid(private_key, "1700000000", body)
    assert verify_sendgrid_signature(public_key, body, signature, "1700000000")
    assert not verify_sendgrid_signature(public_key, body, signature, "1700000001")
    assert not verify_sendgrid_signature(public_key, body + b" ", signature, "1700000000")


def test_parse_the_official_vector_event():
    [event] = parse_sendgrid_events(SG_PAYLOAD)
    assert event.event == "dropped"
    assert event.event_id == "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA"
    assert event.status == "dropped"
    assert event.suppression == "hard_bounce"  # "Bounced Address": already on the bounce list
    assert event.occurred_at == datetime(2020, 9, 14, 19, 41, 32, tzinfo=UTC)
    assert event.email == "hello@world.com"
    assert event.smtp_id == "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>"
    assert event.message_key is None


@pytest.mark.parametrize(
    ("fields", "status", "suppression"),
    [
        ({"event": "processed"}, "processed", None),
        ({"event": "deferred"}, "deferred", None),
        ({"event": "delivered"}, "delivered", None),
        ({"event": "open"}, "opened", None),
        ({"event": "click", "url": "https://x.example"}, "clicked", None),
        (
            {"event": "bounce", "type": "bounce", "reason": "550 no such user"},
            "bounced",
            "hard_bounce",
        ),
        ({"event": "bounce"}, "bounced", "hard_bounce"),
        ({"event": "bounce", "type": "blocked", "reason": "spam"}, "blocked", None),
        ({"event": "dropped", "reason": "Invalid"}, "dropped", "invalid_address"),
        ({"event": "dropped", "reason": "Spam Reporting Address"}, "dropped", "spam_complaint"),
        ({"event": "dropped", "reason": "Unsubscribed Address"}, "dropped", "unsubscribe"),
        ({"event": "dropped", "reason": "Recipient List over Package Quota"}, "dropped", None),
        ({"event": "spamreport"}, "spam_complaint", "spam_complaint"),
        ({"event": "unsubscribe"}, "unsubscribed", "unsubscribe"),
        ({"event": "group_unsubscribe", "asm_group_id": 1}, "unsubscribed", "unsubscribe"),
        ({"event": "group_resubscribe", "asm_group_id": 1}, None, None),
        ({"event": "something_new"}, None, None),
    ],
)
def test_sendgrid_event_mapping(fields, status, suppression):
    body = {
        "email": "a@example.com",
        "timestamp": 1700000000,
        "sg_event_id": "id",
        "message_key": "mk",
    }
    [event] = parse_sendgrid_events(json.dumps([{**body, **fields}]).encode())
    assert (event.status, event.suppression) == (status, suppression)
    assert event.message_key == "mk"
    assert event.bounce_type == fields.get("type")


def test_message_key_may_be_nested_or_short():
    body = json.dumps(
        [
            {"event": "open", "custom_args": {"message_key": "nested"}},
            {"event": "open", "mk": "short"},
            {"event": "open"},
        ]
    ).encode()
    assert [e.message_key for e in parse_sendgrid_events(body)] == ["nested", "short", None]


def test_odd_events_are_skipped_but_a_bad_body_is_refused():
    body = json.dumps([{"event": "open"}, 7, {"no": "event"}, {"event": ""}]).encode()
    assert [e.event for e in parse_sendgrid_events(body)] == ["open"]
    assert [e.event for e in parse_sendgrid_events(b'{"event": "open"}')] == ["open"]
    for bad in (b"not json", b"42", b"\xff"):
        with pytest.raises(CallbackPayloadError):
            parse_sendgrid_events(bad)


# --- message status order -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "new", "result"),
    [
        (None, "queued", "queued"),
        ("queued", "sent", "sent"),
        ("sent", "processed", "processed"),
        ("delivered", "processed", "delivered"),  # a late processed event
        ("delivered", "deferred", "delivered"),
        ("opened", "delivered", "opened"),
        ("clicked", "opened", "clicked"),
        ("bounced", "delivered", "bounced"),  # never revert a bounce
        ("delivered", "bounced", "bounced"),  # an asynchronous bounce after delivery
        ("opened", "bounced", "opened"),  # an open proves it arrived
        ("dropped", "processed", "dropped"),
        ("failed", "processed", "processed"),  # the provider had it after all
        ("clicked", "unsubscribed", "unsubscribed"),
        ("unsubscribed", "clicked", "unsubscribed"),
        ("unsubscribed", "spam_complaint", "spam_complaint"),
        ("spam_complaint", "unsubscribed", "spam_complaint"),
    ],
)
def test_advance_status(current, new, result):
    assert advance_status(current, new) == result


def test_status_is_order_independent():
    # Any arrival order of the same events ends in the same status.
    import itertools

    events = ["processed", "delivered", "bounced", "deferred", "opened"]
    results = {_fold(order) for order in itertools.permutations(events)}
    assert results == {"opened"}


def _fold(order):
    status = None
    for new in order:
        status = advance_status(status, new)
    return status


def test_advance_status_never_goes_backwards():
    for current in MESSAGE_STATUSES:
        for new in MESSAGE_STATUSES:
            after = advance_status(current, new)
            assert MESSAGE_STATUSES.index(after) >= MESSAGE_STATUSES.index(current)


def test_unknown_status_is_an_error():
    with pytest.raises(ValueError):
        advance_status("queued", "teleported")
    with pytest.raises(ValueError):
        advance_status("teleported", "queued")


# --- Twilio: the vector from twilio-python tests/unit/test_request_validator.py -------------

TW_TOKEN = "12345"
TW_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TW_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
    "Caller": "+14158675309",
}
TW_SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_twilio_official_vector_verifies():
    assert verify_twilio_signature(TW_TOKEN, TW_URL, TW_PARAMS, TW_SIGNATURE)
    # Twilio signs with or without the default port; the validator accepts both.
    assert verify_twilio_signature(
        TW_TOKEN, TW_URL.replace(".com", ".com:1234"), TW_PARAMS, TW_SIGNATURE
    )
    assert verify_twilio_signature(TW_TOKEN, TW_URL, TW_PARAMS, "kvajT1Ptam85bY51eRf/AJRuM3w=")


@pytest.mark.parametrize(
    ("token", "url", "params", "signature"),
    [
        ("54321", TW_URL, TW_PARAMS, TW_SIGNATURE),
        (TW_TOKEN, TW_URL.replace("foo=1", "foo=2"), TW_PARAMS, TW_SIGNATURE),  # query is signed
        (TW_TOKEN, TW_URL.replace("https", "http"), TW_PARAMS, TW_SIGNATURE),
        (TW_TOKEN, TW_URL, {**TW_PARAMS, "Digits": "1235"}, TW_SIGNATURE),
        (TW_TOKEN, TW_URL, {**TW_PARAMS, "Extra": "x"}, TW_SIGNATURE),
        (TW_TOKEN, TW_URL, TW_PARAMS, ""),
        (TW_TOKEN, TW_URL, TW_PARAMS, "garbage"),
        ("", TW_URL, TW_PARAMS, TW_SIGNATURE),
    ],
)
def test_twilio_rejects_every_change(token, url, params, signature):
    assert verify_twilio_signature(token, url, params, signature) is False


def test_twilio_behind_a_proxy_validates_against_the_public_url():
    internal = "http://10.0.0.5:8000/myapp.php?foo=1&bar=2"
    assert not verify_twilio_signature(TW_TOKEN, internal, TW_PARAMS, TW_SIGNATURE)
    configured = public_url_for(internal, None, None, "https://mycompany.com")
    assert configured == TW_URL
    assert verify_twilio_signature(TW_TOKEN, configured, TW_PARAMS, TW_SIGNATURE)
    forwarded = public_url_for(internal, "https", "mycompany.com", None)
    assert verify_twilio_signature(TW_TOKEN, forwarded, TW_PARAMS, TW_SIGNATURE)


@pytest.mark.parametrize(
    ("request_url", "proto", "host", "public", "expected"),
    [
        ("http://a:8000/x?q=1", None, None, None, "http://a:8000/x?q=1"),
        ("http://a:8000/x?q=1", "https", "b.example", None, "https://b.example/x?q=1"),
        ("http://a:8000/x?q=1", "https, http", "b.example, a", None, "https://b.example/x?q=1"),
        ("http://a:8000/x?q=1", None, "b.example", None, "http://b.example/x?q=1"),
        # A configured public URL wins over headers anyone can set.
        (
            "http://a:8000/x?q=1",
            "http",
            "evil.example",
            "https://c.example/",
            "https://c.example/x?q=1",
        ),
        # A proxy that strips a path prefix: put it back, but only once.
        ("http://a/x?q=1", None, None, "https://c.example/trouw", "https://c.example/trouw/x?q=1"),
        ("http://a/trouw/x", None, None, "https://c.example/trouw/", "https://c.example/trouw/x"),
        # The query string stays byte for byte: it is signed.
        (
            "http://a/x?b=2&a=1&s=%2B",
            None,
            None,
            "https://c.example",
            "https://c.example/x?b=2&a=1&s=%2B",
        ),
    ],
)
def test_public_url_for(request_url, proto, host, public, expected):
    assert public_url_for(request_url, proto, host, public) == expected


@pytest.mark.parametrize(
    ("params", "status", "error_code", "suppression"),
    [
        ({"MessageStatus": "queued"}, "sent", None, None),
        ({"MessageStatus": "sent"}, "processed", None, None),
        ({"MessageStatus": "delivered"}, "delivered", None, None),
        ({"MessageStatus": "read"}, "opened", None, None),
        ({"MessageStatus": "undelivered", "ErrorCode": "30003"}, "bounced", 30003, None),
        (
            {"MessageStatus": "undelivered", "ErrorCode": "30005"},
            "bounced",
            30005,
            "invalid_address",
        ),
        (
            {"MessageStatus": "undelivered", "ErrorCode": "30006"},
            "bounced",
            30006,
            "invalid_address",
        ),
        ({"MessageStatus": "undelivered", "ErrorCode": "30007"}, "bounced", 30007, None),
        ({"MessageStatus": "failed", "ErrorCode": "21610"}, "dropped", 21610, "sms_stop"),
        ({"MessageStatus": "failed", "ErrorCode": "21614"}, "dropped", 21614, "invalid_address"),
        ({"MessageStatus": "Delivered", "ErrorCode": ""}, "delivered", None, None),
        ({"MessageStatus": "whatever"}, None, None, None),
    ],
)
def test_parse_twilio_status(params, status, error_code, suppression):
    parsed = parse_twilio_status({"MessageSid": "SM1", "To": "+32470000001", **params})
    assert (parsed.status, parsed.error_code, parsed.suppression) == (
        status,
        error_code,
        suppression,
    )
    assert parsed.message_sid == "SM1"
    assert parsed.to == "+32470000001"


def test_twilio_status_without_sid_is_refused():
    with pytest.raises(CallbackPayloadError):
        parse_twilio_status({"MessageStatus": "delivered"})


@pytest.mark.parametrize(
    ("body", "keyword"),
    [
        ("STOP", "stop"),
        ("  stop \n", "stop"),
        ("Stop.", "stop"),
        ("STOPALL", "stop"),
        ("unsubscribe", "stop"),
        ("cancel", "stop"),
        ("End", "stop"),
        ("quit", "stop"),
        ("optout", "stop"),
        ("revoke", "stop"),
        ("afmelden", "stop"),
        ("Stoppen", "stop"),
        ("arrêt", "stop"),
        ("ARRET", "stop"),
        ("START", "start"),
        ("yes", "start"),
        ("unstop", "start"),
        ("Start!", None),  # opting back in must be exact
        ("ja", None),
        ("oui", None),
        ("help", "help"),
        ("INFO", "help"),
        ("hulp", "help"),
        ("aide", "help"),
        ("please stop", None),  # only a message that is just the keyword counts
        ("stop it", None),
        ("", None),
        ("Thanks!", None),
    ],
)
def test_classify_inbound_sms(body, keyword):
    assert classify_inbound_sms(body) == keyword
