"""The precompiled path (MJML once, Jinja per recipient) equals compiling per recipient."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import mjml
import pytest

from trouw.domain.render import SHIPPED_LOCALES, TemplateStore, sample_context
from trouw.domain.render.environment import html_environment


class _Words(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.words: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "title", "head"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "title", "head"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.words.extend(data.split())


def visible_words(html: str) -> list[str]:
    parser = _Words()
    parser.feed(html)
    return parser.words


def links(html: str) -> list[str]:
    return re.findall(r'href="([^"]*)"', html)


@pytest.mark.parametrize("locale", SHIPPED_LOCALES)
@pytest.mark.parametrize("name", ["order_confirmation", "care_tips", "birthday"])
def test_precompiled_equals_compile_of_jinja(store: TemplateStore, name: str, locale: str) -> None:
    context = {**sample_context(name, locale), "locale": locale}
    fast = store.render_email(name, locale, context).html
    mjml_source = html_environment().from_string(store.localized_mjml(name, locale))
    slow = mjml.mjml2html(mjml_source.render(context))
    assert visible_words(fast) == visible_words(slow)
    assert links(fast) == links(slow)


def test_empty_alt_is_restored_on_images(make_email) -> None:  # type: ignore[no-untyped-def]
    store = make_email(body='</mj-text><mj-image src="https://x.example/a.png" /><mj-text>x')
    html = store.render_email("probe", "en", sample_context("probe", "en")).html
    assert '<img alt="" ' in html
