"""Operator pauses: of a journey and of one customer's messages, as append-only ledgers."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, func
from sqlmodel import Session, col, select

from trouw.domain.db.models import ContactPause, JourneyControl
from trouw.language.policy import Decision
from trouw.stack import metrics

# Message.reason of a message held (deferred) or dropped (suppressed) because its journey is
# paused; the policy never gives it (the send activity does, before asking the policy).
JOURNEY_PAUSED = "journey_paused"
# status_history entry of the first hold, since which the hold limit counts.
HELD = "held"


class ControlError(ValueError):
    """An operator command that cannot be done as asked; the message says why."""


def cli_actor() -> str:
    """Who runs a CLI command, as recorded in the ledgers."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in a bare container
        return "cli"


# --- journeys -----------------------------------------------------------------------------


# Built once (every send reads it); the journey is bound.
_LATEST_JOURNEY_CONTROL = (
    select(JourneyControl)
    .where(col(JourneyControl.journey) == bindparam("journey"))
    .order_by(col(JourneyControl.id).desc())
    .limit(1)
)


def journey_pause(session: Session, journey: str) -> JourneyControl | None:
    """The pause in force for this journey, or None when it runs."""
    row = session.exec(_LATEST_JOURNEY_CONTROL, params={"journey": journey}).first()
    return row if row is not None and row.paused else None


# Built once (every match_journeys reads it): a statement built per call cost more than running it.
_PAUSED_JOURNEYS = select(JourneyControl).where(
    col(JourneyControl.id).in_(
        select(func.max(JourneyControl.id)).group_by(col(JourneyControl.journey))
    ),
    col(JourneyControl.paused),
)


def paused_journeys(session: Session) -> dict[str, JourneyControl]:
    """Every paused journey with the pause in force."""
    return {row.journey: row for row in session.exec(_PAUSED_JOURNEYS).all()}


def set_journey_paused(
    session: Session,
    *,
    journey: str,
    paused: bool,
    by: str,
    at: datetime,
    reason: str | None = None,
) -> JourneyControl | None:
    """Append a pause or a resume; None (nothing appended) when the journey is already so."""
    if (journey_pause(session, journey) is not None) == paused:
        return None
    row = JourneyControl(journey=journey, paused=paused, at=at, by=by[:100], reason=_reason(reason))
    session.add(row)
    session.flush()
    return row


def pause_reason(pause: JourneyControl) -> str:
    """Why a paused journey starts no run: since when, by whom, and the operator's reason."""
    text = f"journey {pause.journey} paused since {_utc(pause.at)} by {pause.by}"
    return f"{text} ({pause.reason})" if pause.reason else text


def journey_history(session: Session, journey: str) -> list[JourneyControl]:
    return list(
        session.exec(
            select(JourneyControl)
            .where(JourneyControl.journey == journey)
            .order_by(col(JourneyControl.id))
        ).all()
    )


# --- customers -------------------------------------------------------------------------------


# Built once (every send and context reads it); the customer is bound.
_LATEST_PAUSE = (
    select(ContactPause)
    .where(col(ContactPause.customer_id) == bindparam("customer_id"))
    .order_by(col(ContactPause.id).desc())
    .limit(1)
)


def contact_pause(session: Session, customer_id: str) -> ContactPause | None:
    """The pause of this customer's non-transactional messages in force, or None."""
    row = session.exec(_LATEST_PAUSE, params={"customer_id": customer_id}).first()
    return row if row is not None and row.paused else None


def contact_pauses(session: Session, customer_id: str) -> list[ContactPause]:
    """The customer's whole pause ledger, oldest first (export, why)."""
    return list(
        session.exec(
            select(ContactPause)
            .where(ContactPause.customer_id == customer_id)
            .order_by(col(ContactPause.at), col(ContactPause.id))
        ).all()
    )


def paused_customers(session: Session) -> list[ContactPause]:
    """The pause in force of every paused customer, oldest first."""
    latest = select(func.max(ContactPause.id)).group_by(col(ContactPause.customer_id))
    return list(
        session.exec(
            select(ContactPause)
            .where(col(ContactPause.id).in_(latest), ContactPause.paused)
            .order_by(col(ContactPause.at))
        ).all()
    )


def set_contact_paused(
    session: Session,
    *,
    customer_id: str,
    paused: bool,
    by: str,
    at: datetime,
    reason: str | None = None,
) -> ContactPause | None:
    """Append a pause or a resume; None (nothing appended) when the customer is already so."""
    if (contact_pause(session, customer_id) is not None) == paused:
        return None
    row = ContactPause(
        customer_id=customer_id, paused=paused, at=at, by=by[:100], reason=_reason(reason)
    )
    session.add(row)
    session.flush()
    _count(session, "customer_pause" if paused else "customer_resume")
    return row


def _count(session: Session, action: str) -> None:
    metrics.on_commit(session, metrics.CONTROL_ACTIONS.labels(action=action).inc)


def _reason(reason: str | None) -> str | None:
    text = " ".join((reason or "").split())
    if len(text) > 500:
        raise ControlError("a reason has at most 500 characters")
    return text or None


# --- held messages (pure) ----------------------------------------------------------------------


def hold_decision(
    *,
    pause: JourneyControl,
    held_since: datetime,
    now: datetime,
    limit: timedelta,
    recheck: timedelta,
) -> Decision:
    """A paused journey's message waits (asked again after `recheck`) until the journey
    resumes, and is dropped once it has waited `limit`: deferred, then suppressed."""
    drop_at = held_since + limit
    who = pause_reason(pause)
    if now >= drop_at:
        return Decision(
            "suppress",
            JOURNEY_PAUSED,
            None,
            f"{who}; held since {_utc(held_since)}, longer than the hold limit of "
            f"{_hours(limit)}: dropped",
        )
    until = min(now + recheck, drop_at)
    return Decision(
        "defer",
        JOURNEY_PAUSED,
        until,
        f"{who}; held until it resumes (dropped at {_utc(drop_at)} if still paused)",
    )


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _hours(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours:g} h"
