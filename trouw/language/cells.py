"""Cell values as Benelux exports write them: decimal commas, day-first dates, local phone numbers."""

from __future__ import annotations

import re
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from trouw.language import phones

# Day-first on purpose: 02/03/2026 is the 2nd of March in Belgium and the Netherlands.
_DATE_FORMATS = ("%d-%m-%Y", "%d/%m/%Y", "%d.%m.%Y", "%Y-%m-%d", "%Y/%m/%d", "%d-%m-%y", "%d/%m/%y")
_TIME_SUFFIXES = ("", " %H:%M", " %H:%M:%S", "T%H:%M", "T%H:%M:%S")
_TRUE = {"1", "true", "yes", "y", "ja", "j", "oui", "o", "x", "waar", "vrai"}
_FALSE = {"0", "false", "no", "n", "nee", "non", "onwaar", "faux"}
_NUMBER_NOISE = re.compile(r"[\s\u00a0\u202f€'’]|EUR", re.IGNORECASE)


class CellError(ValueError):
    """A cell that cannot be read as the type its field needs."""


def blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def parse_decimal(value: Any, *, decimal: str = "auto") -> Decimal:
    """24,95 / 1.234,50 / € 1 234,50 / 24.95 / 1,234.50; `decimal` says which mark is the comma."""
    if isinstance(value, bool):
        raise CellError(f"not an amount: {value!r}")
    if isinstance(value, int | float):
        return Decimal(str(value))
    text = _NUMBER_NOISE.sub("", str(value))
    negative = text.startswith("-") or (text.startswith("(") and text.endswith(")"))
    text = text.strip("-()+")
    mark = decimal
    if mark == "auto":
        # The mark that comes last is the decimal one; a lone comma is decimal in Benelux files.
        mark = "," if text.rfind(",") > text.rfind(".") else "."
    thousands = "." if mark == "," else ","
    text = text.replace(thousands, "").replace(mark, ".")
    if not re.fullmatch(r"\d+(\.\d+)?|\.\d+", text):
        raise CellError(f"not an amount: {value!r}")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise CellError(f"not an amount: {value!r}") from None
    return -amount if negative else amount


def parse_int(value: Any, *, decimal: str = "auto") -> int:
    """A whole number; "2,00" from a till that prints quantities with decimals is 2."""
    try:
        amount = parse_decimal(value, decimal=decimal)
    except CellError:
        raise CellError(f"not a whole number: {value!r}") from None
    if amount != amount.to_integral_value():
        raise CellError(f"not a whole number: {value!r}")
    return int(amount)


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().casefold()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise CellError(f"not yes or no: {value!r}")


def _formats(formats: tuple[str, ...]) -> list[str]:
    bases = formats or _DATE_FORMATS
    return [
        base + suffix
        for base in bases
        for suffix in _TIME_SUFFIXES
        if not suffix or suffix not in base
    ]


def parse_datetime(value: Any, *, formats: tuple[str, ...] = (), zone: str) -> datetime:
    """An aware datetime; a value without zone is local time in `zone`, a date alone is midnight."""
    text = str(value).strip()
    parsed: datetime | None = None
    if not formats:
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
    if parsed is None:
        for fmt in _formats(formats):
            try:
                parsed = datetime.strptime(text, fmt)  # noqa: DTZ007 - the zone is added below
                break
            except ValueError:
                continue
    if parsed is None:
        expected = " or ".join(formats) if formats else "dd-mm-yyyy, dd/mm/yyyy or ISO 8601"
        raise CellError(f"not a date: {value!r} (expected {expected})")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(zone))
    return parsed


def parse_date(value: Any, *, formats: tuple[str, ...] = ()) -> date:
    moment = parse_datetime(value, formats=formats, zone="UTC")
    if moment.time() != time(0):
        raise CellError(f"not a date: {value!r} has a time")
    return moment.date()


def normalise_phone(value: Any, *, country: str | None) -> str:
    """+32470123456 from '0470/12.34.56' (with country 32 or BE), '0032 470 12 34 56' or '+32 470...'."""
    try:
        return phones.normalise_phone(value, country=country)
    except phones.PhoneError as exc:
        hint = "" if country else " (set phone_country in the mapping to read local numbers)"
        raise CellError(f"{exc}{hint}") from None
