"""End to end on the Temporal dev server: API -> database -> workflows -> template -> outbox."""

from __future__ import annotations

import asyncio
import json
import random
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT
from trouw.settings import Settings
from trouw.stack.runs import running_runs
from trouw.stack.runtime import Stack, run_stack
from workflows.inline import JOURNEYS, ORDER_IDS, STEPS

pytestmark = pytest.mark.slow


def free_port() -> int:
    """A free port below the kernel's ephemeral range (32768 and up on Linux).

    A port the kernel hands out for bind(0) is handed out again: the Temporal dev server picks
    its internal ports that way and once took the API's port between this check and the
    API's bind (three e2e tests failed with "address already in use"). Below that range only
    an explicit bind can take it.
    """
    rng = random.SystemRandom()
    for _ in range(500):
        port = rng.randrange(20000, 32000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port between 20000 and 32000 on 127.0.0.1")


def e2e_settings(tmp_path: Path) -> Settings:
    api_port = free_port()
    return Settings(
        home=tmp_path / "home",
        journeys_dir=ROOT / "journeys",
        templates_dir=ROOT / "templates",
        temporal_port=free_port(),
        temporal_ui_port=free_port(),
        temporal_persist=False,
        api_port=api_port,
        public_url=f"http://127.0.0.1:{api_port}",
        signing_keys=["e2e-key"],
        task_queue="trouw-e2e",
    )


PURCHASE = {
    "id": "shop-4711",
    "type": "purchase",
    "customer": "k-1001",
    "order": "W-1001",
    "channel": "web",
    "lines": [
        {"sku": "LAWN-10", "qty": 1, "unit_price": "24.95", "name": "Gazonmest 10 kg"},
        {"sku": "ROSE-01", "qty": 2, "unit_price": "14.50", "name": "Klimroos"},
        {"sku": "POT-40", "qty": 1, "unit_price": "29.00", "name": "Terracotta pot"},
    ],
    "profile": {
        "id": "k-1001",
        "first_name": "Bart",
        "email": "bart@example.com",
        "locale": "nl-BE",
    },
}


async def wait_for(predicate: Any, *, within: float = 60.0) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.25)
    raise AssertionError("condition not met in time")


def outbox_entries(settings: Settings) -> list[dict[str, Any]]:
    index = settings.outbox_dir / "index.jsonl"
    if not index.exists():
        return []
    return [json.loads(line) for line in index.read_text().splitlines() if line.strip()]


async def test_purchase_through_api_gives_exactly_one_confirmation(tmp_path: Path) -> None:
    settings = e2e_settings(tmp_path)
    stop = asyncio.Event()
    seen: dict[str, Any] = {}

    async def scenario(stack: Stack) -> None:
        try:
            from trouw.domain.db.engine import session_scope
            from trouw.ways_in.api.auth import ensure_key

            with session_scope(stack.services.engine) as session:
                key = ensure_key(session, "e2e", ["ingest", "read", "admin"])
            headers = {"Authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(
                base_url=stack.api_url, timeout=30, headers=headers
            ) as http:
                product = {
                    "sku": "LAWN-10",
                    "name": "Gazonmest 10 kg",
                    "price": "24.95",
                    "consumption_days": 60,
                    "care": {
                        "summary": "Strooi op een droog gazon.",
                        "tips": ["Water na het strooien."],
                    },
                }
                assert (await http.post("/v1/products", json=product)).status_code == 200
                # the same purchase twice, at the same time, and once more afterwards
                first, second = await asyncio.gather(
                    http.post("/v1/events", json=PURCHASE), http.post("/v1/events", json=PURCHASE)
                )
                third = await http.post("/v1/events", json=PURCHASE)
                seen["codes"] = [first.status_code, second.status_code, third.status_code]
                confirmations = await wait_for(
                    lambda: [e for e in outbox_entries(settings) if e["channel"] == "email"]
                )
                await asyncio.sleep(3)  # a duplicate would arrive within this time
                seen["confirmations"] = [
                    e for e in outbox_entries(settings) if e["channel"] == "email"
                ]
                seen["first"] = confirmations[0]
                page = await http.get("/outbox")
                seen["page"] = page.text
                customer = await http.get("/v1/customers/k-1001")
                seen["customer"] = customer.json()
                # The journey runs live inside the customer workflow: no workflow of their own.
                handle = stack.client.get_workflow_handle(CUSTOMER)
                # What an operator types in the Temporal UI's search box (visibility lags a bit).
                for query in SEARCHES:
                    seen[query] = await listed(stack, query, SEARCHES[query])
                description = await handle.describe()
                info = description.raw_description.workflow_execution_info
                seen["search"] = description.typed_search_attributes
                seen["search_names"] = set(info.search_attributes.indexed_fields)
                seen["customer_status"] = await handle.query("status")
                seen["run_workflows"] = [
                    wf.id async for wf in stack.client.list_workflows("WorkflowType = 'Journey'")
                ]
                seen["in_flight"] = await running_runs(stack.client, customer="k-1001")
        finally:
            stop.set()

    await asyncio.wait_for(run_stack(settings, stop=stop, on_ready=scenario), timeout=180)
    assert all(code in (200, 202) for code in seen["codes"])
    assert len(seen["confirmations"]) == 1
    email = seen["confirmations"][0]
    assert email["to"] == "bart@example.com"
    assert email["subject"] == "Bedankt voor je bestelling W-1001"
    html = (
        settings.outbox_dir / next(f for f in email["files"] if f.endswith(".html"))
    ).read_text()
    assert "Bart" in html and "Gazonmest 10 kg" in html and "Klimroos" in html
    assert "82,95" in html  # 24,95 + 2 x 14,50 + 29,00
    assert "Bedankt voor je bestelling W-1001" in seen["page"]
    assert [m["template"] for m in seen["customer"]["messages"]] == ["order_confirmation"]
    assert sorted(j["journey"] for j in seen["customer"]["journeys"]) == [
        "enrichment",
        "post_purchase",
        "reactivation",
        "refill",
    ]
    for query, expected in SEARCHES.items():
        assert seen[query] == expected, query
    assert {"CustomerId", "Journeys", "Steps", "OrderIds", "JourneyRuns"} <= seen["search_names"]
    search = seen["search"]
    assert search.get(JOURNEYS) == ["enrichment", "post_purchase", "reactivation", "refill"]
    assert search.get(STEPS) == ["wait_delivery", "wait_empty", "wait_half_year", "wait_month"]
    assert search.get(ORDER_IDS) == ["W-1001"]
    assert seen["run_workflows"] == []
    # each run's journey, step and next wake-up in the customer workflow's state
    status = seen["customer_status"]
    assert "journeys running here: " in status
    for journey, step in (
        ("post_purchase", "wait_delivery"),
        ("enrichment", "wait_month"),
        ("reactivation", "wait_half_year"),
        ("refill", "wait_empty"),
    ):
        assert f"{journey} at step {step}: waiting" in status, status
    assert status.count(" until ") == 4, status
    # `trouw runs` counts them by journey, version and step from the same attributes
    in_flight = {(run.journey, run.step, run.customer) for run in seen["in_flight"]}
    assert in_flight == {
        ("post_purchase", "wait_delivery", "k-1001"),
        ("enrichment", "wait_month", "k-1001"),
        ("reactivation", "wait_half_year", "k-1001"),
        ("refill", "wait_empty", "k-1001"),
    }
    assert all(run.inline and run.workflow_id == CUSTOMER for run in seen["in_flight"])


CUSTOMER = "customer:k-1001"
SEARCHES = {
    'CustomerId = "k-1001"': [CUSTOMER],
    'CustomerId = "k-1001" AND Journeys = "post_purchase"': [CUSTOMER],
    'OrderIds = "W-1001"': [CUSTOMER],
    'Steps = "wait_delivery" AND CustomerId = "k-1001"': [CUSTOMER],
    'Journeys = "refill" AND Steps = "wait_empty"': [CUSTOMER],
    'Journeys = "birthday"': [],
    'Steps = "review"': [],
}


async def listed(stack: Stack, query: str, expected: list[str], within: float = 20.0) -> list[str]:
    """The workflow ids a visibility query finds, once they match or the time is up."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        found = sorted([wf.id async for wf in stack.client.list_workflows(query)])
        if found == expected or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.5)
