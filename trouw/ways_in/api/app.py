"""The HTTP API (FastAPI): /v1 for integrations, webhooks, provider callbacks and the pages."""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from temporalio.client import Client

from trouw.domain.loyalty.ledger import configure_from
from trouw.language.attributes import attributes_json_schema, declared_attributes
from trouw.providers.outbox import list_outbox, safe_key
from trouw.settings import Settings
from trouw.stack import metrics
from trouw.stack.relay import intake_figures
from trouw.ways_in.api import (
    admin,
    clicks,
    hosted,
    insight,
    loyalty,
    loyalty_page,
    pages,
    reports,
    v1,
    webshops,
)
from trouw.ways_in.api import provider_callbacks as callbacks
from trouw.ways_in.api.auth import authenticate
from trouw.ways_in.api.errors import ApiError, install_error_handlers, with_one_error_body
from trouw.ways_in.api.limits import BodyLimits
from trouw.ways_in.api.state import ApiState

__all__ = ["ApiState", "create_app"]

log = logging.getLogger("trouw.api")

DESCRIPTION = """Journey orchestrator for retailers: events in, consent-aware messages out.

Every /v1 endpoint except the webhooks and provider callbacks needs an API key
(`Authorization: Bearer trw_…` or `X-API-Key`), made with `trouw apikey create`.
Scopes: `ingest` (post events, customers, products), `read` (customer reads), `admin` (keys, all).
Events are idempotent by their `id`: a repeat answers as the first time did. See docs/api.md.

Every error has one body: `{"detail": [{"field": "lines.0.qty", "message": "..."}]}`, with
`field` "" when the problem is the request as a whole. Every body is limited in size (413, the
message gives the limit) and JSON in nesting depth (422).
"""


# Threads for the API's database work on PostgreSQL: the engine's pool holds 10 connections plus
# 10 overflow.
API_THREADS = 20


def create_app(settings: Settings, engine: Engine, client: Client | None = None) -> FastAPI:
    """The API app; without a Temporal client, stored events wait for the relay."""
    state = ApiState(settings, engine, client)
    configure_from(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Database work runs in threads (asyncio.to_thread); the default pool has cores + 4
        # (6 here). On PostgreSQL redemptions waited for a thread (p50 1.1 s at 100/s) while
        # each thread mostly waited on the server's commit: as many threads as connections.
        # On SQLite writes go one at a time, and more threads only made the one holding the
        # write lock wait longer for the GIL (redeem p99 348 ms with 20, 197 ms with 6).
        workers = API_THREADS if engine.dialect.name == "postgresql" else None
        threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="trouw-api")
        asyncio.get_running_loop().set_default_executor(threads)
        state.clicks = clicks.ClickWriter(engine, folder=settings.home)
        state.clicks.start()
        purge = asyncio.create_task(hosted.purge_forever(state), name="purge hosted copies")
        try:
            yield
        finally:
            purge.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purge
            await asyncio.to_thread(state.clicks.close)
            state.clicks = None
            # The loop outlives the app when the API runs inside `trouw up`: the stack's own
            # shutdown (stopping the dev server) still needs threads after this pool is gone.
            asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor())
            threads.shutdown(wait=False)

    app = FastAPI(title="Trouw", version="1", description=DESCRIPTION, lifespan=lifespan)
    app.state.trouw = state
    # First: a request is matched against the routes in order, and the click redirect is the
    # one that must answer fast (its p99 target is 20 ms; matching all of /v1 first cost a
    # tenth of its CPU in a py-spy profile).
    app.include_router(clicks.router)
    app.include_router(v1.router)
    app.include_router(insight.router)
    app.include_router(reports.router)
    app.include_router(loyalty.router)
    app.include_router(admin.router)
    if client is not None:
        app.include_router(admin.temporal_router)
    app.include_router(webshops.router)
    app.include_router(callbacks.router)
    app.include_router(pages.router)
    app.include_router(loyalty_page.router)
    app.include_router(hosted.router)

    install_error_handlers(app)
    app.add_middleware(
        BodyLimits,
        max_bytes=settings.api_max_body_bytes,
        max_depth=settings.api_max_json_depth,
    )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        # The relay's figures are read from the database, so an API alone reports them too.
        try:
            await asyncio.to_thread(intake_figures, state.engine)
        except SQLAlchemyError as exc:  # the scrape still answers: our counters, Temporal's
            log.warning("relay figures unavailable: %s", exc)
        # The Temporal runtime's page is read over loopback: off the event loop.
        text = await asyncio.to_thread(metrics.exposition)
        return Response(text, media_type=metrics.CONTENT_TYPE_LATEST)

    _document(app, settings)

    if settings.email_provider == "outbox":
        _outbox_routes(app, state)

    return app


def _document(app: FastAPI, settings: Settings) -> None:
    """The OpenAPI document: one error body everywhere, this installation's declared attributes."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = with_one_error_body(generate())
            customer = document["components"]["schemas"]["CustomerIn"]["properties"]
            declared = attributes_json_schema(declared_attributes(settings))
            customer["attributes"] = {"anyOf": [declared, {"type": "null"}], "default": None}
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


async def _outbox_allowed(request: Request, state: ApiState) -> None:
    """Open with `development = true`; otherwise only to an admin key (401/403)."""
    if state.settings.development:
        return
    principal = await authenticate(request, state.engine)
    if not principal.allows("admin"):
        raise ApiError(403, "the outbox needs an admin key (or development = true)")


def _outbox_routes(app: FastAPI, state: ApiState) -> None:
    """The local outbox viewer: with the outbox email provider only, and then only in
    development or to an admin key.

    It shows every message with its signed unsubscribe and preference links: anyone who reads it
    could unsubscribe or change the preferences of every customer in it.
    """

    @app.get("/outbox", response_class=HTMLResponse, include_in_schema=False)
    async def outbox_page(request: Request) -> HTMLResponse:
        await _outbox_allowed(request, state)
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
    async def outbox_view(key: str, request: Request) -> HTMLResponse:
        await _outbox_allowed(request, state)
        entries = await asyncio.to_thread(list_outbox, state.settings.outbox_dir)
        for entry in entries:
            if key in (safe_key(entry.message_key), entry.message_key):
                for name in entry.files:
                    if name.endswith(".html"):
                        path = state.settings.outbox_dir / name
                        text = await asyncio.to_thread(path.read_text, encoding="utf-8")
                        return HTMLResponse(text)
                return HTMLResponse(f"<pre>{html.escape(entry.body or '')}</pre>")
        raise ApiError(404, "no such message in the outbox", field="key")
