"""Journeys branch on customer attributes; a personal one never enters a Temporal history."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import select
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.services import Services
from tests.workflows.relaying import purchase, relay
from trouw.domain.db.engine import get_engine, session_scope
from trouw.domain.db.models import JourneyRun
from trouw.domain.ingest import ingest_event
from trouw.language.contracts import customer_workflow_id
from trouw.settings import Settings
from trouw.stack.temporal import binary
from trouw.stack.worker import build_worker

QUEUE = "attributes-test"
CARD = "CARD-7731-SECRET"
# The condition holds a prefix only: the card numbers themselves must not reach the history.
JOURNEY = """
journey: attribute_branches
trigger: {event: purchase}
steps:
  - id: by_points
    branch:
      - if: "customer.attributes.points is not none and customer.attributes.points >= 100"
        goto: by_card
    else: few_points
  - id: few_points
    exit: few points
  - id: by_card
    branch:
      - if: "(customer.attributes.loyalty_card or '').startswith('CARD-77')"
        goto: card_holder
    else: no_card
  - id: card_holder
    exit: card holder
  - id: no_card
    exit: other card
"""

CUSTOMERS = {
    "card-holder": {"points": 250, "loyalty_card": CARD},
    "other-card": {"points": 120, "loyalty_card": "CARD-0001"},
    "few-points": {"points": 10},
}


async def test_branches_on_attributes_and_the_personal_value_stays_out_of_history(
    settings: Settings, tmp_path: Path
) -> None:
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    (journeys / "attribute_branches.yaml").write_text(JOURNEY, encoding="utf-8")
    settings = settings.model_copy(update={"journeys_dir": journeys})
    engine = get_engine(settings.effective_database_url)
    services = Services.from_settings(settings, engine=engine)
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        for customer, attributes in CUSTOMERS.items():
            ingest_event(session, purchase(customer, now, attributes=attributes))
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(binary("temporal-test-server")),
        data_converter=pydantic_data_converter,
    )
    histories: dict[str, str] = {}
    try:
        async with build_worker(env.client, services, task_queue=QUEUE):
            await relay(engine, env.client, QUEUE)
            await env.sleep(timedelta(minutes=5))
            with session_scope(engine) as session:
                ids = list(session.exec(select(JourneyRun.workflow_id)).all())
            for workflow_id in [*map(customer_workflow_id, CUSTOMERS), *ids]:
                history = await env.client.get_workflow_handle(workflow_id).fetch_history()
                histories[workflow_id] = history.to_json()
    finally:
        await env.shutdown()
    with session_scope(engine) as session:
        ended = {
            run.customer_id: (run.status, run.end_reason)
            for run in session.exec(select(JourneyRun)).all()
        }
    assert ended == {
        "card-holder": ("exited", "card holder"),
        "other-card": ("exited", "other card"),
        "few-points": ("exited", "few points"),
    }
    assert len(histories) == 6
    everything = "\n".join(readable(text) for text in histories.values())
    # The non-personal value travels (the branch on points ran in the workflow) ...
    assert '"points":250' in everything
    # ... the personal one never does: not in inputs, results, markers or failures.
    for secret in (CARD, "7731-SECRET", "SECRET", "CARD-0001"):
        assert secret not in everything, secret
    assert '"loyalty_card"' not in everything


def readable(history_json: str) -> str:
    """The history as text with every payload decoded (payloads are base64 in the JSON)."""
    parts = [history_json]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "metadata" in node and "data" in node and isinstance(node["data"], str):
                parts.append(base64.b64decode(node["data"]).decode("utf-8", "replace"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(history_json))
    return "\n".join(part.replace(" ", "") for part in parts)
