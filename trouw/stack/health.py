"""The health of the whole system for `trouw status` and the admin API: one check per part."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from trouw.domain.control import JOURNEY_PAUSED, paused_customers, paused_journeys
from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import InboundEvent, JourneyRun, Message, WorkerPresence
from trouw.language.contracts import CUSTOMER_WORKFLOW, JOURNEY_WORKFLOW
from trouw.stack.presence import GONE_AFTER, STALE_AFTER

if TYPE_CHECKING:
    from temporalio.client import Client

    from trouw.language.journey.catalog import CatalogState
    from trouw.settings import Settings

# A live worker polls again at least every minute (a long poll lasts up to ~70 s); Temporal keeps
# listing a poller for minutes after its worker died, so only a recent poll counts.
POLLER_FRESH = timedelta(seconds=120)
# What the Temporal Web UI asks for runs whose workflow task keeps failing (temporalio/ui,
# src/lib/utilities/workflow-task-failures.ts): the server sets this search attribute itself.
# Customer workflows too: the journey runs inside one stop with its task (workflows/inline.py).
STUCK_QUERY = (
    f"(WorkflowType = '{JOURNEY_WORKFLOW}' OR WorkflowType = '{CUSTOMER_WORKFLOW}') AND "
    "ExecutionStatus = 'Running' AND "
    "TemporalReportedProblems IN ('category=WorkflowTaskFailed', 'category=WorkflowTaskTimedOut')"
)
FAILED_WINDOW = timedelta(hours=24)
LISTED = 10  # at most this many examples per check


@dataclass
class Check:
    """One part of the system: healthy or not, a one-line summary and the lines behind it."""

    name: str
    ok: bool
    summary: str
    details: list[str] = field(default_factory=list)
    # Structured rows behind the details, for --json and the admin API (only when there are any).
    items: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        shown = asdict(self)
        if not self.items:
            del shown["items"]
        return shown


@dataclass
class Health:
    checked_at: datetime
    checks: list[Check]

    @property
    def healthy(self) -> bool:
        return all(check.ok for check in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "checked_at": self.checked_at.isoformat(),
            "checks": [check.to_json() for check in self.checks],
        }


# --- database parts (pure reads) -----------------------------------------------------------------


def catalog_state(settings: Settings) -> tuple[CatalogState, str]:
    """The journey files as the worker last saw them (its state file), or as it would see them."""
    from activities.services import journey_check
    from trouw.language.journey.catalog import STATE_FILE, JourneyCatalog, read_state

    path = settings.home / STATE_FILE
    found = read_state(path)
    if found is not None:
        state = found[0]
        return state, f"journeys in {state.directory}, as the worker saw them at {state.checked_at}"
    catalog = JourneyCatalog(settings.journeys_dir, check=journey_check(settings))
    catalog.journeys()
    return catalog.state, (
        f"no worker has loaded journeys with this home yet ({path}); "
        f"what a worker would load from {settings.journeys_dir}"
    )


def catalog_versions(settings: Settings) -> dict[str, str]:
    """Each journey the worker runs, with the version new runs get."""
    state, _source = catalog_state(settings)
    return {item.journey: item.version for item in state.files if item.journey and item.version}


def journeys_check(state: CatalogState, source: str) -> Check:
    refused = state.refused
    details = [source] + [item.line() for item in state.files]
    for item in refused:
        details += [f"  {problem}" for problem in item.problems]
    loaded = len(state.files) - len(refused)
    summary = f"{loaded} journey file(s) loaded, {len(refused)} refused"
    return Check("journeys", not refused, summary, details)


def _content(settings: Settings, engine: Engine) -> tuple[Check, str | None]:
    """Which journeys and templates the workers run (the newest published bundle or folders),
    and the digest every worker should run: one look at the content for both (a folders'
    digest reads every file)."""
    from trouw.domain.content import content_digest
    from trouw.domain.publish import BundleError, newest_bundle

    if settings.content_source == "folder":
        digest = content_digest(settings.journeys_dir, settings.templates_dir)
        where = f"{settings.journeys_dir} and {settings.templates_dir}"
        return Check("content", True, f"folders {where} ({digest})"), digest
    try:
        bundle = newest_bundle(engine)
    except BundleError as exc:
        # No worker can load it (each keeps what it runs, or runs nothing): nothing to compare
        # the workers' digests with.
        corrupt = f"database: the newest published bundle is unreadable ({exc}); publish again"
        return Check("content", False, corrupt), None
    if bundle is None:
        nothing = "database: nothing published yet (run `trouw publish`)"
        return Check("content", False, nothing), None
    when = bundle.published_at.isoformat(timespec="seconds")
    published = f"published {bundle.digest} at {when} by {bundle.published_by}"
    return Check("content", True, published), bundle.digest


def content_checks(settings: Settings, engine: Engine, now: datetime) -> list[Check]:
    """The content check, then every worker's reported digest and heartbeat against the digest
    it should run."""
    from trouw.stack.presence import workers_seen

    check, expected = _content(settings, engine)
    return [check, presence_check(workers_seen(engine), expected=expected, now=now)]


def presence_check(rows: list[WorkerPresence], *, expected: str | None, now: datetime) -> Check:
    """Each worker's own report: unhealthy when one's heartbeat is stale (stuck, or killed within
    GONE_AFTER) or it runs another digest than expected (None: nothing to compare with)."""
    details: list[str] = []
    items: list[dict[str, Any]] = []
    live = flagged = 0
    for row in rows:
        age = max(now - row.seen_at, timedelta(0))
        gone = age > GONE_AFTER
        stale = not gone and age > STALE_AFTER
        behind = not gone and expected is not None and row.digest != expected
        live += not gone and not stale
        flagged += stale or behind
        notes = [f"runs {row.digest or 'nothing yet'}", f"last heartbeat {_span(age)} ago"]
        if gone:
            notes.append("gone (not flagged)")
        if stale:
            notes.append(f"STALE (more than {_span(STALE_AFTER)})")
        if behind:
            notes.append(f"NOT the expected {expected}")
        details.append(f"{row.identity} ({row.task_queue}): " + ", ".join(notes))
        items.append(
            {
                "identity": row.identity,
                "host": row.host,
                "pid": row.pid,
                "task_queue": row.task_queue,
                "digest": row.digest,
                "started_at": row.started_at.isoformat(),
                "seen_at": row.seen_at.isoformat(),
                "stale": stale,
                "gone": gone,
                "expected_digest": not behind,
            }
        )
    summary = f"{live} worker(s) with a heartbeat in the last {_span(STALE_AFTER)}"
    if expected is not None:
        summary += f", expected content {expected}"
    if flagged:
        summary += f": {flagged} stale or on another version"
    return Check("worker versions", not flagged, summary, details, items)


def relay_checks(engine: Engine, *, now: datetime, alert_after: timedelta) -> list[Check]:
    """The relay's backlog (events not yet handed to Temporal) and the events it parked."""
    with session_scope(engine) as session:
        waiting = select(InboundEvent).where(
            col(InboundEvent.relayed_at).is_(None), col(InboundEvent.parked_at).is_(None)
        )
        backlog = session.exec(select(func.count()).select_from(waiting.subquery())).one()
        oldest = session.exec(waiting.order_by(col(InboundEvent.id)).limit(1)).first()
        parked = list(
            session.exec(
                select(InboundEvent)
                .where(col(InboundEvent.parked_at).is_not(None))
                .order_by(col(InboundEvent.id))
            ).all()
        )
    age = now - oldest.received_at if oldest is not None else timedelta(0)
    summary = f"{backlog} event(s) waiting"
    if oldest is not None:
        summary += f", oldest received {_span(age)} ago"
    relay = Check("relay", age <= alert_after, summary)
    if age > alert_after:
        relay.details.append(f"the oldest waiting event is older than {_span(alert_after)}")
    lines = [
        f"{e.source_id} ({e.type}, customer {e.customer_id}): parked after "
        f"{e.relay_attempts} attempt(s): {e.relay_error}"
        for e in parked
    ]
    return [relay, Check("parked events", not parked, f"{len(parked)} parked event(s)", lines)]


def failed_runs_check(engine: Engine, *, now: datetime) -> Check:
    """Runs that failed in the last day, with their last error: shown, not unhealthy (each
    failed alone and said why; the stuck ones are the Temporal check's)."""
    with session_scope(engine) as session:
        rows = list(
            session.exec(
                select(JourneyRun)
                .where(
                    JourneyRun.status == "failed", col(JourneyRun.ended_at) >= now - FAILED_WINDOW
                )
                .order_by(col(JourneyRun.ended_at).desc())
            ).all()
        )
    per_journey = Counter(row.journey for row in rows)
    summary = f"{len(rows)} run(s) failed in the last {_span(FAILED_WINDOW)}"
    if per_journey:
        summary += " (" + ", ".join(f"{j}: {n}" for j, n in sorted(per_journey.items())) + ")"
    details = [
        f"{row.workflow_id}: {row.end_reason or 'no reason recorded'}" for row in rows[:LISTED]
    ]
    return Check("failed runs", True, summary, details)


def messages_check(engine: Engine) -> Check:
    """Messages waiting: deferred by the policy (by reason) and held by a paused journey."""
    with session_scope(engine) as session:
        rows = session.exec(
            select(Message.reason, func.count())
            .where(Message.state == "claimed", Message.decision == "defer")
            .group_by(col(Message.reason))
        ).all()
    counts = {str(reason): int(count) for reason, count in rows}
    held = counts.pop(JOURNEY_PAUSED, 0)
    deferred = sum(counts.values())
    summary = f"{deferred} deferred, {held} held by paused journeys"
    details = [f"deferred {reason}: {count}" for reason, count in sorted(counts.items())]
    return Check("waiting messages", True, summary, details)


def pauses_check(engine: Engine) -> Check:
    with session_scope(engine) as session:
        journeys = paused_journeys(session)
        customers = paused_customers(session)
    details = [
        f"journey {name} paused since {row.at.isoformat(timespec='minutes')} by {row.by}"
        + (f": {row.reason}" if row.reason else "")
        for name, row in sorted(journeys.items())
    ]
    summary = f"{len(journeys)} journey(s) paused, {len(customers)} customer(s) paused"
    return Check("pauses", True, summary, details)


# --- Temporal parts ---------------------------------------------------------------------------


async def workers_check(client: Client, *, namespace: str, task_queue: str, now: datetime) -> Check:
    """Pollers of the task queue, for workflow tasks and for activity tasks: both are needed."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    details = []
    live: dict[str, int] = {}
    for kind, value in (
        ("workflow", TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW),
        ("activity", TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY),
    ):
        answer = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=namespace,
                task_queue=TaskQueue(name=task_queue),
                task_queue_type=value,
            )
        )
        fresh = 0
        for poller in answer.pollers:
            seen = poller.last_access_time.ToDatetime(tzinfo=UTC)
            recent = now - seen <= POLLER_FRESH
            fresh += recent
            details.append(
                f"{kind} poller {poller.identity}: last poll {_span(max(now - seen, timedelta(0)))}"
                f" ago{'' if recent else ' (gone?)'}"
            )
        live[kind] = fresh
    ok = all(live.values())
    summary = (
        f"task queue {task_queue}: {live['workflow']} workflow and {live['activity']} activity "
        "poller(s)"
    )
    if not ok:
        summary += ": no worker is polling"
    return Check("workers", ok, summary, details)


async def stuck_runs_check(client: Client) -> Check:
    """Running journey runs whose workflow task keeps failing: they make no progress."""
    from trouw.domain.why import temporal_outcome

    ids = [execution.id async for execution in client.list_workflows(STUCK_QUERY, limit=100)]
    details = []
    for workflow_id in ids[:LISTED]:
        outcome = await temporal_outcome(client, workflow_id)
        details.append(f"{workflow_id}: {outcome.reason if outcome else 'recovering'}")
    summary = f"{len(ids)} run(s) stuck on a failing workflow task"
    return Check("stuck runs", not ids, summary, details)


async def temporal_checks(
    settings: Settings, client: Client | None, *, now: datetime
) -> list[Check]:
    from temporalio.service import RPCError

    from trouw.stack.temporal import TemporalError, connect

    try:
        if client is None:
            client = await connect(settings, attempts=3)
        info = await client.workflow_service.get_system_info(_system_info_request())
    except (TemporalError, RPCError, RuntimeError) as exc:
        down = str(exc)
        if not isinstance(exc, TemporalError):
            down = f"cannot reach Temporal at {settings.temporal_target}: {exc}"
        return [
            Check("temporal", False, down),
            Check("workers", False, "unknown: Temporal is not reachable"),
        ]
    checks = [
        Check(
            "temporal",
            True,
            f"reachable at {settings.temporal_target}, namespace {settings.temporal_namespace}, "
            f"server {info.server_version or 'version not given'}",
        ),
        await workers_check(
            client, namespace=settings.temporal_namespace, task_queue=settings.task_queue, now=now
        ),
    ]
    try:
        checks.append(await stuck_runs_check(client))
    except RPCError as exc:  # a server without TemporalReportedProblems (before 1.28)
        checks.append(Check("stuck runs", True, f"not known: {exc.message}"))
    return checks


def _system_info_request() -> Any:
    from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

    return GetSystemInfoRequest()


async def gather(
    settings: Settings,
    engine: Engine,
    *,
    catalog: tuple[CatalogState, str],
    client: Client | None = None,
    now: datetime | None = None,
) -> Health:
    """Every check, the database ones off the event loop."""
    moment = now or datetime.now(UTC)
    alert = timedelta(seconds=settings.relay_backlog_alert_seconds)
    checks = [journeys_check(*catalog)]
    checks += await asyncio.to_thread(content_checks, settings, engine, moment)
    checks += await temporal_checks(settings, client, now=moment)
    checks += await asyncio.to_thread(relay_checks, engine, now=moment, alert_after=alert)
    checks.append(await asyncio.to_thread(failed_runs_check, engine, now=moment))
    checks.append(await asyncio.to_thread(messages_check, engine))
    checks.append(await asyncio.to_thread(pauses_check, engine))
    return Health(moment, checks)


def _span(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"
