"""The journey report over the ledgers: funnel counts, attribution, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import Engagement, JourneyRun, Message, Order, Voucher
from trouw.domain.measure.attribution import AttributionRules
from trouw.domain.measure.report import attribution_rules, journey_report
from trouw.settings import Settings

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
DAY = timedelta(days=1)


def _run(s: Any, n: int, status: str, journey: str = "post_purchase") -> None:
    s.add(
        JourneyRun(
            workflow_id=f"w{n}",
            customer_id=f"c{n}",
            journey=journey,
            version="v1",
            reentry_key=f"o{n}",
            event_source_id=f"e{n}",
            started_at=T0,
            status=status,
        )
    )


def _message(s: Any, key: str, customer: str, step: str = "tips", **kw: Any) -> None:
    fields: dict[str, Any] = {
        "message_key": key,
        "customer_id": customer,
        "journey": "post_purchase",
        "journey_version": "v1",
        "step": step,
        "channel": "email",
        "category": "service",
        "template": "care_tips",
        "created_at": T0,
        "decision": "send",
        "state": "sent",
        "status_history": [{"status": "allowed", "at": T0.isoformat(), "detail": None}],
    }
    fields.update(kw)
    s.add(Message(**fields))


def _touch(s: Any, key: str, customer: str, kind: str, at: datetime, step: str = "tips") -> None:
    s.add(
        Engagement(
            key=f"{key}:{kind}:{at.isoformat()}",
            message_key=key,
            customer_id=customer,
            journey="post_purchase",
            journey_version="v1",
            step=step,
            channel="email",
            kind=kind,
            at=at,
            source="sendgrid",
        )
    )


def _order(s: Any, oid: str, customer: str, at: datetime, total: str, **kw: Any) -> None:
    s.add(
        Order(id=oid, customer_id=customer, channel="web", placed_at=at, total=Decimal(total), **kw)
    )


@pytest.fixture
def ledger(engine: Engine) -> Engine:
    with session_scope(engine) as s:
        for n, status in enumerate(["completed", "converted", "held_out", "completed"]):
            _run(s, n, status)
        _message(s, "m0", "c0")
        _message(s, "m1", "c1")
        _message(s, "m3", "c3", state="suppressed", decision="suppress", reason="no_consent")
        _message(
            s,
            "m0b",
            "c0",
            step="review",
            status_history=[{"status": "defer", "at": T0.isoformat(), "reason": "quiet_hours"}],
        )
        _touch(s, "m0", "c0", "delivered", T0)
        _touch(s, "m0", "c0", "opened", T0 + DAY)
        _touch(s, "m0", "c0", "opened", T0 + 2 * DAY)  # a second open: one opened message
        _touch(s, "m0", "c0", "clicked", T0 + DAY)
        _touch(s, "m1", "c1", "delivered", T0)
        # c0 orders 2 days after the click: attributed by click; returned later.
        _order(s, "o0", "c0", T0 + 3 * DAY, "40.00")
        _order(s, "o0b", "c0", T0 + 4 * DAY, "15.00", returned_at=T0 + 6 * DAY)
        # c2 (held out) orders too: no message, nothing attributed.
        _order(s, "o2", "c2", T0 + DAY, "70.00")
    return engine


def test_funnel_counts_each_stage_once_per_message(ledger: Engine) -> None:
    with ledger.connect() as c:
        report = journey_report(c, AttributionRules(), start=T0 - DAY, end=T0 + 10 * DAY)
    [journey] = report.journeys
    assert (journey.entered, journey.converted, journey.held_out) == (4, 1, 1)
    steps = {s.step: s for s in journey.steps}
    tips = steps["tips"]
    assert (tips.eligible, tips.sent, tips.suppressed) == (3, 2, {"no_consent": 1})
    assert (tips.delivered, tips.opened, tips.clicked) == (2, 1, 1)
    assert steps["review"].deferred == 1 and tips.deferred == 0
    # o0 is attributed to m0's click; o0b was returned: attributed, but worth nothing.
    assert (tips.orders, tips.revenue) == (2, 40.0)
    assert report.methods == {"click": 2}
    assert json.loads(json.dumps(report.to_json()))["journeys"][0]["steps"][1]["step"] == "tips"


def test_a_voucher_a_message_issued_and_redeemed_on_an_order_earns_it(ledger: Engine) -> None:
    # c0 clicked m0 two days before o0, but redeemed the voucher m0b carried on it: the voucher,
    # an exact link, wins over the click.
    with session_scope(ledger) as s:
        s.add(
            Voucher(
                code="V1",
                customer_id="c0",
                value=Decimal("5"),
                issued_at=T0,
                expires_at=T0 + 30 * DAY,
                journey="post_purchase",
                message_key="m0b",
                redeemed_at=T0 + 3 * DAY,
                redeemed_order_id="o0",
            )
        )
    with ledger.connect() as c:
        report = journey_report(c, AttributionRules(), start=T0 - DAY, end=T0 + 10 * DAY)
    assert report.methods == {"voucher": 1, "click": 1}
    steps = {s.step: s for s in report.journeys[0].steps}
    assert (steps["review"].orders, steps["review"].revenue) == (1, 40.0)
    assert steps["tips"].orders == 1  # o0b, returned: worth 0


def test_the_period_and_settings_windows_apply(ledger: Engine) -> None:
    settings = Settings(attribution_click_days=1.0)
    with ledger.connect() as c:
        narrow = journey_report(c, attribution_rules(settings), start=T0 - DAY, end=T0 + 10 * DAY)
        early = journey_report(c, AttributionRules(), start=T0 - DAY, end=T0 + 2 * DAY)
    assert narrow.attributed_orders == 0  # the click was 2 days before the order
    assert early.attributed_orders == 0 and early.journeys[0].entered == 4
