"""A run's context converted once per event and overlaid per run equals converting it whole."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

import trouw.domain.context
from activities.journey_runs import SharedContext
from trouw.domain.context import for_history
from trouw.language.attributes import Declared
from trouw.language.journey.plain import hydrate, jsonable

CONTEXT: dict[str, Any] = {
    "customer": {
        "id": "c1",
        "first_name": "An",
        "email": "an@example.com",
        "phone": None,
        "birthday": date(1990, 5, 17),
        "attributes": {},
        "tags": ["vip"],
    },
    "history": {"orders": 2, "last_order_at": datetime(2026, 3, 1, 9, 0, tzinfo=UTC)},
    "loyalty": {"points": 120, "referral_code": "AN-7", "referral_link": "https://x/r/AN-7"},
    "order": {"id": "o-1", "total": Decimal("42.50"), "lines": [{"sku": "LAWN-10"}]},
    "products": [{"sku": "LAWN-10", "name": "Gazonmest"}],
    "product": {"sku": "LAWN-10", "name": "Gazonmest"},
}


def whole(run_context: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    plain = jsonable(for_history(run_context, None))
    return plain, hydrate(plain)


def test_a_run_with_its_own_trigger_item_and_product_is_converted_the_same() -> None:
    shared = SharedContext(CONTEXT, None)
    run = dict(CONTEXT)
    run["trigger"] = {"type": "purchase", "at": datetime(2026, 3, 2, 9, 0, tzinfo=UTC)}
    run["line"] = {"sku": "ROSE-01", "price": Decimal("9.95")}
    run["product"] = {"sku": "ROSE-01", "name": "Roos"}
    assert shared.for_run(run) == whole(run)
    # What the history must not carry stays out of the overlaid copy too.
    plain, _scope = shared.for_run(run)
    assert plain["customer"]["first_name"] == "" and plain["customer"]["email"] is True
    assert plain["loyalty"]["referral_code"] is None


def test_a_run_that_sets_a_redacted_key_is_converted_whole() -> None:
    shared = SharedContext(CONTEXT, None)
    run = {**CONTEXT, "customer": {**CONTEXT["customer"], "first_name": "Bo"}}
    assert shared.for_run(run) == whole(run)
    assert shared.for_run(run)[0]["customer"]["first_name"] == ""


def test_runs_of_one_event_do_not_share_their_own_keys() -> None:
    shared = SharedContext(CONTEXT, None)
    first = {**CONTEXT, "trigger": {"type": "purchase"}, "line": {"sku": "A"}}
    second = {**CONTEXT, "trigger": {"type": "purchase"}}
    assert "line" in shared.for_run(first)[0]
    assert "line" not in shared.for_run(second)[0]
    assert shared.for_run(second) == whole(second)


def test_a_key_for_history_rewrites_is_converted_whole_without_being_listed_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One home for the rewritten keys: a rewrite added to for_history's table is honoured by
    the per-event conversion too (a run's own value of that key never travels unrewritten)."""

    def order_id_only(value: Any, _declared: Declared | None) -> dict[str, Any] | None:
        return None if value is None else {"id": value["id"]}

    monkeypatch.setitem(trouw.domain.context.HISTORY_REWRITES, "order", order_id_only)
    shared = SharedContext(CONTEXT, None)
    run = {**CONTEXT, "order": {"id": "o-2", "total": Decimal("1.00"), "lines": []}}
    assert shared.for_run(run) == whole(run)
    assert shared.for_run(run)[0]["order"] == {"id": "o-2"}
