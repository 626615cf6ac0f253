"""A bad journey file is refused loudly and alone: the last good version and every other journey
keep running, and one journey's failing trigger fails only that journey."""

from __future__ import annotations

import logging
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from activities.journey_runs import JourneyActivities
from activities.services import Services, journey_check
from tests.conftest import ROOT
from tests.e2e.test_slice import free_port
from tests.purchases import ingest_purchase
from trouw.domain.db.models import JourneyRun
from trouw.language.contracts import CustomerEvent, MatchJourneysInput
from trouw.language.journey.catalog import STATE_FILE, JourneyCatalog, read_state
from trouw.language.journey.model import Journey
from trouw.language.journey.triggers import plan_runs
from trouw.settings import Settings

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    target = tmp_path / "journeys"
    target.mkdir()
    for path in (ROOT / "journeys").glob("*.yaml"):
        shutil.copy(path, target / path.name)
    return target


def catalog_for(folder: Path, settings: Settings) -> JourneyCatalog:
    return JourneyCatalog(
        folder, check=journey_check(settings), state_file=settings.home / STATE_FILE
    )


def touch(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    stamp = path.stat().st_mtime + 5  # a later mtime even on coarse file systems
    os.utime(path, (stamp, stamp))


def test_yaml_syntax_error_keeps_the_last_good_version(
    folder: Path, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    catalog = catalog_for(folder, settings)
    before = catalog.journeys()
    assert sorted(before) == [
        "birthday",
        "enrichment",
        "loyalty_level",
        "loyalty_welcome",
        "points_expiring",
        "post_purchase",
        "reactivation",
        "referral",
        "referral_reward",
        "refill",
        "voucher_expiry",
    ]
    broken = folder / "refill.yaml"
    touch(broken, broken.read_text() + "  - id: oops\n    wait: [3d\n")
    with caplog.at_level(logging.ERROR, logger="trouw.journeys"):
        after = catalog.journeys()
    assert after == before  # refill still runs its last good version; the others are untouched
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors[0].startswith(f"journey file refused: {broken}:")
    assert "YAML syntax" in errors[0]
    assert errors[-1] == (
        f"journey file {broken} refused (1 problem(s)); journey refill keeps running version "
        f"{before['refill'].version}"
    )
    refused = catalog.state.refused
    assert [(item.file, item.journey, item.version) for item in refused] == [
        (str(broken), "refill", before["refill"].version)
    ]


def test_a_restarted_worker_still_runs_the_last_good_version(
    folder: Path, settings: Settings
) -> None:
    good = catalog_for(folder, settings).journeys()
    touch(folder / "birthday.yaml", "journey: birthday\ntrigger: {event: purchase}\nsteps: []\n")
    restarted = catalog_for(folder, settings)
    assert restarted.journeys()["birthday"].version == good["birthday"].version
    state = read_state(settings.home / STATE_FILE)
    assert state is not None
    assert [item.file for item in state[0].refused] == [str(folder / "birthday.yaml")]
    assert state[0].refused[0].line() == (
        f"REFUSED  {folder / 'birthday.yaml'}: 1 problem(s); birthday: last good version "
        f"{good['birthday'].version} keeps running"
    )


def test_a_new_bad_file_starts_nothing_and_the_rest_runs(folder: Path, settings: Settings) -> None:
    catalog = catalog_for(folder, settings)
    touch(
        folder / "winback.yaml",
        "journey: winback\ntrigger: {event: purchase}\nsteps:\n  - id: a\n    next: nowhere\n"
        "    wait: 1d\n",
    )
    journeys = catalog.journeys()
    assert "winback" not in journeys and "post_purchase" in journeys
    (item,) = catalog.state.refused
    assert item.problems == [
        f"{folder / 'winback.yaml'}:5:11: step a: next names unknown step 'nowhere'"
    ]
    assert item.line().endswith("winback: not running (no good version yet)")


def test_fixed_file_is_loaded_again(folder: Path, settings: Settings) -> None:
    catalog = catalog_for(folder, settings)
    text = (folder / "enrichment.yaml").read_text()
    old = catalog.journeys()["enrichment"]
    touch(folder / "enrichment.yaml", text.replace("wait: 30d", "wait: 30 days"))
    assert catalog.journeys()["enrichment"] == old
    touch(folder / "enrichment.yaml", text.replace("wait: 30d", "wait: 20d"))
    new = catalog.journeys()["enrichment"]
    assert new.version != old.version and catalog.state.refused == []


def journey(name: str, when: str) -> Journey:
    return Journey.model_validate(
        {
            "journey": name,
            "trigger": {"event": "purchase", "when": when},
            "steps": [{"id": "done", "exit": "done"}],
        }
    )


def test_a_failing_trigger_condition_fails_that_journey_alone() -> None:
    event = CustomerEvent(id="e1", type="purchase", customer_id="c1", at=NOW, order_id="o1")
    context = {"customer": {"id": "c1"}, "history": {"orders": 1}, "order": None}
    plans, failures = plan_runs(
        [journey("broken", "history.nope > 2"), journey("fine", "history.orders == 1")],
        event,
        context,
        NOW,
    )
    assert [plan.journey.name for plan in plans] == ["fine"]
    assert [(f.journey.name, f.reason) for f in failures] == [
        ("broken", "trigger: 'history.nope > 2': 'dict object' has no attribute 'nope'")
    ]


def test_match_journeys_records_the_failure_and_starts_the_rest(
    engine: Engine, folder: Path, tmp_path: Path
) -> None:
    (folder / "spoiler.yaml").write_text(
        "journey: spoiler\ntrigger: {event: purchase, when: 'order.total > \"a lot\"'}\n"
        "steps:\n  - {id: done, exit: done}\n"
    )
    settings = Settings(
        home=tmp_path / "home",
        journeys_dir=folder,
        templates_dir=ROOT / "templates",
        signing_keys=["k"],
    )
    services = Services.from_settings(settings, engine=engine)

    event = ingest_purchase(
        engine,
        id="e1",
        customer="c1",
        order="o1",
        lines=[{"sku": "LAWN-10", "unit_price": "24.95"}],
        at=NOW,
    )
    result = JourneyActivities(services)._match(
        MatchJourneysInput(customer_id="c1", event=event, now=NOW)
    )
    assert "post_purchase" in {plan.journey for plan in result.runs}
    with Session(engine) as session:
        failed = session.exec(select(JourneyRun).where(JourneyRun.status == "failed")).all()
    assert [(run.journey, run.end_reason) for run in failed] == [
        (
            "spoiler",
            "trigger: 'order.total > \"a lot\"': '>' not supported between instances of "
            "'float' and 'str'",
        )
    ]


def test_status_command_shows_the_refused_file(
    folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from trouw.commands.cli import run_command

    monkeypatch.setenv("TROUW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TROUW_JOURNEYS_DIR", str(folder))
    monkeypatch.setenv("TROUW_TEMPLATES_DIR", str(ROOT / "templates"))
    settings = Settings(
        home=tmp_path / "home", journeys_dir=folder, templates_dir=ROOT / "templates"
    )
    catalog_for(folder, settings).journeys()
    touch(folder / "refill.yaml", "journey: refill\n")
    catalog_for(folder, settings).journeys()
    monkeypatch.setenv("TROUW_TEMPORAL_PORT", str(free_port()))  # no Temporal: not this test's
    assert run_command(["status"]) == 1
    out = capsys.readouterr().out.splitlines()
    loaded = len(list(folder.glob("*.yaml"))) - 1
    assert out[0] == f"FAIL  journeys: {loaded} journey file(s) loaded, 1 refused"
    assert out[1].startswith(f"      journeys in {folder}, as the worker saw them at ")
    assert (
        f"      REFUSED  {folder / 'refill.yaml'}: 2 problem(s); refill: last good version"
        in "\n".join(out)
    )
    assert f"        {folder / 'refill.yaml'}:1:1: missing key 'trigger'" in out
