"""Live on the dev server: an operator pauses and resumes a journey, cancels and terminates runs,
and Trouw's records and `status` follow Temporal."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from tests.e2e.test_slice import e2e_settings, outbox_entries, wait_for
from trouw.domain.control import JOURNEY_PAUSED, cli_actor
from trouw.domain.db.models import JourneyRun, JourneyRunEvent, Message
from trouw.domain.why import explain
from trouw.stack.runtime import Stack, run_stack

pytestmark = pytest.mark.slow

HOLD_SECONDS = 15.0


def purchase(n: int) -> dict[str, Any]:
    return {
        "id": f"web-{n}",
        "type": "purchase",
        "customer": f"op-{n}",
        "order": f"W-{n}",
        "channel": "web",
        "lines": [{"sku": "POT-40", "qty": 1, "unit_price": "29.00", "name": "Terracotta pot"}],
        "profile": {"id": f"op-{n}", "first_name": "Test", "email": f"op{n}@example.com"},
    }


def delivered(n: int) -> dict[str, Any]:
    return {"id": f"dlv-{n}", "type": "delivered", "customer": f"op-{n}", "order": f"W-{n}"}


def run_id(n: int) -> str:
    return f"journey:op-{n}:post_purchase:W-{n}"


async def test_pause_hold_resume_drop_cancel_and_terminate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = e2e_settings(tmp_path).model_copy(
        update={
            "journey_hold_recheck_seconds": 1.0,
            "journey_hold_hours": HOLD_SECONDS / 3600,
            "run_sync_seconds": 1.0,
        }
    )
    stop = asyncio.Event()
    seen: dict[str, Any] = {}
    # The CLI, run in a thread next to the stack, reads the same settings from the environment.
    for name in ("home", "journeys_dir", "templates_dir", "temporal_port", "task_queue"):
        monkeypatch.setenv(f"TROUW_{name.upper()}", str(getattr(settings, name)))
    monkeypatch.setenv("TROUW_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("TROUW_DATABASE_URL", raising=False)

    async def cli(*args: str) -> tuple[int, str]:
        from trouw.commands.cli import run_command

        capsys.readouterr()
        code = await asyncio.to_thread(run_command, list(args))
        return code, capsys.readouterr().out

    def sent(n: int, template: str) -> list[dict[str, Any]]:
        step = {"order_confirmation": "confirmation", "delivery_notice": "delivery_email"}
        return [
            e
            for e in outbox_entries(settings)
            if e["to"] == f"op{n}@example.com"
            and e["message_key"].endswith(f":{step[template]}:email")
        ]

    async def scenario(stack: Stack) -> None:
        engine = stack.services.engine

        def message(n: int, template: str) -> Message | None:
            with Session(engine) as session:
                return session.exec(
                    select(Message).where(
                        Message.customer_id == f"op-{n}", Message.template == template
                    )
                ).first()

        def run(n: int) -> JourneyRun | None:
            with Session(engine) as session:
                return session.exec(
                    select(JourneyRun).where(JourneyRun.workflow_id == run_id(n))
                ).first()

        try:
            from trouw.domain.db.engine import session_scope
            from trouw.ways_in.api.auth import ensure_key

            with session_scope(engine) as session:
                key = ensure_key(session, "e2e-ops", ["admin"])
            async with httpx.AsyncClient(
                base_url=stack.api_url, timeout=30, headers={"Authorization": f"Bearer {key}"}
            ) as http:
                # Two web orders run their post_purchase journey up to the delivery wait.
                for n in (1, 2):
                    assert (await http.post("/v1/events", json=purchase(n))).status_code == 202
                for n in (1, 2):
                    await wait_for(lambda n=n: sent(n, "order_confirmation"))

                async def at_delivery_wait() -> list[dict[str, Any]]:
                    journeys = (await http.get("/v1/admin/journeys")).json()
                    row = next(j for j in journeys if j["journey"] == "post_purchase")
                    steps = {s["step"]: s["runs"] for s in row["steps"]}
                    return journeys if steps.get("wait_delivery") == 2 else []

                deadline = asyncio.get_running_loop().time() + 60
                while not (journeys := await at_delivery_wait()):
                    assert asyncio.get_running_loop().time() < deadline, "no visibility"
                    await asyncio.sleep(0.5)
                seen["journeys"] = journeys

                # Paused: no new run; a running run holds its delivery notice.
                paused = await http.post(
                    "/v1/admin/journeys/post_purchase/pause", json={"reason": "wrong carrier"}
                )
                assert paused.status_code == 200 and paused.json()["changed"] is True
                assert (await http.post("/v1/events", json=purchase(3))).status_code == 202
                await wait_for(lambda: _not_started(engine, "op-3"))
                seen["not_started"] = _not_started(engine, "op-3")
                await http.post("/v1/events", json=delivered(1))
                await wait_for(
                    lambda: (
                        (m := message(1, "delivery_notice")) is not None
                        and m.reason == JOURNEY_PAUSED
                    )
                )
                await asyncio.sleep(2)  # two rechecks: still held
                seen["held_outbox"] = sent(1, "delivery_notice")
                with Session(engine) as session:
                    seen["why_held"] = [
                        m.outcome
                        for m in explain(session, "op-1").messages
                        if m.template == "delivery_notice"
                    ]
                status = (await http.get("/v1/admin/status")).json()
                seen["status_paused"] = {c["name"]: c for c in status["checks"]}

                # Resumed: the held notice goes out at its next recheck.
                resumed = await http.post("/v1/admin/journeys/post_purchase/resume", json={})
                assert resumed.json()["paused"] is False
                await wait_for(lambda: sent(1, "delivery_notice"), within=30)

                # Paused again: a notice held past the hold limit is dropped with its reason.
                await http.post("/v1/admin/journeys/post_purchase/pause", json={})
                await http.post("/v1/events", json=delivered(2))
                await wait_for(
                    lambda: (
                        (m := message(2, "delivery_notice")) is not None and m.state == "suppressed"
                    ),
                    within=HOLD_SECONDS + 45,
                )
                seen["dropped"] = message(2, "delivery_notice")
                seen["dropped_outbox"] = sent(2, "delivery_notice")
                await http.post("/v1/admin/journeys/post_purchase/resume", json={})

                # Cancel one customer's runs through the API; terminate another's in Temporal
                # (the runs are inside the customer workflow: terminating it ends them).
                cancelled = await http.post(
                    "/v1/admin/journeys/post_purchase/cancel",
                    json={"customer": "op-1", "reason": "complaint"},
                )
                seen["cancelled"] = cancelled.json()
                await wait_for(lambda: (r := run(1)) is not None and r.status == "cancelled")
                seen["run1"] = run(1)
                await stack.client.get_workflow_handle("customer:op-2").terminate(reason="by hand")

                # Cancel every reactivation from the CLI: no run is an execution (each waits 180
                # days inside its customer workflow): all still running are ended.
                def held_reactivations() -> list[tuple[str, str, str | None]]:
                    with Session(engine) as session:
                        rows = session.exec(
                            select(JourneyRun).where(JourneyRun.journey == "reactivation")
                        ).all()
                        return sorted((r.workflow_id, r.status, r.end_reason) for r in rows)

                # The sync records each run of the terminated workflow on its own: wait for all
                # of op-2's, not only the first (under load they land in different passes).
                await wait_for(
                    lambda: (
                        (r := run(2)) is not None
                        and r.status == "terminated"
                        and all(
                            status == "terminated"
                            for wid, status, _ in held_reactivations()
                            if wid.startswith("journey:op-2:")
                        )
                    ),
                    within=30,
                )
                seen["run2"] = run(2)

                seen["reactivations"] = held_reactivations()
                seen["cli_cancel"] = await cli(
                    "journey", "cancel", "reactivation", "--all", "--yes", "--reason", "closing"
                )
                await wait_for(
                    lambda: all(status != "running" for _, status, _ in held_reactivations())
                )
                seen["reactivations_after"] = held_reactivations()
                status = (await http.get("/v1/admin/status")).json()
                seen["status"] = status
                seen["cli_status"] = await cli("status")
                seen["cli_journeys"] = await cli("journeys", "--json")
        finally:
            stop.set()

    await asyncio.wait_for(run_stack(settings, stop=stop, on_ready=scenario), timeout=300)

    post = next(j for j in seen["journeys"] if j["journey"] == "post_purchase")
    assert post["running"] == 2 and post["paused"] is None
    assert list(post["versions"].values()) == [2] and post["version"] in post["versions"]
    assert seen["not_started"][0].startswith("journey post_purchase paused since ")
    assert seen["not_started"][0].endswith("by api:e2e-ops (wrong carrier)")
    assert seen["held_outbox"] == [] and seen["why_held"] == ["held"]
    assert seen["status_paused"]["waiting messages"]["summary"] == (
        "0 deferred, 1 held by paused journeys"
    )
    dropped = seen["dropped"]
    assert (dropped.state, dropped.reason) == ("suppressed", JOURNEY_PAUSED)
    assert "longer than the hold limit" in dropped.reason_text
    assert seen["dropped_outbox"] == []
    # the run is inside its customer workflow: no execution to cancel, the workflow told
    assert seen["cancelled"]["cancelled"] == []
    assert seen["cancelled"]["held"] == [run_id(1)]
    assert seen["run1"].end_reason == "cancelled by api:e2e-ops: complaint"
    # the customer workflow terminated: its runs' records follow (the worker's sync)
    assert seen["run2"].end_reason == "by hand"
    held = [wid for wid, status, _reason in seen["reactivations"] if status == "running"]
    assert held and all(
        status == "terminated"
        for wid, status, _ in seen["reactivations"]
        if wid.startswith("journey:op-2:")
    )
    code, out = seen["cli_cancel"]
    assert code == 0, out
    assert "0 running run(s) asked to cancel" in out
    assert (
        f"{len(held)} run(s) inside the customer workflow (or held, not started yet), "
        "ended and recorded as cancelled"
    ) in out
    assert all(f"  {workflow_id}" in out for workflow_id in held)
    assert {reason for wid, _, reason in seen["reactivations_after"] if wid in held} == {
        f"cancelled by {cli_actor()}: closing"
    }
    checks = {c["name"]: c for c in seen["status"]["checks"]}
    assert checks["temporal"]["ok"] and checks["workers"]["ok"], checks
    assert seen["status"]["healthy"] is True, checks
    code, out = seen["cli_status"]
    assert code == 0, out
    assert any(
        line.startswith("ok    workers: task queue trouw-e2e: ") for line in out.splitlines()
    )
    code, out = seen["cli_journeys"]
    journeys = {row["journey"]: row for row in json.loads(out)}
    assert code == 0 and journeys["post_purchase"]["paused"] is None
    assert journeys["post_purchase"]["running"] == 0  # one cancelled, one terminated
    assert journeys["post_purchase"]["recorded_running"] == 0  # and the records say so


def _not_started(engine: Any, customer: str) -> list[str]:
    with Session(engine) as session:
        return [
            row.reason or ""
            for row in session.exec(
                select(JourneyRunEvent).where(
                    JourneyRunEvent.customer_id == customer,
                    JourneyRunEvent.journey == "post_purchase",
                    JourneyRunEvent.kind == "not_started",
                )
            ).all()
        ]
