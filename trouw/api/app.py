"""The HTTP API (FastAPI): events in, customers and products upserted, the outbox shown."""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy.engine import Engine
from sqlmodel import col, select
from temporalio.client import Client

from trouw.consent import current_consent
from trouw.context import jsonable
from trouw.db.engine import session_scope
from trouw.db.models import Customer, JourneyRun, Message
from trouw.ingest import (
    CustomerIn,
    EventIn,
    IngestError,
    ProductIn,
    ingest_event,
    upsert_customer,
    upsert_product,
)
from trouw.providers.outbox import list_outbox, safe_key
from trouw.relay import hand_off
from trouw.settings import Settings

log = logging.getLogger("trouw.api")


class ApiState:
    """What the endpoints share: settings, engine and (once connected) the Temporal client."""

    def __init__(self, settings: Settings, engine: Engine, client: Client | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.client = client


def create_app(settings: Settings, engine: Engine, client: Client | None = None) -> FastAPI:
    state = ApiState(settings, engine, client)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield

    app = FastAPI(
        title="Trouw",
        version="1",
        description="Journey orchestrator for retailers: events in, consent-aware messages out.",
        lifespan=lifespan,
    )
    app.state.trouw = state

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "field": ".".join(str(part) for part in error.get("loc", ()) if part != "body"),
                "message": str(error.get("msg", "invalid")).removeprefix("Value error, "),
            }
            for error in exc.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": errors})

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/events", status_code=202)
    async def post_event(event: EventIn) -> JSONResponse:
        """Store an event once (by `id`) and hand it to the customer's workflow."""

        def store() -> tuple[str, bool, str | None]:
            with session_scope(state.engine) as session:
                row, new = ingest_event(session, event)
                return row.source_id, new, row.relayed_at.isoformat() if row.relayed_at else None

        try:
            source_id, new, _relayed = await asyncio.to_thread(store)
        except IngestError as exc:
            return JSONResponse(
                status_code=422, content={"detail": [{"field": "", "message": str(exc)}]}
            )
        body = {
            "id": source_id,
            "customer": event.customer,
            "type": event.type,
            "status": "accepted",
        }
        if not new:
            return JSONResponse(status_code=200, content={**body, "status": "duplicate"})
        if state.client is not None:
            try:
                await hand_off(
                    state.engine, state.client, source_id, task_queue=state.settings.task_queue
                )
            except Exception:  # noqa: BLE001 - stored: the relay hands it off when Temporal is back
                log.warning("hand-off of %s deferred to the relay", source_id, exc_info=True)
        return JSONResponse(status_code=202, content=body)

    @app.post("/v1/customers")
    async def post_customer(customer: CustomerIn) -> dict[str, Any]:
        def store() -> dict[str, Any]:
            from datetime import UTC, datetime

            with session_scope(state.engine) as session:
                row = upsert_customer(session, customer, at=datetime.now(UTC), source="api")
                return {"id": row.id}

        return await asyncio.to_thread(store)

    @app.post("/v1/products")
    async def post_product(product: ProductIn) -> dict[str, Any]:
        def store() -> dict[str, Any]:
            with session_scope(state.engine) as session:
                row = upsert_product(session, product)
                return {"sku": row.sku}

        return await asyncio.to_thread(store)

    @app.get("/v1/customers/{customer_id}")
    async def get_customer(customer_id: str) -> dict[str, Any]:
        def load() -> dict[str, Any] | None:
            with session_scope(state.engine) as session:
                customer = session.get(Customer, customer_id)
                if customer is None:
                    return None
                consent = current_consent(session, customer_id)
                messages = session.exec(
                    select(Message)
                    .where(Message.customer_id == customer_id)
                    .order_by(col(Message.id))
                ).all()
                runs = session.exec(
                    select(JourneyRun)
                    .where(JourneyRun.customer_id == customer_id)
                    .order_by(col(JourneyRun.id))
                ).all()
                return jsonable(
                    {
                        "customer": customer.model_dump(),
                        "consent": consent.snapshot(),
                        "messages": [
                            m.model_dump(exclude={"consent_snapshot", "status_history"})
                            for m in messages
                        ],
                        "journeys": [r.model_dump() for r in runs],
                    }
                )

        found = await asyncio.to_thread(load)
        if found is None:
            raise HTTPException(status_code=404, detail=f"unknown customer {customer_id!r}")
        return found

    @app.get("/outbox", response_class=HTMLResponse, include_in_schema=False)
    async def outbox_page() -> HTMLResponse:
        entries = await asyncio.to_thread(list_outbox, state.settings.outbox_dir)
        rows = "".join(
            "<tr><td>{at}</td><td>{channel}</td><td>{to}</td><td>{journey}</td><td>{category}</td>"
            "<td><a href='/outbox/view/{key}'>{subject}</a></td></tr>".format(
                at=html.escape(entry.at.isoformat(timespec="seconds")),
                channel=html.escape(entry.channel),
                to=html.escape(entry.to),
                journey=html.escape(entry.journey),
                category=html.escape(entry.category),
                key=html.escape(safe_key(entry.message_key)),
                subject=html.escape(entry.subject or entry.body or "(sms)"),
            )
            for entry in entries
        )
        page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Trouw outbox</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem}}table{{border-collapse:collapse;width:100%}}
td,th{{border-bottom:1px solid #ddd;padding:.35rem .5rem;text-align:left}}th{{background:#f3f5f0}}</style></head>
<body><h1>Outbox</h1><p>{len(entries)} message(s) handed to the local outbox provider
(files in <code>{html.escape(str(state.settings.outbox_dir))}</code>).</p>
<table><thead><tr><th>when</th><th>channel</th><th>to</th><th>journey</th><th>category</th><th>subject</th></tr></thead>
<tbody>{rows}</tbody></table></body></html>"""
        return HTMLResponse(page)

    @app.get("/outbox/view/{key}", response_class=HTMLResponse, include_in_schema=False)
    async def outbox_view(key: str) -> HTMLResponse:
        entries = await asyncio.to_thread(list_outbox, state.settings.outbox_dir)
        for entry in entries:
            if key in (safe_key(entry.message_key), entry.message_key):
                for name in entry.files:
                    if name.endswith(".html"):
                        path = state.settings.outbox_dir / name
                        return HTMLResponse(path.read_text(encoding="utf-8"))
                return HTMLResponse(f"<pre>{html.escape(entry.body or '')}</pre>")
        raise HTTPException(status_code=404, detail="no such message in the outbox")

    return app
