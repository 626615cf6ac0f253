"""GDPR rights: export a customer's data (Art. 15, 20) and erase it (Art. 17), keeping the proof."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, col, select

from trouw.domain.consent import add_suppression, address_hash, current_consent
from trouw.domain.control import contact_pauses
from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import (
    ConsentRecord,
    Customer,
    InboundEvent,
    JourneyRun,
    JourneyRunEvent,
    LoyaltyAccount,
    Message,
    MessageCopy,
    Order,
    OrderLine,
    PointsEntry,
    ProfileChange,
    Suppression,
    Voucher,
)
from trouw.domain.hosted import copy_html, delete_copies
from trouw.domain.why import UnknownCustomerError
from trouw.language.contracts import customer_workflow_id
from trouw.language.journey.plain import jsonable
from trouw.language.vocabulary import CHANNELS

if TYPE_CHECKING:
    from temporalio.client import Client

    from trouw.settings import Settings

__all__ = [
    "Cancel",
    "DeleteHistories",
    "ErasureReport",
    "HistoryDeletion",
    "UnknownCustomerError",
    "all_workflow_ids",
    "delete_histories",
    "erase",
    "export",
    "forget",
    "temporal_canceller",
    "temporal_deleter",
    "terminate_workflows",
    "workflow_ids",
]

EXPORT_FORMAT = "trouw.export/1"
ERASED = "erased"
SCOPES = ("promotional", "service")

# Terminates the given workflow ids; may return the ids it actually found running.
Cancel = Callable[[list[str]], Awaitable[Sequence[str] | None]]


@dataclass(frozen=True)
class HistoryDeletion:
    """What Temporal did with the customer's closed workflow histories."""

    deleted: int
    refused: str | None = None  # the server does not allow deletion (why), nothing deleted


# The customer id and every workflow id the ledger knows for them (running or closed).
DeleteHistories = Callable[[str, list[str]], Awaitable[HistoryDeletion]]

# What an inbound event's payload may keep after erasure: ids, amounts and channels, no free text.
# The row itself stays so that the same event re-sent by the till is dropped as a repeat instead
# of bringing the customer back.
_EVENT_DATA_KEPT = frozenset({"channel", "store", "code", "value", "currency", "expires_at"})
_PERSONAL_FIELDS = ("email", "phone", "first_name", "last_name", "birthday", "attributes", "tags")


# --- export -----------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Exact plain data: money as strings, never floats."""
    return jsonable(value, money=str)


def _row(row: SQLModel, *, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """A table row's columns in declaration order (model_dump's order follows load history)."""
    skip = set(exclude)
    return {name: _plain(getattr(row, name)) for name in type(row).model_fields if name not in skip}


def export(session: Session, *, customer_id: str, now: datetime | None = None) -> dict[str, Any]:
    """Everything Trouw holds about a customer, as one JSON-ready document (and consent proof)."""
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise UnknownCustomerError(customer_id)
    orders = session.exec(
        select(Order).where(Order.customer_id == customer_id).order_by(col(Order.placed_at))
    ).all()
    order_ids = [order.id for order in orders]
    lines = (
        session.exec(
            select(OrderLine)
            .where(col(OrderLine.order_id).in_(order_ids))
            .order_by(col(OrderLine.order_id), col(OrderLine.line_no))
        ).all()
        if order_ids
        else []
    )
    records = session.exec(
        select(ConsentRecord)
        .where(ConsentRecord.customer_id == customer_id)
        .order_by(col(ConsentRecord.at), col(ConsentRecord.id))
    ).all()
    consent = current_consent(session, customer_id)
    return {
        "format": EXPORT_FORMAT,
        "customer_id": customer_id,
        "generated_at": (now or datetime.now(UTC)).isoformat(),
        "profile": _row(customer),
        "orders": [
            {
                **_row(order),
                "lines": [
                    _row(line, exclude=("id", "order_id"))
                    for line in lines
                    if line.order_id == order.id
                ],
            }
            for order in orders
        ],
        "consent_records": [_row(record) for record in records],
        "profile_changes": [
            _row(change, exclude=("id", "customer_id"))
            for change in session.exec(
                select(ProfileChange)
                .where(ProfileChange.customer_id == customer_id)
                .order_by(col(ProfileChange.at), col(ProfileChange.id))
            ).all()
        ],
        # An operator's pauses of this customer's non-transactional messages (a complaint).
        "contact_pauses": [
            _row(row, exclude=("id", "customer_id")) for row in contact_pauses(session, customer_id)
        ],
        "proof": _proof(consent.records, consent.suppressions, customer_id),
        "suppressions": [_suppression(s, customer_id) for s in consent.suppressions],
        "messages": [
            _row(m)
            for m in session.exec(
                select(Message)
                .where(Message.customer_id == customer_id)
                .order_by(col(Message.created_at), col(Message.id))
            ).all()
        ],
        # The emails as sent (Art. 15(3): a copy of the personal data), while their copies last.
        "message_copies": [
            {
                "message_key": copy.message_key,
                "created_at": copy.created_at.isoformat(),
                "expires_at": copy.expires_at.isoformat(),
                "html": copy_html(copy),
            }
            for copy in session.exec(
                select(MessageCopy)
                .where(MessageCopy.customer_id == customer_id)
                .order_by(col(MessageCopy.created_at), col(MessageCopy.message_key))
            ).all()
        ],
        "journey_runs": [
            _row(run)
            for run in session.exec(
                select(JourneyRun)
                .where(JourneyRun.customer_id == customer_id)
                .order_by(col(JourneyRun.started_at), col(JourneyRun.id))
            ).all()
        ],
        "journey_run_events": [
            _row(event)
            for event in session.exec(
                select(JourneyRunEvent)
                .where(JourneyRunEvent.customer_id == customer_id)
                .order_by(col(JourneyRunEvent.at), col(JourneyRunEvent.id))
            ).all()
        ],
        "vouchers": [
            _row(voucher)
            for voucher in session.exec(
                select(Voucher)
                .where(Voucher.customer_id == customer_id)
                .order_by(col(Voucher.issued_at))
            ).all()
        ],
        "loyalty_account": (
            _row(account) if (account := session.get(LoyaltyAccount, customer_id)) else None
        ),
        "points_entries": [
            _row(entry)
            for entry in session.exec(
                select(PointsEntry)
                .where(PointsEntry.customer_id == customer_id)
                .order_by(col(PointsEntry.at), col(PointsEntry.id))
            ).all()
        ],
        "inbound_events": [
            _row(event)
            for event in session.exec(
                select(InboundEvent)
                .where(InboundEvent.customer_id == customer_id)
                .order_by(col(InboundEvent.occurred_at), col(InboundEvent.id))
            ).all()
        ],
    }


def _suppression(row: Suppression, customer_id: str) -> dict[str, Any]:
    # A suppression found by address hash may belong to an erased namesake record: say how it
    # matched, and never show another customer's id.
    own = row.customer_id == customer_id
    return {
        "channel": row.channel,
        "reason": row.reason,
        "at": row.at.isoformat(),
        "source": row.source,
        "address_hash": row.address_hash,
        "matched_by": "customer" if own else "address",
    }


def _proof(
    records: dict[tuple[str, str], ConsentRecord],
    suppressions: Sequence[Suppression],
    customer_id: str,
) -> dict[str, Any]:
    """Per channel and scope, the record the current state rests on (EDPB 05/2020 §5.1)."""
    proof: dict[str, Any] = {}
    for channel in CHANNELS:
        for scope in SCOPES:
            record = records.get((channel, scope))
            if record is None:
                state = "no record" if scope == "promotional" else "no objection recorded"
            elif scope == "promotional":
                state = "granted" if record.granted else "withdrawn"
            else:
                state = "not objected" if record.granted else "objected"
            proof[f"{channel}:{scope}"] = {
                "state": state,
                "record": _row(record) if record is not None else None,
                "suppressed_by": [
                    _suppression(s, customer_id)
                    for s in suppressions
                    if s.channel in (channel, "all")
                ],
            }
    return proof


# --- erasure ----------------------------------------------------------------------------------


@dataclass
class ErasureReport:
    """What one `forget` did, in counts; `already_erased` when there was nothing left to do."""

    customer_id: str
    erased_at: datetime
    already_erased: bool = False
    workflows: list[str] = field(default_factory=list)  # asked to terminate
    workflows_terminated: list[str] | None = None  # found running, when the canceller says
    histories: HistoryDeletion | None = None  # None: deletion was not asked for
    fields_cleared: list[str] = field(default_factory=list)
    suppressions_added: int = 0
    consent_withdrawals_added: int = 0
    consent_records_kept: int = 0
    orders_kept: int = 0
    messages_scrubbed: int = 0
    copies_deleted: int = 0
    events_scrubbed: int = 0
    runs_closed: int = 0
    vouchers_kept: int = 0
    vouchers_voided: int = 0
    points_entries_deleted: int = 0
    loyalty_account_deleted: bool = False

    def lines(self) -> list[str]:
        """The report for a person, one fact a line."""
        when = self.erased_at.isoformat()
        if self.already_erased:
            return [f"customer {self.customer_id} was already erased on {when}; nothing to do"]
        if self.workflows_terminated is None:
            temporal = f"{len(self.workflows)} workflows terminated (if still running)"
        else:
            closed = len(self.workflows) - len(self.workflows_terminated)
            temporal = (
                f"{len(self.workflows_terminated)} workflows terminated, "
                f"{closed} already closed or never started"
            )
        return [
            f"customer {self.customer_id} erased at {when}",
            temporal,
            "personal fields cleared: " + (", ".join(self.fields_cleared) or "none were set"),
            f"{self.suppressions_added} address suppressions added (reason erased, hash only)",
            f"{self.consent_records_kept} consent records kept as proof, "
            f"{self.consent_withdrawals_added} withdrawals appended",
            f"{self.orders_kept} orders kept for bookkeeping, {self.vouchers_kept} vouchers kept",
            f"{self.messages_scrubbed} messages scrubbed (subject and addresses removed)",
            f"{self.copies_deleted} hosted email copies deleted (their links answer 404)",
            f"{self.events_scrubbed} inbound events scrubbed (payload reduced to ids)",
            f"{self.runs_closed} running journey runs closed",
            f"{self.vouchers_voided} open vouchers voided (the till refuses them), "
            f"{self.points_entries_deleted} points entries deleted"
            + (
                ", loyalty account and referral code deleted"
                if self.loyalty_account_deleted
                else ""
            ),
            *self._history_lines(),
        ]

    def _history_lines(self) -> list[str]:
        if self.histories is None:
            return []
        if self.histories.refused is not None:
            return [
                f"workflow histories kept: the Temporal server refused to delete them "
                f"({self.histories.refused})"
            ]
        return [
            f"{self.histories.deleted} closed workflow executions deleted from Temporal "
            "(their histories are gone from the Web UI and from visibility)"
        ]


def workflow_ids(session: Session, *, customer_id: str) -> list[str]:
    """The customer's workflow and every journey run the ledger still holds as running."""
    running = session.exec(
        select(JourneyRun.workflow_id)
        .where(JourneyRun.customer_id == customer_id, JourneyRun.status == "running")
        .order_by(col(JourneyRun.id))
    ).all()
    return [customer_workflow_id(customer_id), *running]


def all_workflow_ids(session: Session, *, customer_id: str) -> list[str]:
    """The customer's workflow and every journey run in the ledger, running or closed."""
    runs = session.exec(
        select(JourneyRun.workflow_id)
        .where(JourneyRun.customer_id == customer_id)
        .order_by(col(JourneyRun.id))
    ).all()
    return list(dict.fromkeys([customer_workflow_id(customer_id), *runs]))


def erase(session: Session, *, customer_id: str, at: datetime) -> ErasureReport:
    """Clear or anonymise a customer's personal data in the session's transaction (caller commits).

    The Customer row stays as a tombstone (erased=True) so that the erasure is on record and a
    second request is recognised; docs/gdpr.md says what is kept and why.
    """
    # Row lock on PostgreSQL: two concurrent erasures of one customer cannot interleave.
    customer = session.get(Customer, customer_id, with_for_update=True)
    if customer is None:
        raise UnknownCustomerError(customer_id)
    report = ErasureReport(customer_id=customer_id, erased_at=at)
    if customer.erased:
        report.already_erased = True
        report.erased_at = customer.updated_at
        return report

    addresses = [a for a in (customer.email, customer.phone) if a]
    names = [n for n in (customer.first_name, customer.last_name) if n and len(n) > 1]
    report.suppressions_added = _suppress_addresses(session, customer, at)
    report.fields_cleared = [name for name in _PERSONAL_FIELDS if getattr(customer, name)]

    customer.email = customer.phone = None
    customer.first_name = customer.last_name = None
    customer.birthday = None
    customer.attributes = {}
    customer.tags = []
    # Locale and time zone narrow down where someone lives: back to the installation defaults.
    customer.locale = Customer.model_fields["locale"].default
    customer.timezone = Customer.model_fields["timezone"].default
    customer.email_invalid = customer.phone_invalid = False
    customer.erased = True
    customer.updated_at = at
    session.add(customer)

    report.consent_records_kept = len(
        session.exec(select(ConsentRecord.id).where(ConsentRecord.customer_id == customer_id)).all()
    )
    # The ledger ends in a withdrawal, so nothing ever reads the tombstone as opted in.
    for scope in SCOPES:
        session.add(
            ConsentRecord(
                customer_id=customer_id,
                channel="all",
                scope=scope,
                granted=False,
                at=at,
                source="erasure",
            )
        )
        report.consent_withdrawals_added += 1

    scrub = _scrubber([*addresses, *names])
    # The pause ledger stays as a record of what was done; its free-text reasons may quote the
    # complaint, so they go.
    for pause in contact_pauses(session, customer_id):
        pause.reason = None
        session.add(pause)
    for message in session.exec(select(Message).where(Message.customer_id == customer_id)).all():
        message.subject = None  # an email subject may greet by name; an SMS "subject" is its text
        message.error = scrub(message.error)
        message.status_history = [
            {**entry, "detail": scrub(entry.get("detail"))} for entry in message.status_history
        ]
        session.add(message)
        report.messages_scrubbed += 1
    # The copies are the emails themselves (names, orders, addresses): nothing of them is kept.
    report.copies_deleted = delete_copies(session, customer_id=customer_id)

    for event in session.exec(
        select(InboundEvent).where(InboundEvent.customer_id == customer_id)
    ).all():
        payload = event.payload or {}
        data = payload.get("data") or {}
        event.payload = {
            "order_id": payload.get("order_id"),
            "skus": list(payload.get("skus") or []),
            "data": {k: v for k, v in data.items() if k in _EVENT_DATA_KEPT},
            ERASED: True,
        }
        if event.relayed_at is None:
            # Never hand it to Temporal now: it would start the customer's workflow again.
            event.relayed_at = at
        session.add(event)
        report.events_scrubbed += 1

    for run in session.exec(
        select(JourneyRun).where(
            JourneyRun.customer_id == customer_id, JourneyRun.status == "running"
        )
    ).all():
        run.status = "exited"
        run.ended_at = at
        run.end_reason = ERASED
        session.add(run)
        report.runs_closed += 1

    report.orders_kept = len(
        session.exec(select(Order.id).where(Order.customer_id == customer_id)).all()
    )
    vouchers = session.exec(select(Voucher).where(Voucher.customer_id == customer_id)).all()
    report.vouchers_kept = len(vouchers)
    for voucher in vouchers:
        # Kept for bookkeeping (an issued voucher is a liability), but no longer redeemable.
        if voucher.redeemed_at is None and voucher.voided_at is None:
            voucher.voided_at = at
            session.add(voucher)
            report.vouchers_voided += 1
    # Points are no bookkeeping record: the ledger and the account (a personal referral link)
    # go; the referrals the account made keep only that someone referred them.
    for entry in session.exec(select(PointsEntry).where(PointsEntry.customer_id == customer_id)):
        session.delete(entry)
        report.points_entries_deleted += 1
    account = session.get(LoyaltyAccount, customer_id)
    if account is not None:
        session.delete(account)
        report.loyalty_account_deleted = True
    session.flush()
    return report


def _suppress_addresses(session: Session, customer: Customer, at: datetime) -> int:
    """One `erased` suppression per known address, by hash: it outlives the address itself."""
    added = 0
    for channel, address in (("email", customer.email), ("sms", customer.phone)):
        if not address:
            continue
        added += add_suppression(
            session,
            key=address_hash(address),
            customer_id=customer.id,
            channel=channel,
            reason=ERASED,
            at=at,
            source="erasure",
        )
    return added


def _scrubber(secrets: Sequence[str]) -> Callable[[str | None], str | None]:
    """Replaces the customer's addresses and names in free text (provider errors, details)."""
    if not secrets:
        return lambda text: text
    pattern = re.compile(
        "|".join(rf"(?<!\w){re.escape(s)}(?!\w)" for s in sorted(secrets, key=len, reverse=True)),
        re.IGNORECASE,
    )

    def scrub(text: str | None) -> str | None:
        return pattern.sub("[erased]", text) if text else text

    return scrub


async def forget(
    engine: Engine,
    *,
    customer_id: str,
    cancel: Cancel,
    delete: DeleteHistories | None = None,
    now: datetime | None = None,
) -> ErasureReport:
    """Terminate the customer's workflows, delete their closed histories (with `delete`), then
    erase their data in one transaction.

    Temporal goes first: if it cannot be reached, nothing is erased and the request can be
    retried; once the workflows are gone, no activity can read the customer half-erased, and
    their histories (inputs hold the customer's context) no longer outlive the erasure.
    """
    with Session(engine) as session:
        customer = session.get(Customer, customer_id)
        if customer is None:
            raise UnknownCustomerError(customer_id)
        if customer.erased:
            return ErasureReport(
                customer_id=customer_id, erased_at=customer.updated_at, already_erased=True
            )
        ids = workflow_ids(session, customer_id=customer_id)
        known = all_workflow_ids(session, customer_id=customer_id)
    found = await cancel(ids)
    histories = await delete(customer_id, known) if delete is not None else None
    with session_scope(engine) as session:
        report = erase(session, customer_id=customer_id, at=now or datetime.now(UTC))
    if not report.already_erased:
        report.workflows = ids
        report.workflows_terminated = list(found) if found is not None else None
        report.histories = histories
    return report


# --- Temporal ---------------------------------------------------------------------------------


async def terminate_workflows(
    client: Client, ids: Sequence[str], *, reason: str = ERASED
) -> list[str]:
    """Terminate each workflow's latest run; returns those that were running."""
    from temporalio.service import RPCError, RPCStatusCode

    terminated = []
    for workflow_id in ids:
        try:
            await client.get_workflow_handle(workflow_id).terminate(reason=reason)
        except RPCError as exc:
            # NOT_FOUND covers both "never started" and "already completed": nothing to stop.
            if exc.status == RPCStatusCode.NOT_FOUND:
                continue
            raise
        terminated.append(workflow_id)
    return terminated


async def delete_histories(
    client: Client, customer_id: str, known_ids: Sequence[str]
) -> HistoryDeletion:
    """Delete every closed execution of the customer's workflows (DeleteWorkflowExecution).

    Executions are found by the CustomerId search attribute (every run, continue-as-new chains
    included) and, for a server without it, by the ids the ledger knows (their latest run). A
    server that does not allow deletion (an older one, or a role without the permission) is
    reported, not an error: the data in Trouw is erased all the same.
    """
    from temporalio.api.common.v1 import WorkflowExecution
    from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
    from temporalio.client import WorkflowExecutionStatus
    from temporalio.service import RPCError, RPCStatusCode

    refusals = (
        RPCStatusCode.UNIMPLEMENTED,
        RPCStatusCode.PERMISSION_DENIED,
        RPCStatusCode.FAILED_PRECONDITION,
    )
    executions: dict[tuple[str, str], None] = {}
    quoted = customer_id.replace("\\", "\\\\").replace('"', '\\"')
    try:
        async for execution in client.list_workflows(f'CustomerId = "{quoted}"'):
            if execution.status != WorkflowExecutionStatus.RUNNING:
                executions[(execution.id, execution.run_id)] = None
    except RPCError as exc:
        # No CustomerId attribute, or no visibility listing: the ledger's ids still serve.
        if exc.status not in (RPCStatusCode.INVALID_ARGUMENT, *refusals):
            raise
    listed = {workflow_id for workflow_id, _run in executions}
    for workflow_id in known_ids:
        if workflow_id not in listed:
            executions[(workflow_id, "")] = None
    deleted = 0
    for workflow_id, run_id in executions:
        if not run_id:
            try:
                described = await client.get_workflow_handle(workflow_id).describe()
            except RPCError as exc:
                if exc.status == RPCStatusCode.NOT_FOUND:
                    continue
                raise
            if described.status == WorkflowExecutionStatus.RUNNING:
                continue  # never delete (and so terminate) a run that was not stopped
        try:
            await client.workflow_service.delete_workflow_execution(
                DeleteWorkflowExecutionRequest(
                    namespace=client.namespace,
                    workflow_execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id),
                )
            )
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                continue
            if exc.status in refusals:
                return HistoryDeletion(deleted, refused=f"{exc.status.name}: {exc.message}")
            raise
        deleted += 1
    return HistoryDeletion(deleted)


def temporal_deleter(settings: Settings) -> DeleteHistories:
    """A DeleteHistories that connects to the configured Temporal."""

    async def delete(customer_id: str, known_ids: list[str]) -> HistoryDeletion:
        from trouw.stack.temporal import connect

        client = await connect(settings, attempts=10)
        return await delete_histories(client, customer_id, known_ids)

    return delete


def temporal_canceller(settings: Settings) -> Cancel:
    """A Cancel that connects to the configured Temporal and terminates the workflows."""

    async def cancel(ids: list[str]) -> list[str]:
        from trouw.stack.temporal import connect

        client = await connect(settings, attempts=10)
        return await terminate_workflows(client, ids)

    return cancel
