"""Locale tags: any valid BCP 47 tag is kept, negotiated to the shipped template languages."""

from __future__ import annotations

import pytest

from trouw.language.locales import (
    LocaleError,
    canonical,
    format_locale,
    negotiate,
    parse_locale_tag,
    region_of,
)

EMAIL = ["nl", "nl-BE", "nl-NL", "fr", "en"]  # strings files of a template
SMS = ["nl-BE", "nl-NL", "fr-BE", "en"]  # text files of an SMS template


@pytest.mark.parametrize(
    ("tag", "kept"),
    [
        ("en-GB", "en-GB"),
        ("fr-FR", "fr-FR"),
        ("nl", "nl"),
        ("de-BE", "de-BE"),
        ("NL-be", "nl-BE"),
        ("zh-hant-tw", "zh-Hant-TW"),
        ("es-419", "es-419"),
        ("de-CH-1996", "de-CH-1996"),
        ("en-US-u-ca-gregory", "en-US-u-ca-gregory"),
    ],
)
def test_valid_tags_are_kept_as_given(tag: str, kept: str) -> None:
    assert parse_locale_tag(tag) == kept


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        ("nl_BE", "write 'nl-BE'"),
        ("english", "not a BCP 47 tag"),
        ("en-", "not a BCP 47 tag"),
        ("123", "not a BCP 47 tag"),
        ("xx-BE", "unknown language 'xx'"),
        ("nl-QQ", "unknown region 'QQ'"),
        ("", "empty locale"),
        ("en-" + "-".join(["abcdefgh"] * 5), "longer than 35"),
    ],
)
def test_invalid_tags_are_refused_with_the_reason(tag: str, message: str) -> None:
    with pytest.raises(LocaleError, match=message):
        parse_locale_tag(tag)


@pytest.mark.parametrize(
    ("tag", "email", "sms"),
    [
        ("nl-BE", "nl-BE", "nl-BE"),
        ("nl-NL", "nl-NL", "nl-NL"),
        ("nl", "nl", "nl-BE"),  # no region: the first sibling, not Babel's alias nl_NL
        ("fr-FR", "fr", "fr-BE"),
        ("fr-CA", "fr", "fr-BE"),
        ("en-GB", "en", "en"),
        ("de-BE", "en", "en"),  # no German templates: the "*" fallback
        ("zh-Hant-TW", "en", "en"),
    ],
)
def test_negotiation_picks_the_nearest_template_language(tag: str, email: str, sms: str) -> None:
    assert negotiate(tag, EMAIL) == email
    assert negotiate(tag, SMS) == sms


def test_fallback_chain_is_configurable_per_language() -> None:
    chain = {"de": ["fr-BE"], "lb": ["fr"], "*": ["nl-BE"]}
    assert negotiate("de-BE", SMS, chain) == "fr-BE"
    assert negotiate("lb-LU", EMAIL, chain) == "fr"
    assert negotiate("pt-BR", SMS, chain) == "nl-BE"
    assert negotiate("pt-BR", [], chain) is None


def test_amounts_and_dates_follow_the_customer_where_the_language_allows() -> None:
    assert format_locale("en-GB", "en") == "en-GB"
    assert format_locale("fr-FR", "fr-BE") == "fr-FR"
    assert format_locale("de-BE", "en") == "en-BE"  # English text, Belgian conventions
    assert format_locale("pt-BR", "en") == "en"  # CLDR has no en-BR
    assert format_locale("", "nl-BE") == "nl-BE"


def test_regions_and_canonical_case() -> None:
    assert [region_of(t) for t in ("nl-BE", "fr-Latn-BE", "nl", "es-419", None)] == [
        "BE",
        "BE",
        None,
        None,
        None,
    ]
    assert canonical("NL_be") == "nl-BE"


def test_pages_and_sms_help_pick_their_language_the_same_way() -> None:
    from trouw.providers.twilio.callbacks import help_text
    from trouw.ways_in.api.pages import language_of

    assert [language_of(t) for t in ("nl-NL", "fr-FR", "en-GB", "de-BE", None, "")] == [
        "nl",
        "fr",
        "en",
        "en",  # no German pages: the "*" fallback, not Dutch
        "nl",
        "nl",
    ]
    assert language_of("fr-BE,fr;q=0.9,en;q=0.8") == "fr"  # an Accept-Language header
    assert help_text("de-BE", shop="S", url="u").startswith("S: reply STOP")
    assert help_text("fr-CA", shop="S", url="u").startswith("S : répondez STOP")
