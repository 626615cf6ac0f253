"""Custom activities that journeys call by name (`call: issue_voucher`); developers add more here."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.services import Services
from trouw.contracts import CallActivityInput
from trouw.db.engine import session_scope
from trouw.db.models import InboundEvent, Voucher

# The names journeys may `call`; `trouw validate` refuses any other.
CUSTOM_ACTIVITY_NAMES: set[str] = {"issue_voucher"}


def _invalid(message: str) -> ApplicationError:
    return ApplicationError(message, type="InvalidArgumentsError", non_retryable=True)


class CustomActivities:
    def __init__(self, services: Services) -> None:
        self.services = services

    @activity.defn(name="issue_voucher")
    async def issue_voucher(self, input: CallActivityInput) -> dict[str, Any]:
        """A unique voucher, once per call key: a retry returns the same code."""
        try:
            value = Decimal(str(input.args.get("value", "5")))
            days = int(input.args.get("valid_days", 30))
        except (InvalidOperation, ValueError, TypeError):
            raise _invalid(
                "issue_voucher takes value (money) and valid_days (whole days)"
            ) from None
        if value <= 0 or days <= 0:
            raise _invalid("issue_voucher: value and valid_days must be positive")
        prefix = str(input.args.get("prefix", "TROUW")).upper()[:10]
        digest = hashlib.sha256(input.key.encode()).hexdigest()[:10].upper()
        code = f"{prefix}-{digest}"

        def issue() -> dict[str, Any]:
            with session_scope(self.services.engine) as session:
                voucher = session.get(Voucher, code)
                if voucher is None:
                    voucher = Voucher(
                        code=code,
                        customer_id=input.customer_id,
                        value=value,
                        issued_at=input.now,
                        expires_at=input.now + timedelta(days=days),
                        journey=input.journey,
                    )
                    session.add(voucher)
                    # The relay hands this to the customer workflow: voucher_expiry starts on it.
                    session.add(
                        InboundEvent(
                            source_id=f"voucher_issued:{code}",
                            type="voucher_issued",
                            customer_id=input.customer_id,
                            occurred_at=input.now,
                            received_at=input.now,
                            relayed_at=input.now,  # handed over by the journey run itself
                            payload={
                                "order_id": None,
                                "skus": [],
                                "data": {
                                    "code": code,
                                    "value": str(value),
                                    "expires_at": voucher.expires_at.isoformat(),
                                },
                            },
                        )
                    )
                details = {
                    "code": voucher.code,
                    "value": str(voucher.value),
                    "currency": voucher.currency,
                    "expires_at": voucher.expires_at.isoformat(),
                }
                event = {
                    "id": f"voucher_issued:{voucher.code}",
                    "type": "voucher_issued",
                    "at": input.now.isoformat(),
                    "data": details,
                }
                return {**details, "_events": [event]}

        return await asyncio.to_thread(issue)

    def all(self) -> list[Callable[..., Any]]:
        return [self.issue_voucher]
