"""/v1/admin: operator control over HTTP (journeys in flight, pauses, cancels, system health)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field, model_validator
from sqlmodel import Session
from temporalio.client import Client
from temporalio.service import RPCError

from trouw.domain.control import ControlError, set_contact_paused, set_journey_paused
from trouw.domain.db.models import ContactPause, Customer, JourneyControl
from trouw.ways_in.api.auth import KeyFirstRoute, Principal, require
from trouw.ways_in.api.errors import ApiError, error_responses
from trouw.ways_in.api.sessions import in_session
from trouw.ways_in.api.state import ApiState, api_state


def _admin_router() -> APIRouter:
    return APIRouter(
        prefix="/v1/admin",
        tags=["operator control"],
        responses=error_responses(401, 403, 422, 503),
        route_class=KeyFirstRoute,
    )


# Every route needs an admin key. The routes that ask Temporal (runs in flight, cancel) exist
# only in an API process connected to Temporal, as `trouw api` and `trouw up` always are.
router = _admin_router()
temporal_router = _admin_router()

_BODY_LIMITS = error_responses(400, 413)
JOURNEY = Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
CUSTOMER = Path(min_length=1, max_length=64)


class ControlIn(BaseModel):
    """Why the operator pauses or resumes: kept in the ledger and shown by `trouw why`."""

    model_config = {"extra": "forbid"}

    reason: str | None = Field(default=None, max_length=500)


class CancelIn(BaseModel):
    """Whose runs to cancel: one customer's, or every run of the journey (`all: true`)."""

    model_config = {"extra": "forbid"}

    customer: str | None = Field(default=None, min_length=1, max_length=64)
    all: bool = False
    reason: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _one_target(self) -> CancelIn:
        if (self.customer is None) == (not self.all):
            raise ValueError("give either customer or all: true")
        return self


class PauseOut(BaseModel):
    """The pause state after the call; `changed` is false when it already was so."""

    paused: bool
    changed: bool
    at: datetime | None = None
    by: str | None = None
    reason: str | None = None


class CancelOut(BaseModel):
    journey: str
    customer: str | None
    cancelled: list[str] = Field(
        description="Running runs (workflow ids) asked to cancel; records follow."
    )
    held: list[str] = Field(
        default_factory=list,
        description="Held runs (first step a wait, not started yet) their customer workflow "
        "drops and records as cancelled.",
    )


def _change(principal: Principal, body: ControlIn, *, paused: bool) -> dict[str, Any]:
    """What every pause or resume records: which, who, when and why."""
    return {
        "paused": paused,
        "by": _actor(principal),
        "at": datetime.now(UTC),
        "reason": body.reason,
    }


def _actor(principal: Principal) -> str:
    return f"api:{principal.name}"


def _client(state: ApiState) -> Client:
    assert state.client is not None, "temporal_router is only mounted with a Temporal client"
    return state.client


def _temporal_down(state: ApiState, exc: RPCError) -> ApiError:
    retry = str(state.settings.api_retry_after_seconds)
    return ApiError(503, f"Temporal: {exc.message}", headers={"Retry-After": retry})


def _pause_out(row: JourneyControl | ContactPause | None, *, paused: bool) -> PauseOut:
    if row is None:
        return PauseOut(paused=paused, changed=False)
    return PauseOut(paused=row.paused, changed=True, at=row.at, by=row.by, reason=row.reason)


@router.get("/status", responses=error_responses())
async def get_status(
    state: ApiState = Depends(api_state), _key: Principal = Depends(require("admin"))
) -> dict[str, Any]:
    """The health of the whole system, as `trouw status --json` prints it (`healthy` false
    when any check fails)."""
    from trouw.stack.health import catalog_state, gather

    catalog = await asyncio.to_thread(catalog_state, state.settings)
    health = await gather(state.settings, state.engine, catalog=catalog, client=state.client)
    return health.to_json()


@temporal_router.get("/journeys")
async def get_journeys(
    state: ApiState = Depends(api_state), _key: Principal = Depends(require("admin"))
) -> list[dict[str, object]]:
    """Every journey: the version new runs get, its pause, runs in flight per version and step."""
    from trouw.stack.health import catalog_versions
    from trouw.stack.runs import journey_overviews

    client = _client(state)
    catalog = await asyncio.to_thread(catalog_versions, state.settings)
    try:
        rows = await journey_overviews(client, state.engine, catalog)
    except RPCError as exc:
        raise _temporal_down(state, exc) from None
    return [row.to_json() for row in rows]


async def _set_journey(
    state: ApiState, journey: str, body: ControlIn, principal: Principal, *, paused: bool
) -> PauseOut:
    from trouw.stack.health import catalog_versions

    if paused and journey not in await asyncio.to_thread(catalog_versions, state.settings):
        raise ApiError(404, f"unknown journey {journey!r}", field="journey")

    change = _change(principal, body, paused=paused)
    return await in_session(
        state,
        lambda s: _pause_out(set_journey_paused(s, journey=journey, **change), paused=paused),
    )


@router.post(
    "/journeys/{journey}/pause",
    response_model=PauseOut,
    responses={**_BODY_LIMITS, **error_responses(404)},
)
async def pause_journey(
    body: ControlIn,
    journey: str = JOURNEY,
    state: ApiState = Depends(api_state),
    principal: Principal = Depends(require("admin")),
) -> PauseOut:
    """Pause a journey: no new runs; running runs hold their next message (dropped after the
    hold limit, with the reason recorded)."""
    return await _set_journey(state, journey, body, principal, paused=True)


@router.post("/journeys/{journey}/resume", response_model=PauseOut, responses=_BODY_LIMITS)
async def resume_journey(
    body: ControlIn,
    journey: str = JOURNEY,
    state: ApiState = Depends(api_state),
    principal: Principal = Depends(require("admin")),
) -> PauseOut:
    """Resume a journey: new runs start again; held messages go out at their next check."""
    return await _set_journey(state, journey, body, principal, paused=False)


@temporal_router.post(
    "/journeys/{journey}/cancel", response_model=CancelOut, responses=_BODY_LIMITS
)
async def cancel_journey_runs(
    body: CancelIn,
    journey: str = JOURNEY,
    state: ApiState = Depends(api_state),
    principal: Principal = Depends(require("admin")),
) -> CancelOut:
    """Cancel one customer's running runs of the journey, or all of them; each run records
    its cancellation (who and why) as it ends."""
    from trouw.stack.runs import cancel_runs

    client = _client(state)
    try:
        report = await cancel_runs(
            client,
            state.engine,
            journey=journey,
            customer=body.customer,
            by=_actor(principal),
            reason=body.reason,
            now=datetime.now(UTC),
        )
    except ControlError as exc:
        raise ApiError(422, str(exc), field="customer") from None
    except RPCError as exc:
        raise _temporal_down(state, exc) from None
    return CancelOut(
        journey=journey, customer=body.customer, cancelled=report.cancelled, held=report.held
    )


async def _set_customer(
    state: ApiState, customer: str, body: ControlIn, principal: Principal, *, paused: bool
) -> PauseOut:
    change = _change(principal, body, paused=paused)

    def store(session: Session) -> PauseOut | None:
        if session.get(Customer, customer) is None:
            return None
        return _pause_out(
            set_contact_paused(session, customer_id=customer, **change), paused=paused
        )

    out = await in_session(state, store)
    if out is None:
        raise ApiError(404, f"unknown customer {customer!r}", field="customer")
    return out


@router.post(
    "/customers/{customer}/pause",
    response_model=PauseOut,
    responses={**_BODY_LIMITS, **error_responses(404)},
)
async def pause_customer(
    body: ControlIn,
    customer: str = CUSTOMER,
    state: ApiState = Depends(api_state),
    principal: Principal = Depends(require("admin")),
) -> PauseOut:
    """Pause every service and promotional message to this customer (a complaint);
    transactional messages still go out. Recorded like consent, in the GDPR export."""
    return await _set_customer(state, customer, body, principal, paused=True)


@router.post(
    "/customers/{customer}/resume",
    response_model=PauseOut,
    responses={**_BODY_LIMITS, **error_responses(404)},
)
async def resume_customer(
    body: ControlIn,
    customer: str = CUSTOMER,
    state: ApiState = Depends(api_state),
    principal: Principal = Depends(require("admin")),
) -> PauseOut:
    """Lift the customer's pause."""
    return await _set_customer(state, customer, body, principal, paused=False)


__all__ = ["ControlError", "router", "temporal_router"]
