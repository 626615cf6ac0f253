"""When a run's first wait ends, computed before the run starts (trouw/language/journey/waits.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.conftest import ROOT
from trouw.language.journey.loader import load_journey
from trouw.language.journey.model import Journey
from trouw.language.journey.waits import first_wait_end, timezone_of

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def shipped(name: str) -> Journey:
    return load_journey(ROOT / "journeys" / f"{name}.yaml").journey


def journey(steps: list[dict[str, Any]], **trigger: Any) -> Journey:
    return Journey.model_validate(
        {
            "journey": "t",
            "trigger": trigger or {"event": "purchase"},
            "settings": {"category": "service"},
            "steps": steps,
        }
    )


def test_a_first_wait_of_days_ends_that_long_after_the_trigger() -> None:
    assert first_wait_end(shipped("reactivation"), {}, NOW) == NOW + timedelta(days=180)
    assert first_wait_end(shipped("enrichment"), {}, NOW) == NOW + timedelta(days=30)


def test_a_first_wait_until_a_date_uses_the_runs_context_and_zone() -> None:
    scope = {
        "customer": {"timezone": "Europe/Amsterdam"},
        "order": {"placed_at": datetime(2026, 3, 2, 8, 0, tzinfo=UTC)},
        "line": {"qty": 1, "product": {"consumption_days": 60}},
    }
    # 60 days after the order, 5 days early, at 10:00 in Amsterdam (summer time: UTC+2)
    assert first_wait_end(shipped("refill"), scope, NOW) == datetime(2026, 4, 26, 8, 0, tzinfo=UTC)


def test_runs_with_something_to_do_now_are_not_held() -> None:
    assert first_wait_end(shipped("post_purchase"), {}, NOW) is None  # the confirmation
    assert first_wait_end(shipped("birthday"), {}, NOW) is None  # a date trigger waits itself


def test_an_empty_or_broken_date_leaves_the_problem_to_the_run() -> None:
    waits = journey(
        [{"id": "w", "wait_until": {"date": "order.delivered_at"}}, {"id": "x", "exit": "done"}]
    )
    assert first_wait_end(waits, {"order": {"delivered_at": None}}, NOW) is None
    broken = journey([{"id": "w", "wait_until": {"date": "1 / 0"}}, {"id": "x", "exit": "done"}])
    assert first_wait_end(broken, {}, NOW) is None


def test_a_wait_for_a_time_of_day_ends_at_the_next_such_time() -> None:
    daily = journey([{"id": "w", "wait_until": {"time": "09:30"}}, {"id": "x", "exit": "done"}])
    # 08:00 UTC is 09:00 in Brussels (winter): 09:30 the same day
    assert first_wait_end(daily, {}, NOW) == datetime(2026, 3, 2, 8, 30, tzinfo=UTC)


def test_timezone_defaults_to_brussels() -> None:
    assert timezone_of({}) == "Europe/Brussels"
    assert timezone_of({"customer": {"timezone": "Europe/Paris"}}) == "Europe/Paris"
