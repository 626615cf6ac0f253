"""Template files on disk: mj-include expansion with a line map, per-locale strings, fallback."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trouw.domain.render.errors import TemplateError
from trouw.language.locales import DEFAULT_FALLBACK, canonical, negotiate

# The locales Trouw ships copy for; `trouw templates check` renders each one. Customers may
# have any BCP 47 tag: trouw.language.locales.negotiate maps it to the nearest of these.
SHIPPED_LOCALES: tuple[str, ...] = ("nl-BE", "nl-NL", "fr-BE", "en")
DEFAULT_LOCALE = "en"

_INCLUDE_RE = re.compile(r"<mj-include\b([^>]*?)/?>(?:\s*</mj-include>)?", re.IGNORECASE)
_ATTR_RE = re.compile(r'([\w-]+)\s*=\s*"([^"]*)"')
# A partial may be a full <mjml><mj-body> document (so it opens in MJML editors); the wrapper goes.
_WRAPPER_RE = re.compile(r"</?(?:mjml|mj-body|mj-head)\b[^>]*>", re.IGNORECASE)
# [[ key ]] is replaced by the locale's string before MJML compiles; {{ }} stays for Jinja.
STRING_REF_RE = re.compile(r"\[\[\s*([A-Za-z0-9_.-]+)\s*\]\]")
_MAX_INCLUDE_DEPTH = 8


@dataclass(frozen=True)
class Origin:
    """Where one line of an expanded source came from."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class Expanded:
    """A source with its mj-includes inlined; `origins[i]` is the origin of line i+1."""

    text: str
    origins: list[Origin]
    files: dict[Path, bytes] = field(default_factory=dict)

    def origin(self, line: int | None) -> Origin | None:
        if line is None or not self.origins:
            return None
        return self.origins[min(max(line, 1), len(self.origins)) - 1]


@dataclass(frozen=True)
class StringValue:
    """One localised string and the YAML line it was defined on."""

    text: str
    origin: Origin


def normalize_locale(locale: str) -> str:
    """'nl_be', 'NL-be' -> 'nl-BE'; 'FR' -> 'fr'; empty -> the default locale."""
    return canonical(locale) or DEFAULT_LOCALE


def resolve_locale(
    requested: str,
    available: Iterable[str],
    fallback: Mapping[str, Sequence[str]] = DEFAULT_FALLBACK,
) -> tuple[str, list[str]]:
    """Pick the locale to render and the files to layer, most general first.

    The nearest available locale by trouw.language.locales.negotiate (nl-NL -> nl-NL, fr-FR -> fr,
    de-BE -> the fallback chain), layered over its language file when both exist
    (strings.nl-NL.yaml over strings.nl.yaml). A language file serves every region of its
    language, and then the requested tag is what is returned (fr-FR, rendered from fr).
    """
    have = set(available)
    if not have:
        raise TemplateError(f"no locale files found for locale {requested!r}")
    want = normalize_locale(requested)
    used = negotiate(want, have, fallback) or sorted(have)[0]
    lang = used.split("-")[0]
    if used == lang and want.split("-")[0] == lang:
        # strings.nl.yaml serves nl-BE and nl-NL alike: the customer's own tag is kept.
        return want, [lang]
    return used, ([lang] if lang in have and lang != used else []) + [used]


class Sources:
    """Reads template files relative to the templates directory and names them for errors."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        # Errors say "templates/email/x/body.mjml:12", the path a marketer sees in the repo.
        self._display_prefix = Path(root.name)

    def display(self, path: Path) -> str:
        try:
            rel = path.resolve().relative_to(self.root)
        except ValueError:
            return str(path)
        return str(self._display_prefix / rel)

    def read(self, path: Path) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise TemplateError(f"{self.display(path)}: cannot read: {exc.strerror}") from None

    def expand(self, path: Path) -> Expanded:
        """Inline every <mj-include path="..."/> (relative to the including file)."""
        out = Expanded(text="", origins=[])
        lines: list[str] = []
        self._expand_into(path, lines, out, depth=0, partial=False)
        out.text = "\n".join(lines) + "\n"
        return out

    def _expand_into(
        self, path: Path, lines: list[str], out: Expanded, depth: int, partial: bool
    ) -> None:
        raw = self.read(path)
        out.files[path.resolve()] = raw
        shown = self.display(path)
        text = raw.decode("utf-8-sig")
        for number, line in enumerate(text.splitlines(), start=1):
            if partial:
                line = _WRAPPER_RE.sub("", line)
            pos = 0
            for match in _INCLUDE_RE.finditer(line):
                before = line[pos : match.start()]
                if before.strip():
                    lines.append(before)
                    out.origins.append(Origin(shown, number))
                pos = match.end()
                attrs = dict(_ATTR_RE.findall(match.group(1)))
                target = self._include_target(path, attrs, shown, number, depth)
                self._expand_into(target, lines, out, depth + 1, partial=True)
            rest = line[pos:]
            if pos == 0 or rest.strip():
                lines.append(rest)
                out.origins.append(Origin(shown, number))

    def _include_target(
        self, path: Path, attrs: dict[str, str], shown: str, number: int, depth: int
    ) -> Path:
        where = f"{shown}:{number}"
        if "path" not in attrs:
            raise TemplateError(f'{where}: mj-include needs path="..."')
        if attrs.get("type", "mjml") != "mjml":
            raise TemplateError(f"{where}: only MJML includes are supported; use mj-style")
        if depth >= _MAX_INCLUDE_DEPTH:
            raise TemplateError(f"{where}: mj-include nested too deep (a loop?)")
        target = (path.parent / attrs["path"]).resolve()
        # Marketers edit templates; an include must not read files outside templates/.
        if not target.is_relative_to(self.root):
            raise TemplateError(f"{where}: mj-include path leaves the templates directory")
        if not target.is_file():
            raise TemplateError(f"{where}: mj-include file not found: {attrs['path']}")
        return target

    def load_strings(self, path: Path) -> dict[str, StringValue]:
        """A flat or nested YAML map of strings; nested keys join with dots."""
        raw = self.read(path)
        shown = self.display(path)
        try:
            node = yaml.compose(raw.decode("utf-8-sig"), Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            raise TemplateError(f"{shown}{line}: invalid YAML: {exc}") from None
        result: dict[str, StringValue] = {}
        if node is None:
            return result
        self._flatten(node, "", shown, result)
        return result

    def _flatten(self, node: Any, prefix: str, shown: str, out: dict[str, StringValue]) -> None:
        line = node.start_mark.line + 1
        if not isinstance(node, yaml.MappingNode):
            raise TemplateError(f"{shown}:{line}: expected key: value pairs")
        for key_node, value_node in node.value:
            key = f"{prefix}{key_node.value}"
            if isinstance(value_node, yaml.MappingNode):
                self._flatten(value_node, key + ".", shown, out)
            elif isinstance(value_node, yaml.ScalarNode):
                out[key] = StringValue(
                    str(value_node.value).strip(), Origin(shown, value_node.start_mark.line + 1)
                )
            else:
                raise TemplateError(
                    f"{shown}:{value_node.start_mark.line + 1}: {key}: expected a string"
                )


def locale_files(directory: Path, stem: str, suffix: str) -> dict[str, Path]:
    """{'nl': .../strings.nl.yaml, 'nl-BE': ...} for files named <stem>.<locale><suffix>."""
    found: dict[str, Path] = {}
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob(f"{stem}.*{suffix}")):
        locale = path.name[len(stem) + 1 : -len(suffix)]
        if locale and "." not in locale:
            found[normalize_locale(locale)] = path
    return found


def substitute_strings(
    expanded: Expanded, strings: dict[str, StringValue], missing_ok: bool = False
) -> tuple[str, dict[int, list[str]]]:
    """Replace [[ key ]] with the string; returns the text and, per line, the keys used there.

    Newlines inside a string become spaces so line numbers keep pointing at the source.
    """
    used: dict[int, list[str]] = {}
    out_lines: list[str] = []
    for index, line in enumerate(expanded.text.split("\n")):

        def repl(match: re.Match[str], index: int = index) -> str:
            key = match.group(1)
            value = strings.get(key)
            if value is None:
                if missing_ok:
                    return match.group(0)
                origin = expanded.origin(index + 1)
                raise TemplateError(f"{origin}: no string {key!r} for this locale")
            used.setdefault(index + 1, []).append(key)
            return " ".join(value.text.split("\n"))

        out_lines.append(STRING_REF_RE.sub(repl, line))
    return "\n".join(out_lines), used
