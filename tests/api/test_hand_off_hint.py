"""The API hands off at once only the event types the workers' relays hand to Temporal."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import select

from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import InboundEvent, WorkerPresence
from trouw.domain.ingest import EventIn
from trouw.settings import Settings
from trouw.ways_in.api.events import deliver_new, store_event
from trouw.ways_in.api.state import ApiState


class Signals:
    """A Temporal client that records each signal-with-start instead of sending it."""

    def __init__(self) -> None:
        self.events: list[str] = []

    async def start_workflow(self, *args: Any, **kwargs: Any) -> None:
        self.events.append(kwargs["start_signal_args"][0].type)


def _stored(engine: Engine) -> list[Any]:
    now = datetime.now(UTC).isoformat()
    profile = {"id": "c1", "email": "c1@example.com"}
    events = [
        {
            "id": "p1",
            "type": "purchase",
            "channel": "pos",
            "customer": "c1",
            "order": "o1",
            "at": now,
            "lines": [{"sku": "X-1", "unit_price": "5.00"}],
            "profile": profile,
        },
        {"id": "k1", "type": "custom", "name": "poll", "customer": "c1", "at": now},
    ]
    return [store_event(engine, EventIn.model_validate(event)) for event in events]


def _relayed(engine: Engine) -> dict[str, bool]:
    with session_scope(engine) as session:
        rows = session.exec(select(InboundEvent)).all()
        return {row.source_id: row.relayed_at is not None for row in rows}


def _worker(engine: Engine, event_types: list[str] | None) -> None:
    with session_scope(engine) as session:
        session.add(
            WorkerPresence(
                identity="1@worker", host="worker", pid=1, task_queue="q", event_types=event_types
            )
        )


async def test_a_type_no_relay_hands_off_is_left_to_the_relay(
    engine: Engine, settings: Settings
) -> None:
    _worker(engine, ["purchase"])
    client = Signals()
    await deliver_new(ApiState(settings, engine, client), _stored(engine))  # type: ignore[arg-type]
    assert client.events == ["purchase"]
    assert _relayed(engine) == {"p1": True, "k1": False}  # the relay judges k1 itself


async def test_without_a_worker_that_said_what_it_hands_off_every_event_goes_at_once(
    engine: Engine, settings: Settings
) -> None:
    _worker(engine, None)  # its relay has not judged yet
    client = Signals()
    await deliver_new(ApiState(settings, engine, client), _stored(engine))  # type: ignore[arg-type]
    assert client.events == ["purchase", "custom:poll"]
    assert _relayed(engine) == {"p1": True, "k1": True}
