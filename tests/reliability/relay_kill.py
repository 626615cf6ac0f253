"""A relay round in a process of its own that dies at a chosen point (the relay fault tests).

Run as `python -m tests.reliability.relay_kill DATABASE_URL TEMPORAL_TARGET QUEUE POINT HOME`; the
process ends with os._exit(KILLED) at POINT, no cleanup, no commit of anything still open:
- `judged`: the round's judgement is made, nothing is marked or signalled yet;
- `unheard-marked`: the unheard events are marked, no heard event is signalled yet;
- `mid-batch`: two heard events are signalled, none of them is marked yet.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from activities.services import Services
from tests.conftest import ROOT
from trouw.domain.db.engine import make_engine
from trouw.settings import Settings
from trouw.stack import relay

KILLED = 17
POINTS = ("judged", "unheard-marked", "mid-batch")


def _arm(point: str) -> None:
    """Wrap the relay's own steps so that the process dies right after the chosen one."""
    match point:
        case "judged":
            judge = relay.Listeners.judge

            def judged(self: relay.Listeners, events: Any) -> list[bool]:
                answer = judge(self, events)
                sys.stdout.flush()
                os._exit(KILLED)
                return answer  # pragma: no cover

            relay.Listeners.judge = judged  # type: ignore[method-assign]
        case "unheard-marked":
            mark = relay.mark_relayed

            def marked(engine: Any, source_ids: Any, *, unheard: bool = False) -> None:
                mark(engine, source_ids, unheard=unheard)
                if unheard:
                    os._exit(KILLED)

            relay.mark_relayed = marked  # type: ignore[assignment]
        case "mid-batch":
            deliver = relay.deliver
            relay.MARK_EVERY = 1e9  # no batch is marked before the kill
            calls = [0]

            async def delivered(*args: Any, **kwargs: Any) -> None:
                await deliver(*args, **kwargs)
                calls[0] += 1
                if calls[0] == 2:
                    os._exit(KILLED)

            relay.deliver = delivered  # type: ignore[assignment]
        case _:
            raise SystemExit(f"unknown kill point {point!r}: one of {POINTS}")


async def main(database_url: str, target: str, queue: str, point: str, home: str) -> None:
    engine = make_engine(database_url)
    settings = Settings(
        home=Path(home),
        database_url=database_url,
        journeys_dir=ROOT / "journeys",
        templates_dir=ROOT / "templates",
        signing_keys=["test-key"],
    )
    services = Services.from_settings(settings, engine=engine)
    client = await Client.connect(target, data_converter=pydantic_data_converter)
    _arm(point)
    await relay.relay_pending(
        engine,
        client,
        task_queue=queue,
        search_attributes=False,
        listeners=relay.Listeners(engine, services.content),
    )


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
    sys.stdout.flush()
    os._exit(0)  # the round ended without reaching its kill point
