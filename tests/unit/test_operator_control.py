"""Operator control, the pure parts and the commands: holds, tallies, queries, pauses, keys."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from tests.conftest import ROOT
from tests.e2e.test_slice import free_port
from trouw.domain.control import ControlError, hold_decision
from trouw.domain.db.models import JourneyControl
from trouw.stack.runs import RunningRun, closed_query, overview, running_query, tally

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
PAUSE = JourneyControl(journey="refill", paused=True, at=NOW - timedelta(hours=2), by="cli:ann")


def test_a_held_message_is_asked_again_after_the_recheck() -> None:
    decision = hold_decision(
        pause=PAUSE,
        held_since=NOW,
        now=NOW,
        limit=timedelta(hours=24),
        recheck=timedelta(minutes=10),
    )
    assert (decision.action, decision.reason) == ("defer", "journey_paused")
    assert decision.until == NOW + timedelta(minutes=10)
    assert decision.text == (
        "journey refill paused since 2026-03-02 08:00 UTC by cli:ann; held until it resumes "
        "(dropped at 2026-03-03 10:00 UTC if still paused)"
    )


def test_the_last_recheck_is_at_the_limit_and_then_it_is_dropped() -> None:
    held_since = NOW - timedelta(hours=24) + timedelta(minutes=3)
    kwargs = {"pause": PAUSE, "limit": timedelta(hours=24), "recheck": timedelta(minutes=10)}
    last = hold_decision(held_since=held_since, now=NOW, **kwargs)  # type: ignore[arg-type]
    assert last.until == NOW + timedelta(minutes=3)
    dropped = hold_decision(  # type: ignore[arg-type]
        held_since=held_since, now=NOW + timedelta(minutes=3), **kwargs
    )
    assert (dropped.action, dropped.reason, dropped.until) == ("suppress", "journey_paused", None)
    assert dropped.text.endswith("longer than the hold limit of 24 h: dropped")


def run(journey: str, version: str, step: str | None, n: int = 0) -> RunningRun:
    return RunningRun(f"journey:c{n}:{journey}:o{n}", None, journey, version, step, f"c{n}")


def test_runs_in_flight_are_counted_per_version_and_step() -> None:
    runs = [
        run("post_purchase", "v1", "wait_delivery", 1),
        run("post_purchase", "v1", "wait_delivery", 2),
        run("post_purchase", "v2", "tips_wait", 3),
        run("post_purchase", "v2", None, 4),
        run("refill", "r1", "wait_empty", 5),
    ]
    counted = tally(runs)
    assert counted["post_purchase"].running == 4
    assert counted["post_purchase"].versions == {"v1": 2, "v2": 2}
    assert counted["post_purchase"].steps == {
        ("v1", "wait_delivery"): 2,
        ("v2", "tips_wait"): 1,
        ("v2", "(starting)"): 1,
    }
    rows = overview(
        {"post_purchase": "v2", "birthday": "b1"},
        {"birthday": (NOW, "cli:ann", "new copy")},
        runs,
        {"post_purchase": 5, "enrichment": 2},
    )
    assert [(r.journey, r.version, r.running, r.recorded_running) for r in rows] == [
        ("birthday", "b1", 0, 0),
        ("enrichment", None, 0, 2),  # held by the customer workflow, not started yet
        ("post_purchase", "v2", 4, 5),
        ("refill", None, 1, 0),  # gone from the catalog, runs still in flight
    ]
    assert rows[0].paused == {"at": NOW.isoformat(), "by": "cli:ann", "reason": "new copy"}
    assert rows[2].steps[0] == {"version": "v1", "step": "wait_delivery", "runs": 2}


def test_visibility_queries_quote_only_safe_values() -> None:
    assert running_query(journey="refill", customer="k-1001") == (
        "WorkflowType = 'Journey' AND ExecutionStatus = 'Running' AND Journey = 'refill' "
        "AND CustomerId = 'k-1001'"
    )
    for bad in ("x' OR 'a'='a", 'x"', "x\\", "x\ny", ""):
        with pytest.raises(ControlError):
            running_query(customer=bad)
    query = closed_query(datetime(2026, 3, 2, 11, 0, tzinfo=UTC))
    assert query.startswith("WorkflowType = 'Journey' AND (ExecutionStatus = 'Failed' OR ")
    assert query.endswith("AND CloseTime >= '2026-03-02T11:00:00Z'")
    assert "CloseTime" not in closed_query(None)
    # runs inside customer workflows: found by the customer workflow's keyword list
    assert running_query(journey="refill", inline=True) == (
        "WorkflowType = 'Customer' AND ExecutionStatus = 'Running' AND Journeys = 'refill'"
    )
    with pytest.raises(ControlError):
        running_query(journey="x' OR 'a'='a", inline=True)
    assert closed_query(None, workflow_type="Customer").startswith("WorkflowType = 'Customer'")


# --- the commands ------------------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("TROUW_HOME", str(home))
    monkeypatch.setenv("TROUW_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("TROUW_JOURNEYS_DIR", str(ROOT / "journeys"))
    monkeypatch.setenv("TROUW_TEMPLATES_DIR", str(ROOT / "templates"))
    monkeypatch.setenv("TROUW_TEMPORAL_PORT", str(free_port()))
    monkeypatch.delenv("TROUW_DATABASE_URL", raising=False)
    monkeypatch.delenv("TEMPORAL_ADDRESS", raising=False)
    return home


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from trouw.commands.cli import run_command

    code = run_command(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_api_keys_are_listed_and_revoked_from_the_cli(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["apikey", "create", "pos-gent"], capsys)[0] == 0
    assert cli(["apikey", "create", "ops", "--scope", "admin"], capsys)[0] == 0
    code, out, _ = cli(["apikey", "list", "--json"], capsys)
    keys = json.loads(out)
    assert code == 0 and [(k["id"], k["name"], k["scopes"]) for k in keys] == [
        (1, "pos-gent", ["ingest"]),
        (2, "ops", ["admin"]),
    ]
    assert all("key" not in k and "key_hash" not in k for k in keys)
    assert cli(["apikey", "revoke", "1"], capsys)[1] == "1 key(s) with id 1 revoked\n"
    code, out, _ = cli(["apikey", "list"], capsys)
    lines = out.splitlines()
    assert "pos-gent  ingest" in lines[0] and "revoked" in lines[0]
    assert lines[1].endswith("active")
    code, _, err = cli(["apikey", "revoke", "1"], capsys)
    assert code == 1 and "no active key with id 1" in err
    assert cli(["apikey", "revoke", "--name", "ops"], capsys)[0] == 0
    assert cli(["apikey", "revoke"], capsys)[0] == 2


def test_journey_pause_and_resume_from_the_cli(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(["journey", "pause", "refill", "--reason", "stock issue"], capsys)
    assert code == 0 and out.startswith("journey refill paused: no new runs;")
    assert "dropped after 24 h held" in out
    assert "already paused" in cli(["journey", "pause", "refill"], capsys)[1]
    code, _, err = cli(["journey", "pause", "nope"], capsys)
    assert code == 1 and "unknown journey 'nope'; the journeys are: birthday," in err
    code, out, _ = cli(["status", "--json"], capsys)
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert code == 1  # no Temporal here
    assert checks["pauses"]["summary"] == "1 journey(s) paused, 0 customer(s) paused"
    assert "stock issue" in checks["pauses"]["details"][0]
    code, out, _ = cli(["journey", "resume", "refill"], capsys)
    assert code == 0 and out.startswith("journey refill resumed")


def test_customer_pause_shows_in_why_and_in_the_export(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trouw.domain.db.engine import get_engine, session_scope
    from trouw.domain.ingest import CustomerIn, upsert_customer

    engine = get_engine(f"sqlite:///{cli_env / 'trouw.db'}")
    with session_scope(engine) as session:
        upsert_customer(session, CustomerIn(id="k-1", email="an@example.com"), at=NOW, source="pos")
    code, out, _ = cli(["customer", "pause", "k-1", "--reason", "complaint"], capsys)
    assert code == 0 and "service and promotional messages paused" in out
    code, out, _ = cli(["why", "k-1"], capsys)
    assert "non-transactional messages paused by cli:" in out and ": complaint" in out
    assert "paused: service and promotional messages are suppressed until resumed" in out
    assert cli(["customer", "resume", "k-1"], capsys)[0] == 0
    code, out, _ = cli(["export", "k-1"], capsys)
    pauses = json.loads(out)["contact_pauses"]
    assert [(p["paused"], p["reason"]) for p in pauses] == [(True, "complaint"), (False, None)]
    code, out, _ = cli(["why", "k-1", "--json"], capsys)
    assert [p["paused"] for p in json.loads(out)["pauses"]] == [True, False]
    assert cli(["customer", "pause", "nobody"], capsys)[0] == 1


def test_cancel_asks_whose_runs(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(["journey", "cancel", "refill"], capsys)
    assert code == 2 and "--customer ID, or --all" in err
    code, _, err = cli(["journey", "cancel", "refill", "--all"], capsys)
    assert code == 1 and "pass --yes" in err  # not a terminal
    code, _, err = cli(["journey", "cancel", "refill", "--customer", "k-1"], capsys)
    assert code == 1 and "cannot reach Temporal" in err


def test_held_candidates_are_recorded_running_runs_that_are_no_execution(engine: Engine) -> None:
    from trouw.domain.db.engine import session_scope
    from trouw.domain.db.models import JourneyRun
    from trouw.stack.runs import held_candidates

    rows = [
        ("c1", "reactivation", "journey:c1:reactivation:o1", "running"),  # held
        ("c1", "reactivation", "journey:c1:reactivation:o0", "exited"),  # ended
        ("c1", "refill", "journey:c1:refill:o1:X", "running"),  # another journey
        ("c2", "reactivation", "journey:c2:reactivation:o2", "running"),  # running execution
        ("c3", "reactivation", "journey:c3:reactivation:o3", "running"),  # held
    ]
    with session_scope(engine) as session:
        for customer, journey, workflow_id, status in rows:
            session.add(
                JourneyRun(
                    workflow_id=workflow_id,
                    customer_id=customer,
                    journey=journey,
                    version="v1",
                    reentry_key=workflow_id,
                    event_source_id="evt",
                    started_at=NOW,
                    status=status,
                )
            )
    running = ["journey:c2:reactivation:o2"]
    with session_scope(engine) as session:
        every = held_candidates(session, journey="reactivation", customer=None, running=running)
        one = held_candidates(session, journey="reactivation", customer="c1", running=running)
    assert every == {
        "c1": {"journey:c1:reactivation:o1"},
        "c3": {"journey:c3:reactivation:o3"},
    }
    assert one == {"c1": {"journey:c1:reactivation:o1"}}
