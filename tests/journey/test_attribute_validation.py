"""`trouw validate` knows the declared customer attributes: names, types and personal data."""

from __future__ import annotations

from pathlib import Path

from activities.custom import CUSTOM_ACTIVITY_NAMES
from tests.conftest import ROOT
from trouw.domain.checks.validate import validate_paths
from trouw.language.attributes import AttributeDeclaration

DECLARED = {
    d.name: d
    for d in (
        AttributeDeclaration(name="points", type="integer"),
        AttributeDeclaration(name="loyal_since", type="date"),
        AttributeDeclaration(name="loyalty_card", type="string", personal=True),
    )
}

JOURNEY = """\
journey: cards
trigger: {event: purchase, when: "customer.attributes.loyalty_card"}
settings:
  exit_on:
    - {event: review, when: "customer.attributes.loyalty_card == 'x'"}
steps:
  - id: by_points
    branch:
      - if: "customer.attributes.pionts > 100"
        goto: card
      - if: "customer.attributes.points.startswith('1')"
        goto: card
      - if: "customer.attributes.points >= 100 and customer.attributes.loyal_since"
        goto: card
    else: card
  - id: card
    branch:
      - if: "customer.attributes.loyalty_card"
        goto: copy
    else: copy
  - id: copy
    update:
      attributes: {shoe: "customer.attributes.loyalty_card", points: "customer.attributes.points"}
"""


def test_unknown_mistyped_and_travelling_personal_attributes_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "cards.yaml"
    path.write_text(JOURNEY, encoding="utf-8")
    _loaded, problems = validate_paths(
        [path], templates_dir=ROOT / "templates", activities=[], attributes=DECLARED
    )
    assert [str(p).replace(str(tmp_path) + "/", "") for p in problems] == [
        "cards.yaml:5:29: personal attribute 'loyalty_card' cannot be read in an exit rule's "
        "when (judged the moment the event arrives, in the workflow): only a condition (when, "
        "if) may read it",
        "cards.yaml:9:13: step by_points: if: unknown name 'customer.attributes.pionts' "
        "(did you mean 'customer.attributes.points'?)",
        "cards.yaml:11:13: step by_points: if: 'customer.attributes.points' is a number: it has "
        "no 'startswith'",
        "cards.yaml:23:26: step copy: unknown attribute 'shoe' (declared in config: "
        "loyal_since, loyalty_card, points)",
        "cards.yaml:23:26: step copy: personal attribute 'loyalty_card' cannot be read in an "
        "update value (the value travels with the run): only a condition (when, if) may read it",
    ]


def test_without_declarations_no_attribute_exists(tmp_path: Path) -> None:
    path = tmp_path / "cards.yaml"
    path.write_text(
        JOURNEY.replace("customer.attributes.loyalty_card", "customer.opt_in.email"),
        encoding="utf-8",
    )
    _loaded, problems = validate_paths(
        [path], templates_dir=ROOT / "templates", activities=[], attributes={}
    )
    messages = [p.message for p in problems]
    assert "step copy: unknown attribute 'points' (declared in config: none are declared)" in (
        messages
    )
    assert any("unknown name 'customer.attributes.points'" in m for m in messages)


def test_the_shipped_journeys_and_examples_are_valid_with_the_shipped_declarations() -> None:
    from trouw.language.attributes import declared_attributes
    from trouw.settings import load_settings

    declared = declared_attributes(load_settings())
    for folder in (ROOT / "journeys", ROOT / "journeys/examples"):
        _loaded, problems = validate_paths(
            [folder],
            templates_dir=ROOT / "templates",
            activities=sorted(CUSTOM_ACTIVITY_NAMES),
            attributes=declared,
        )
        assert problems == [], problems
