"""Phone numbers as they enter Trouw (API, imports, webshops): one normaliser to E.164."""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

from trouw.language.locales import region_of

# What exports and shops put between digits; phonenumbers reads most of it, not all.
_SEPARATORS = re.compile(r"[\s\u00a0\u202f./]")
_REGION = re.compile(r"[A-Za-z]{2}")


class PhoneError(ValueError):
    """A value that is not a phone number we can text; the message says why, in one line."""


def phone_region(country: str | None) -> str | None:
    """An ISO 3166 region ('BE') from a region code or a calling code ('32', '+32'); else None."""
    if not country:
        return None
    value = country.strip()
    if _REGION.fullmatch(value):
        return value.upper()
    digits = value.lstrip("+")
    if digits.isdigit():
        region = phonenumbers.region_code_for_country_code(int(digits))
        return None if region == "ZZ" else region
    return None


def normalise_phone(value: object, *, country: str | None = None) -> str:
    """E.164 ('+32470123456') from an international or, given the country, a national number.

    Reads '+32 470 12 34 56', '0032 470/12.34.56', and with country BE '0470 12 34 56' (with
    country US '(555) 555-5555'). Numbers are checked as *possible* (right length for the
    country), not as *assigned*: assignment data changes every month, and a number that is
    possible but unused is reported by the SMS provider and marked invalid then.
    Raises PhoneError for anything else, an extension included: an SMS cannot reach one.
    """
    text = _SEPARATORS.sub("", str(value)).strip()
    if not text:
        raise PhoneError("empty phone number")
    if text.startswith("00"):
        # The international prefix of most of Europe; never the start of a national number.
        text = "+" + text[2:]
    region = phone_region(country)
    if not text.startswith("+") and region is None:
        hint = f" (unknown country {country!r})" if country else ""
        raise PhoneError(
            f"{value!r} is not in international form (+32...) and no country is known{hint}"
        )
    try:
        number = phonenumbers.parse(text, None if text.startswith("+") else region)
    except NumberParseException:
        raise PhoneError(f"not a phone number: {value!r}") from None
    if number.extension:
        raise PhoneError(f"{value!r} has an extension ({number.extension}): SMS cannot reach it")
    if not phonenumbers.is_possible_number(number):
        where = f" for {region}" if region and not text.startswith("+") else ""
        raise PhoneError(f"not a possible phone number{where}: {value!r}")
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def phone_or_none(value: object, *, country: str | None = None) -> str | None:
    """normalise_phone, or None for an empty or unreadable value (matching, lenient sources)."""
    if value is None or not str(value).strip():
        return None
    try:
        return normalise_phone(value, country=country)
    except PhoneError:
        return None


def phone_of_customer(value: str | None, locale: str | None) -> str | None:
    """A profile's phone in E.164, its country read from the customer's locale tag.

    For the input models (API and scenario alike): None stays None, a bad number raises a
    one-line ValueError that pydantic reports against the field.
    """
    if value is None:
        return None
    try:
        return normalise_phone(value, country=region_of(locale))
    except PhoneError as exc:
        raise ValueError(str(exc)) from None
