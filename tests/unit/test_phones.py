"""Phone numbers in, E.164 out: national formats with a country, 00 prefixes, extensions refused."""

from __future__ import annotations

import pytest

from trouw.language.phones import PhoneError, normalise_phone, phone_or_none, phone_region


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("(555) 555-5555", "US", "+15555555555"),  # WooCommerce's documented billing phone
        ("555-625-1199", "US", "+15556251199"),  # Shopify's fixture order
        ("0470 12 34 56", "BE", "+32470123456"),
        ("0470/12.34.56", "32", "+32470123456"),  # imports give the calling code
        ("06 12345678", "NL", "+31612345678"),
        ("0032 470 12 34 56", None, "+32470123456"),
        ("0032 470 12 34 56", "US", "+32470123456"),
        ("+32 (0)470 12 34 56", None, "+32470123456"),
        ("+31-6-1234-5678", "BE", "+31612345678"),  # an international number ignores the country
    ],
)
def test_numbers_become_e164(raw: str, country: str | None, expected: str) -> None:
    assert normalise_phone(raw, country=country) == expected


@pytest.mark.parametrize(
    ("raw", "country", "message"),
    [
        ("0470 12 34 56", None, "no country is known"),
        ("+32 470 12 34 56 ext. 12", None, "extension"),
        ("(555) 555-5555 x7", "US", "extension"),
        ("+32 470", None, "not a possible phone number"),
        ("call me", "BE", "not a phone number"),
        ("", "BE", "empty"),
        ("0470 12 34 56", "Belgium", "unknown country 'Belgium'"),
    ],
)
def test_what_cannot_be_texted_is_refused_clearly(
    raw: str, country: str | None, message: str
) -> None:
    with pytest.raises(PhoneError, match=message):
        normalise_phone(raw, country=country)


def test_lenient_form_and_regions() -> None:
    assert phone_or_none("0470 12 34 56") is None
    assert phone_or_none(None) is None
    assert phone_or_none("+32470123456") == "+32470123456"
    assert [phone_region(c) for c in ("be", "+32", "31", "999", "", None)] == [
        "BE",
        "BE",
        "NL",
        None,
        None,
        None,
    ]
