"""A scenario's mistakes come all at once, each at the file, line and column of its field."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT
from trouw.commands.simulate import load_scenario
from trouw.language.journey.loader import JourneyError

ELEVEN_MISTAKES = """\
start: 2026-03-02T09:00:00+01:00
until: 40 days
customers:
  - {id: c1, email: not-an-email, timezone: Europe/Brusels}
  - {id: c2, email: c2@example.com, locale: "no locale"}
  - {id: c3, email: c3@example.com}
products:
  - {sku: LAWN-10, name: Gazonmest, price: -3}
  - {sku: POT-40, name: Pot, price: 29}
events:
  - {at: soon, type: purchase, customer: c3}
  - {at: 0d, type: purchase, customer: c3, order: o1, channel: web, lines: [{sku: POT-40}, {sku: ROSE-99}]}
  - {at: 1d, type: delivered, customer: c3, order: o9}
  - {at: 1d, type: deliverd, customer: c3, order: o1}
  - {at: 2d, type: delivered, customer: c7, order: o1}
  - {at: 3d, type: custom, customer: c3}
"""


def test_every_mistake_of_a_scenario_in_one_pass(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(ELEVEN_MISTAKES)
    with pytest.raises(JourneyError) as caught:
        load_scenario(path)
    assert [str(p).replace(f"{path}:", "") for p in caught.value.problems] == [
        "2:8: until: bad duration '40 days': write it like 3d, 12h, 90m or 2w",
        "4:21: customers #1: email: value is not a valid email address: An email address "
        "must have an @-sign.",
        "4:45: customers #1: timezone: unknown time zone 'Europe/Brusels'",
        "5:45: customers #2: locale: locale 'no locale' is not a BCP 47 tag (like nl-BE, fr, "
        "en-GB)",
        "8:44: products #1: price: Input should be greater than or equal to 0",
        "11:10: events #1: at: 'soon' is neither an offset (2d4h) nor a timestamp",
        "12:98: events #2: line 2: unknown product ROSE-99 and no unit_price",
        "13:52: events #3: delivered: unknown order 'o9' for this customer",
        "14:20: events #4: type: Input should be 'register', 'purchase', 'delivered', "
        "'returned', 'review', 'opt_in', 'opt_out', 'unsubscribe', 'bounce', 'sms_stop', "
        "'voucher_redeemed' or 'custom'",
        "15:41: events #5: unknown customer 'c7'",
        "16:5: events #6: a custom event needs `name`",
    ]


def test_event_before_the_start(tmp_path: Path) -> None:
    path = tmp_path / "early.yaml"
    path.write_text(
        "start: 2026-03-02T09:00:00+01:00\ncustomers: [{id: c1}]\n"
        "events:\n  - {at: '2026-03-01T09:00:00+01:00', type: register, customer: c1}\n"
    )
    with pytest.raises(JourneyError) as caught:
        load_scenario(path)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:4:10: events #1: before the scenario's start"
    ]


def test_the_shipped_scenario_is_valid() -> None:
    scenario = load_scenario(ROOT / "journeys/scenarios/garden_centre.yaml")
    assert scenario.customers and scenario.events


def test_scenario_attributes_are_the_declared_ones(tmp_path: Path) -> None:
    path = tmp_path / "attributes.yaml"
    path.write_text(
        "start: 2026-03-02T09:00:00+01:00\ncustomers:\n"
        "  - {id: c1, attributes: {points: 120}}\n"
        "  - {id: c2, attributes: {points: many}}\n"
        "  - {id: c3, attributes: {pionts: 5}}\n"
    )
    with pytest.raises(JourneyError) as caught:
        load_scenario(path)
    assert [str(p).replace(f"{path}:", "") for p in caught.value.problems] == [
        "4:35: customers #2: attribute 'points' is an integer: 'many' is not",
        "5:35: customers #3: unknown attribute 'pionts' (declared in config/trouw.toml "
        "`attributes`: favourite_store, loyal_since, loyalty_card, points)",
    ]
