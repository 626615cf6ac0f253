"""Insight over HTTP: one customer's insight and the segment sizes (docs/insight.md)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends

from trouw.domain.db.engine import read_scope
from trouw.domain.insight.store import customer_view, segments_view
from trouw.language.journey.plain import jsonable
from trouw.ways_in.api.auth import KeyFirstRoute, Principal, require
from trouw.ways_in.api.errors import ApiError, error_responses
from trouw.ways_in.api.state import ApiState, api_state

router = APIRouter(
    prefix="/v1",
    responses=error_responses(401, 403, 422, 503),
    tags=["insight"],
    route_class=KeyFirstRoute,
)


@router.get("/customers/{customer_id}/insight", responses=error_responses(404))
async def get_customer_insight(
    customer_id: str,
    state: ApiState = Depends(api_state),
    _key: Principal = Depends(require("read")),
) -> dict[str, Any]:
    """The customer's insight from the last refresh: RFM, segment and its history, the
    forecasts, the purchase moment and the recommended products."""

    def load() -> dict[str, Any] | None:
        with read_scope(state.engine) as session:
            view = customer_view(session, customer_id)
            return jsonable(view) if view is not None else None

    found = await asyncio.to_thread(load)
    if found is None:
        raise ApiError(
            404,
            f"no insight for customer {customer_id!r}: unknown, or not scored by a refresh yet",
            field="customer_id",
        )
    return found


@router.get("/insight/segments")
async def get_segments(
    state: ApiState = Depends(api_state),
    _key: Principal = Depends(require("read")),
) -> dict[str, Any]:
    """Customers, revenue and average expected value per segment, as of the last refresh."""

    def load() -> dict[str, Any]:
        with read_scope(state.engine) as session:
            return dict(jsonable(segments_view(session)))

    return await asyncio.to_thread(load)
