"""<html lang> carries the recipient's language tag, never MRML's "und"."""

from __future__ import annotations

import re

import pytest

from trouw.domain.render import SHIPPED_LOCALES, TemplateStore, sample_context
from trouw.domain.render.store import html_lang


def lang_of(html: str) -> str:
    match = re.match(r'<!doctype html><html lang="([^"]*)"', html)
    assert match, html[:80]
    return match.group(1)


@pytest.mark.parametrize("locale", SHIPPED_LOCALES)
@pytest.mark.parametrize("name", ["order_confirmation", "care_tips", "birthday"])
def test_shipped_locale_is_the_lang(store: TemplateStore, name: str, locale: str) -> None:
    html = store.render_email(name, locale, sample_context(name, locale)).html
    assert lang_of(html) == locale
    assert 'lang="und"' not in html


@pytest.mark.parametrize(
    ("customer", "expected"),
    [("en-GB", "en-GB"), ("en_us", "en-US"), ("fr-FR", "fr-FR"), ("nl", "nl"), ("de-BE", "en")],
)
def test_customer_tag_when_the_email_is_in_their_language(
    store: TemplateStore, customer: str, expected: str
) -> None:
    html = store.render_email(
        "order_confirmation", customer, sample_context("order_confirmation", "en")
    ).html
    assert lang_of(html) == expected


def test_a_tag_that_is_no_language_tag_falls_back_to_the_rendered_language() -> None:
    assert html_lang('en" onload="x', "en") == "en"
    assert html_lang("", "fr-BE") == "fr-BE"
