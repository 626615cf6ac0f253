"""The /v1 endpoints for integrations: events, customers, products, reads and API keys."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlmodel import Session, col, select

from trouw.domain.consent import current_consent
from trouw.domain.db.models import ApiKey, ConsentRecord, Customer, JourneyRun, Message
from trouw.domain.ingest import (
    CustomerIn,
    IngestError,
    ProductIn,
    RecordConflictError,
    UnknownRecordError,
    WireEvent,
    upsert_customer,
    upsert_product,
)
from trouw.language.attributes import AttributeValueError, check_values, declared_attributes
from trouw.language.journey.plain import jsonable
from trouw.ways_in.api.auth import (
    KeyFirstRoute,
    Principal,
    Scope,
    create_api_key,
    hash_key,
    require,
    revoke_keys,
)
from trouw.ways_in.api.errors import ApiError, error_responses
from trouw.ways_in.api.events import StoredEvent, deliver_new, store_event
from trouw.ways_in.api.sessions import in_session
from trouw.ways_in.api.state import ApiState, api_state

# Every /v1 route here needs a key (401 without one, 403 without the scope); body routes add
# 413 (the size limit) and 422 (the rules), each route adds the answers of its own.
router = APIRouter(
    prefix="/v1", responses=error_responses(401, 403, 422, 503), route_class=KeyFirstRoute
)
_BODY_LIMITS = error_responses(400, 413)

REPLAYED_HEADER = "Idempotent-Replayed"


class EventAccepted(BaseModel):
    """The answer to an event; a repeat of the same `id` gets this same body and status again."""

    id: str
    customer: str
    type: str
    status: str = "accepted"


class CustomerSaved(BaseModel):
    id: str


class ProductSaved(BaseModel):
    sku: str


class ApiKeyCreate(BaseModel):
    model_config = {"extra": "forbid"}

    name: str = Field(min_length=1, max_length=100, pattern=r"\S")
    scopes: list[Scope] = Field(min_length=1)


class ApiKeyCreated(BaseModel):
    id: int
    name: str
    scopes: list[str]
    key: str = Field(description="The key itself: shown once, stored only as a hash.")


class ApiKeyPublic(BaseModel):
    id: int
    name: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None


def declared_only(profile: CustomerIn, state: ApiState) -> CustomerIn:
    """The profile with its attributes checked against the declarations (AttributeValueError)."""
    if not profile.attributes:
        return profile
    declared = declared_attributes(state.settings)
    return profile.model_copy(update={"attributes": check_values(profile.attributes, declared)})


def ingest_error(exc: IngestError) -> ApiError:
    """The answer to an event or customer that cannot be applied: 404, 409 or 422."""
    status = 422
    if isinstance(exc, UnknownRecordError):
        status = 404
    elif isinstance(exc, RecordConflictError):
        status = 409
    return ApiError(status, str(exc), field=exc.field)


def event_response(stored: StoredEvent) -> JSONResponse:
    headers = {} if stored.new else {REPLAYED_HEADER: "true"}
    return JSONResponse(status_code=202, content=stored.body(), headers=headers)


@router.post(
    "/events",
    status_code=202,
    response_model=EventAccepted,
    responses={
        202: {
            "description": "Stored (or stored before: the same answer again).",
            "headers": {
                REPLAYED_HEADER: {
                    "description": "`true` when this `id` was stored by an earlier request.",
                    "schema": {"type": "string", "enum": ["true"]},
                }
            },
        },
        **error_responses(400, 404, 409, 413),
    },
    tags=["events"],
)
async def post_event(
    event: WireEvent,
    state: ApiState = Depends(api_state),
    _key: Principal = Depends(require("ingest")),
) -> JSONResponse:
    """Store an event once (by `id`) and hand it to the customer's workflow.

    Posting the same `id` again changes nothing and answers exactly as the first time (202, same
    body), with the header `Idempotent-Replayed: true`. An event about an unknown customer,
    order or voucher is 404; an order of another customer or an erased customer is 409.
    """
    if event.profile is not None:
        try:
            event = event.model_copy(update={"profile": declared_only(event.profile, state)})
        except AttributeValueError as exc:
            raise ApiError(422, str(exc), field=f"profile.attributes.{exc.name}") from None
    try:
        stored = await asyncio.to_thread(store_event, state.engine, event.as_event())
    except IngestError as exc:
        raise ingest_error(exc) from None
    await deliver_new(state, [stored])
    return event_response(stored)


@router.post(
    "/customers",
    response_model=CustomerSaved,
    responses=error_responses(400, 409, 413),
    tags=["customers"],
)
async def post_customer(
    customer: CustomerIn,
    state: ApiState = Depends(api_state),
    _key: Principal = Depends(require("ingest")),
) -> CustomerSaved:
    """Create or update a customer (fields left out stay as they are); 409 if it was erased.

    `attributes` takes only the attributes declared in config, each of its declared type.
    """
    try:
        customer = declared_only(customer, state)
    except AttributeValueError as exc:
        raise ApiError(422, str(exc), field=f"attributes.{exc.name}") from None

    def store(session: Session) -> CustomerSaved:
        row = upsert_customer(session, customer, at=datetime.now(UTC), source="api")
        return CustomerSaved(id=row.id)

    try:
        return await in_session(state, store)
    except IngestError as exc:  # an erased customer's id
        raise ingest_error(exc) from None


@router.post("/products", response_model=ProductSaved, responses=_BODY_LIMITS, tags=["products"])
async def post_product(
    product: ProductIn,
    state: ApiState = Depends(api_state),
    _key: Principal = Depends(require("ingest")),
) -> ProductSaved:
    """Create or replace a catalogue item."""

    return await in_session(state, lambda s: ProductSaved(sku=upsert_product(s, product).sku))


# --- reads -----------------------------------------------------------------------------------


def _messages(session: Session, customer_id: str, limit: int, offset: int) -> list[dict[str, Any]]:
    rows = session.exec(
        select(Message)
        .where(Message.customer_id == customer_id)
        .order_by(col(Message.id))
        .offset(offset)
        .limit(limit)
    ).all()
    return [row.model_dump(exclude={"consent_snapshot"}) for row in rows]


def _journeys(session: Session, customer_id: str) -> list[dict[str, Any]]:
    rows = session.exec(
        select(JourneyRun).where(JourneyRun.customer_id == customer_id).order_by(col(JourneyRun.id))
    ).all()
    return [row.model_dump() for row in rows]


def customer_profile(session: Session, customer_id: str) -> dict[str, Any] | None:
    """Profile, current consent, messages and journey runs of one customer; None if unknown."""
    customer = session.get(Customer, customer_id)
    if customer is None:
        return None
    return {
        "customer": customer.model_dump(),
        "consent": current_consent(session, customer_id).snapshot(),
        "messages": [
            {k: v for k, v in m.items() if k != "status_history"}
            for m in _messages(session, customer_id, 1000, 0)
        ],
        "journeys": _journeys(session, customer_id),
    }


def customer_consents(session: Session, customer_id: str) -> dict[str, Any]:
    """The current consent state and the full ledger, oldest first."""
    ledger = session.exec(
        select(ConsentRecord)
        .where(ConsentRecord.customer_id == customer_id)
        .order_by(col(ConsentRecord.at), col(ConsentRecord.id))
    ).all()
    return {
        "customer": customer_id,
        "current": current_consent(session, customer_id).snapshot(),
        "ledger": [record.model_dump() for record in ledger],
    }


async def _read(state: ApiState, customer_id: str, load: Any) -> dict[str, Any]:
    def run(session: Session) -> dict[str, Any] | None:
        if session.get(Customer, customer_id) is None:
            return None
        found: dict[str, Any] | None = load(session)
        return jsonable(found) if found is not None else None

    found = await in_session(state, run, read_only=True)
    if found is None:
        raise ApiError(404, f"unknown customer {customer_id!r}", field="customer_id")
    return found


@router.get("/customers/{customer_id}", responses=error_responses(404), tags=["customers"])
async def get_customer(
    customer_id: str,
    state: ApiState = Depends(api_state),
    _key: Principal = Depends(require("read")),
) -> dict[str, Any]:
    """A customer's profile, consent, messages and journeys in one answer."""
    return await _read(state, customer_id, lambda s: customer_profile(s, customer_id))


@router.get("/customers/{customer_id}/messages", responses=error_responses(404), tags=["customers"])
async def get_customer_messages(
    customer_id: str,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=1_000_000),
    state: ApiState = Depends(api_state),
    _key: Principal = Depends(require("read")),
) -> dict[str, Any]:
    """The customer's messages, oldest first, with their decision, status and status history."""
    return await _read(
        state,
        customer_id,
        lambda s: {"customer": customer_id, "messages": _messages(s, customer_id, limit, offset)},
    )


@router.get("/customers/{customer_id}/consents", responses=error_responses(404), tags=["customers"])
async def get_customer_consents(
    customer_id: str,
    state: ApiState = Depends(api_state),
    _key: Principal = Depends(require("read")),
) -> dict[str, Any]:
    """The current consent per channel and category, suppressions, and the ledger behind them."""
    return await _read(state, customer_id, lambda s: customer_consents(s, customer_id))


@router.get("/customers/{customer_id}/journeys", responses=error_responses(404), tags=["customers"])
async def get_customer_journeys(
    customer_id: str,
    state: ApiState = Depends(api_state),
    _key: Principal = Depends(require("read")),
) -> dict[str, Any]:
    """The customer's journey runs: which journey, version, status and why it ended."""
    return await _read(
        state,
        customer_id,
        lambda s: {"customer": customer_id, "journeys": _journeys(s, customer_id)},
    )


# --- API keys (admin) ------------------------------------------------------------------------


@router.post(
    "/api-keys",
    status_code=201,
    response_model=ApiKeyCreated,
    responses=_BODY_LIMITS,
    tags=["api keys"],
)
async def post_api_key(
    body: ApiKeyCreate,
    state: ApiState = Depends(api_state),
    _key: Principal = Depends(require("admin")),
) -> ApiKeyCreated:
    """Create a key; the answer holds the key itself, which is never shown again."""

    def store(session: Session) -> ApiKeyCreated:
        key = create_api_key(session, name=body.name, scopes=body.scopes)
        row = session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(key))).one()
        return ApiKeyCreated(id=row.id or 0, name=row.name, scopes=row.scopes, key=key)

    try:
        return await in_session(state, store)
    except ValueError as exc:
        raise ApiError(422, str(exc), field="name") from None


@router.get("/api-keys", response_model=list[ApiKeyPublic], tags=["api keys"])
async def get_api_keys(
    state: ApiState = Depends(api_state),
    _key: Principal = Depends(require("admin")),
) -> list[ApiKeyPublic]:
    """Every key with its scopes and whether it is revoked (never the key or its hash)."""

    def load(session: Session) -> list[ApiKeyPublic]:
        rows = session.exec(select(ApiKey).order_by(col(ApiKey.id))).all()
        return [
            ApiKeyPublic(
                id=row.id or 0,
                name=row.name,
                scopes=row.scopes,
                created_at=row.created_at,
                revoked_at=row.revoked_at,
            )
            for row in rows
        ]

    return await in_session(state, load, read_only=True)


@router.delete(
    "/api-keys/{key_id}",
    status_code=204,
    response_class=Response,
    responses={204: {"description": "Revoked."}, **error_responses(404)},
    tags=["api keys"],
)
async def delete_api_key(
    key_id: int = Path(ge=1, le=2**31 - 1),
    state: ApiState = Depends(api_state),
    _key: Principal = Depends(require("admin")),
) -> None:
    """Revoke a key at once; revoked keys stay listed for the record."""

    if not await in_session(state, lambda s: revoke_keys(s, key_id=key_id)):
        raise ApiError(404, "no active key with this id", field="key_id")
