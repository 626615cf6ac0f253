"""`trouw simulate` and `trouw validate` as a marketer runs them: output, errors, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

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
        [sys.executable, "-m", "trouw.cli", *args],
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
    first = timeline[0]
    assert first["at"] == "2026-03-02T09:00:00+01:00"
    assert (first["customer"], first["journey"], first["step"], first["outcome"]) == (
        "c1",
        "post_purchase",
        "confirmation",
        "sent",
    )
    assert first["subject"] == "Bedankt voor je bestelling o1"
    page = (tmp_path / "page/index.html").read_text()
    assert "Bedankt voor je bestelling o1" in page and 'href="messages/' in page


def test_simulate_in_processes_gives_the_same_timeline() -> None:
    one = trouw("simulate", "journeys/scenarios/garden_centre.yaml", "--json", "--processes", "1")
    two = trouw("simulate", "journeys/scenarios/garden_centre.yaml", "--json", "--processes", "2")
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    assert json.loads(one.stdout) == json.loads(two.stdout)


def test_simulate_table_by_default() -> None:
    done = trouw("simulate", "journeys/scenarios/garden_centre.yaml")
    assert done.returncode == 0, done.stderr
    assert "message decisions" in done.stdout and "post_purchase" in done.stdout


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
    assert ok.returncode == 0 and "6 journey(s) valid" in ok.stdout


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
    assert "10 template(s) render in every locale" in done.stdout
