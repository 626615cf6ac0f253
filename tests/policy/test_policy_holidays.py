"""Public holidays of BE, NL and FR, against dates anyone can check in a calendar."""

from __future__ import annotations

from datetime import date

import pytest

from trouw.language.holidays import easter_sunday, holidays, is_public_holiday


@pytest.mark.parametrize(
    ("year", "easter"),
    [
        (2000, date(2000, 4, 23)),
        (2008, date(2008, 3, 23)),
        (2011, date(2011, 4, 24)),
        (2019, date(2019, 4, 21)),
        (2024, date(2024, 3, 31)),
        (2025, date(2025, 4, 20)),
        (2026, date(2026, 4, 5)),
        (2027, date(2027, 3, 28)),
        (2038, date(2038, 4, 25)),
        (2285, date(2285, 3, 22)),  # the earliest possible date
    ],
)
def test_easter_sunday(year, easter):
    assert easter_sunday(year) == easter


def test_movable_feasts_2026():
    for country in ("BE", "NL", "FR"):
        days = holidays(country, 2026)
        assert days[date(2026, 4, 6)] == "Easter Monday"
        assert days[date(2026, 5, 14)] == "Ascension Day"
        assert days[date(2026, 5, 25)] == "Whit Monday"
        assert days[date(2026, 1, 1)] == "New Year's Day"
        assert days[date(2026, 12, 25)] == "Christmas Day"
        assert date(2026, 4, 5) not in days  # Easter Sunday is a Sunday, not listed
        assert date(2026, 4, 3) not in days  # no Good Friday


def test_belgium_2026():
    assert sorted(holidays("BE", 2026)) == [
        date(2026, 1, 1),
        date(2026, 4, 6),
        date(2026, 5, 1),
        date(2026, 5, 14),
        date(2026, 5, 25),
        date(2026, 7, 21),
        date(2026, 8, 15),
        date(2026, 11, 1),
        date(2026, 11, 11),
        date(2026, 12, 25),
    ]


def test_netherlands_2026():
    assert sorted(holidays("NL", 2026)) == [
        date(2026, 1, 1),
        date(2026, 4, 6),
        date(2026, 4, 27),
        date(2026, 5, 5),
        date(2026, 5, 14),
        date(2026, 5, 25),
        date(2026, 12, 25),
        date(2026, 12, 26),
    ]


def test_france_2026():
    assert sorted(holidays("FR", 2026)) == [
        date(2026, 1, 1),
        date(2026, 4, 6),
        date(2026, 5, 1),
        date(2026, 5, 8),
        date(2026, 5, 14),
        date(2026, 5, 25),
        date(2026, 7, 14),
        date(2026, 8, 15),
        date(2026, 11, 1),
        date(2026, 11, 11),
        date(2026, 12, 25),
    ]


@pytest.mark.parametrize(
    ("year", "kings_day"),
    [
        (2025, date(2025, 4, 26)),  # the 27th was a Sunday
        (2026, date(2026, 4, 27)),
        (2031, date(2031, 4, 26)),  # the 27th is a Sunday
        (2013, date(2013, 4, 30)),  # Queen's Day
    ],
)
def test_kings_day_moves_off_sunday(year, kings_day):
    assert is_public_holiday("NL", kings_day)
    assert holidays("NL", year)[kings_day] in ("King's Day", "Queen's Day")


def test_lookups_are_case_insensitive_and_unknown_countries_refused():
    assert is_public_holiday("be", date(2026, 7, 21))
    assert not is_public_holiday("NL", date(2026, 7, 21))
    assert not is_public_holiday("FR", date(2026, 7, 21))
    with pytest.raises(ValueError, match="DE"):
        holidays("DE", 2026)


def test_returned_dict_is_a_copy():
    days = holidays("BE", 2026)
    days.clear()
    assert holidays("BE", 2026)
