"""Custom activities that journeys call by name (`call: issue_voucher`); developers add more here."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.services import Services
from trouw.domain.db.engine import session_scope
from trouw.domain.loyalty import vouchers
from trouw.language.contracts import CallActivityInput, CallActivityResult, CallEvent

# The names journeys may `call`; `trouw validate` refuses any other.
CUSTOM_ACTIVITY_NAMES: set[str] = {"issue_voucher"}


def _invalid(message: str) -> ApplicationError:
    return ApplicationError(message, type="InvalidArgumentsError", non_retryable=True)


class CustomActivities:
    def __init__(self, services: Services) -> None:
        self.services = services

    @activity.defn(name="issue_voucher")
    async def issue_voucher(self, input: CallActivityInput) -> CallActivityResult:
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
        prefix = str(input.args.get("prefix", "TROUW"))

        def issue() -> CallActivityResult:
            with session_scope(self.services.engine) as session:
                voucher, _new = vouchers.issue(
                    session,
                    customer_id=input.customer_id,
                    value=value,
                    expires_at=input.now + timedelta(days=days),
                    issued_key=input.key,
                    now=input.now,
                    prefix=prefix,
                    journey=input.journey,
                    # The call key is "<workflow id>#<cycle>:<step>" (workflows/run.py).
                    workflow_id=input.key.split("#", 1)[0],
                    reason=str(input.args["reason"]) if "reason" in input.args else None,
                    handed_over=True,
                )
                details = {
                    "code": voucher.code,
                    "value": str(voucher.value),
                    "currency": voucher.currency,
                    "expires_at": voucher.expires_at.isoformat(),
                }
                event = CallEvent(
                    id=f"voucher_issued:{voucher.code}",
                    type="voucher_issued",
                    at=input.now,
                    data=details,
                )
                return CallActivityResult.of(details, [event])

        return await asyncio.to_thread(issue)

    def all(self) -> list[Callable[..., Any]]:
        return [self.issue_voucher]
