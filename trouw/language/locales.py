"""Customer locales: BCP 47 tags checked once, negotiated to the template languages we ship.

A customer's tag is stored as given (canonical case only): `en-GB`, `fr-FR`, `de-BE`, `nl`.
Templates exist for a few languages; `negotiate` picks the nearest with Babel's negotiation,
then another region of the same language, then the configured fallback chain. Dates, numbers
and amounts are written in the customer's own locale where it shares the template's language.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Annotated

from babel import Locale, UnknownLocaleError, negotiate_locale
from pydantic import AfterValidator, Field

# RFC 5646 section 4.4.1: 35 characters hold every tag of language, script, region and variant.
MAX_TAG_LENGTH = 35
# The fallback when settings say nothing: English for every language without templates.
DEFAULT_FALLBACK: Mapping[str, Sequence[str]] = {"*": ("en",)}

# RFC 5646 "langtag": language (2-3 letters, extlangs), script, region, variants, extensions,
# private use. Language subtags of 4-8 letters are reserved or unused: refused.
_LANGTAG = (
    r"(?P<language>[a-z]{2,3}(?:-[a-z]{3}){0,3})"
    r"(?:-(?P<script>[a-z]{4}))?"
    r"(?:-(?P<region>[a-z]{2}|[0-9]{3}))?"
    r"(?P<variants>(?:-(?:[a-z0-9]{5,8}|[0-9][a-z0-9]{3}))*)"
    r"(?P<extensions>(?:-[a-wyz0-9](?:-[a-z0-9]{2,8})+)*)"
    r"(?P<private>-x(?:-[a-z0-9]{1,8})+)?"
)
_TAG_RE = re.compile(_LANGTAG, re.IGNORECASE)
# For the JSON Schema: what the API accepts, before the language is looked up.
TAG_PATTERN = (
    r"^[A-Za-z]{2,3}(-[A-Za-z]{3}){0,3}(-[A-Za-z]{4})?(-([A-Za-z]{2}|[0-9]{3}))?"
    r"(-([A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*(-[A-WYZa-wyz0-9](-[A-Za-z0-9]{2,8})+)*"
    r"(-[Xx](-[A-Za-z0-9]{1,8})+)?$"
)


class LocaleError(ValueError):
    """Not a BCP 47 language tag we can use; the message says why, in one line."""


@lru_cache(maxsize=1)
def _known_languages() -> frozenset[str]:
    return frozenset(Locale("en").languages)


@lru_cache(maxsize=1)
def _known_regions() -> frozenset[str]:
    return frozenset(Locale("en").territories)


def canonical(tag: str) -> str:
    """BCP 47 case conventions, lenient about separators: 'NL_be' -> 'nl-BE', 'zh-hant' -> 'zh-Hant'.

    For file names and options typed by people; customer data goes through parse_locale_tag.
    """
    parts = [p for p in tag.strip().replace("_", "-").split("-") if p]
    if not parts:
        return ""
    out = [parts[0].lower()]
    for index, part in enumerate(parts[1:], start=1):
        if len(part) == 1:  # an extension or private-use singleton: the rest stays lower case
            out.extend(p.lower() for p in parts[index:])
            break
        if len(part) == 2 or (len(part) == 3 and part.isdigit()):
            out.append(part.upper())
        elif len(part) == 4 and part.isalpha() and index <= 4:
            out.append(part.title())
        else:
            out.append(part.lower())
    return "-".join(out)


def parse_locale_tag(value: str) -> str:
    """A customer's locale as a canonical BCP 47 tag; LocaleError names what is wrong.

    Well-formed per RFC 5646, with a primary language known to CLDR (or private use qaa-qtz)
    and, when given, a known region. The tag is kept as given otherwise: `de-BE` stays `de-BE`.
    """
    text = value.strip()
    if not text:
        raise LocaleError("empty locale: give a BCP 47 tag such as nl-BE, fr, en-GB")
    if len(text) > MAX_TAG_LENGTH:
        raise LocaleError(f"locale {value!r} is longer than {MAX_TAG_LENGTH} characters")
    if "_" in text:
        raise LocaleError(f"locale {value!r} is not BCP 47: write {canonical(text)!r} (with -)")
    match = _TAG_RE.fullmatch(text)
    if match is None:
        raise LocaleError(f"locale {value!r} is not a BCP 47 tag (like nl-BE, fr, en-GB)")
    language = match["language"].split("-")[0].lower()
    if language not in _known_languages() and not ("qaa" <= language <= "qtz"):
        raise LocaleError(f"locale {value!r}: unknown language {language!r}")
    region = match["region"]
    if region is not None and region.upper() not in _known_regions():
        raise LocaleError(f"locale {value!r}: unknown region {region!r}")
    return canonical(text)


def _checked(value: str) -> str:
    return parse_locale_tag(value)


# For pydantic models: the API, imports, scenarios and settings all accept the same tags.
# The pattern is for the JSON Schema only: parse_locale_tag gives the clearer message.
LocaleTag = Annotated[
    str,
    Field(
        description="A BCP 47 language tag (nl-BE, fr, en-GB) whose language CLDR knows.",
        examples=["nl-BE"],
        json_schema_extra={"pattern": TAG_PATTERN, "maxLength": MAX_TAG_LENGTH},
    ),
    AfterValidator(_checked),
]


def language_of(tag: str) -> str:
    """The primary language subtag: 'nl' for 'nl-BE'."""
    return canonical(tag).split("-")[0]


def region_of(tag: str | None) -> str | None:
    """The ISO 3166 region a tag names ('BE' for 'nl-BE', 'fr-Latn-BE'), or None ('nl', 'es-419')."""
    if not tag:
        return None
    match = _TAG_RE.fullmatch(tag.strip().replace("_", "-"))
    region = match["region"] if match else None
    return region.upper() if region and region.isalpha() else None


def _underscored(tag: str) -> str:
    return canonical(tag).replace("-", "_")


def negotiate(
    tag: str,
    available: Iterable[str],
    fallback: Mapping[str, Sequence[str]] = DEFAULT_FALLBACK,
) -> str | None:
    """The nearest of `available` (template locales like nl, nl-BE, fr-BE, en) for `tag`.

    For the tag and then each fallback (those of its language, then those under "*"): Babel's
    negotiation (exact, alias, language), then another region of the same language
    (fr-FR -> fr-BE). None when nothing matches at all.
    """
    have = {_underscored(a): a for a in available}
    if not have:
        return None
    wanted = canonical(tag)
    chain = [wanted, *fallback.get(language_of(wanted), ()), *fallback.get("*", ())]
    for candidate in chain:
        # No aliases: Babel's would send 'nl' to nl_NL and 'en' to en_US, whatever the shop is.
        found = negotiate_locale([_underscored(candidate)], list(have), aliases={})
        if found is not None:
            return have[found]
        language = language_of(candidate)
        siblings = sorted(a for key, a in have.items() if key.split("_")[0] == language)
        if siblings:
            return siblings[0]
    return None


def pick_language(tag: str | None, languages: Sequence[str], default: str) -> str:
    """One of `languages` for a customer tag or an Accept-Language header; `default` if none.

    For the few texts that exist per language only (pages, the SMS HELP reply).
    """
    first = (tag or "").split(",")[0].split(";")[0].strip()
    return (negotiate(first, languages) if first else None) or default


@lru_cache(maxsize=512)
def format_locale(tag: str, rendered: str) -> str:
    """The locale to write dates, numbers and amounts in, for a customer `tag` rendered in `rendered`.

    The customer's own tag when it shares the template's language (en-GB gets 24/04/2026 and
    £; fr-FR in French text gets fr-FR). Otherwise the template's language in the customer's
    region where CLDR has it (a de-BE customer reading English gets en-BE), else `rendered`.
    """
    own = canonical(tag)
    if own and language_of(own) == language_of(rendered) and _babel_knows(own):
        return own
    region = region_of(own)
    if region:
        mixed = f"{language_of(rendered)}-{region}"
        if _babel_knows(mixed):
            return mixed
    return canonical(rendered)


def html_lang(tag: str, rendered: str) -> str:
    """The tag for <html lang>: the customer's own (en-GB, nl-BE) when the email is in their
    language, else the language it was rendered in (a de-BE customer who gets the English copy
    reads English, and screen readers must pronounce it so). Anything not a tag: `rendered`."""
    try:
        own = parse_locale_tag(canonical(tag)) if tag else rendered
    except LocaleError:
        return rendered
    return own if language_of(own) == language_of(rendered) else rendered


def _babel_knows(tag: str) -> bool:
    try:
        Locale.parse(_underscored(tag))
    except (UnknownLocaleError, ValueError):
        return False
    return True
