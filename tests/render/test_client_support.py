"""No shipped template uses CSS that a Gmail or Outlook client ignores without a fallback.

The list is what bench/email_support.py measured on the rendered emails (caniemail data through
@jsx-email/doiuse-email 1.0.4, docs/email-clients.md): properties that a Gmail or Outlook client
does not support at all and whose absence changes the layout. MJML's own output is not checked
here: it brings its fallbacks (Outlook conditional tables, inline widths).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

UNSUPPORTED = {
    "white-space": "outlook.windows, outlook.windows-mail",
    "opacity": "gmail.mobile-webmail, outlook.windows, outlook.windows-mail",
    "overflow": "outlook.windows, outlook.windows-mail, outlook.android",
    "word-break": "outlook.windows-mail",
    "word-spacing": "outlook.windows, outlook.windows-mail",
    "outline": "outlook.windows, outlook.windows-mail",
    "table-layout": "outlook.windows, outlook.windows-mail",
}
_STYLE_ATTR = re.compile(r"""style\s*=\s*(["'])(.*?)\1""", re.DOTALL)
_STYLE_BLOCK = re.compile(r"<mj-style[^>]*>(.*?)</mj-style>", re.DOTALL)
_DECLARATION = re.compile(r"([a-zA-Z-]+)\s*:")


def declarations(text: str) -> list[tuple[int, str]]:
    """(line, property) of every inline style and mj-style declaration in a template file."""
    found = []
    for pattern in (_STYLE_ATTR, _STYLE_BLOCK):
        for match in pattern.finditer(text):
            css = match.group(match.lastindex or 0)
            css = re.sub(r"[^{};]*\{", ";", css)  # mj-style: drop the selectors
            line = text.count("\n", 0, match.start()) + 1
            found += [(line, prop.lower()) for prop in _DECLARATION.findall(css)]
    return found


def template_files() -> list[Path]:
    base = ROOT / "templates" / "email"
    return sorted([*base.rglob("*.mjml"), *base.rglob("strings.*.yaml")])


@pytest.mark.parametrize("path", template_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_css_that_gmail_or_outlook_drops(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    problems = [
        f"{path.relative_to(ROOT)}:{line}: {prop} is not supported by {UNSUPPORTED[prop]}"
        for line, prop in declarations(text)
        if prop in UNSUPPORTED
    ]
    assert problems == []


def test_the_scan_finds_inline_and_head_styles() -> None:
    text = '<td style="padding:6px;white-space:nowrap">\n<mj-style>.x a { opacity: 0.5 }</mj-style>'
    assert declarations(text) == [(1, "padding"), (1, "white-space"), (2, "opacity")]
