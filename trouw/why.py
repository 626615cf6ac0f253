"""Why did (or didn't) a customer get a message: the send ledger and journey runs, explained."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlmodel import Session, col, select

from trouw.db.models import ConsentRecord, Customer, JourneyRun, Message


class UnknownCustomerError(LookupError):
    """No customer with this id: nothing to explain, export or erase."""

    def __init__(self, customer_id: str) -> None:
        super().__init__(f"unknown customer {customer_id!r}")
        self.customer_id = customer_id


# The ledger row's `state` is the outcome; `decision` is only the policy's last verdict.
_OUTCOMES = {
    "sent": "sent",
    "suppressed": "suppressed",
    "failed": "failed",
    "unknown": "unknown outcome",
    "in_flight": "in flight",
}
# Decision.text of a deferral ends in "deferred to 2026-03-03 08:00 +01:00" (trouw/policy.py).
_DEFERRED_TO = re.compile(r"deferred to (\d{4}-\d\d-\d\d \d\d:\d\d [+-]\d\d:\d\d)")


@dataclass(frozen=True)
class ConsentBasis:
    """One consent record a decision relied on, as the snapshot stored it with the message."""

    channel: str
    scope: str
    granted: bool
    at: str
    source: str
    wording_version: str | None
    record_id: int | None = None  # the ledger row it matches, when it can be found


@dataclass(frozen=True)
class StatusEntry:
    status: str
    at: str | None
    detail: str | None


@dataclass(frozen=True)
class MessageExplanation:
    """One row of the send ledger, with the decision and the proof it rests on."""

    message_key: str
    at: str  # when the journey step asked for the message
    decided_at: str | None
    sent_at: str | None
    journey: str
    journey_version: str | None
    workflow_id: str | None
    step: str
    channel: str
    category: str
    template: str
    outcome: str  # sent | suppressed | deferred | failed | unknown outcome | pending | in flight
    decision: str
    reason: str | None
    reason_text: str | None
    deferred_until: str | None
    error: str | None
    relied_on: ConsentBasis | None  # the record the category needed; None: none needed or none
    consent_needed: str  # what the category requires on this channel, in words
    consent: list[ConsentBasis]
    suppressions: list[dict[str, Any]]
    provider_status: str | None
    status_history: list[StatusEntry]


@dataclass(frozen=True)
class RunExplanation:
    """One journey run: when it started, how it ended and why."""

    workflow_id: str
    journey: str
    version: str
    started_at: str
    status: str
    ended_at: str | None
    end_reason: str | None

    @property
    def summary(self) -> str:
        return f"{self.status}: {self.end_reason}" if self.end_reason else self.status


@dataclass(frozen=True)
class CustomerExplanation:
    customer_id: str
    erased: bool
    timezone: str
    journey: str | None  # the filter, if any
    messages: list[MessageExplanation] = field(default_factory=list)
    runs: list[RunExplanation] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for run, source in zip(data["runs"], self.runs, strict=True):
            run["summary"] = source.summary
        return data


def explain(
    session: Session, customer_id: str, *, journey: str | None = None
) -> CustomerExplanation:
    """Every message and journey run of a customer (optionally one journey), oldest first."""
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise UnknownCustomerError(customer_id)
    messages = select(Message).where(Message.customer_id == customer_id)
    runs = select(JourneyRun).where(JourneyRun.customer_id == customer_id)
    if journey is not None:
        messages = messages.where(Message.journey == journey)
        runs = runs.where(JourneyRun.journey == journey)
    records = list(
        session.exec(select(ConsentRecord).where(ConsentRecord.customer_id == customer_id)).all()
    )
    return CustomerExplanation(
        customer_id=customer.id,
        erased=customer.erased,
        timezone=customer.timezone,
        journey=journey,
        messages=[
            _message(row, records)
            for row in session.exec(
                messages.order_by(col(Message.created_at), col(Message.id))
            ).all()
        ],
        runs=[
            _run(row)
            for row in session.exec(
                runs.order_by(col(JourneyRun.started_at), col(JourneyRun.id))
            ).all()
        ],
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _run(row: JourneyRun) -> RunExplanation:
    return RunExplanation(
        workflow_id=row.workflow_id,
        journey=row.journey,
        version=row.version,
        started_at=row.started_at.isoformat(),
        status=row.status,
        ended_at=_iso(row.ended_at),
        end_reason=row.end_reason,
    )


def _outcome(row: Message) -> str:
    if row.state in _OUTCOMES:
        return _OUTCOMES[row.state]
    # claimed: still waiting, either deferred by the policy or not yet decided
    return "deferred" if row.decision == "defer" else "pending"


def _message(row: Message, records: list[ConsentRecord]) -> MessageExplanation:
    snapshot = row.consent_snapshot or {}
    consent = [
        _basis(key, value, records)
        for key, value in sorted((snapshot.get("consent") or {}).items())
    ]
    wanted = {
        "promotional": ("promotional", "a recorded opt-in for promotional {channel}"),
        "service": ("service", "no objection to service {channel}"),
    }.get(row.category)
    relied_on = None
    needed = "no consent: a transactional message is owed to a valid address"
    if wanted is not None:
        scope, needed = wanted[0], wanted[1].format(channel=row.channel)
        relied_on = next(
            (b for b in consent if b.channel == row.channel and b.scope == scope), None
        )
    until = _DEFERRED_TO.search(row.reason_text or "") if row.decision == "defer" else None
    return MessageExplanation(
        message_key=row.message_key,
        at=row.created_at.isoformat(),
        decided_at=_iso(row.decided_at),
        sent_at=_iso(row.sent_at),
        journey=row.journey,
        journey_version=row.journey_version,
        workflow_id=row.workflow_id,
        step=row.step,
        channel=row.channel,
        category=row.category,
        template=row.template,
        outcome=_outcome(row),
        decision=row.decision,
        reason=row.reason,
        reason_text=row.reason_text,
        deferred_until=until.group(1) if until else None,
        error=row.error,
        relied_on=relied_on,
        consent_needed=needed,
        consent=consent,
        suppressions=list(snapshot.get("suppressions") or []),
        provider_status=row.status,
        status_history=[
            StatusEntry(
                status=str(entry.get("status")),
                at=entry.get("at"),
                detail=entry.get("detail"),
            )
            for entry in row.status_history or []
        ],
    )


def _basis(key: str, value: dict[str, Any], records: list[ConsentRecord]) -> ConsentBasis:
    channel, _, scope = key.partition(":")
    basis = ConsentBasis(
        channel=channel,
        scope=scope,
        granted=bool(value.get("granted")),
        at=str(value.get("at")),
        source=str(value.get("source")),
        wording_version=value.get("wording_version"),
    )
    # The snapshot names the record by its content; find the ledger row for its id and wording.
    at = _parse(basis.at)
    for record in records:
        if (
            record.channel in (channel, "all")
            and record.scope == scope
            and record.granted == basis.granted
            and record.source == basis.source
            and at is not None
            and record.at == at
        ):
            return ConsentBasis(**{**asdict(basis), "record_id": record.id})
    return basis


def _parse(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- rendering --------------------------------------------------------------------------------


def _local(text: str | None, zone: ZoneInfo) -> str:
    if not text:
        return "—"
    moment = _parse(text)
    if moment is None:
        return text
    local = moment.astimezone(zone)
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M} {offset[:3]}:{offset[3:]}"


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


_STYLE = {"sent": "green", "suppressed": "red", "failed": "red", "deferred": "yellow"}


def describe_basis(basis: ConsentBasis | None, needed: str, zone: ZoneInfo) -> str:
    """One line: the consent record a decision rested on, or what was missing."""
    if basis is None:
        if needed.startswith("no consent"):
            return needed
        return f"no record in the snapshot (needs {needed})"
    state = "granted" if basis.granted else "withdrawn"
    wording = f", wording {basis.wording_version}" if basis.wording_version else ", no wording"
    record = f" (record #{basis.record_id})" if basis.record_id is not None else ""
    return (
        f"{basis.channel} {basis.scope} {state} {_local(basis.at, zone)} "
        f"via {basis.source}{wording}{record}"
    )


def render(explanation: CustomerExplanation, console: Console) -> None:
    """The explanation for a person: runs as a table, then each message with its reasons."""
    zone = _zone(explanation.timezone)
    title = f"customer {explanation.customer_id}"
    if explanation.journey:
        title += f", journey {explanation.journey}"
    if explanation.erased:
        title += " (erased)"
    console.print(f"[bold]{escape(title)}[/]", highlight=False)

    if explanation.runs:
        table = Table(title="journey runs", title_justify="left")
        for column in ("started", "journey", "version", "outcome", "ended", "workflow id"):
            table.add_column(column, overflow="fold")
        for run in explanation.runs:
            table.add_row(
                _local(run.started_at, zone),
                run.journey,
                run.version,
                run.summary,
                _local(run.ended_at, zone),
                run.workflow_id,
            )
        console.print(table)
    else:
        console.print("no journey runs", highlight=False)

    if not explanation.messages:
        console.print("no messages", highlight=False)
        return
    console.print(f"[bold]{len(explanation.messages)} messages[/]", highlight=False)
    for message in explanation.messages:
        style = _STYLE.get(message.outcome, "cyan")
        head = (
            f"{_local(message.at, zone)}  {message.journey}/{message.step}  "
            f"{message.channel} {message.category}  {message.template}"
        )
        verdict = message.outcome.upper()
        if message.reason:
            verdict += f" {message.reason}"
        console.print(
            f"\n{escape(head)}  [{style}]{escape(verdict)}[/]", highlight=False, soft_wrap=True
        )
        lines: list[tuple[str, str]] = []
        if message.reason_text and message.reason_text != "allowed":
            lines.append(("why", message.reason_text))
        if message.deferred_until:
            lines.append(("deferred to", message.deferred_until))
        if message.error:
            lines.append(("error", message.error))
        lines.append(("consent", describe_basis(message.relied_on, message.consent_needed, zone)))
        for suppression in message.suppressions:
            lines.append(
                (
                    "suppression",
                    f"{suppression.get('channel')} {suppression.get('reason')} "
                    f"since {_local(suppression.get('at'), zone)}",
                )
            )
        if message.sent_at:
            lines.append(("sent", _local(message.sent_at, zone)))
        history = [f"{entry.status} {_local(entry.at, zone)}" for entry in message.status_history]
        if history:
            lines.append(("history", " → ".join(history)))
        lines.append(("key", message.message_key))
        for label, text in lines:
            console.print(
                f"    [dim]{label:>11}[/] {escape(text)}", highlight=False, soft_wrap=True
            )
