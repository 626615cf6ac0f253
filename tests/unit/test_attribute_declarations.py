"""Declared customer attributes: typed values, the context copies, which attributes a condition reads."""

from __future__ import annotations

from datetime import date

import pytest

from trouw.language.attributes import (
    AttributeDeclaration,
    AttributeValueError,
    attribute_reads,
    check_values,
    context_attributes,
    declared_attributes,
    journey_attribute_problems,
    needs_activity,
    personal_reads,
)
from trouw.language.journey.model import Journey
from trouw.settings import SettingsError, load_settings

DECLARED = {
    d.name: d
    for d in (
        AttributeDeclaration(name="points", type="integer"),
        AttributeDeclaration(name="ratio", type="number"),
        AttributeDeclaration(name="vip", type="boolean"),
        AttributeDeclaration(name="loyal_since", type="date"),
        AttributeDeclaration(name="loyalty_card", type="string", personal=True),
    )
}


def test_values_of_their_declared_type_are_kept_typed() -> None:
    values = {
        "points": 120,
        "ratio": 2,
        "vip": False,
        "loyal_since": "2024-05-01T10:00:00+02:00",
        "loyalty_card": "1234",
    }
    assert check_values(values, DECLARED) == {
        "points": 120,
        "ratio": 2.0,
        "vip": False,
        "loyal_since": "2024-05-01",
        "loyalty_card": "1234",
    }
    assert check_values({"points": None}, DECLARED) == {"points": None}


def test_text_from_a_file_is_read_as_the_declared_type() -> None:
    cells = {"points": " 120 ", "ratio": "3,5", "vip": "ja", "loyal_since": "01-05-2024"}
    assert check_values(cells, DECLARED, from_text=True) == {
        "points": 120,
        "ratio": 3.5,
        "vip": True,
        "loyal_since": "2024-05-01",
    }
    assert check_values({"points": ""}, DECLARED, from_text=True) == {"points": None}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"pionts": 1},
            "unknown attribute 'pionts' (declared in config/trouw.toml `attributes`: "
            "loyal_since, loyalty_card, points, ratio, vip)",
        ),
        ({"points": "120"}, "attribute 'points' is an integer: '120' is not"),
        ({"points": True}, "attribute 'points' is an integer: True is not"),
        ({"points": 1.5}, "attribute 'points' is an integer: 1.5 is not"),
        ({"vip": "yes"}, "attribute 'vip' is a boolean: 'yes' is not"),
        (
            {"loyal_since": "01-05-2024"},
            "attribute 'loyal_since' is a date (YYYY-MM-DD): '01-05-2024' is not",
        ),
        ({"loyalty_card": 1234}, "attribute 'loyalty_card' is a string: 1234 is not"),
    ],
)
def test_a_wrong_attribute_is_refused_by_name(values: dict[str, object], message: str) -> None:
    with pytest.raises(AttributeValueError) as caught:
        check_values(values, DECLARED)
    assert str(caught.value) == message
    assert caught.value.name == next(iter(values))


def test_the_history_copy_leaves_personal_attributes_out() -> None:
    stored = {"points": 5, "loyalty_card": "1234", "loyal_since": "2024-05-01", "old": "x"}
    full = context_attributes(stored, DECLARED, personal=True)
    assert full == {
        "points": 5,
        "ratio": None,
        "vip": None,
        "loyal_since": date(2024, 5, 1),
        "loyalty_card": "1234",
    }
    safe = context_attributes(stored, DECLARED, personal=False)
    assert "loyalty_card" not in safe and safe["points"] == 5 and "old" not in safe


@pytest.mark.parametrize(
    ("source", "reads"),
    [
        ("customer.attributes.points > 3", {"points"}),
        ("customer.attributes['loyalty_card'] and history.orders", {"loyalty_card"}),
        ("(customer.attributes.loyalty_card or '').startswith('77')", {"loyalty_card"}),
        ("customer.opt_in.email and order.total > 5", set()),
        ("customer.attributes | length > 0", None),
        ("customer.attributes[trigger.name]", None),
    ],
)
def test_which_attributes_a_condition_reads(source: str, reads: set[str] | None) -> None:
    found = attribute_reads(source)
    assert (None if found is None else set(found)) == reads


def test_a_condition_goes_to_an_activity_when_the_workflow_copy_lacks_what_it_reads() -> None:
    safe = context_attributes({}, DECLARED, personal=False)
    assert not needs_activity("customer.attributes.points > 3", safe)
    assert needs_activity("customer.attributes.loyalty_card", safe)
    assert needs_activity("customer.attributes | length", safe)
    assert not needs_activity("history.orders > 1", {})
    assert personal_reads("customer.attributes.loyalty_card", DECLARED) == ["loyalty_card"]
    assert personal_reads("customer.attributes.points", DECLARED) == []


def test_the_shipped_config_declares_the_attributes() -> None:
    declared = declared_attributes(load_settings())
    assert declared["points"].type == "integer" and not declared["points"].personal
    assert declared["loyalty_card"].personal


def test_an_attribute_declared_twice_is_a_bad_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "TROUW_ATTRIBUTES",
        '[{"name": "points", "type": "integer"}, {"name": "points", "type": "string"}]',
    )
    with pytest.raises(SettingsError, match="attribute 'points' is declared twice"):
        load_settings()


def test_an_unknown_type_is_a_bad_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TROUW_ATTRIBUTES", '[{"name": "points", "type": "int"}]')
    with pytest.raises(SettingsError, match="TROUW_ATTRIBUTES"):
        load_settings()


def test_a_journey_may_not_carry_a_personal_attribute_into_its_history() -> None:
    journey = Journey.model_validate(
        {
            "journey": "cards",
            "trigger": {"event": "purchase", "when": "customer.attributes.loyalty_card"},
            "settings": {
                "exit_on": [{"event": "review", "when": "customer.attributes.loyalty_card"}]
            },
            "steps": [
                {
                    "id": "has_card",
                    "branch": [{"if": "customer.attributes.loyalty_card", "goto": "copy"}],
                },
                {
                    "id": "copy",
                    "update": {
                        "attributes": {
                            "points": "customer.attributes.points",
                            "card_copy": "customer.attributes.loyalty_card",
                        }
                    },
                },
                {"id": "later", "wait_until": {"date": "customer.attributes.loyal_since"}},
            ],
        }
    )
    assert journey_attribute_problems(journey, DECLARED) == [
        (
            ["settings", "exit_on", 0, "when"],
            "personal attribute 'loyalty_card' cannot be read in an exit rule's when (judged "
            "the moment the event arrives, in the workflow): only a condition (when, if) may "
            "read it",
        ),
        (
            ["steps", 1, "update", "attributes", "card_copy"],
            "step copy: unknown attribute 'card_copy' (declared in config: loyal_since, "
            "loyalty_card, points, ratio, vip)",
        ),
        (
            ["steps", 1, "update", "attributes", "card_copy"],
            "step copy: personal attribute 'loyalty_card' cannot be read in an update value "
            "(the value travels with the run): only a condition (when, if) may read it",
        ),
    ]
