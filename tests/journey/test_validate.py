"""Validation reports every problem as file:line:col: message, with text a marketer can act on."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.conftest import ROOT
from trouw.journey.loader import JourneyError, load_journey
from trouw.journey.validate import validate_paths

HEADER = """\
journey: test_journey
trigger: {event: purchase}
steps:
"""


def problems_for(tmp_path: Path, body: str, *, header: str = HEADER) -> list[str]:
    path = tmp_path / "test_journey.yaml"
    path.write_text(header + textwrap.dedent(body), encoding="utf-8")
    _loaded, problems = validate_paths(
        [path], templates_dir=ROOT / "templates", activities=["issue_voucher"]
    )
    return [str(problem).replace(str(tmp_path) + "/", "") for problem in problems]


def test_unknown_key_points_at_the_key(tmp_path: Path) -> None:
    found = problems_for(
        tmp_path,
        """\
        - id: wait_delivery
          wait_for: delivered
          timout: 14d
        """,
    )
    assert "test_journey.yaml:6:3: step wait_delivery: unknown key 'timout'" in found
    assert "test_journey.yaml:4:3: step wait_delivery: missing key 'timeout'" in found


def test_bad_duration(tmp_path: Path) -> None:
    found = problems_for(tmp_path, "- id: pause\n  wait: 3 days\n")
    assert found == [
        "test_journey.yaml:5:9: step pause: wait: bad duration '3 days': write it like 3d, 12h, 90m or 2w"
    ]


def test_step_without_action(tmp_path: Path) -> None:
    found = problems_for(tmp_path, "- id: oops\n  sned: email\n  template: care_tips\n")
    assert found == [
        "test_journey.yaml:4:3: step oops: a step needs exactly one action: send, wait, "
        "wait_until, wait_for, branch, split, update, call, goal, exit"
    ]


def test_unknown_template_and_channel(tmp_path: Path) -> None:
    found = problems_for(
        tmp_path,
        """\
        - id: thanks
          send: email
          template: thank_you_card
        - id: tips
          send: sms
          template: care_tips
        """,
    )
    assert found == [
        "test_journey.yaml:6:13: step thanks: unknown email template 'thank_you_card'",
        "test_journey.yaml:9:13: step tips: unknown sms template 'care_tips' (it exists for email)",
    ]


def test_unknown_activity(tmp_path: Path) -> None:
    found = problems_for(tmp_path, "- id: crm\n  call: push_to_crm\n")
    assert found == [
        "test_journey.yaml:5:9: step crm: unknown activity 'push_to_crm' (registered: issue_voucher)"
    ]


def test_unreachable_step_and_unknown_target(tmp_path: Path) -> None:
    found = problems_for(
        tmp_path,
        """\
        - id: first
          send: email
          template: care_tips
          next: last
        - id: orphan
          send: email
          template: review_request
        - id: last
          exit: done
        """,
    )
    assert found == ["test_journey.yaml:8:7: step orphan: unreachable"]
    found = problems_for(tmp_path, "- id: first\n  wait: 1d\n  next: nowhere\n")
    assert found == ["test_journey.yaml:6:9: step first: next names unknown step 'nowhere'"]


def test_service_step_after_cutoff(tmp_path: Path) -> None:
    header = HEADER.replace("steps:", "settings: {service_cutoff: 30d}\nsteps:")
    found = problems_for(
        tmp_path,
        """\
        - id: long_wait
          wait: 45d
        - id: tips
          send: email
          template: care_tips
        """,
        header=header,
    )
    assert found == [
        "test_journey.yaml:8:9: step tips: a service message that can only happen after the "
        "service cutoff (30d) would never be sent"
    ]


def test_expression_that_does_not_parse(tmp_path: Path) -> None:
    found = problems_for(
        tmp_path,
        """\
        - id: choose
          branch:
            - if: "order.total >"
              goto: done
        - id: done
          exit: done
        """,
    )
    assert len(found) == 1
    assert found[0].startswith("test_journey.yaml:6:11: step choose: if: expression does not parse")


def test_duplicate_key_and_yaml_syntax(tmp_path: Path) -> None:
    found = problems_for(tmp_path, "- id: a\n  wait: 1d\n  wait: 2d\n")
    assert found == ["test_journey.yaml:6:3: duplicate key 'wait'"]
    found = problems_for(tmp_path, "- id: a\n  wait: [1d\n")
    assert len(found) == 1 and found[0].startswith("test_journey.yaml:")
    assert "YAML syntax" in found[0]


def test_problem_names_the_file_in_the_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("journey: Bad Name\ntrigger: {event: purchase}\nsteps: []\n")
    with pytest.raises(JourneyError) as caught:
        load_journey(path)
    text = str(caught.value)
    assert f"{path}:1:10: journey: String should match pattern" in text
    assert f"{path}:3:8: steps: List should have at least 1 item" in text


@pytest.mark.parametrize(
    "path",
    sorted((ROOT / "journeys").glob("*.yaml"))
    + sorted((ROOT / "journeys/examples").glob("*.yaml")),
)
def test_shipped_and_example_journeys_are_valid(path: Path) -> None:
    loaded, problems = validate_paths(
        [path], templates_dir=ROOT / "templates", activities=["issue_voucher"]
    )
    assert [str(p) for p in problems] == []
    assert len(loaded) == 1


def test_readme_examples_are_files() -> None:
    import re

    readme = (ROOT / "journeys/README.md").read_text()
    named = set(re.findall(r"`(examples/[a-z_]+\.yaml)`", readme))
    assert named, "the README should point at its example files"
    for name in named:
        assert (ROOT / "journeys" / name).is_file(), name
    on_disk = {f"examples/{p.name}" for p in (ROOT / "journeys/examples").glob("*.yaml")}
    assert on_disk <= named, f"examples not shown in the README: {sorted(on_disk - named)}"
