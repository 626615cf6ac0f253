"""Readable plain text from compiled email HTML, Jinja tags kept so it renders per recipient."""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCK_TAGS = frozenset(
    {"p", "div", "table", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "section"}
)
_SKIP_TAGS = frozenset({"head", "style", "script", "title"})
_VOID_TAGS = frozenset({"br", "img", "hr", "meta", "link", "input", "col"})
_HIDDEN_RE = re.compile(r"display\s*:\s*none", re.IGNORECASE)
_JINJA_RE = re.compile(r"\{[{%#].*?[}%#]\}", re.DOTALL)
_BLOCK_TAG_LINE_RE = re.compile(r"^\{%(?:(?!%\}).)*%\}$")
_SPACES_RE = re.compile(r"[ \t\r\f\v\u00a0]+")


class _TextBuilder(HTMLParser):
    """Walks the HTML once; block elements start new lines, links become 'text (url)'."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip_depth = 0
        self._stack: list[tuple[str, bool]] = []  # (tag, hides its content)
        self._links: list[tuple[str, int]] = []  # (href, index in parts where its text starts)
        self._cells = 0  # cells seen in the current table row

    def _hidden(self) -> bool:
        return self._skip_depth > 0

    def _directly_in_cell(self) -> bool:
        """True inside a data-table cell; MJML's text blocks sit in a <div> within the cell."""
        for tag, _hides in reversed(self._stack):
            if tag in ("td", "th"):
                return True
            if tag in ("div", "p", "li"):
                return False
        return False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k: v or "" for k, v in attrs}
        if tag in _VOID_TAGS:
            if tag == "br" and not self._hidden():
                # Inside a table cell a line break would tear the row apart.
                self.parts.append(" " if self._directly_in_cell() else "\n")
            return
        hides = tag in _SKIP_TAGS or bool(_HIDDEN_RE.search(attr.get("style", "")))
        self._stack.append((tag, hides))
        if hides:
            self._skip_depth += 1
            return
        if self._hidden():
            return
        if tag == "tr":
            # Rows end with a line break but do not start one: a table reads as a block.
            self._cells = 0
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in ("td", "th"):
            self.parts.append(" | " if self._cells else " ")
            self._cells += 1
        elif tag == "a":
            self._links.append((attr.get("href", ""), len(self.parts)))

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID_TAGS:
            return
        # Pop to the matching start tag; compiled MJML is well formed, but be forgiving.
        while self._stack:
            open_tag, hides = self._stack.pop()
            if hides:
                self._skip_depth -= 1
            elif not self._hidden():
                self._close(open_tag)
            if open_tag == tag:
                break

    def _close(self, tag: str) -> None:
        if tag in _BLOCK_TAGS or tag == "li":
            self.parts.append("\n")
        elif tag == "a" and self._links:
            href, start = self._links.pop()
            label = " ".join("".join(self.parts[start:]).split())
            if href and not href.startswith(("#", "mailto:")) and href != label:
                self.parts.append(f" ({href})" if label else href)

    def handle_data(self, data: str) -> None:
        if not self._hidden():
            self.parts.append(data)

    def handle_comment(self, data: str) -> None:
        # Loop tags hidden in comments (<!-- {% for %} -->) must reach the text template too.
        if not self._hidden():
            for tag in _JINJA_RE.findall(data):
                self.parts.append(f"\n{tag}\n")


def html_to_text(html: str) -> str:
    """Plain text of an email: one block per line, at most one blank line between blocks."""
    builder = _TextBuilder()
    builder.feed(html)
    builder.close()
    raw = "".join(builder.parts)
    lines = [_SPACES_RE.sub(" ", line).strip() for line in raw.split("\n")]
    out: list[str] = []
    for line in lines:
        if _BLOCK_TAG_LINE_RE.match(line) and not line.startswith("{%-"):
            # A loop tag on its own line eats the line break before it, so each iteration
            # adds exactly the lines of its body.
            line = "{%-" + line[2:]
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip() + "\n"


def squeeze_blank_lines(text: str) -> str:
    """After Jinja: loops leave runs of blank lines; keep at most one."""
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
