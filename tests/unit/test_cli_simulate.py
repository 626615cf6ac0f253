"""`trouw simulate` and `trouw validate` as a marketer runs them: output, errors, exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from tests.conftest import ROOT
from tests.workflows.scenario import run, write_scenario
from trouw.commands.simulate import (
    RunEntry,
    SimulationResult,
    calendar_day,
    load_scenario,
    records,
    write_html,
)

CONTRACT_KEYS = {
    "at",
    "customer",
    "journey",
    "step",
    "channel",
    "template",
    "category",
    "outcome",
    "reason",
    "subject",
}


def trouw(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TROUW_")}
    return subprocess.run(
        [sys.executable, "-m", "trouw.commands.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_simulate_json_follows_the_contract(tmp_path: Path) -> None:
    done = trouw(
        "simulate",
        "journeys/scenarios/garden_centre.yaml",
        "--json",
        "--html",
        str(tmp_path / "page"),
    )
    assert done.returncode == 0, done.stderr
    timeline = json.loads(done.stdout)
    assert timeline and all(CONTRACT_KEYS <= set(entry) for entry in timeline)
    messages = [entry for entry in timeline if entry["kind"] == "message"]
    first = messages[0]
    assert first["at"] == "2026-03-02T09:00:00+01:00"
    assert (first["customer"], first["journey"], first["step"], first["outcome"]) == (
        "c1",
        "post_purchase",
        "confirmation",
        "sent",
    )
    assert first["subject"] == "Bedankt voor je bestelling o1"
    assert all(entry["outcome"] in ("sent", "suppressed") for entry in messages)
    assert all((entry["reason"] is None) == (entry["outcome"] == "sent") for entry in messages)
    # every run outcome is a record of its own: started, branch, skip, tag, exit (and why), end
    runs = {
        (e["customer"], e["journey"], e["step"], e["outcome"], e["reason"])
        for e in timeline
        if e["kind"] == "run"
    }
    assert ("c1", "post_purchase", None, "started", "purchase event sim-1") in runs
    assert ("c1", "post_purchase", "channel", "branched", "case 1 → wait_delivery") in runs
    assert ("c2", "post_purchase", "care_tips", "skipped", "`when` is false") in runs
    assert ("c1", "refill", "wait_empty", "exited", "exit on unsubscribe") in runs
    assert ("c3", "post_purchase", "wait_delivery", "exited", "exit on returned") in runs
    assert ("c3", "reactivation", "mark_inactive", "tagged", "+inactive") in runs
    assert ("c1", "post_purchase", None, "completed", None) in runs
    assert ("c2", "birthday", None, "not_started", "the trigger date is empty") in runs
    skipped = next(e for e in timeline if e["outcome"] == "skipped")
    assert skipped["location"] == "journeys/post_purchase.yaml:65:11"
    assert skipped["expression"] == "products | selectattr('care') | list | length > 0"
    page = (tmp_path / "page/index.html").read_text()
    assert "Bedankt voor je bestelling o1" in page and 'href="messages/' in page
    assert "exit on unsubscribe" in page and "run outcomes" in page


def test_simulate_in_processes_gives_the_same_timeline() -> None:
    one = trouw("simulate", "journeys/scenarios/garden_centre.yaml", "--json", "--processes", "1")
    two = trouw("simulate", "journeys/scenarios/garden_centre.yaml", "--json", "--processes", "2")
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    assert json.loads(one.stdout) == json.loads(two.stdout)


def test_simulate_table_by_default() -> None:
    done = trouw("simulate", "journeys/scenarios/garden_centre.yaml")
    assert done.returncode == 0, done.stderr
    assert "message decisions" in done.stdout and "post_purchase" in done.stdout
    assert "run outcomes" in done.stdout and "not_started" in done.stdout


def test_bad_scenario_names_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "start: 2026-03-02T09:00:00+01:00\n"
        "customers:\n"
        "  - {id: c1, email: a@example.com}\n"
        "events:\n"
        "  - {at: soon, type: purchase, customer: c1}\n"
        "  - {at: 1d, type: delivered, customer: c7, order: o1}\n"
    )
    done = trouw("simulate", str(path))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert (
        lines[0]
        == f"{path}:5:10: events #1: at: 'soon' is neither an offset (2d4h) nor a timestamp"
    )
    assert "Traceback" not in done.stderr


def test_bad_scenario_reference_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "ref.yaml"
    path.write_text(
        "start: 2026-03-02T09:00:00+01:00\n"
        "customers:\n"
        "  - {id: c1, email: a@example.com}\n"
        "events:\n"
        "  - {at: 1d, type: delivered, customer: c7, order: o1}\n"
    )
    done = trouw("simulate", str(path))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[0] == f"{path}:5:41: events #1: unknown customer 'c7'"


def test_validate_reports_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "j.yaml").write_text(
        "journey: j\ntrigger: {event: purchase}\nsteps:\n  - {id: a, wait: soon}\n"
    )
    done = trouw("validate", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == (
        f"{tmp_path}/j.yaml:4:19: step a: wait: bad duration 'soon': write it like 3d, 12h, 90m or 2w"
    )
    ok = trouw("validate")
    assert ok.returncode == 0 and "11 journey(s) valid" in ok.stdout


def test_preview_prints_subject_size_and_sms_segments(tmp_path: Path) -> None:
    done = trouw("preview", "refill_reminder", "--locale", "fr-BE", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "email refill_reminder (fr-BE)" in done.stdout
    assert "subject:" in done.stdout and "segments:" in done.stdout
    assert (tmp_path / "refill_reminder.fr-BE.html").is_file()
    assert (tmp_path / "refill_reminder.fr-BE.sms.txt").is_file()
    unknown = trouw("preview", "no_such_template", "--out", str(tmp_path))
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("error: unknown template 'no_such_template'")


def test_templates_check_passes_on_the_shipped_templates() -> None:
    done = trouw("templates", "check")
    assert done.returncode == 0, done.stderr
    assert "17 template(s) render in every locale" in done.stdout


FAILING = {
    "ok.yaml": """\
journey: ok
trigger: {event: purchase}
steps:
  - {id: thanks, send: email, template: order_confirmation, category: transactional}
""",
    "by_trigger.yaml": """\
journey: by_trigger
trigger:
  event: purchase
  when: "order.total / 0 > 1"
steps:
  - {id: thanks, send: email, template: order_confirmation, category: transactional}
""",
    "by_step.yaml": """\
journey: by_step
trigger: {event: purchase}
settings: {category: service}
steps:
  - id: pause
    wait: 1d
  - id: check
    branch:
      - if: "1 / (order.lines | length - 1) > 0"
        goto: pause
""",
}
ONE_PURCHASE = """\
start: 2026-03-02T09:00:00+01:00
until: 10d
customers:
  - {id: c1, first_name: Bart, email: bart@example.com}
  - {id: c2, first_name: Fien, email: fien@example.com}
products:
  - {sku: ROSE-01, name: Klimroos, price: 14.50}
events:
  - {at: 0d, type: purchase, customer: c1, order: o1, channel: pos, lines: [{sku: ROSE-01}]}
  - {at: 0d, type: purchase, customer: c2, order: o2, channel: pos, lines: [{sku: ROSE-01}]}
"""


def test_a_failing_run_is_one_line_with_file_line_and_expression_and_exit_1(
    tmp_path: Path,
) -> None:
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    for name, text in FAILING.items():
        (journeys / name).write_text(text)
    scenario = tmp_path / "s.yaml"
    scenario.write_text(ONE_PURCHASE)
    done = trouw("simulate", str(scenario), "--journeys", str(journeys), "--json")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"{journeys}/by_trigger.yaml:4:9: journey by_trigger: trigger: "
        "'order.total / 0 > 1': float division by zero (2 customers)",
        f"{journeys}/by_step.yaml:9:13: journey by_step: step check: "
        "'1 / (order.lines | length - 1) > 0': division by zero (2 customers)",
    ]
    records = json.loads(done.stdout)
    # the other journey of the same purchase is not affected
    sent = [(r["customer"], r["journey"]) for r in records if r["outcome"] == "sent"]
    assert sent == [("c1", "ok"), ("c2", "ok")]
    failed = [r for r in records if r["outcome"] == "failed"]
    assert [(r["customer"], r["journey"], r["step"], r["day"]) for r in failed] == [
        ("c1", "by_trigger", None, 0),
        ("c2", "by_trigger", None, 0),
        ("c1", "by_step", "check", 1),
        ("c2", "by_step", "check", 1),
    ]
    assert all(CONTRACT_KEYS <= set(r) for r in records)


NIGHT = """\
journey: night
trigger: {event: purchase}
steps:
  - {id: notice, send: sms, template: delivery_notice, category: transactional}
"""


def test_deferred_message_keeps_its_reason_and_days_are_calendar_days(tmp_path: Path) -> None:
    """A purchase at 22:30: the SMS waits for 08:00 the next day. That is 23 hours after the
    scenario's start (09:00), yet day 1 in the customer's calendar."""
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    (journeys / "night.yaml").write_text(NIGHT)
    path = write_scenario(
        tmp_path / "s.yaml",
        customers=[{"id": "n1", "first_name": "Nele", "phone": "+32470000009"}],
        events=[
            {
                "at": "13h30m",
                "type": "purchase",
                "customer": "n1",
                "order": "o9",
                "channel": "web",
                "lines": [{"sku": "ROSE-01"}],
            }
        ],
        until="3d",
    )
    _scenario, result = asyncio.run(run(path, journeys, ROOT / "templates"))
    [sms] = result.timeline
    assert (sms.at, sms.outcome, sms.reason, sms.day) == (
        "2026-03-03T08:00:00+01:00",
        "sent",
        None,
        1,
    )
    assert sms.deferred is not None
    assert (sms.deferred["at"], sms.deferred["reason"]) == (
        "2026-03-02T22:30:00+01:00",
        "quiet_hours",
    )
    [record] = [r for r in records(result) if r["kind"] == "message"]
    assert record["deferred"]["reason"] == "quiet_hours"


def test_calendar_day_counts_dates_in_the_customers_zone() -> None:
    start = datetime.fromisoformat("2026-03-02T09:00:00+01:00")
    brussels, new_york = ZoneInfo("Europe/Brussels"), ZoneInfo("America/New_York")
    late = datetime.fromisoformat("2026-03-03T02:00:00+01:00")  # 17 hours later
    assert calendar_day(late, start, brussels) == 1
    assert calendar_day(late, start, new_york) == 0  # still 2 March, 20:00, in New York
    assert calendar_day(start + timedelta(hours=47), start, brussels) == 2  # 08:00 on 4 March
    assert calendar_day(start - timedelta(hours=1), start, brussels) == 0


def test_html_page_is_autoescaped_and_shows_run_outcomes(tmp_path: Path) -> None:
    scenario = load_scenario(Path(ROOT / "journeys/scenarios/garden_centre.yaml"))
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    result = SimulationResult(
        timeline=[],
        outbox_dir=outbox,
        seconds=0.1,
        workdir=tmp_path,
        runs=[
            RunEntry(
                at="2026-03-02T09:00:00+01:00",
                customer="c1",
                journey="promo",
                step="offer",
                outcome="skipped",
                reason="`when` is false",
                workflow_id="journey:c1:promo:o1",
                expression="order.total < 50 and '<script>' != ''",
            ),
            RunEntry(
                at="2026-03-03T09:00:00+01:00",
                customer="c1",
                journey="promo",
                step="check",
                outcome="failed",
                reason="step check: '<b>' is undefined",
                workflow_id="journey:c1:promo:o1",
                location="journeys/promo.yaml:9:13",
                day=1,
            ),
        ],
    )
    page = write_html(result, scenario, tmp_path / "page").read_text()
    assert "<script>" not in page and "<b>" not in page
    assert "order.total &lt; 50 and &#39;&lt;script&gt;&#39; != &#39;&#39;" in page
    assert (
        "journeys/promo.yaml:9:13: journey promo: step check: &#39;&lt;b&gt;&#39; is undefined"
        in page
    )
    assert "0 message decisions, 2 run outcomes" in page
    assert '<tr class="run failed"><td>1</td>' in page
