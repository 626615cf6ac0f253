"""Why did (or didn't) a customer get a message: the send ledger and journey runs, explained."""

from __future__ import annotations

import builtins
import re
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlmodel import Session, col, select

from trouw.domain.control import JOURNEY_PAUSED, contact_pauses
from trouw.domain.db.models import ConsentRecord, Customer, JourneyRun, JourneyRunEvent, Message
from trouw.language.contracts import RunEnd
from trouw.language.vocabulary import send_outcome

if TYPE_CHECKING:
    from temporalio.client import Client

    from trouw.settings import Settings


class UnknownCustomerError(LookupError):
    """No customer with this id: nothing to explain, export or erase."""

    def __init__(self, customer_id: str) -> None:
        super().__init__(f"unknown customer {customer_id!r}")
        self.customer_id = customer_id


# A message still on its way is deferred (trouw/language/vocabulary.py); these say by what.
_ON_ITS_WAY = {
    "in_flight": "in flight",
    "reconciling": "outcome unknown, asking the provider",
}
# Decision.text of a deferral ends in "deferred to 2026-03-03 08:00 +01:00" (trouw/language/policy.py).
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
    # sent | suppressed | failed, or on its way: deferred | held | pending | in flight |
    # outcome unknown, asking the provider
    outcome: str
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
class RunEventExplanation:
    """One thing the run record says happened: a branch taken, a step skipped, the end..."""

    at: str
    kind: str  # a trouw.language.contracts.RunEventKind
    step: str | None
    reason: str | None
    expression: str | None
    journey: str = ""
    workflow_id: str | None = None


@dataclass(frozen=True)
class RunExplanation:
    """One journey run: when it started, what it did, how it ended and why."""

    workflow_id: str
    journey: str
    version: str
    started_at: str
    status: str
    ended_at: str | None
    end_reason: str | None
    events: list[RunEventExplanation] = field(default_factory=list)
    # Where the status comes from: the run's own record, or Temporal when the run could not
    # record its end (terminated, timed out, failing workflow tasks).
    status_source: str = "record"

    @property
    def summary(self) -> str:
        return f"{self.status}: {self.end_reason}" if self.end_reason else self.status


@dataclass(frozen=True)
class PointsLine:
    at: str
    kind: str
    points: int
    reason: str | None
    order_id: str | None
    expires_at: str | None


@dataclass(frozen=True)
class LoyaltyExplanation:
    points: int
    level: str
    next_level_at: int | None
    expiring_points: int
    expiring_at: str | None
    entries: list[PointsLine] = field(default_factory=list)


def _loyalty(session: Session, customer_id: str, now: datetime) -> LoyaltyExplanation | None:
    from trouw.domain.loyalty.ledger import history, loyalty_dict

    rows = history(session, customer_id, limit=1000)
    if not rows:
        return None
    state = loyalty_dict(session, customer_id, now=now)
    return LoyaltyExplanation(
        points=state["points"],
        level=state["level"],
        next_level_at=state["next_level_at"],
        expiring_points=state["expiring_points"],
        expiring_at=_iso(state["expiring_at"]),
        entries=[
            PointsLine(
                at=row.at.isoformat(),
                kind=row.kind,
                points=row.points,
                reason=row.reason,
                order_id=row.order_id,
                expires_at=_iso(row.expires_at),
            )
            for row in reversed(rows)
        ],
    )


@dataclass(frozen=True)
class PauseExplanation:
    """One entry of the customer's pause ledger: paused or resumed, when, by whom, why."""

    paused: bool
    at: str
    by: str
    reason: str | None


@dataclass(frozen=True)
class CustomerExplanation:
    customer_id: str
    erased: bool
    timezone: str
    journey: str | None  # the filter, if any
    messages: list[MessageExplanation] = field(default_factory=list)
    runs: list[RunExplanation] = field(default_factory=list)
    # Events a journey's trigger listened for that started no run of it, and why.
    not_started: list[RunEventExplanation] = field(default_factory=list)
    # The points balance and level now, and the ledger entries behind them (oldest first).
    loyalty: LoyaltyExplanation | None = None
    # The operator's pauses of this customer's non-transactional messages, oldest first.
    pauses: list[PauseExplanation] = field(default_factory=list)

    @property
    def paused(self) -> PauseExplanation | None:
        """The pause in force, if the last entry is one."""
        return self.pauses[-1] if self.pauses and self.pauses[-1].paused else None

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
    run_events = select(JourneyRunEvent).where(JourneyRunEvent.customer_id == customer_id)
    if journey is not None:
        run_events = run_events.where(JourneyRunEvent.journey == journey)
    by_run: dict[str | None, list[RunEventExplanation]] = {}
    for event in session.exec(
        run_events.order_by(col(JourneyRunEvent.at), col(JourneyRunEvent.id))
    ).all():
        by_run.setdefault(event.workflow_id, []).append(_run_event(event))
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
            _run(row, by_run.get(row.workflow_id, []))
            for row in session.exec(
                runs.order_by(col(JourneyRun.started_at), col(JourneyRun.id))
            ).all()
        ],
        not_started=by_run.get(None, []),
        loyalty=_loyalty(session, customer_id, datetime.now(UTC)),
        pauses=[
            PauseExplanation(paused=row.paused, at=row.at.isoformat(), by=row.by, reason=row.reason)
            for row in contact_pauses(session, customer_id)
        ],
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _run(row: JourneyRun, events: list[RunEventExplanation]) -> RunExplanation:
    return RunExplanation(
        workflow_id=row.workflow_id,
        journey=row.journey,
        version=row.version,
        started_at=row.started_at.isoformat(),
        status=row.status,
        ended_at=_iso(row.ended_at),
        end_reason=row.end_reason,
        events=events,
    )


def _run_event(row: JourneyRunEvent) -> RunEventExplanation:
    return RunEventExplanation(
        at=row.at.isoformat(),
        kind=row.kind,
        step=row.step,
        reason=row.reason,
        expression=row.expression,
        journey=row.journey,
        workflow_id=row.workflow_id,
    )


# --- reconciling with Temporal ---------------------------------------------------------------


@dataclass(frozen=True)
class TemporalOutcome:
    """How Temporal says a run stands, when that is something the run could not record."""

    status: str  # failed | cancelled | terminated | timed_out | failing
    reason: str | None
    at: datetime | None


async def temporal_outcome(
    client: Client,
    workflow_id: str,
    *,
    customer_id: str | None = None,
    run_id: str | None = None,
) -> TemporalOutcome | None:
    """None while the run runs healthily or after it ended normally; else what Temporal says.

    `failing`: still running, but its workflow task fails again and again (a bug, or
    non-determinism); it makes no progress until the code is fixed. A run the customer's
    workflow holds until its first wait ends has no workflow yet: healthy too.
    """
    from temporalio.client import WorkflowExecutionStatus as Status
    from temporalio.service import RPCError, RPCStatusCode

    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    try:
        described = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            if customer_id is None:
                return TemporalOutcome("unknown", "not found in Temporal", None)
            from trouw.language.contracts import customer_workflow_id

            # No execution of its own: held, or running inside the customer workflow, and as
            # healthy as that workflow. One whose task keeps failing answers no query (its
            # held_runs), and every run it hosts or holds is stuck with it: say so, and why.
            host_id = customer_workflow_id(customer_id)
            host = await temporal_outcome(client, host_id)
            if host is not None and host.status == "failing":
                reason = f"no execution of its own; its customer workflow {host_id} is stuck"
                return TemporalOutcome("failing", f"{reason}: {host.reason}", None)
            if workflow_id in await _held_runs(client, customer_id):
                return None
            return TemporalOutcome("unknown", "not found in Temporal", None)
        raise
    status = described.status
    if status in (None, Status.COMPLETED, Status.CONTINUED_AS_NEW):
        return None
    if status == Status.RUNNING:
        pending = described.raw_description.pending_workflow_task
        if not described.raw_description.HasField("pending_workflow_task") or pending.attempt < 2:
            return None
        failure = await _last_event_failure(handle, "workflow_task_failed_event_attributes")
        return TemporalOutcome(
            "failing", f"its workflow task fails (attempt {pending.attempt}): {failure}", None
        )
    at = described.close_time
    if status == Status.FAILED:
        failure = await _last_event_failure(handle, "workflow_execution_failed_event_attributes")
        return TemporalOutcome("failed", failure, at)
    if status == Status.TERMINATED:
        history = await handle.fetch_history()
        reason = history.events[-1].workflow_execution_terminated_event_attributes.reason
        return TemporalOutcome("terminated", reason or None, at)
    if status == Status.CANCELED:
        return TemporalOutcome("cancelled", "cancelled in Temporal", at)
    return TemporalOutcome("timed_out", "the run's execution timeout passed", at)


async def _held_runs(client: Client, customer_id: str) -> list[str]:
    from temporalio.client import WorkflowQueryFailedError
    from temporalio.service import RPCError

    from trouw.language.contracts import HELD_RUNS_QUERY, customer_workflow_id

    handle = client.get_workflow_handle(customer_workflow_id(customer_id))
    try:
        held: list[str] = await handle.query(HELD_RUNS_QUERY, result_type=list[str])
    except (RPCError, WorkflowQueryFailedError):  # no such workflow, or one from before holding
        return []
    return held


async def _last_event_failure(handle: Any, attributes: str) -> str | None:
    history = await handle.fetch_history()
    for event in reversed(history.events):
        if event.HasField(attributes):
            failure = getattr(event, attributes).failure
            message = (str(failure.message).splitlines() or [""])[0]  # one line: the gist
            kind = failure.application_failure_info.type
            if kind in vars(builtins):  # a bug in workflow code: say which exception
                message = f"{kind}: {message}"
            cause = failure.cause.message if failure.HasField("cause") else ""
            return f"{message}: {cause}" if cause and cause not in message else message
    return None


async def reconcile(explanation: CustomerExplanation, client: Client) -> CustomerExplanation:
    """Runs the database holds as running, with the status Temporal gives them, if different."""
    runs = []
    for run in explanation.runs:
        outcome = (
            await temporal_outcome(client, run.workflow_id, customer_id=explanation.customer_id)
            if run.status == "running"
            else None
        )
        if outcome is None:
            runs.append(run)
            continue
        runs.append(
            replace(
                run,
                status=outcome.status,
                end_reason=outcome.reason,
                ended_at=_iso(outcome.at),
                status_source="temporal",
            )
        )
    return replace(explanation, runs=runs)


def _outcome(row: Message) -> str:
    """The row's outcome from its `state` (`decision` is only the policy's last verdict)."""
    outcome = send_outcome(row.state)
    if outcome != "deferred":
        return outcome
    if row.state in _ON_ITS_WAY:
        return _ON_ITS_WAY[row.state]
    # claimed: still waiting, either deferred by the policy or not yet decided
    if row.decision == "defer":
        return "held" if row.reason == JOURNEY_PAUSED else "deferred"
    return "pending"


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


async def reconcile_with_temporal(
    explanation: CustomerExplanation, settings: Settings
) -> tuple[CustomerExplanation, str | None]:
    """Reconcile through the configured Temporal; a note instead when it cannot be reached."""
    from temporalio.service import RPCError

    from trouw.stack.temporal import TemporalError, connect

    if not any(run.status == "running" for run in explanation.runs):
        return explanation, None
    try:
        client = await connect(settings, attempts=3)
        return await reconcile(explanation, client), None
    except (TemporalError, RPCError) as exc:
        return explanation, f"note: run statuses are the database's; Temporal: {exc}"


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


_STYLE = {
    "sent": "green",
    "suppressed": "red",
    "failed": "red",
    "deferred": "yellow",
    "held": "yellow",
}
# Run event kinds that are a run's status: the runs table shows them already.
# (Terminated and timed-out runs cannot record themselves; trouw.stack.runs records them from Temporal.)
_ENDS = (*get_args(RunEnd), "terminated", "timed_out")


def describe_run_event(event: RunEventExplanation, zone: ZoneInfo) -> str:
    """One line: when, which journey and step, what happened and why (with the expression)."""
    where = event.journey + (f"/{event.step}" if event.step else "")
    text = f"{_local(event.at, zone)}  {where}  {event.kind.replace('_', ' ')}"
    if event.reason:
        text += f": {event.reason}"
    if event.expression and event.expression not in (event.reason or ""):
        text += f" ({event.expression})"
    return text


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
    for pause in explanation.pauses:
        word = "paused" if pause.paused else "resumed"
        line = f"{_local(pause.at, zone)}  non-transactional messages {word} by {pause.by}"
        if pause.reason:
            line += f": {pause.reason}"
        console.print(escape(line), highlight=False, soft_wrap=True)
    if explanation.paused is not None:
        console.print(
            "[yellow]paused: service and promotional messages are suppressed until resumed[/]",
            highlight=False,
        )

    if explanation.runs:
        table = Table(title="journey runs", title_justify="left")
        for column in ("started", "journey", "version", "outcome", "ended", "workflow id"):
            table.add_column(column, overflow="fold")
        for run in explanation.runs:
            table.add_row(
                _local(run.started_at, zone),
                escape(run.journey),
                escape(run.version),
                escape(run.summary + (" (in Temporal)" if run.status_source == "temporal" else "")),
                _local(run.ended_at, zone),
                escape(run.workflow_id),
            )
        console.print(table)
        for run in explanation.runs:
            steps = [e for e in run.events if e.kind not in ("started", *_ENDS)]
            if not steps:
                continue
            console.print(f"{escape(run.journey)} ({escape(run.workflow_id)}):", highlight=False)
            for event in steps:
                console.print(f"    {escape(describe_run_event(event, zone))}", highlight=False)
    else:
        console.print("no journey runs", highlight=False)
    if explanation.not_started:
        console.print("events that started no run:", highlight=False)
        for event in explanation.not_started:
            console.print(f"    {escape(describe_run_event(event, zone))}", highlight=False)

    if explanation.loyalty is not None:
        held = explanation.loyalty
        head = f"loyalty: {held.points} points, level {held.level}"
        if held.next_level_at is not None:
            head += f" (next level at {held.next_level_at})"
        if held.expiring_points:
            head += f"; {held.expiring_points} expire on {_local(held.expiring_at, zone)}"
        console.print(escape(head), highlight=False)
        for entry in held.entries:
            line = f"{_local(entry.at, zone)}  {entry.kind:<6} {entry.points:>+7}  {entry.reason or ''}"
            if entry.order_id:
                line += f"  (order {entry.order_id})"
            console.print(f"    {escape(line)}", highlight=False, soft_wrap=True)

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
