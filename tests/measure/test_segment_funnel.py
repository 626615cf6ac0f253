"""The funnel per customer segment: the segment when the message was made, in CLI, API, page."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from tests.measure.test_report import DAY, T0, _message, _order, _touch
from tests.measure.test_report_page import _chromium
from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import InsightSegmentChange
from trouw.domain.measure.attribution import AttributionRules
from trouw.domain.measure.html import write_report
from trouw.domain.measure.report import journey_report


def _segment(s: Any, customer: str, segment: str, at: Any, n: int) -> None:
    s.add(InsightSegmentChange(customer_id=customer, refresh_id=f"r{n}", at=at, segment=segment))


@pytest.fixture
def scored(engine: Engine) -> Engine:
    with session_scope(engine) as s:
        # c0 is a champion from before the period; c1 is scored only after their first mail,
        # and moves from new to at_risk after their second one (made on day 3).
        _segment(s, "c0", "champions", T0 - 10 * DAY, 1)
        _segment(s, "c1", "new", T0 + DAY, 2)
        _segment(s, "c1", "at_risk", T0 + 5 * DAY, 3)
        _message(s, "m0", "c0")
        _message(s, "m1", "c1")  # made at T0: unscored then
        _message(s, "m1b", "c1", created_at=T0 + 3 * DAY)  # new then, whatever came after
        _message(s, "m2", "c2", state="suppressed", decision="suppress", reason="no_consent")
        _touch(s, "m0", "c0", "delivered", T0)
        _touch(s, "m0", "c0", "opened", T0 + DAY)
        _touch(s, "m0", "c0", "clicked", T0 + DAY)
        _touch(s, "m1b", "c1", "delivered", T0 + 3 * DAY)
        _touch(s, "m1b", "c1", "clicked", T0 + 6 * DAY)  # clicked while at_risk: still `new`
        _order(s, "o0", "c0", T0 + 2 * DAY, "40.00")
        _order(s, "o1", "c1", T0 + 7 * DAY, "12.50")
    return engine


def test_each_message_counts_in_the_segment_its_customer_was_in_then(scored: Engine) -> None:
    with scored.connect() as c:
        report = journey_report(
            c, AttributionRules(), start=T0 - DAY, end=T0 + 10 * DAY, segments=True
        )
        plain = journey_report(c, AttributionRules(), start=T0 - DAY, end=T0 + 10 * DAY)
    assert plain.segments is None and plain.to_json()["segments"] is None
    rows = {r["segment"]: r for r in report.to_json()["segments"]}
    stages = ("eligible", "sent", "delivered", "opened", "clicked", "orders", "revenue")
    assert {seg: tuple(r[k] for k in stages) for seg, r in rows.items()} == {
        "champions": (1, 1, 1, 1, 1, 1, 40.0),
        "new": (1, 1, 1, 0, 1, 1, 12.5),
        "unscored": (2, 1, 0, 0, 0, 0, 0.0),  # m1 before c1's first refresh, and c2
    }
    assert {(r["journey"], r["step"], r["channel"]) for r in rows.values()} == {
        ("post_purchase", "tips", "email")
    }
    # The segments add up to the step's own funnel.
    [step] = report.journeys[0].steps
    assert sum(r["sent"] for r in rows.values()) == step.sent
    assert sum(r["orders"] for r in rows.values()) == step.orders


def test_the_api_gives_segments_when_asked(scored: Engine, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from tests.api.conftest import make_keys
    from trouw.settings import Settings
    from trouw.ways_in.api.app import create_app

    keys = make_keys(scored)
    settings = Settings(home=tmp_path, signing_keys=["k"])
    period = {"from": (T0 - DAY).isoformat(), "to": (T0 + 10 * DAY).isoformat()}
    headers = {"Authorization": f"Bearer {keys['read']}"}
    with TestClient(create_app(settings, scored)) as client:
        plain = client.get("/v1/reports/journeys", params=period, headers=headers).json()
        asked = client.get(
            "/v1/reports/journeys", params={**period, "segments": "true"}, headers=headers
        ).json()
    assert plain["segments"] is None
    assert sorted(r["segment"] for r in asked["segments"]) == ["champions", "new", "unscored"]


@pytest.mark.slow
def test_the_page_draws_the_funnel_per_segment(scored: Engine, tmp_path: Path) -> None:
    with scored.connect() as c:
        body = journey_report(
            c, AttributionRules(), start=T0 - DAY, end=T0 + timedelta(days=10), segments=True
        ).to_json()
    page = write_report(tmp_path, body, [])
    dom = _chromium("--dump-dom", page.as_uri()).stdout
    assert "post_purchase per segment" in dom
    assert dom.count("<svg") == 3  # the journey's funnel, its funnel per segment, revenue
    for segment in ("champions", "new", "unscored"):
        assert f">{segment}<" in dom
    shot = tmp_path / "segments.png"
    _chromium("--window-size=1000,2400", f"--screenshot={shot}", page.as_uri())
    assert shot.stat().st_size > 20_000
