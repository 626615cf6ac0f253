"""Engagement a scenario scripts lands on the right message, once, as the ledger's rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import select

from trouw.commands.simulate import ScenarioEvent
from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import Customer, Engagement, Message, Suppression
from trouw.domain.measure.scripted import deliver_sent, record_scripted

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _sent(s: Any, key: str, journey: str, step: str, at: datetime, **kw: Any) -> None:
    fields: dict[str, Any] = {
        "message_key": key,
        "customer_id": "c1",
        "journey": journey,
        "journey_version": "v1",
        "step": step,
        "channel": "email",
        "category": "service",
        "template": "care_tips",
        "created_at": at,
        "sent_at": at,
        "decision": "send",
        "state": "sent",
    }
    s.add(Message(**{**fields, **kw}))


@pytest.fixture
def mails(engine: Engine) -> Engine:
    with session_scope(engine) as s:
        s.add(Customer(id="c1", email="c1@example.com"))
        _sent(s, "welcome", "welcome", "hello", T0)
        _sent(s, "tips", "post_purchase", "care_tips", T0 + 2 * HOUR)
        _sent(s, "late", "post_purchase", "review", T0 + 48 * HOUR)
        _sent(s, "held", "post_purchase", "review2", T0, state="suppressed", sent_at=None)
    return engine


def _record(engine: Engine, event_type: str, at: datetime, **kw: Any) -> str | None:
    with session_scope(engine) as s:
        found = record_scripted(
            s, event_type=event_type, event_id=f"e-{event_type}", customer_id="c1", at=at, **kw
        )
        return found.message_key if found else None


def test_an_event_is_about_the_latest_message_sent_by_then(mails: Engine) -> None:
    assert _record(mails, "open", T0 + 3 * HOUR) == "tips"  # not the one sent later
    assert _record(mails, "click", T0 + 3 * HOUR, journey="welcome") == "welcome"
    assert _record(mails, "complaint", T0 - HOUR) is None  # nothing sent yet: nothing recorded
    with session_scope(mails) as s:
        rows = s.exec(select(Engagement)).all()
        assert sorted((r.kind, r.message_key, r.step) for r in rows) == [
            ("clicked", "welcome", "hello"),
            ("opened", "tips", "care_tips"),
        ]
        # A click opens a webshop session a purchase can carry; an open has none.
        assert {r.kind: r.session_id for r in rows} == {
            "clicked": "simulation-e-click",
            "opened": None,
        }


def test_a_named_session_and_a_complaint_suppress_like_the_provider(mails: Engine) -> None:
    _record(mails, "click", T0 + 3 * HOUR, session_id="web-1")
    _record(mails, "complaint", T0 + 4 * HOUR, step="hello")
    with session_scope(mails) as s:
        kinds = {r.kind: r for r in s.exec(select(Engagement)).all()}
        assert kinds["clicked"].session_id == "web-1"
        assert kinds["complained"].message_key == "welcome"
        [suppressed] = s.exec(select(Suppression)).all()
        assert (suppressed.channel, suppressed.reason) == ("email", "spam_complaint")


def test_sent_mail_is_delivered_unless_a_scripted_bounce_hit_it(mails: Engine) -> None:
    assert _record(mails, "bounce", T0 + 3 * HOUR, journey="welcome") == "welcome"
    with session_scope(mails) as s:
        assert deliver_sent(s, until=T0 + 24 * HOUR) == 1  # tips; late was sent after `until`
    with session_scope(mails) as s:
        assert deliver_sent(s, until=T0 + 72 * HOUR) == 1  # late; tips is not delivered twice
        delivered = s.exec(select(Engagement).where(Engagement.kind == "delivered")).all()
        assert sorted((r.message_key, r.at) for r in delivered) == [
            ("late", T0 + 48 * HOUR),
            ("tips", T0 + 2 * HOUR),
        ]


def test_scenario_events_name_a_message_only_where_they_are_about_one() -> None:
    ok = ScenarioEvent.model_validate(
        {"at": "1d", "type": "click", "customer": "c1", "journey": "welcome", "session_id": "s"}
    )
    assert (ok.journey, ok.session_id) == ("welcome", "s")
    with pytest.raises(ValidationError, match="journey and step name the message"):
        ScenarioEvent.model_validate(
            {"at": "1d", "type": "purchase", "customer": "c1", "journey": "welcome"}
        )
    with pytest.raises(ValidationError, match="session_id belongs on a click"):
        ScenarioEvent.model_validate(
            {"at": "1d", "type": "open", "customer": "c1", "session_id": "s"}
        )
