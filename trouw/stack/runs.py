"""Journey runs as Temporal sees them: in flight by journey, version and step; cancel; records follow."""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import bindparam
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from temporalio.client import WorkflowExecutionStatus

from trouw.domain.control import ControlError
from trouw.domain.db.engine import read_scope, session_scope
from trouw.domain.db.models import JourneyRun, JourneyRunEvent, SyncMark
from trouw.language.contracts import (
    CANCEL_HELD_RUNS_SIGNAL,
    CUSTOMER_WORKFLOW,
    HELD_RUNS_QUERY,
    JOURNEY_WORKFLOW,
    CancelHeldRuns,
    customer_workflow_id,
)
from trouw.stack import metrics

if TYPE_CHECKING:
    from temporalio.client import Client, WorkflowExecution

log = logging.getLogger("trouw.runs")

# The run event an operator's cancel leaves before Temporal delivers it (JourneyRunEvent.kind).
CANCEL_REQUESTED = "cancel_requested"
SYNC_MARK = "journey_runs"
# Visibility lags the close of a run a little: each pass reads again from this far back.
VISIBILITY_LAG = timedelta(seconds=60)
# Closed statuses a run cannot record itself (or may not have): Temporal's, in its query
# language, and ours.
_CLOSED = {
    WorkflowExecutionStatus.FAILED: ("Failed", "failed"),
    WorkflowExecutionStatus.CANCELED: ("Canceled", "cancelled"),
    WorkflowExecutionStatus.TERMINATED: ("Terminated", "terminated"),
    WorkflowExecutionStatus.TIMED_OUT: ("TimedOut", "timed_out"),
}
# What may go into a visibility query between quotes: ids and journey names as Trouw makes them.
_QUERY_SAFE = re.compile(r"^[^'\"\\\x00-\x1f\x7f]{1,300}$")


def literal(value: str, what: str) -> str:
    """A value for a visibility query, quoted; refused when it could end the quotes."""
    if not _QUERY_SAFE.match(value):
        raise ControlError(
            f"{what} {value!r} cannot be looked up in Temporal (quotes or control characters)"
        )
    return f"'{value}'"


def running_query(
    *, journey: str | None = None, customer: str | None = None, inline: bool = False
) -> str:
    """The visibility query for running journey runs, of one journey and/or one customer: runs
    that are workflows of their own, or (`inline`) customer workflows with runs inside them."""
    workflow_type, attribute = (
        (CUSTOMER_WORKFLOW, "Journeys") if inline else (JOURNEY_WORKFLOW, "Journey")
    )
    parts = [f"WorkflowType = '{workflow_type}'", "ExecutionStatus = 'Running'"]
    if journey is not None:
        parts.append(f"{attribute} = {literal(journey, 'journey')}")
    if customer is not None:
        parts.append(f"CustomerId = {literal(customer, 'customer')}")
    return " AND ".join(parts)


# --- journeys in flight -----------------------------------------------------------------------


@dataclass(frozen=True)
class RunningRun:
    """One running journey run, as visibility lists it.

    A run inside its customer workflow (`inline`) is listed by that workflow's `JourneyRuns`
    (text: `journey:version:step` per run, space-separated): `workflow_id` and `run_id` are
    then the customer workflow's, the execution that holds it."""

    workflow_id: str
    run_id: str | None
    journey: str
    version: str
    step: str | None
    customer: str | None
    inline: bool = False


@dataclass
class JourneyTally:
    """In-flight runs of one journey: per version, and per (version, step)."""

    journey: str
    running: int = 0
    versions: Counter[str] = field(default_factory=Counter)
    steps: Counter[tuple[str, str]] = field(default_factory=Counter)


def tally(runs: Iterable[RunningRun]) -> dict[str, JourneyTally]:
    """Count running runs by journey, version and step (the step a run waits at). Pure."""
    out: dict[str, JourneyTally] = {}
    for run in runs:
        entry = out.setdefault(run.journey, JourneyTally(run.journey))
        entry.running += 1
        entry.versions[run.version] += 1
        entry.steps[(run.version, run.step or "(starting)")] += 1
    return out


def _keyword(execution: WorkflowExecution, name: str) -> str | None:
    values = execution.search_attributes.get(name) or []
    return str(values[0]) if values else None


async def running_runs(
    client: Client, *, journey: str | None = None, customer: str | None = None
) -> list[RunningRun]:
    """Every running journey run (of this journey, of this customer), from visibility: runs
    that are workflows of their own, and runs inside their customer workflow."""
    found = []
    async for execution in client.list_workflows(running_query(journey=journey, customer=customer)):
        found.append(
            RunningRun(
                workflow_id=execution.id,
                run_id=execution.run_id,
                journey=_keyword(execution, "Journey") or "(unknown)",
                version=_keyword(execution, "JourneyVersion") or "(unknown)",
                step=_keyword(execution, "Step"),
                customer=_keyword(execution, "CustomerId"),
            )
        )
    async for execution in client.list_workflows(
        running_query(journey=journey, customer=customer, inline=True)
    ):
        for entry in str(_keyword(execution, "JourneyRuns") or "").split():
            name, _sep, rest = str(entry).partition(":")
            version, _sep, step = rest.partition(":")
            if journey is not None and name != journey:
                continue
            found.append(
                RunningRun(
                    workflow_id=execution.id,
                    run_id=execution.run_id,
                    journey=name,
                    version=version or "(unknown)",
                    step=None if step in ("", "(starting)") else step,
                    customer=_keyword(execution, "CustomerId"),
                    inline=True,
                )
            )
    return found


# --- cancel ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CancelReport:
    journey: str
    customer: str | None
    cancelled: list[str]  # running runs Temporal was asked to cancel
    held: list[str] = field(default_factory=list)  # held runs the customer workflows drop


def held_candidates(
    session: Session, *, journey: str, customer: str | None, running: Iterable[str]
) -> dict[str, set[str]]:
    """Per customer, the runs of the journey recorded as running that are no running execution:
    the ones a customer workflow may still hold (RunPlan.due) before their first wait ends."""
    query = select(JourneyRun.customer_id, JourneyRun.workflow_id).where(
        JourneyRun.journey == journey, JourneyRun.status == "running"
    )
    if customer is not None:
        query = query.where(JourneyRun.customer_id == customer)
    started = set(running)
    out: dict[str, set[str]] = {}
    for customer_id, workflow_id in session.exec(query):
        if workflow_id not in started:
            out.setdefault(customer_id, set()).add(workflow_id)
    return out


async def drop_held_runs(
    client: Client, *, customer: str, journey: str, candidates: set[str], reason: str
) -> list[str]:
    """Ask the customer workflow to drop its held runs of the journey; returns the ones it held.

    Asked first (the held_runs query), so a customer workflow that holds none of them, or has
    ended, gets no signal. The signal drops what is held when it arrives and records each as
    cancelled with this reason."""
    from temporalio.service import RPCError, RPCStatusCode

    handle = client.get_workflow_handle(customer_workflow_id(customer))
    try:
        held = await handle.query(HELD_RUNS_QUERY, result_type=list[str])
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return []
        raise
    dropping = sorted(set(held) & candidates)
    if not dropping:
        return []
    try:
        await handle.signal(CANCEL_HELD_RUNS_SIGNAL, CancelHeldRuns(journey=journey, reason=reason))
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:  # ended since the query: it held nothing
            return []
        raise
    return dropping


async def cancel_runs(
    client: Client,
    engine: Engine,
    *,
    journey: str,
    customer: str | None,
    by: str,
    reason: str | None,
    now: datetime,
) -> CancelReport:
    """Ask Temporal to cancel the running runs of a journey (of one customer, or all).

    Each run ends through its own cancellation handler, which records it; the request is noted
    first, so the record says who cancelled and why. Runs of the customer workflow's children
    are abandoned on close, so cancelling one never touches the customer's other journeys.

    Runs a customer workflow still holds (their first step is a wait) are no executions yet,
    and runs inside the customer workflow never are: Trouw's records name the customers that
    may have some (recorded running, not running in Temporal as workflows of their own), and
    each such customer workflow is asked to drop them (`cancel_held_runs`); a run inside it
    ends at once if it waits, recorded cancelled with this reason.
    """
    runs = [
        run
        for run in await running_runs(client, journey=journey, customer=customer)
        if not run.inline
    ]
    note = f"by {by}" + (f": {reason}" if reason else "")

    def record() -> None:
        with session_scope(engine) as session:
            for run in runs:
                row = run_record(session, run.workflow_id)
                if row is None:
                    continue
                _add_once(
                    session,
                    JourneyRunEvent(
                        key=f"{run.workflow_id}:{run.run_id}:{CANCEL_REQUESTED}",
                        customer_id=row.customer_id,
                        journey=row.journey,
                        workflow_id=run.workflow_id,
                        at=now,
                        kind=CANCEL_REQUESTED,
                        reason=note,
                    ),
                )

    await asyncio.to_thread(record)
    metrics.CONTROL_ACTIONS.labels(action="cancel").inc(len(runs))
    for run in runs:
        handle = client.get_workflow_handle(run.workflow_id, run_id=run.run_id)
        await handle.cancel(reason=f"trouw: cancelled {note}")

    def candidates() -> dict[str, set[str]]:
        with session_scope(engine) as session:
            return held_candidates(
                session,
                journey=journey,
                customer=customer,
                running=(run.workflow_id for run in runs),
            )

    held: list[str] = []
    for customer_id, workflow_ids in sorted((await asyncio.to_thread(candidates)).items()):
        held += await drop_held_runs(
            client,
            customer=customer_id,
            journey=journey,
            candidates=workflow_ids,
            reason=f"cancelled {note}",
        )
    metrics.CONTROL_ACTIONS.labels(action="cancel").inc(len(held))
    return CancelReport(journey, customer, [run.workflow_id for run in runs], held)


def operator_cancel_reason(session: Session, workflow_id: str) -> str | None:
    """`cancelled by cli:ann: complaint` when an operator cancelled this run, else None."""
    note = session.exec(
        select(JourneyRunEvent.reason)
        .where(
            JourneyRunEvent.workflow_id == workflow_id,
            JourneyRunEvent.kind == CANCEL_REQUESTED,
        )
        .order_by(col(JourneyRunEvent.id).desc())
    ).first()
    return f"cancelled {note}" if note else None


# --- records follow Temporal -------------------------------------------------------------------


def closed_query(since: datetime | None, *, workflow_type: str = JOURNEY_WORKFLOW) -> str:
    """Journey runs (or customer workflows, with the runs inside them) that closed in a way
    they may not have recorded, since `since`."""
    statuses = " OR ".join(f"ExecutionStatus = '{name}'" for name, _ours in _CLOSED.values())
    query = f"WorkflowType = '{workflow_type}' AND ({statuses})"
    if since is not None:
        query += f" AND CloseTime >= '{since.astimezone(UTC).isoformat().replace('+00:00', 'Z')}'"
    return query


@dataclass(frozen=True)
class ClosedRun:
    workflow_id: str
    run_id: str | None
    status: str  # failed | cancelled | terminated | timed_out
    closed_at: datetime | None


async def sync_run_records(client: Client, engine: Engine, *, now: datetime) -> int:
    """One pass: runs Temporal closed as failed, cancelled, terminated or timed out, whose
    record still says running, get Temporal's status, time and reason. Returns how many.

    Reads closed executions from the stored mark (less the visibility lag) and moves the mark
    to this pass's start; every change is guarded by the record's own status, so passes of
    several workers, or a pass that reads a run twice, change nothing twice.
    """
    from trouw.domain.why import temporal_outcome

    since = await asyncio.to_thread(_read_mark, engine)
    closed: list[ClosedRun] = []
    async for execution in client.list_workflows(
        closed_query(since - VISIBILITY_LAG if since else None)
    ):
        known = _CLOSED.get(execution.status) if execution.status is not None else None
        if known is None:
            continue
        closed.append(ClosedRun(execution.id, execution.run_id, known[1], execution.close_time))
    stale = await asyncio.to_thread(_still_running, engine, [run.workflow_id for run in closed])
    changed = 0
    for run in closed:
        if run.workflow_id not in stale:
            continue
        outcome = await temporal_outcome(client, run.workflow_id)
        reason = outcome.reason if outcome is not None else None
        if await asyncio.to_thread(_close_record, engine, run, reason, now):
            changed += 1
    async for execution in client.list_workflows(
        closed_query(since - VISIBILITY_LAG if since else None, workflow_type=CUSTOMER_WORKFLOW)
    ):
        known = _CLOSED.get(execution.status) if execution.status is not None else None
        if known is not None:
            customer = ClosedRun(execution.id, execution.run_id, known[1], execution.close_time)
            changed += await _close_runs_inside(client, engine, customer, now=now)
    await asyncio.to_thread(_write_mark, engine, now)
    return changed


async def _close_runs_inside(
    client: Client, engine: Engine, closed: ClosedRun, *, now: datetime
) -> int:
    """The runs inside a customer workflow Temporal closed (terminated, failed, ...) end with
    it: their records, still running, get its status, time and reason. Runs that are workflows
    of their own, and runs a newer execution of that customer workflow holds, are left."""
    from temporalio.client import WorkflowExecutionStatus as Status
    from temporalio.service import RPCError, RPCStatusCode

    from trouw.domain.why import temporal_outcome

    customer = closed.workflow_id.removeprefix(customer_workflow_id(""))

    def recorded() -> list[str]:
        with read_scope(engine) as session:
            query = select(JourneyRun.workflow_id).where(
                JourneyRun.customer_id == customer, JourneyRun.status == "running"
            )
            if closed.closed_at is not None:
                query = query.where(col(JourneyRun.started_at) <= closed.closed_at)
            return list(session.exec(query).all())

    inside = set(await asyncio.to_thread(recorded))
    if not inside:
        return 0
    inside -= {run.workflow_id for run in await running_runs(client, customer=customer)}
    handle = client.get_workflow_handle(closed.workflow_id)
    try:
        if (await handle.describe()).status == Status.RUNNING:  # a newer execution
            inside -= set(await handle.query(HELD_RUNS_QUERY, result_type=list[str]))
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
    outcome = await temporal_outcome(client, closed.workflow_id, run_id=closed.run_id)
    reason = outcome.reason if outcome is not None else None
    changed = 0
    for workflow_id in sorted(inside):
        run = ClosedRun(workflow_id, closed.run_id, closed.status, closed.closed_at)
        if await asyncio.to_thread(_close_record, engine, run, reason, now):
            changed += 1
    return changed


def _read_mark(engine: Engine) -> datetime | None:
    # Reads: on SQLite they must not take the write lock (seen queueing the API's redemptions).
    with read_scope(engine) as session:
        mark = session.get(SyncMark, SYNC_MARK)
        return mark.at if mark is not None else None


def _write_mark(engine: Engine, at: datetime) -> None:
    with session_scope(engine) as session:
        mark = session.get(SyncMark, SYNC_MARK)
        if mark is None:
            try:
                with session.begin_nested():
                    session.add(SyncMark(name=SYNC_MARK, at=at))
            except IntegrityError:
                pass  # another worker wrote it a moment ago
            return
        if mark.at < at:
            mark.at = at
            session.add(mark)


def _still_running(engine: Engine, workflow_ids: list[str]) -> set[str]:
    found: set[str] = set()
    with read_scope(engine) as session:
        for start in range(0, len(workflow_ids), 500):  # bounded IN lists
            found.update(
                session.exec(
                    select(JourneyRun.workflow_id).where(
                        col(JourneyRun.workflow_id).in_(workflow_ids[start : start + 500]),
                        JourneyRun.status == "running",
                    )
                ).all()
            )
    return found


def _close_record(engine: Engine, run: ClosedRun, reason: str | None, now: datetime) -> bool:
    with session_scope(engine) as session:
        row = session.exec(
            select(JourneyRun).where(JourneyRun.workflow_id == run.workflow_id).with_for_update()
        ).first()
        if row is None or row.status != "running":
            return False
        if run.status == "cancelled":
            reason = operator_cancel_reason(session, run.workflow_id) or reason
        at = run.closed_at or now
        row.status = run.status
        row.ended_at = at
        row.end_reason = reason
        session.add(row)
        metrics.on_commit(session, metrics.RUNS.labels(journey=row.journey, outcome=run.status).inc)
        _add_once(
            session,
            JourneyRunEvent(
                key=f"{run.workflow_id}:{run.run_id}:{run.status}",
                customer_id=row.customer_id,
                journey=row.journey,
                workflow_id=row.workflow_id,
                at=at,
                kind=run.status,
                reason=f"{reason} (from Temporal)" if reason else "from Temporal",
            ),
        )
    log.info("run %s is %s in Temporal: record updated", run.workflow_id, run.status)
    return True


# Built once (every recorded outcome looks its run up); the workflow id is bound.
_RUN_RECORD = select(JourneyRun).where(col(JourneyRun.workflow_id) == bindparam("workflow_id"))


def run_record(session: Session, workflow_id: str) -> JourneyRun | None:
    """The ledger's record of a journey run, by its workflow id."""
    return session.exec(_RUN_RECORD, params={"workflow_id": workflow_id}).first()


def _add_once(session: Session, event: JourneyRunEvent) -> None:
    exists = session.exec(
        select(JourneyRunEvent.id).where(JourneyRunEvent.key == event.key)
    ).first()
    if exists is None:
        session.add(event)


async def sync_forever(client: Client, engine: Engine, *, every: float) -> None:
    """The worker's reconciler: run records follow Temporal within `every` seconds."""
    while True:
        try:
            count = await sync_run_records(client, engine, now=datetime.now(UTC))
            if count:
                log.info("%d run record(s) now follow Temporal", count)
        except Exception:  # Temporal restarting, a database hiccup: next round
            log.exception("run record sync failed")
        await asyncio.sleep(every)


# --- the journeys overview ------------------------------------------------------------------


@dataclass(frozen=True)
class JourneyOverview:
    """One journey for an operator: the version new runs get, paused or not, runs in flight."""

    journey: str
    version: str | None  # None: no longer among the worker's journeys, runs still in flight
    paused: dict[str, str | None] | None  # at, by, reason
    running: int
    versions: dict[str, int]
    steps: list[dict[str, str | int]]  # version, step, runs
    # Runs Trouw's records hold as running: more than `running` while the customer workflow
    # holds runs not started yet (a first step that waits), or while records lag Temporal.
    recorded_running: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "journey": self.journey,
            "version": self.version,
            "paused": self.paused,
            "running": self.running,
            "versions": self.versions,
            "steps": self.steps,
            "recorded_running": self.recorded_running,
        }


def overview(
    catalog: dict[str, str],
    pauses: dict[str, tuple[datetime, str, str | None]],
    runs: Iterable[RunningRun],
    recorded: dict[str, int] | None = None,
) -> list[JourneyOverview]:
    """Journeys by name: `catalog` maps each to the version new runs get, `pauses` to the pause
    in force (at, by, reason). Journeys that only have runs left are listed too. Pure."""
    counted = tally(runs)
    recorded = recorded or {}
    out = []
    for name in sorted(set(catalog) | set(counted) | set(pauses) | set(recorded)):
        entry = counted.get(name) or JourneyTally(name)
        pause = pauses.get(name)
        out.append(
            JourneyOverview(
                journey=name,
                version=catalog.get(name),
                paused=(
                    {"at": pause[0].isoformat(), "by": pause[1], "reason": pause[2]}
                    if pause
                    else None
                ),
                running=entry.running,
                versions=dict(sorted(entry.versions.items())),
                steps=[
                    {"version": version, "step": step, "runs": count}
                    for (version, step), count in sorted(entry.steps.items())
                ],
                recorded_running=recorded.get(name, 0),
            )
        )
    return out


async def journey_overviews(
    client: Client, engine: Engine, catalog: dict[str, str]
) -> list[JourneyOverview]:
    """Every journey: `catalog` (name: version new runs get), its pause, its runs in flight."""
    from trouw.domain.control import paused_journeys

    def pauses() -> dict[str, tuple[datetime, str, str | None]]:
        with session_scope(engine) as session:
            return {
                name: (row.at, row.by, row.reason) for name, row in paused_journeys(session).items()
            }

    paused = await asyncio.to_thread(pauses)
    return overview(catalog, paused, await running_runs(client))
