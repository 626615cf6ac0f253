"""Public holidays of Belgium, the Netherlands and France, computed for any year (no tables)."""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

SUPPORTED_COUNTRIES: frozenset[str] = frozenset({"BE", "NL", "FR"})


def easter_sunday(year: int) -> date:
    """Gregorian Easter Sunday by the anonymous (Meeus/Jones/Butcher) algorithm."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    leap = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * leap) // 451
    month, day = divmod(h + leap - 7 * m + 114, 31)
    return date(year, month, day + 1)


def _kings_day(year: int) -> tuple[date, str]:
    # King's Day moves to the Saturday before when 27 April is a Sunday. Before 2014 it was
    # Queen's Day on 30 April, moved to the 29th when the 30th was a Sunday (rule since 1980).
    if year >= 2014:
        day, name = date(year, 4, 27), "King's Day"
    else:
        day, name = date(year, 4, 30), "Queen's Day"
    if day.weekday() == 6:
        day -= timedelta(days=1)
    return day, name


@lru_cache(maxsize=256)
def _holidays(country: str, year: int) -> tuple[tuple[date, str], ...]:
    easter = easter_sunday(year)
    easter_monday = (easter + timedelta(days=1), "Easter Monday")
    ascension = (easter + timedelta(days=39), "Ascension Day")
    whit_monday = (easter + timedelta(days=50), "Whit Monday")
    new_year = (date(year, 1, 1), "New Year's Day")
    christmas = (date(year, 12, 25), "Christmas Day")
    if country == "BE":
        days = [
            new_year,
            easter_monday,
            (date(year, 5, 1), "Labour Day"),
            ascension,
            whit_monday,
            (date(year, 7, 21), "Belgian National Day"),
            (date(year, 8, 15), "Assumption Day"),
            (date(year, 11, 1), "All Saints' Day"),
            (date(year, 11, 11), "Armistice Day"),
            christmas,
        ]
    elif country == "NL":
        days = [
            new_year,
            easter_monday,
            _kings_day(year),
            # Liberation Day is listed every year: it is a national holiday every year, though a
            # paid day off for most employees only every fifth year (2025, 2030, ...).
            (date(year, 5, 5), "Liberation Day"),
            ascension,
            whit_monday,
            christmas,
            (date(year, 12, 26), "Second Day of Christmas"),
        ]
    elif country == "FR":
        days = [
            new_year,
            easter_monday,
            (date(year, 5, 1), "Labour Day"),
            (date(year, 5, 8), "Victory in Europe Day"),
            ascension,
            whit_monday,
            (date(year, 7, 14), "Bastille Day"),
            (date(year, 8, 15), "Assumption Day"),
            (date(year, 11, 1), "All Saints' Day"),
            (date(year, 11, 11), "Armistice Day"),
            christmas,
        ]
    else:
        raise ValueError(f"no public holidays known for country {country!r}; known: BE, FR, NL")
    return tuple(sorted(days))


def holidays(country: str, year: int) -> dict[date, str]:
    """The public holidays of `country` (BE, NL or FR) in `year`, by date, with English names."""
    return dict(_holidays(country.upper(), year))


def is_public_holiday(country: str, day: date) -> bool:
    """Whether `day` is a public holiday in `country` (BE, NL or FR); other countries raise."""
    return any(holiday == day for holiday, _ in _holidays(country.upper(), day.year))
