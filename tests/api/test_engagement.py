"""Provider callbacks fill the engagement ledger, each provider event once.

The SendGrid events follow the documented sample events (sendgrid/docs,
content/docs/for-developers/tracking-events/event.md: `delivered`, `open` with
`sg_machine_open` and `useragent`, `click` with `url`); Twilio's are its status callback
parameters, signed with the `twilio` package's own RequestValidator (tests/api/test_callbacks.py).
"""

from __future__ import annotations

from datetime import UTC, datetime

from tests.api.conftest import Api, SendGridSigner, rows
from tests.api.test_callbacks import (
    KEY,
    SMS_KEY,
    mail,  # noqa: F401 - fixture
    post_sendgrid,
    sg_event,
    sms,  # noqa: F401 - fixture
    status_params,
    twilio_post,
)
from trouw.domain.db.models import Engagement

UA = "Mozilla/4.0 (compatible; MSIE 6.1; Windows XP; .NET CLR 1.1.4322; .NET CLR 2.0.50727)"


def test_sendgrid_delivery_open_and_click_are_recorded_once(
    mail: Api,  # noqa: F811
    sendgrid_signer: SendGridSigner,
) -> None:
    batch = [
        sg_event("delivered", "d1", ip="168.1.1.1", response="250 OK"),
        sg_event("open", "o1", sg_machine_open=False, useragent=UA, ip="255.255.255.255"),
        sg_event("click", "k1", useragent=UA, ip="255.255.255.255", url="http://www.example.be/"),
        sg_event("processed", "p1"),  # the provider's business, not engagement
    ]
    assert post_sendgrid(mail, sendgrid_signer, batch).status_code == 200
    # SendGrid retries a batch: nothing is recorded twice.
    post_sendgrid(mail, sendgrid_signer, batch[:3])
    found = sorted(rows(mail.engine, Engagement), key=lambda e: e.key)
    assert [(e.key, e.kind, e.source) for e in found] == [
        ("sendgrid:d1", "delivered", "sendgrid"),
        ("sendgrid:k1", "clicked", "sendgrid"),
        ("sendgrid:o1", "opened", "sendgrid"),
    ]
    click = found[1]
    assert click.link == "http://www.example.be/"
    assert (click.message_key, click.customer_id, click.journey, click.step) == (
        KEY,
        "c1",
        "order_followup",
        "confirm",
    )
    # The provider's own time of the event, not the time it reached us.
    assert click.at == datetime.fromtimestamp(1772442000, UTC)


def test_sendgrid_bounce_spam_report_and_unsubscribe_are_engagement(
    mail: Api,  # noqa: F811
    sendgrid_signer: SendGridSigner,
) -> None:
    batch = [
        sg_event("spamreport", "s1"),
        sg_event("unsubscribe", "u1"),
    ]
    post_sendgrid(mail, sendgrid_signer, batch)
    assert sorted(e.kind for e in rows(mail.engine, Engagement)) == ["complained", "unsubscribed"]


def test_twilio_delivered_status_is_recorded_once(sms: Api) -> None:  # noqa: F811
    path = f"/v1/callbacks/twilio/status?mk={SMS_KEY.replace(':', '%3A')}"
    twilio_post(sms, path, status_params("sent"))
    twilio_post(sms, path, status_params("delivered"))
    twilio_post(sms, path, status_params("delivered"))
    found = rows(sms.engine, Engagement)
    assert [(e.kind, e.channel, e.source, e.message_key) for e in found] == [
        ("delivered", "sms", "twilio", SMS_KEY)
    ]
