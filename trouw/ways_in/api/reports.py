"""GET /v1/reports/journeys[/{journey}]: the journey report and uplift, for dashboards."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BeforeValidator

from trouw.domain.db.engine import READ_ONLY, read_scope
from trouw.domain.measure.report import attribution_rules, journey_report
from trouw.domain.measure.splits import split_steps, uplift_report
from trouw.ways_in.api.auth import KeyFirstRoute, Principal, require
from trouw.ways_in.api.errors import ApiError, error_responses
from trouw.ways_in.api.state import ApiState, api_state

router = APIRouter(
    prefix="/v1/reports",
    responses=error_responses(401, 403, 422, 503),
    tags=["reports"],
    route_class=KeyFirstRoute,
)
DEFAULT_PERIOD = timedelta(days=30)
FROM_DOC = "ISO 8601 with offset; before `to` (default: 30 days before `to`), else 422."
_ISO_START = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}")


def _iso_text(value: Any) -> Any:
    # Pydantic would read "0.5" as a Unix timestamp: a period is named in ISO 8601 only.
    if isinstance(value, str) and not _ISO_START.match(value):
        raise ValueError("give the time as ISO 8601 with offset, e.g. 2026-03-02T09:00:00+01:00")
    return value


From = Annotated[
    datetime | None, BeforeValidator(_iso_text), Query(alias="from", description=FROM_DOC)
]
To = Annotated[
    datetime | None,
    BeforeValidator(_iso_text),
    Query(alias="to", description="ISO 8601 with offset."),
]


Segments = Annotated[
    bool,
    Query(
        description="Also give `segments`: each step's funnel split by the customers' insight "
        "segment when the message was made (null without it)."
    ),
]


def _period(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    for name, value in (("from", start), ("to", end)):
        if value is not None and value.tzinfo is None:
            raise ApiError(422, f"{name}: a timestamp needs its offset (+01:00 or Z)", field=name)
    until = end or datetime.now(UTC)
    begin = start or until - DEFAULT_PERIOD
    if begin >= until:
        raise ApiError(422, "from must be before to", field="from")
    return begin, until


def _report(
    state: ApiState, begin: datetime, until: datetime, journey: str | None, segments: bool
) -> Any:
    # Only reads (the worker folds the roll-ups' deltas): on SQLite it takes no write lock.
    with state.engine.connect().execution_options(**{READ_ONLY: True}) as connection:
        found = journey_report(
            connection,
            attribution_rules(state.settings),
            start=begin,
            end=until,
            journey=journey,
            segments=segments,
        )
    body = found.to_json()
    if journey is not None:
        with read_scope(state.engine) as session:
            body["uplift"] = [
                uplift_report(session, journey=j, step=s, start=begin, end=until).to_json()
                for j, s in split_steps(session, journey=journey, start=begin, end=until)
            ]
    return body


@router.get("/journeys")
async def get_journey_reports(
    start: From = None,
    end: To = None,
    segments: Segments = False,
    state: ApiState = Depends(api_state),
    _key: Principal = Depends(require("read")),
) -> dict[str, Any]:
    """Every journey's funnel per version and step, with attributed orders and revenue
    (the JSON of `trouw report --format json`; docs/measurement.md)."""
    begin, until = _period(start, end)
    found: dict[str, Any] = await asyncio.to_thread(_report, state, begin, until, None, segments)
    return found


@router.get("/journeys/{journey}", responses=error_responses(404))
async def get_journey_report(
    journey: str,
    start: From = None,
    end: To = None,
    segments: Segments = False,
    state: ApiState = Depends(api_state),
    _key: Principal = Depends(require("read")),
) -> dict[str, Any]:
    """One journey's funnel, attributed orders and, under `uplift`, every split it has
    (the JSON of `trouw report uplift --format json` for each)."""
    begin, until = _period(start, end)
    found: dict[str, Any] = await asyncio.to_thread(_report, state, begin, until, journey, segments)
    if not found["journeys"] and not found["uplift"]:
        raise ApiError(404, f"no runs of journey {journey!r} in this period", field="journey")
    return found
