"""A run of an older journey version that sends a template as a weaker category than the
template declares is judged by the template's category (templates own their category)."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from activities.services import Services
from tests.activities import test_send_message as base
from trouw.domain.db.models import Message

# The send tests' fixtures: fake providers and services with Bart, who bought on the web.
sendgrid, twilio, services = base.sendgrid, base.twilio, base.services
request, send = base.request, base.send


async def test_promotional_template_sent_as_service_is_judged_as_promotional(
    services: Services, engine: Engine
) -> None:
    key = "journey:k-2001:voucher_expiry:V-1#0:reminder:email"
    result = await send(services, request(key, template="voucher_expiry", category="service"))
    assert (result.outcome, result.reason) == ("suppressed", "no_promotional_opt_in")
    with Session(engine) as session:
        row = session.exec(select(Message).where(Message.message_key == key)).one()
    assert row.category == "promotional"


async def test_a_stricter_step_category_is_kept(services: Services, engine: Engine) -> None:
    key = "journey:k-2001:post_purchase:W-2001#0:confirmation:email"
    result = await send(services, request(key, category="service"))
    assert result.outcome == "sent"
    with Session(engine) as session:
        row = session.exec(select(Message).where(Message.message_key == key)).one()
    assert row.category == "service"
