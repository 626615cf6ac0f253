"""The /v1 loyalty endpoints for the till and the webshop: vouchers and points."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from sqlmodel import Session

from trouw.domain.db.models import Customer, InboundEvent
from trouw.domain.ingest import EventTime, Label, OrderId, StoreName, Total
from trouw.domain.loyalty import ledger, vouchers
from trouw.domain.loyalty.vouchers import LookupField, RedeemRefusedError
from trouw.language.journey.plain import jsonable
from trouw.ways_in.api.auth import KeyFirstRoute, Principal, require
from trouw.ways_in.api.errors import ApiError, error_responses
from trouw.ways_in.api.events import StoredEvent, deliver_new
from trouw.ways_in.api.sessions import in_session
from trouw.ways_in.api.state import ApiState, api_state

router = APIRouter(
    prefix="/v1", responses=error_responses(400, 401, 403, 422, 503), route_class=KeyFirstRoute
)
REPLAYED_HEADER = "Idempotent-Replayed"
REFUSAL_HEADER = "Voucher-Refusal"
ReceiptId = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\r\n\x00]+$")]
RequestId = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\r\n\x00]+$")]


# A voucher is worth something: at least 0.01, said in the schema as well as checked.
VoucherValue = Annotated[
    Total,
    Field(gt=0),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "string",
                    "pattern": r"^([1-9][0-9]{0,9}(\.[0-9]{1,2})?|0\.([1-9][0-9]?|0[1-9]))$",
                },
                {"type": "number", "minimum": 0.01, "exclusiveMaximum": 10**10, "multipleOf": 0.01},
            ]
        }
    ),
]


class RedeemIn(BaseModel):
    """A till or webshop redeeming a code on a receipt; the receipt id makes it idempotent."""

    model_config = ConfigDict(extra="forbid")

    receipt: ReceiptId = Field(
        description="The till's receipt id: the same receipt again gets "
        "the same answer; another receipt is refused once the code is used."
    )
    at: EventTime | None = Field(
        default=None,
        description="The till's time; believed within 5 minutes of the server's (clock skew).",
    )
    customer: str | None = Field(
        default=None,
        max_length=64,
        description="The customer at the till: a code of another customer is refused (foreign).",
    )
    order: OrderId | None = None
    channel: Literal["pos", "web"] = "pos"
    store: StoreName | None = None
    order_total: Total | None = Field(default=None, description="Checked against a minimum.")


class VoucherIssueIn(BaseModel):
    """An operator issuing a voucher to a customer."""

    model_config = ConfigDict(extra="forbid")

    value: VoucherValue
    valid_days: int = Field(default=30, gt=0, le=3650)
    prefix: Label = "TROUW"
    reason: str = Field(min_length=1, max_length=200)
    min_order_total: Total | None = None
    request_id: RequestId | None = Field(
        default=None, description="Makes a repeat harmless: the same id issues one voucher."
    )


class PointsAdjustIn(BaseModel):
    """An operator's correction of a points balance, with its reason."""

    model_config = ConfigDict(extra="forbid")

    points: int = Field(ge=-1_000_000, le=1_000_000)
    reason: str = Field(min_length=1, max_length=500)
    request_id: RequestId | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def _customer_or_404(session: Session, customer_id: str) -> Customer:
    customer = session.get(Customer, customer_id)
    if customer is None or customer.erased:
        raise ApiError(404, f"unknown customer {customer_id!r}", field="customer_id")
    return customer


@router.get("/vouchers/{code}", responses=error_responses(404), tags=["loyalty"])
async def get_voucher(
    code: str,
    state: ApiState = Depends(api_state),
    _key: Principal = Depends(require("read")),
) -> dict[str, Any]:
    """One voucher: valid or not (status), value, expiry, conditions and its redemption."""

    def load(session: Session) -> dict[str, Any]:
        voucher = vouchers.lookup(session, code)
        if voucher is None:
            raise ApiError(404, f"unknown voucher code {code!r}", field="code")
        return vouchers.public(voucher, now=_now())

    result: dict[str, Any] = await in_session(state, load, read_only=True)
    return result


@router.post(
    "/vouchers/{code}/redeem",
    responses={
        200: {
            "description": "Redeemed (or redeemed before on this receipt: the same answer).",
            "headers": {REPLAYED_HEADER: {"schema": {"type": "string", "enum": ["true"]}}},
        },
        **error_responses(404, 409, 413),
    },
    tags=["loyalty"],
)
async def redeem_voucher(
    code: str,
    body: RedeemIn,
    state: ApiState = Depends(api_state),
    _key: Principal = Depends(require("ingest")),
) -> JSONResponse:
    """Redeem a code on a receipt, once. 409 with a reason for an expired, used, cancelled or
    foreign code (header `Voucher-Refusal`: expired, used, voided, foreign, below_minimum)."""

    def work(session: Session) -> vouchers.Redemption:
        try:
            return vouchers.redeem(
                session,
                code,
                receipt=body.receipt,
                now=_now(),
                at=body.at,
                customer_id=body.customer,
                order_id=body.order,
                channel=body.channel,
                store=body.store,
                order_total=body.order_total,
            )
        except LookupError:
            raise ApiError(404, f"unknown voucher code {code!r}", field="code") from None
        except RedeemRefusedError as exc:
            raise ApiError(
                409, str(exc), field="code", headers={REFUSAL_HEADER: exc.reason}
            ) from None

    # The till's answer never waits on Temporal: the relay hands voucher_redeemed to the
    # customer's workflow (within its 2 s round), so a slow or restarting Temporal costs no sale.
    done: vouchers.Redemption = await in_session(state, work)
    # The answer is made after the commit: the write lock is not held while it is.
    answer = vouchers.public(done.voucher, now=_now())
    headers = {REPLAYED_HEADER: "true"} if done.replayed else {}
    return JSONResponse(status_code=200, content=answer, headers=headers)


@router.get("/vouchers", responses=error_responses(404), tags=["loyalty"])
async def find_vouchers(
    customer: str | None = Query(default=None, max_length=64),
    email: str | None = Query(default=None, max_length=320),
    phone: str | None = Query(default=None, max_length=40),
    card: str | None = Query(default=None, max_length=64),
    all: bool = Query(default=False, description="Also used, expired and cancelled vouchers."),
    state: ApiState = Depends(api_state),
    _key: Principal = Depends(require("read")),
) -> dict[str, Any]:
    """A customer's vouchers, the customer named by exactly one of id, email, phone or loyalty
    card (none or several: 422)."""
    given: list[tuple[LookupField, str]] = [
        (name, value)  # type: ignore[misc]
        for name, value in (
            ("customer", customer),
            ("email", email),
            ("phone", phone),
            ("card", card),
        )
        if value
    ]
    if len(given) != 1:
        raise ApiError(422, "name the customer by exactly one of customer, email, phone, card")
    by, value = given[0]

    def load(session: Session) -> dict[str, Any]:
        found = vouchers.find_customer(session, by, value)
        if found is None or found.erased:
            raise ApiError(404, f"no customer with this {by}", field=by)
        return _customer_vouchers(session, found.id, only_open=not all)

    result: dict[str, Any] = await in_session(state, load, read_only=True)
    return result


def _customer_vouchers(session: Session, customer_id: str, *, only_open: bool) -> dict[str, Any]:
    now = _now()
    return {
        "customer": customer_id,
        "vouchers": [
            vouchers.public(v, now=now)
            for v in vouchers.of_customer(session, customer_id, now=now, only_open=only_open)
        ],
    }


@router.get("/customers/{customer_id}/vouchers", responses=error_responses(404), tags=["loyalty"])
async def get_customer_vouchers(
    customer_id: str,
    all: bool = Query(default=False, description="Also used, expired and cancelled vouchers."),
    state: ApiState = Depends(api_state),
    _key: Principal = Depends(require("read")),
) -> dict[str, Any]:
    """The customer's open vouchers (or all of them), soonest expiry first."""

    def load(session: Session) -> dict[str, Any]:
        _customer_or_404(session, customer_id)
        return _customer_vouchers(session, customer_id, only_open=not all)

    result: dict[str, Any] = await in_session(state, load, read_only=True)
    return result


@router.post(
    "/customers/{customer_id}/vouchers",
    status_code=201,
    responses=error_responses(404, 413),
    tags=["loyalty"],
)
async def issue_voucher(
    customer_id: str,
    body: VoucherIssueIn,
    state: ApiState = Depends(api_state),
    _key: Principal = Depends(require("admin")),
) -> dict[str, Any]:
    """An operator issues a voucher (with a reason); `request_id` makes a repeat harmless."""

    def work(session: Session) -> tuple[dict[str, Any], bool]:
        _customer_or_404(session, customer_id)
        now = _now()
        voucher, new = vouchers.issue(
            session,
            customer_id=customer_id,
            value=Decimal(body.value),
            expires_at=now + timedelta(days=body.valid_days),
            issued_key=f"operator:{body.request_id}"
            if body.request_id
            else vouchers.operator_key(),
            now=now,
            prefix=body.prefix,
            issued_by="operator",
            reason=body.reason,
            min_order_total=body.min_order_total,
        )
        session.flush()
        return vouchers.public(voucher, now=now), new

    answer: dict[str, Any]
    answer, new = await in_session(state, work)
    if new:
        await deliver_new(
            state,
            [StoredEvent(f"voucher_issued:{answer['code']}", customer_id, "voucher_issued", True)],
        )
    return answer


@router.get("/customers/{customer_id}/loyalty", responses=error_responses(404), tags=["loyalty"])
async def get_loyalty(
    customer_id: str,
    state: ApiState = Depends(api_state),
    _key: Principal = Depends(require("read")),
) -> dict[str, Any]:
    """Points, level, next level, expiring points and the points history (newest first)."""

    def load(session: Session) -> dict[str, Any]:
        _customer_or_404(session, customer_id)
        now = _now()
        state_now = ledger.loyalty_dict(session, customer_id, now=now)
        found: dict[str, Any] = jsonable(
            {
                "customer": customer_id,
                **state_now,
                "history": [
                    row.model_dump(exclude={"id", "customer_id"})
                    for row in ledger.history(session, customer_id)
                ],
            },
            money=str,
        )
        return found

    result: dict[str, Any] = await in_session(state, load, read_only=True)
    return result


@router.post(
    "/customers/{customer_id}/points",
    status_code=201,
    responses=error_responses(404, 409, 413),
    tags=["loyalty"],
)
async def adjust_points(
    customer_id: str,
    body: PointsAdjustIn,
    state: ApiState = Depends(api_state),
    _key: Principal = Depends(require("admin")),
) -> dict[str, Any]:
    """An operator adds or takes points, with a reason; never below zero (409)."""

    def work(session: Session) -> tuple[dict[str, Any], list[str]]:
        _customer_or_404(session, customer_id)
        now = _now()
        key = f"adjust:{body.request_id}" if body.request_id else vouchers.operator_key()
        try:
            change = ledger.adjust(
                session, customer_id, points=body.points, reason=body.reason, at=now, key=key
            )
        except ledger.AdjustmentError as exc:
            raise ApiError(409, str(exc), field="points") from None
        ledger.derive_events(session, change)
        session.flush()
        derived = [row.source_id for row in session.exec(_derived_query(key)).all()]
        return jsonable(ledger.loyalty_dict(session, customer_id, now=now)), derived

    answer, derived = await in_session(state, work)
    await deliver_new(
        state, [StoredEvent(source, customer_id, "loyalty", True) for source in derived]
    )
    return {"customer": customer_id, **answer}


def _derived_query(cause: str) -> Any:
    from sqlmodel import col, select

    return select(InboundEvent).where(col(InboundEvent.source_id).startswith(f"{cause}>"))
