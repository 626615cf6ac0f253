"""Records histories of runs that write run records (tests/replay/histories/run_events/).

Branches, splits, skipped steps, tags, a goal, an exit, a deferral, a failing step and a failing
trigger: every path of the `run-events` patch. Run after a deliberate change of that behaviour,
never to silence a failing replay test: `python -m tests.replay.record_run_events`.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

from tests.replay.record import scenario_histories, write_histories

HISTORIES = Path(__file__).parent / "histories" / "run_events"

JOURNEYS = {
    "paths.yaml": """\
journey: paths
trigger: {event: purchase, when: "order.total >= 0"}
settings:
  category: service
  goals: [{name: reviewed, event: review}]
steps:
  - {id: thanks, send: sms, template: delivery_notice, category: transactional}
  - id: maybe
    send: email
    template: review_request
    when: "order.total > 1000"
  - id: pick
    branch:
      - {if: "order.channel == 'web'", goto: tag}
  - id: ab
    split:
      - {name: a, weight: 1}
      - {name: b, weight: 1}
  - id: tag
    update: {tags_add: [seen]}
  - {id: pause, wait: 3d}
  - {id: review, send: email, template: review_request}
""",
    "broken.yaml": """\
journey: broken
trigger: {event: purchase}
settings: {category: service}
steps:
  - {id: pause, wait: 1d}
  - id: check
    branch:
      - {if: "1 / (order.lines | length - 1) > 0", goto: pause}
""",
    "bad_trigger.yaml": """\
journey: bad_trigger
trigger: {event: purchase, when: "order.total / 0 > 1"}
steps:
  - {id: thanks, send: email, template: order_confirmation, category: transactional}
""",
}


async def record() -> list[Path]:
    workdir = Path(tempfile.mkdtemp(prefix="trouw-record-"))
    try:
        journeys = workdir / "journeys"
        journeys.mkdir()
        for name, text in JOURNEYS.items():
            (journeys / name).write_text(text, encoding="utf-8")
        customers = [
            {"id": f"r{n}", "first_name": "Rik", "email": f"r{n}@example.com", "phone": phone}
            for n, phone in ((1, "+32470000011"), (2, "+32470000012"), (3, "+32470000013"))
        ]
        events: list[dict[str, Any]] = [
            {
                "at": "13h30m",  # 22:30: the SMS waits for the morning
                "type": "purchase",
                "customer": "r1",
                "order": "o1",
                "channel": "web",
                "lines": [{"sku": "ROSE-01"}],
            },
            {
                "at": "0d",
                "type": "purchase",
                "customer": "r2",
                "order": "o2",
                "channel": "pos",
                "lines": [{"sku": "ROSE-01"}],
            },
            {"at": "1d", "type": "review", "customer": "r2", "rating": 5},
            {
                "at": "0d",
                "type": "purchase",
                "customer": "r3",
                "order": "o3",
                "channel": "pos",
                "lines": [{"sku": "ROSE-01"}],
            },
        ]
        histories = await scenario_histories(
            journeys, workdir, customers=customers, events=events, until="10d"
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return write_histories(histories, HISTORIES)


if __name__ == "__main__":
    files = asyncio.run(record())
    print(f"{len(files)} histories written to {HISTORIES}")  # noqa: T201
