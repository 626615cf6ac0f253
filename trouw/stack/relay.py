"""The outbox relay: events committed to the database reach their customer workflow, once."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

from pydantic import ValidationError
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col, func, select
from temporalio.client import Client

from trouw.domain.db.engine import read_scope, session_scope
from trouw.domain.db.models import InboundEvent
from trouw.domain.ingest import pending_events, wire_event
from trouw.domain.interest import live_listens, live_versions, unmatched_starts
from trouw.language.contracts import CustomerEvent
from trouw.language.journey.interest import Hearing, Interest, hearing, with_other_workers
from trouw.language.journey.model import Journey
from trouw.stack import metrics
from trouw.stack.presence import heard_by_workers, set_event_types
from trouw.stack.temporal import deliver

if TYPE_CHECKING:
    from trouw.domain.publish import ContentSource

log = logging.getLogger("trouw.relay")
# A journey version the relay's catalog no longer holds still counts this long: another worker
# may run an older copy of the journeys (published content is polled) and start a run of it.
SUPERSEDED_GRACE = 600.0
# The relay marks handed-off events relayed in one transaction per this many, or per this many
# seconds, whichever comes first (a mark per event was a write per event).
MARK_BATCH = 200
MARK_EVERY = 0.5


async def hand_off(
    engine: Engine,
    client: Client,
    source_id: str,
    *,
    task_queue: str,
    search_attributes: bool = True,
    event: CustomerEvent | None = None,
) -> None:
    """Signal-with-start for one stored event, then mark it relayed.

    `event`: the stored event as the caller already read it (the API just wrote it, the sweep
    just listed it), so the hand-off costs one UPDATE and no read. A crash between the signal
    and the mark leaves relayed_at empty and the sweep sends it again; the customer workflow
    drops the repeat by event id, so the journey starts once.
    """
    # Database work off the event loop: the API serves other requests meanwhile.
    if event is None:
        event = await asyncio.to_thread(stored_event, engine, source_id)
    await deliver(client, event, task_queue=task_queue, search_attributes=search_attributes)
    await asyncio.to_thread(mark_relayed, engine, [source_id])
    _log_handed_off(source_id, event)


@dataclass(frozen=True)
class Listed:
    """A listed event as the relay judges it: who it is for, its type and its place."""

    row_id: int
    customer_id: str
    type: str


class Listeners:
    """Who must hear an event now: the journeys this worker runs (and those it ran within
    SUPERSEDED_GRACE), the versions with a live run, and per customer its live runs and its
    events match_journeys has not answered yet (trouw.language.journey.interest).

    Asked once per relay round, after the round listed its events: a journey published, a run
    recorded or an event answered before an event was stored is in the answer for that event."""

    def __init__(
        self,
        engine: Engine,
        content: ContentSource,
        *,
        identity: str | None = None,
        grace: float = SUPERSEDED_GRACE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.content = content
        self.identity = identity  # the worker's presence row, where the API reads the answer
        self.grace = grace
        self.clock = clock
        self._seen: dict[str, tuple[Journey, float]] = {}  # version -> (journey, last held)
        self._told: Interest | None = None

    def __call__(self) -> Hearing:
        now = self.clock()
        for journey in self.content.latest().catalog.journeys().values():
            self._seen[journey.version] = (journey, now)
        self._seen = {
            version: held for version, held in self._seen.items() if now - held[1] <= self.grace
        }
        with read_scope(self.engine) as session:
            live = live_listens(session)
        heard = hearing((journey for journey, _ in self._seen.values()), live)
        if self.identity is not None and heard.interest != self._told:
            # Written only when it changes; the API hands off at once only what it names.
            try:
                if set_event_types(self.engine, self.identity, heard.interest):
                    self._told = heard.interest
            except SQLAlchemyError as exc:  # only the API's hint is late: tried next round
                log.warning("cannot record the event types this relay hands off: %s", exc)
        # A worker reading other journeys (a folder edited on one host, a rollout between two
        # releases) may start runs on types this relay does not know: those are heard for
        # everyone rather than marked unheard (docs/decisions.md).
        others = heard_by_workers(self.engine, but=self.identity)
        return heard if others is None else with_other_workers(heard, others)

    def judge(self, events: Sequence[Listed]) -> list[bool]:
        """For each event, whether Temporal must hear it."""
        heard = self()
        asked = {
            e.customer_id
            for e in events
            if not heard.for_everyone(e.type) and heard.interest.wants(e.type)
        }
        if not asked:
            return [heard.for_everyone(e.type) for e in events]
        with read_scope(self.engine) as session:
            # Unanswered events first: one answered in between has its runs recorded by then.
            pending = unmatched_starts(session, asked, heard.pending_types)
            versions = live_versions(session, asked)
        return [
            heard.wants(
                e.type,
                versions=versions.get(e.customer_id, ()),
                pending={
                    kind for who, kind, row in pending if who == e.customer_id and row < e.row_id
                },
            )
            for e in events
        ]


def stored_event(engine: Engine, source_id: str) -> CustomerEvent:
    """The stored event as its workflow gets it; a read (on SQLite it takes no write lock: the
    API hands off every derived event, points_changed after each purchase, by this read)."""
    with read_scope(engine) as session:
        row = session.exec(select(InboundEvent).where(InboundEvent.source_id == source_id)).one()
        return wire_event(row)


def mark_relayed(engine: Engine, source_ids: Sequence[str], *, unheard: bool = False) -> None:
    """Marks handed-off events relayed, all in one write transaction (one UPDATE); `unheard`
    ones (not signalled) as answered too: match_journeys will never see them."""
    if not source_ids:
        return
    with session_scope(engine) as session:
        now = datetime.now(UTC)
        values = {"relayed_at": now, "matched_at": now} if unheard else {"relayed_at": now}
        received = (
            session.execute(
                update(InboundEvent)
                .where(col(InboundEvent.source_id).in_(source_ids))
                .where(col(InboundEvent.relayed_at).is_(None))
                .values(**values)
                .returning(col(InboundEvent.received_at))
            )
            .scalars()
            .all()
        )
        lags = [max((now - _aware(moment)).total_seconds(), 0.0) for moment in received]

        def observe() -> None:
            for lag in lags:
                metrics.RELAY_LAG_SECONDS.observe(lag)

        metrics.on_commit(session, observe)


def _log_handed_off(source_id: str, event: CustomerEvent) -> None:
    log.info(
        "event %s (%s) handed off to customer %s",
        source_id,
        event.type,
        event.customer_id,
        extra={"event_id": source_id, "customer": event.customer_id},
    )


def _aware(moment: datetime) -> datetime:
    # SQLite hands back the naive UTC time it stored.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def intake_figures(engine: Engine, *, now: datetime | None = None) -> tuple[int, float, int]:
    """Backlog (events not handed off, parked excluded), the oldest one's age in seconds, and
    the parked events; set into the relay gauges of trouw.stack.metrics."""
    clock = now or datetime.now(UTC)
    with read_scope(engine) as session:
        waiting = (
            select(func.count(), func.min(InboundEvent.received_at))
            .select_from(InboundEvent)
            .where(col(InboundEvent.relayed_at).is_(None), col(InboundEvent.parked_at).is_(None))
        )
        count, oldest = session.exec(waiting).one()
        parked = session.exec(
            select(func.count())
            .select_from(InboundEvent)
            .where(col(InboundEvent.parked_at).is_not(None))
        ).one()
    age = (clock - _aware(oldest)).total_seconds() if oldest is not None else 0.0
    metrics.RELAY_BACKLOG.set(count)
    metrics.RELAY_OLDEST_SECONDS.set(max(age, 0.0))
    metrics.PARKED_EVENTS.set(parked)
    return int(count), max(age, 0.0), int(parked)


def retry_delay(attempts: int) -> timedelta:
    """Backoff after the n-th failed hand-off: 2 s, 4 s, 8 s ... capped at ten minutes."""
    return timedelta(seconds=min(2.0 * 2 ** (attempts - 1), 600.0))


def record_failure(
    engine: Engine, source_id: str, error: str, *, max_attempts: int, now: datetime
) -> bool:
    """Count a failed hand-off and schedule the retry; park the event at max_attempts (True)."""
    with session_scope(engine) as session:
        row = session.exec(select(InboundEvent).where(InboundEvent.source_id == source_id)).one()
        row.relay_attempts += 1
        row.relay_error = error[:500]
        row.relay_next_at = now + retry_delay(row.relay_attempts)
        parked = row.relay_attempts >= max_attempts
        if parked:
            row.parked_at = now
        session.add(row)
    return parked


def parked_events(engine: Engine) -> list[InboundEvent]:
    """Events the relay gave up on, oldest first, with their attempts and last error."""
    with session_scope(engine) as session:
        return list(
            session.exec(
                select(InboundEvent)
                .where(col(InboundEvent.parked_at).is_not(None))
                .order_by(col(InboundEvent.id))
            ).all()
        )


async def relay_pending(
    engine: Engine,
    client: Client,
    *,
    task_queue: str,
    search_attributes: bool = True,
    max_attempts: int = 8,
    now: datetime | None = None,
    listeners: Listeners | None = None,
) -> int:
    """Hand off every due event, oldest first, each on its own; returns how many went through.

    A failing event is counted, backed off and finally parked; the events behind it go on.
    With `listeners`, an event nobody listens to (no journey starts on its type, and no run of
    its customer, live or about to start, exits, converts or waits on it) is marked relayed
    without a signal: to the customer workflow it would be a workflow task that does nothing.
    """

    clock = now or datetime.now(UTC)

    def readable(row: InboundEvent) -> CustomerEvent | None:
        try:
            return wire_event(row)
        except ValidationError:
            return None  # read again below, where its error is counted

    def pending() -> list[tuple[str, Listed, CustomerEvent | None]]:
        # Read-only: on SQLite a listing of up to 500 events must not hold the write lock that
        # the API's redemptions and every activity wait for (seen: 1.2 s under load).
        with read_scope(engine) as session:
            return [
                (row.source_id, Listed(row.id or 0, row.customer_id, row.type), readable(row))
                for row in pending_events(session, now=clock)
            ]

    listed = await asyncio.to_thread(pending)
    # Judged after the listing: whatever was published, started or answered before these
    # events were stored is in the answer.
    judged = [True] * len(listed)
    if listeners is not None and listed:
        judged = await asyncio.to_thread(listeners.judge, [each for _, each, _ in listed])
    unheard = [
        source_id for (source_id, _, _), heard in zip(listed, judged, strict=True) if not heard
    ]
    if unheard:
        await asyncio.to_thread(partial(mark_relayed, engine, unheard, unheard=True))
        metrics.RELAY_UNHEARD.inc(len(unheard))
        log.debug("%d event(s) nobody listens to marked relayed", len(unheard))
    events = [
        (source_id, event)
        for (source_id, _, event), heard in zip(listed, judged, strict=True)
        if heard
    ]
    relayed = len(unheard)
    # Marked in batches, not one write transaction per event: on SQLite every transaction takes
    # the one write lock the API's redemptions wait for (100 marks a second held them up).
    # A crash before the mark sends the batch again; the customer workflow drops repeats.
    handed: list[str] = []
    flushed = time.monotonic()
    for source_id, event in events:
        try:
            if event is None:  # unreadable when listed: read again, its error counted below
                event = await asyncio.to_thread(stored_event, engine, source_id)
            await deliver(client, event, task_queue=task_queue, search_attributes=search_attributes)
            handed.append(source_id)
            _log_handed_off(source_id, event)
        except Exception as exc:  # this event only: Temporal refused it or was unreachable
            error = f"{type(exc).__name__}: {exc}"
            metrics.RELAY_FAILURES.inc()
            parked = await asyncio.to_thread(
                record_failure, engine, source_id, error, max_attempts=max_attempts, now=clock
            )
            if parked:
                log.error("event %s parked after %d attempts: %s", source_id, max_attempts, error)
            else:
                log.warning("event %s not relayed, will retry: %s", source_id, error)
        else:
            relayed += 1
        if len(handed) >= MARK_BATCH or time.monotonic() - flushed >= MARK_EVERY:
            await asyncio.to_thread(mark_relayed, engine, handed)
            handed, flushed = [], time.monotonic()
    await asyncio.to_thread(mark_relayed, engine, handed)
    return relayed


async def relay_forever(
    engine: Engine,
    client: Client,
    *,
    task_queue: str,
    max_attempts: int = 8,
    every: float = 2.0,
    listeners: Listeners | None = None,
) -> None:
    while True:
        try:
            count = await relay_pending(
                engine,
                client,
                task_queue=task_queue,
                max_attempts=max_attempts,
                listeners=listeners,
            )
            if count:
                log.info("relayed %d event(s)", count)
            await asyncio.to_thread(intake_figures, engine)
        except Exception:  # a bad moment (Temporal restarting): try again next round
            log.exception("relay round failed")
        await asyncio.sleep(every)
