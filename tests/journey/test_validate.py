"""Validation reports every problem as file:line:col: message, with text a marketer can act on."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from activities.custom import CUSTOM_ACTIVITY_NAMES
from tests.conftest import ROOT
from trouw.domain.checks.validate import validate_paths
from trouw.language.journey.loader import JourneyError, load_journey

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
        [path], templates_dir=ROOT / "templates", activities=sorted(CUSTOM_ACTIVITY_NAMES)
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


# --- what broke production and passed validate before (issue 9) ------------------------------


def test_unknown_event_types_everywhere(tmp_path: Path) -> None:
    header = """\
journey: test_journey
trigger: {event: purchse}
settings:
  exit_on:
    - {event: unsubscrbe}
  goals:
    - {event: parchase, name: bought}
steps:
"""
    found = problems_for(
        tmp_path,
        """\
        - id: waiting
          wait_for: delivred
          timeout: 3d
        - id: survey
          wait_for: custom:survey_answered
          match: any
          timeout: 3d
        - id: other
          wait_for: zzz
          timeout: 3d
        """,
        header=header,
    )
    assert found == [
        "test_journey.yaml:2:18: trigger: unknown event 'purchse' (did you mean 'purchase'?)",
        "test_journey.yaml:5:15: exit_on #1: unknown event 'unsubscrbe' "
        "(did you mean 'unsubscribe'?)",
        "test_journey.yaml:7:15: goals #1: unknown event 'parchase' (did you mean 'purchase'?)",
        "test_journey.yaml:10:13: step waiting: wait_for: unknown event 'delivred' "
        "(did you mean 'delivered'?)",
        "test_journey.yaml:13:13: step survey: wait_for: unknown event "
        "'custom:survey_answered': declare it under custom_events in the folder's "
        "_settings.yaml",
        "test_journey.yaml:17:13: step other: wait_for: unknown event 'zzz' (known: bounce, "
        "delivered, level_reached, next_order_expected, opt_in, opt_out, points_changed, "
        "purchase, referral_converted, register, returned, review, segment_entered, sms_stop, "
        "unsubscribe, voucher_expiring, voucher_issued, voucher_redeemed; custom events are "
        "custom:<name>, "
        "declared in _settings.yaml)",
    ]


def test_custom_events_declared_in_settings_file(tmp_path: Path) -> None:
    (tmp_path / "_settings.yaml").write_text("custom_events:\n  survey_answered: {score: number}\n")
    found = problems_for(
        tmp_path,
        """\
        - id: survey
          wait_for: custom:survey_answered
          match: any
          when: "event.score >= 4 and event.scroe"
          timeout: 3d
        """,
    )
    assert found == [
        "test_journey.yaml:7:9: step survey: when: unknown name 'event.scroe' "
        "(did you mean 'event.score'?)"
    ]


def test_bad_settings_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "_settings.yaml").write_text("custom_events:\n  survey: {score: integer}\n")
    found = problems_for(tmp_path, "- {id: done, exit: done}\n")
    assert found == [
        "_settings.yaml:2:19: score: Input should be 'text', 'number', 'bool', "
        "'date', 'datetime' or 'any'"
    ]


def test_unknown_names_in_conditions(tmp_path: Path) -> None:
    header = """\
journey: test_journey
trigger: {event: purchase, when: "custmer.opt_in.email"}
settings:
  exit_on:
    - {event: voucher_redeemed, when: "event.code == trigger.code"}
steps:
"""
    found = problems_for(
        tmp_path,
        """\
        - id: choose
          branch:
            - if: "history.order > 1"
              goto: done
            - if: "customer.attributes.points > 100"
              goto: done
        - id: tips
          send: email
          template: care_tips
          when: "products | selectattr('car') | list"
        - id: remember
          update:
            attributes: {first: "history.first_order"}
        - id: done
          exit: done
        """,
        header=header,
    )
    assert found == [
        "test_journey.yaml:2:34: trigger: when: unknown name 'custmer' (did you mean 'customer'?)",
        "test_journey.yaml:5:39: exit_on #1: when: unknown name 'trigger.code' "
        "(trigger has: at, channel, order_id, store, type)",
        "test_journey.yaml:9:11: step choose: if: unknown name 'history.order' "
        "(did you mean 'history.orders'?)",
        "test_journey.yaml:11:11: step choose: if: unknown name 'customer.attributes.points' "
        "(nothing is declared under customer.attributes)",
        "test_journey.yaml:16:9: step tips: when: unknown name 'products[].car' "
        "(did you mean 'products[].care'?)",
        "test_journey.yaml:19:25: step remember: first: unknown name 'history.first_order' "
        "(did you mean 'history.first_order_at'?)",
    ]


def test_names_bound_by_the_journey_are_known(tmp_path: Path) -> None:
    header = """\
journey: test_journey
trigger:
  event: purchase
  for_each: "order.lines | selectattr('product.consumption_days') | list"
  as: line
steps:
"""
    found = problems_for(
        tmp_path,
        """\
        - id: voucher
          call: issue_voucher
          as: voucher
        - id: delivered
          wait_for: delivered
          timeout: 3d
        - id: choose
          branch:
            - if: "line.product.consumption_days > 30 and voucher.code and events.delivered.at"
              goto: done
            - if: "line.product.nmae or voucher.cde"
              goto: done
        - id: done
          exit: done
        """,
        header=header,
    )
    assert found == [
        "test_journey.yaml:17:11: step choose: if: unknown name 'line.product.nmae' "
        "(did you mean 'line.product.name'?)",
        "test_journey.yaml:17:11: step choose: if: unknown name 'voucher.cde' "
        "(did you mean 'voucher.code'?)",
    ]


def test_step_category_weaker_than_its_template(tmp_path: Path) -> None:
    found = problems_for(
        tmp_path,
        """\
        - id: reminder
          send: email
          template: voucher_expiry
        - id: again
          send: email
          template: birthday
          category: service
        - id: stricter
          send: email
          template: order_confirmation
          category: service
        """,
    )
    assert found == [
        "test_journey.yaml:6:13: step reminder: template 'voucher_expiry' is promotional, but "
        "the step sends it as service (the journey's category); set `category: promotional`",
        "test_journey.yaml:10:13: step again: category service is weaker than template "
        "'birthday' (promotional); a step may only make it stricter",
    ]


def copied_templates(tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", target)
    return target


def test_template_without_category_and_with_an_unknown_name(tmp_path: Path) -> None:
    templates = copied_templates(tmp_path)
    (templates / "sms/refill_reminder/template.yaml").unlink()
    text = templates / "sms/delivery_notice/text.en.txt"
    text.write_text(text.read_text().replace("{{ order.name }}", "{{ order.number }}"))
    path = tmp_path / "test_journey.yaml"
    path.write_text(
        HEADER
        + "- {id: notice, send: sms, template: delivery_notice, category: transactional}\n"
        + "- {id: refill, send: sms, template: refill_reminder}\n"
    )
    _loaded, problems = validate_paths([path], templates_dir=templates, activities=[])
    assert [str(p).replace(str(tmp_path) + "/", "") for p in problems] == [
        "test_journey.yaml:4:37: step notice: template templates/sms/delivery_notice/"
        "text.en.txt:1: unknown name 'order.number' (did you mean 'order.name'?)",
        "test_journey.yaml:5:37: step refill: sms template 'refill_reminder' declares no "
        "category: add `category: transactional|service|promotional` to its template.yaml",
    ]


def test_all_problems_of_a_file_that_does_not_parse(tmp_path: Path) -> None:
    header = HEADER.replace("steps:", "settings: {service_cutoff: 30d}\nsteps:")
    found = problems_for(
        tmp_path,
        """\
        - id: pause
          wait: 3 days
        - id: long_wait
          wait: 45d
        - id: choose
          branch:
            - if: "history.order > 1"
              goto: nowhere
        - id: tips
          send: email
          template: care_tip
        - id: review
          send: email
          template: review_request
          next: done
        - id: orphan
          exit: never reached
        - id: done
          exit: done
        """,
        header=header,
    )
    assert found == [
        "test_journey.yaml:6:9: step pause: wait: bad duration '3 days': write it like 3d, "
        "12h, 90m or 2w",
        "test_journey.yaml:11:11: step choose: if: unknown name 'history.order' "
        "(did you mean 'history.orders'?)",
        "test_journey.yaml:12:13: step choose: goto names unknown step 'nowhere'",
        "test_journey.yaml:14:9: step tips: a service message that can only happen after "
        "the service cutoff (30d) would never be sent",
        "test_journey.yaml:15:13: step tips: unknown email template 'care_tip'",
        "test_journey.yaml:17:9: step review: a service message that can only happen after "
        "the service cutoff (30d) would never be sent",
        "test_journey.yaml:20:7: step orphan: unreachable",
    ]


def test_errors_of_every_file_at_once(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("journey: a\ntrigger: {event: purchase\n")
    (tmp_path / "b.yaml").write_text(
        "journey: b\ntrigger: {event: purchse}\nsteps:\n  - {id: x, exit: y}\n"
    )
    _loaded, problems = validate_paths([tmp_path], templates_dir=ROOT / "templates", activities=[])
    assert [str(p).replace(str(tmp_path) + "/", "") for p in problems] == [
        "a.yaml:3:1: YAML syntax: expected ',' or '}', but got '<stream end>'",
        "b.yaml:2:18: trigger: unknown event 'purchse' (did you mean 'purchase'?)",
    ]
