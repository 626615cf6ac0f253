"""The wire types behind the schema: amounts, whole numbers, dates, time zones, single lines."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from trouw.domain.ingest import CustomerIn, LineIn, ProductIn


@pytest.mark.parametrize(
    ("given", "stored"),
    [("24.95", Decimal("24.95")), (24.95, Decimal("24.95")), (0.07, Decimal("0.07")), (3, 3)],
)
def test_amounts_with_at_most_two_decimals_are_read_exactly(given: Any, stored: Decimal) -> None:
    assert LineIn(sku="S", unit_price=given).unit_price == stored


@pytest.mark.parametrize(
    "given", ["1e3", "24,95", " 5", "", 0.005, 0.5700000000000001, 2.5e-66, -1e26, True, [1]]
)
def test_amounts_that_are_not_cents_are_refused(given: Any) -> None:
    with pytest.raises(ValidationError):
        LineIn(sku="S", unit_price=given)


def test_whole_numbers_are_json_numbers() -> None:
    assert LineIn(sku="S", qty=2.0).qty == 2
    for given in ("2", True, 2.5):
        with pytest.raises(ValidationError):
            LineIn(sku="S", qty=given)
    with pytest.raises(ValidationError):
        ProductIn(sku="S", name="N", consumption_days="30")


def test_dates_are_text_and_zones_are_iana_names() -> None:
    assert str(CustomerIn(id="c1", birthday="1979-04-24").birthday) == "1979-04-24"
    assert CustomerIn(id="c1", timezone="Europe/Brussels").timezone == "Europe/Brussels"
    for fields in ({"birthday": 0}, {"timezone": "Brussels"}, {"timezone": "text messages"}):
        with pytest.raises(ValidationError):
            CustomerIn(id="c1", **fields)


@pytest.mark.parametrize("text", ["a\nb", "a\rb", "a\x00b", "a\u2028b", "a\x85b", "a\x0bb"])
def test_every_line_break_is_refused_in_a_name(text: str) -> None:
    with pytest.raises(ValidationError, match="must be a single line"):
        CustomerIn(id="c1", first_name=text)
    with pytest.raises(ValidationError, match="must be a single line"):
        LineIn(sku="S", name=text)
