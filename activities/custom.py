"""Custom activities that journeys call by name (`call: issue_voucher`); developers add more here."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlmodel import Session, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.services import Services
from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import InboundEvent, JourneyRun
from trouw.domain.loyalty import vouchers
from trouw.domain.loyalty.rules import tier_named
from trouw.language.contracts import CallActivityInput, CallActivityResult, CallEvent

# The names journeys may `call`; `trouw validate` refuses any other.
CUSTOM_ACTIVITY_NAMES: set[str] = {"issue_voucher", "issue_level_voucher"}


def _invalid(message: str) -> ApplicationError:
    return ApplicationError(message, type="InvalidArgumentsError", non_retryable=True)


def _trigger_data(session: Session, workflow_id: str) -> dict[str, Any]:
    """The data of the event that started the run (journey_run records which one)."""
    run = session.exec(select(JourneyRun).where(JourneyRun.workflow_id == workflow_id)).first()
    if run is None:
        return {}
    row = session.exec(
        select(InboundEvent).where(InboundEvent.source_id == run.event_source_id)
    ).first()
    return dict((row.payload or {}).get("data") or {}) if row is not None else {}


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
        reason = str(input.args["reason"]) if "reason" in input.args else None

        def issue() -> CallActivityResult:
            with session_scope(self.services.engine) as session:
                return self._issue(session, input, value, days, prefix, reason)

        return await asyncio.to_thread(issue)

    @activity.defn(name="issue_level_voucher")
    async def issue_level_voucher(self, input: CallActivityInput) -> CallActivityResult:
        """The gift voucher of the level the run was started for (its level_reached event), as
        the tiers say (`voucher`, `voucher_days`); no voucher, and an empty result, for a level
        without one. Once per call key."""
        prefix = str(input.args.get("prefix", "NIVEAU"))

        def issue() -> CallActivityResult:
            with session_scope(self.services.engine) as session:
                level = _trigger_data(session, input.key.split("#", 1)[0]).get("level")
                if not level:
                    raise _invalid("issue_level_voucher needs a run started by level_reached")
                tier = tier_named(self.services.settings.loyalty.tiers, str(level))
                if tier is None or tier.voucher is None:
                    return CallActivityResult.of({}, [])
                reason = str(input.args.get("reason", f"level {level} reached"))
                return self._issue(session, input, tier.voucher, tier.voucher_days, prefix, reason)

        return await asyncio.to_thread(issue)

    def _issue(
        self,
        session: Session,
        input: CallActivityInput,
        value: Decimal,
        days: int,
        prefix: str,
        reason: str | None,
    ) -> CallActivityResult:
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
            reason=reason,
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

    def all(self) -> list[Callable[..., Any]]:
        return [self.issue_voucher, self.issue_level_voucher]
