"""The same purchase posted concurrently: one order, one stored event, one hand-off."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.api.conftest import Api, add_customer, events, rows
from trouw.domain.db.models import Customer, Order, OrderLine
from trouw.domain.ingest import EventIn
from trouw.ways_in.api import events as api_events
from trouw.ways_in.api.events import store_event

THREADS = 8


def purchase(event_id: str, customer: str) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "purchase",
        "customer": customer,
        "order": f"order-{event_id}",
        "channel": "web",
        "lines": [{"sku": "LAWN-10", "qty": 2, "unit_price": "24.95"}],
        "profile": {"id": customer, "email": f"{customer}@example.com"},
    }


@pytest.fixture
def hand_offs(api: Api, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every hand-off the API makes, with a stand-in Temporal client."""
    made: list[str] = []
    lock = threading.Lock()

    async def fake_hand_off(_engine: Any, _client: Any, source_id: str, **_kw: Any) -> None:
        with lock:
            made.append(source_id)

    monkeypatch.setattr(api_events, "hand_off", fake_hand_off)
    api.client.app.state.trouw.client = object()  # type: ignore[attr-defined]
    return made


def _race(fn: Any) -> list[Any]:
    barrier = threading.Barrier(THREADS)

    def run(_: int) -> Any:
        barrier.wait()
        return fn()

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(run, range(THREADS)))


@pytest.mark.parametrize("known_customer", [True, False], ids=["known", "new"])
def test_concurrent_http_posts_make_one_order(
    api: Api, hand_offs: list[str], known_customer: bool
) -> None:
    if known_customer:
        add_customer(api.engine, "c1")
    body = purchase("web-1001", "c1")
    responses = _race(lambda: api.post("/v1/events", body))
    assert {r.status_code for r in responses} == {202}
    assert len({str(r.json()) for r in responses}) == 1
    assert sum(1 for r in responses if "idempotent-replayed" not in r.headers) == 1
    assert len(rows(api.engine, Order)) == 1
    assert len(rows(api.engine, OrderLine)) == 1
    assert len(rows(api.engine, Customer)) == 1
    # (A known customer's new email address is also announced, as a `register` event.)
    assert [e.source_id for e in events(api.engine) if e.type == "purchase"] == ["web-1001"]
    assert hand_offs == ["web-1001"]


def test_concurrent_direct_calls_store_once(api: Api) -> None:
    event = EventIn.model_validate(purchase("pos-77", "c7"))
    results = _race(lambda: store_event(api.engine, event))
    assert sum(r.new for r in results) == 1
    assert {r.id for r in results} == {"pos-77"}
    assert len(rows(api.engine, Order)) == 1
    assert len(events(api.engine)) == 1
