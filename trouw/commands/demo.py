"""`make demo`: a garden centre and pet shop, a dozen customers, a few purchases, on the real stack."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any
from urllib.parse import quote

import httpx
from rich.console import Console
from sqlmodel import col, select

from trouw.commands.sample_shop import CUSTOMERS, PRODUCTS
from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import Message
from trouw.settings import Settings
from trouw.stack.runtime import Stack, run_stack

PURCHASES: list[dict[str, Any]] = [
    {
        "id": "demo-e01",
        "customer": "demo-c01",
        "order": "demo-o01",
        "channel": "web",
        "lines": [
            {"sku": "LAWN-10", "qty": 1},
            {"sku": "ROSE-01", "qty": 2},
            {"sku": "SEED-GR", "qty": 1},
        ],
    },
    {
        "id": "demo-e02",
        "customer": "demo-c02",
        "order": "demo-o02",
        "channel": "pos",
        "store": "Gent",
        "lines": [{"sku": "CAT-2", "qty": 2}, {"sku": "LITTER-10", "qty": 1}],
    },
    {
        "id": "demo-e03",
        "customer": "demo-c03",
        "order": "demo-o03",
        "channel": "web",
        "lines": [{"sku": "OLIVE-80", "qty": 1}, {"sku": "POT-40", "qty": 1}],
    },
    {
        "id": "demo-e04",
        "customer": "demo-c07",
        "order": "demo-o04",
        "channel": "web",
        "lines": [{"sku": "AQUA-60", "qty": 1}],
    },
    {
        "id": "demo-e05",
        "customer": "demo-c05",
        "order": "demo-o05",
        "channel": "pos",
        "store": "Namur",
        "lines": [{"sku": "DOG-12", "qty": 1}, {"sku": "BIRD-5", "qty": 2}],
    },
    {
        "id": "demo-e06",
        "customer": "demo-c12",
        "order": "demo-o06",
        "channel": "pos",
        "store": "Leuven",
        "lines": [{"sku": "SHEARS-1", "qty": 1}, {"sku": "SOIL-40", "qty": 3}],
    },
]


def demo_key(stack: Stack) -> str:
    """A fresh API key for the demo's own requests (only its hash is stored)."""
    from trouw.ways_in.api.auth import ensure_key

    with session_scope(stack.services.engine) as session:
        return ensure_key(session, "demo", ["ingest", "read"])


async def load_shop(api_url: str, key: str) -> int:
    """Post the catalogue, the customers and the purchases through the HTTP API (idempotent)."""
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=api_url, timeout=30, headers=headers) as http:
        for product in PRODUCTS:
            (await http.post("/v1/products", json=product)).raise_for_status()
        for customer in CUSTOMERS:
            event = {
                "id": f"{customer['id']}-register",
                "type": "register",
                "customer": customer["id"],
                "profile": customer,
                "source": "pos",
            }
            (await http.post("/v1/events", json=event)).raise_for_status()
        accepted = 0
        for purchase in PURCHASES:
            response = await http.post("/v1/events", json={"type": "purchase", **purchase})
            response.raise_for_status()
            accepted += 1
        return accepted


def existing_orders(stack: Stack) -> int:
    from trouw.domain.db.models import Order

    ids = [purchase["order"] for purchase in PURCHASES]
    with session_scope(stack.services.engine) as session:
        return len(session.exec(select(Order.id).where(col(Order.id).in_(ids))).all())


def confirmations(stack: Stack) -> int:
    with session_scope(stack.services.engine) as session:
        rows = session.exec(
            select(Message).where(Message.template == "order_confirmation", Message.state == "sent")
        ).all()
        return len([row for row in rows if row.customer_id.startswith("demo-")])


async def run_demo(settings: Settings, *, exit_after: float | None) -> None:
    console = Console()
    stop = asyncio.Event()

    async def ready(stack: Stack) -> None:
        console.print(
            f"[bold]Trouw demo[/] — data in {settings.home}/, Temporal UI on {settings.temporal_ui_url}"
        )
        key = await asyncio.to_thread(demo_key, stack)
        known = await asyncio.to_thread(existing_orders, stack)
        posted = await load_shop(stack.api_url, key)
        console.print(
            f"Loaded {len(PRODUCTS)} products and {len(CUSTOMERS)} customers; posted {posted} "
            f"purchases to the API ({posted - known} new, {known} kept from an earlier run)."
        )
        deadline = time.monotonic() + 90
        count = 0
        while time.monotonic() < deadline:
            count = await asyncio.to_thread(confirmations, stack)
            if count >= len(PURCHASES):
                break
            await asyncio.sleep(0.5)
        query = quote('CustomerId="demo-c01"')
        ui = f"{settings.temporal_ui_url}/namespaces/{settings.temporal_namespace}/workflows"
        console.print(
            f"\n[green]Trouw is running.[/] {count} of {len(PURCHASES)} order confirmations are in the outbox.\n"
            f"  Outbox (rendered emails):  {stack.api_url}/outbox   (files in {settings.outbox_dir}/)\n"
            f"  Temporal Web UI:           {ui}\n"
            f"  Journeys of one customer:  {ui}?query={query}\n"
            f"  API and its docs:          {stack.api_url}/docs\n"
            "Stop with Ctrl-C."
        )
        if exit_after is not None:
            await asyncio.sleep(exit_after)
            stop.set()

    await run_stack(settings, stop=stop, on_ready=ready)
    console.print("Trouw demo stopped.")


def exit_after_from_env() -> float | None:
    raw = os.environ.get("DEMO_EXIT_AFTER")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        raise ValueError(f"DEMO_EXIT_AFTER must be a number of seconds, not {raw!r}") from None
