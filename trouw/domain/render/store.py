"""TemplateStore: compiles MJML once per template version and locale, then renders per recipient."""

from __future__ import annotations

import functools
import hashlib
import html as htmllib
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import mjml
import yaml
from jinja2 import Template, TemplateSyntaxError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from trouw.domain.render.environment import (
    FORBIDDEN_NODES,
    html_environment,
    line_environment,
    text_environment,
)
from trouw.domain.render.errors import TemplateError
from trouw.domain.render.plaintext import html_to_text, squeeze_blank_lines
from trouw.domain.render.sms import SmsEncoding, sms_segments
from trouw.domain.render.sources import (
    Expanded,
    Sources,
    StringValue,
    locale_files,
    resolve_locale,
    substitute_strings,
)
from trouw.language.locales import DEFAULT_FALLBACK, format_locale, html_lang

# Bump when the compile pipeline changes, so cached compiled HTML of the same sources is redone.
PIPELINE_VERSION = "2"
# A render bigger than this is a runaway loop, not an email (Gmail clips at ~102 KB anyway).
MAX_HTML_CHARS = 500_000
MAX_SMS_CHARS = 1_600

LAYOUT_DIR = "_layout"
_SKIP_PREFIX = ("_", ".")
_IMG_WITHOUT_ALT_RE = re.compile(r"<img\b(?![^>]*\balt=)", re.IGNORECASE)
_JINJA_TAG_RE = re.compile(r"\{[{%].*?[}%]\}", re.DOTALL)
# Autoescape does not stop javascript: or data: URLs; only these schemes may reach an href.
_OK_HREF_STARTS = ("https:", "http:", "mailto:", "tel:", "#")
_TAG_RE = re.compile(r"<[^>]+>")
# MRML writes lang="und" (undetermined) on <html> and the body wrapper unless <mjml lang> says
# otherwise; the recipient's tag goes there per render, through a Jinja placeholder.
_UNDETERMINED_LANG = ' lang="und"'
_LANG_PLACEHOLDER = ' lang="{{ html_lang }}"'
try:
    _MJML_VERSION = metadata.version("mjml-python")
except metadata.PackageNotFoundError:  # pragma: no cover - only in odd installs
    _MJML_VERSION = "unknown"


@dataclass(frozen=True)
class RenderedEmail:
    """One personalised email, ready for a provider."""

    subject: str
    preheader: str
    html: str
    text: str
    template_version: str
    locale: str  # the locale actually used, after fallback


@dataclass(frozen=True)
class RenderedSms:
    """One personalised SMS with what it will cost in segments."""

    text: str
    segments: int
    encoding: SmsEncoding
    template_version: str
    locale: str


@dataclass
class _EmailSource:
    name: str
    directory: Path
    body: Expanded
    text_part: Expanded | None
    strings: dict[str, dict[str, StringValue]]
    layout_strings: dict[str, dict[str, StringValue]]
    meta: dict[str, Any]
    version: str


@dataclass
class _SmsSource:
    name: str
    texts: dict[str, Expanded]
    version: str


@dataclass
class _Compiled:
    """Everything per (template version, locale) that does not depend on the recipient."""

    locale: str
    html: Template
    text: Template
    subject: Template
    preheader: Template
    html_source: str  # compiled HTML with the Jinja placeholders, kept for previews and checks
    # The localised MJML as a Jinja template: re-rendered only to find the line of an error.
    diagnose: Callable[[Mapping[str, Any], Exception], TemplateError]
    strings: dict[str, StringValue] = field(default_factory=dict)


# Shared by every store in the process: same content hash, same compiled output.
_COMPILED: dict[tuple[str, str, str, str], _Compiled] = {}
_SMS_COMPILED: dict[tuple[str, str, str], Template] = {}
_COMPILED_LOCK = threading.Lock()


class TemplateStore:
    """The templates directory: email/<name>/ and sms/<name>/, rendered by name and locale."""

    def __init__(
        self,
        templates_dir: Path,
        *,
        locale_fallback: Mapping[str, Sequence[str]] = DEFAULT_FALLBACK,
    ) -> None:
        self.root = Path(templates_dir)
        self.locale_fallback = locale_fallback
        self._files = Sources(self.root)
        self._html_env = html_environment()
        self._text_env = text_environment()
        self._line_env = line_environment()
        self._email: dict[str, _EmailSource] = {}
        self._sms: dict[str, _SmsSource] = {}
        self._lock = threading.Lock()

    # -- catalogue -----------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Template names across channels, e.g. ['birthday', 'delivery_notice', ...]."""
        found: set[str] = set()
        for channel in ("email", "sms"):
            found.update(self._names_in(channel))
        return sorted(found)

    def channels(self, name: str) -> set[str]:
        """The channels a template exists for: {'email'}, {'sms'} or both."""
        return {ch for ch in ("email", "sms") if name in self._names_in(ch)}

    def locales(self, channel: str, name: str) -> list[str]:
        """Locales with their own file (language files like 'nl' included)."""
        if channel == "email":
            return sorted(self._email_source(name).strings)
        return sorted(self._sms_source(name).texts)

    def _names_in(self, channel: str) -> set[str]:
        base = self.root / channel
        if not base.is_dir():
            return set()
        marker = "body.mjml" if channel == "email" else "text.*.txt"
        return {
            d.name
            for d in base.iterdir()
            if d.is_dir() and not d.name.startswith(_SKIP_PREFIX) and any(d.glob(marker))
        }

    def version(self, channel: str, name: str) -> str:
        """Content hash of every file the template uses: body, layout, partials, strings."""
        if channel == "email":
            return self._email_source(name).version
        if channel == "sms":
            return self._sms_source(name).version
        raise TemplateError(f"unknown channel {channel!r} (email or sms)")

    def reload(self) -> None:
        """Forget the loaded sources; the next render reads the files again."""
        with self._lock:
            self._email.clear()
            self._sms.clear()

    def meta(self, name: str) -> dict[str, Any]:
        """template.yaml of an email template: description and category."""
        return dict(self._email_source(name).meta)

    def category(self, channel: str, name: str) -> str | None:
        """The category a template declares in its template.yaml (email and SMS alike): the
        least strict category it may be sent as. None when it declares none."""
        path = self._check_name(channel, name) / "template.yaml"
        if not path.is_file():
            return None
        return _declared_category(self._files.read(path))

    # -- rendering -----------------------------------------------------------------------------

    def render_email(self, name: str, locale: str, context: Mapping[str, Any]) -> RenderedEmail:
        """Render one email for one recipient; raises TemplateError naming file and line."""
        source = self._email_source(name)
        compiled = self._compiled_email(source, locale)
        # Text in the template's language; dates and amounts in the customer's own locale.
        ctx = {
            **context,
            "locale": format_locale(locale, compiled.locale),
            "html_lang": html_lang(locale, compiled.locale),
        }
        try:
            subject = compiled.subject.render(ctx).strip()
            preheader = " ".join(compiled.preheader.render(ctx).split())
        except Exception as exc:
            raise compiled.diagnose(ctx, exc) from None
        if "\r" in subject or "\n" in subject:
            origin = compiled.strings["subject"].origin
            raise TemplateError(f"{origin}: the subject contains a line break")
        try:
            html = compiled.html.render(ctx)
            text = squeeze_blank_lines(compiled.text.render(ctx))
        except Exception as exc:
            raise compiled.diagnose(ctx, exc) from None
        if len(html) > MAX_HTML_CHARS:
            body = self._files.display(source.directory / "body.mjml")
            raise TemplateError(f"{body}: rendered HTML is {len(html)} characters, over the limit")
        bad = _first_bad_href(html)
        if bad >= 0:
            body = self._files.display(source.directory / "body.mjml")
            snippet = html[bad : bad + 60]
            raise TemplateError(f"{body}: a link is not http(s), mailto or tel: {snippet!r}")
        return RenderedEmail(
            subject=subject,
            preheader=preheader,
            html=html,
            text=text,
            template_version=source.version,
            locale=compiled.locale,
        )

    def render_sms(self, name: str, locale: str, context: Mapping[str, Any]) -> RenderedSms:
        """Render one SMS; no value may contain a line break, and it stays under 10 segments."""
        source = self._sms_source(name)
        used, _chain = resolve_locale(locale, source.texts, self.locale_fallback)
        expanded = source.texts[used]
        template = self._compiled_sms(source, used)
        ctx = {**context, "locale": format_locale(locale, used)}
        try:
            rendered = template.render(ctx)
        except Exception as exc:
            raise _diagnose_runtime(exc, "sms", lambda line: str(expanded.origin(line))) from None
        # Babel puts no-break spaces in '24,95 €'; they are not GSM-7 and would double the cost.
        text = rendered.replace("\u00a0", " ").replace("\u202f", " ").strip()
        if len(text) > MAX_SMS_CHARS:
            raise TemplateError(f"{expanded.origins[0].file}: SMS is {len(text)} characters")
        segments, encoding = sms_segments(text)
        return RenderedSms(
            text=text,
            segments=segments,
            encoding=encoding,
            template_version=source.version,
            locale=used,
        )

    def compiled_html(self, name: str, locale: str) -> str:
        """The precompiled HTML with Jinja placeholders (for checks and the fidelity bench)."""
        return self._compiled_email(self._email_source(name), locale).html_source

    def strings(self, name: str, locale: str) -> dict[str, str]:
        """The merged strings an email uses in a locale (layout, language, then locale files)."""
        source = self._email_source(name)
        used, chain = resolve_locale(locale, source.strings, self.locale_fallback)
        return {k: v.text for k, v in self._merged_strings(source, used, chain).items()}

    def localized_mjml(self, name: str, locale: str) -> str:
        """The MJML after mj-include and [[ strings ]], before compilation; Jinja tags intact."""
        source = self._email_source(name)
        used, chain = resolve_locale(locale, source.strings, self.locale_fallback)
        text, _ = substitute_strings(source.body, self._merged_strings(source, used, chain))
        return text

    # -- loading -------------------------------------------------------------------------------

    def _email_source(self, name: str) -> _EmailSource:
        cached = self._email.get(name)
        if cached is not None:
            return cached
        with self._lock:
            if name not in self._email:
                self._email[name] = self._load_email(name)
            return self._email[name]

    def _sms_source(self, name: str) -> _SmsSource:
        cached = self._sms.get(name)
        if cached is not None:
            return cached
        with self._lock:
            if name not in self._sms:
                self._sms[name] = self._load_sms(name)
            return self._sms[name]

    def _check_name(self, channel: str, name: str) -> Path:
        directory = self.root / channel / name
        if "/" in name or "\\" in name or name.startswith(_SKIP_PREFIX) or not directory.is_dir():
            raise TemplateError(f"unknown {channel} template {name!r} in {self.root}")
        return directory

    def _load_email(self, name: str) -> _EmailSource:
        directory = self._check_name("email", name)
        body_path = directory / "body.mjml"
        if not body_path.is_file():
            raise TemplateError(f"{self._files.display(body_path)}: missing")
        body = self._files.expand(body_path)
        text_path = directory / "text.txt"
        text_part = self._files.expand(text_path) if text_path.is_file() else None
        files: dict[Path, bytes] = dict(body.files)
        if text_part is not None:
            files.update(text_part.files)
        strings: dict[str, dict[str, StringValue]] = {}
        for loc, path in locale_files(directory, "strings", ".yaml").items():
            strings[loc] = self._files.load_strings(path)
            files[path.resolve()] = self._files.read(path)
        if not strings:
            raise TemplateError(f"{self._files.display(directory)}: no strings.<locale>.yaml")
        layout: dict[str, dict[str, StringValue]] = {}
        layout_dir = self.root / "email" / LAYOUT_DIR
        for loc, path in locale_files(layout_dir, "strings", ".yaml").items():
            layout[loc] = self._files.load_strings(path)
            files[path.resolve()] = self._files.read(path)
        meta: dict[str, Any] = {}
        meta_path = directory / "template.yaml"
        if meta_path.is_file():
            raw = self._files.read(meta_path)
            files[meta_path.resolve()] = raw
            loaded = yaml.safe_load(raw) or {}
            if not isinstance(loaded, dict):
                raise TemplateError(f"{self._files.display(meta_path)}: expected key: value pairs")
            meta = loaded
        return _EmailSource(
            name=name,
            directory=directory,
            body=body,
            text_part=text_part,
            strings=strings,
            layout_strings=layout,
            meta=meta,
            version=self._hash(files),
        )

    def _load_sms(self, name: str) -> _SmsSource:
        directory = self._check_name("sms", name)
        texts: dict[str, Expanded] = {}
        files: dict[Path, bytes] = {}
        for loc, path in locale_files(directory, "text", ".txt").items():
            texts[loc] = self._files.expand(path)
            files.update(texts[loc].files)
        if not texts:
            raise TemplateError(f"{self._files.display(directory)}: no text.<locale>.txt")
        return _SmsSource(name=name, texts=texts, version=self._hash(files))

    def _hash(self, files: Mapping[Path, bytes]) -> str:
        digest = hashlib.sha256(f"{PIPELINE_VERSION}|{_MJML_VERSION}".encode())
        for path in sorted(files):
            digest.update(self._files.display(path).encode() + b"\0" + files[path] + b"\0")
        return digest.hexdigest()[:16]

    # -- compiling -----------------------------------------------------------------------------

    def _merged_strings(
        self, source: _EmailSource, used: str, chain: list[str]
    ) -> dict[str, StringValue]:
        merged: dict[str, StringValue] = {}
        if source.layout_strings:
            _, layout_chain = resolve_locale(used, source.layout_strings, self.locale_fallback)
            for loc in layout_chain:
                merged.update(source.layout_strings[loc])
        for loc in chain:
            merged.update(source.strings[loc])
        return merged

    def _compiled_email(self, source: _EmailSource, locale: str) -> _Compiled:
        used, chain = resolve_locale(locale, source.strings, self.locale_fallback)
        key = ("email", source.name, source.version, used)
        compiled = _COMPILED.get(key)
        if compiled is None:
            with _COMPILED_LOCK:
                compiled = _COMPILED.get(key)
                if compiled is None:
                    compiled = self._compile_email(source, used, chain)
                    _COMPILED[key] = compiled
        return compiled

    def _body_where(
        self,
        source: _EmailSource,
        strings: dict[str, StringValue],
        keys_by_line: Mapping[int, list[str]],
    ) -> Callable[[int | None], str]:
        """Line of the localised MJML -> the file and line a marketer edits."""

        def where(line: int | None) -> str:
            origin = source.body.origin(line)
            text = str(origin) if origin else self._files.display(source.directory / "body.mjml")
            keys = keys_by_line.get(line or 0, [])
            if keys:
                defined = ", ".join(f"'{k}' at {strings[k].origin}" for k in keys)
                text += f" (string {defined})"
            return text

        return where

    def jinja_sources(
        self, channel: str, name: str, locale: str
    ) -> list[tuple[nodes.Template, Callable[[int | None], str]]]:
        """Every Jinja part of a template in a locale, parsed, with where each line comes from:
        for checks that read a template's names without rendering it."""
        if channel == "sms":
            sms = self._sms_source(name)
            used, _chain = resolve_locale(locale, sms.texts)
            expanded = sms.texts[used]
            ast = self._line_env.parse(expanded.text)
            return [(ast, lambda line: str(expanded.origin(line)))]
        source = self._email_source(name)
        used, chain = resolve_locale(locale, source.strings)
        strings = self._merged_strings(source, used, chain)
        localized, keys_by_line = substitute_strings(source.body, strings)
        parts = [(self._html_env.parse(localized), self._body_where(source, strings, keys_by_line))]
        for key in ("subject", "preheader"):
            value = strings.get(key)
            if value is not None:
                parts.append((self._line_env.parse(_plain(value.text)), _fixed(str(value.origin))))
        if source.text_part is not None:
            part = source.text_part
            plain = {k: StringValue(_plain(v.text), v.origin) for k, v in strings.items()}
            text_source, _ = substitute_strings(part, plain)
            parts.append((self._text_env.parse(text_source), lambda line: str(part.origin(line))))
        return parts

    def _compile_email(self, source: _EmailSource, used: str, chain: list[str]) -> _Compiled:
        strings = self._merged_strings(source, used, chain)
        localized, keys_by_line = substitute_strings(source.body, strings)
        where = self._body_where(source, strings, keys_by_line)

        tag = f"{source.name}@{used}"
        diagnose_template = _compile(self._html_env, localized, f"{tag}:mjml", where)
        try:
            html_source = mjml.mjml2html(localized)
        except Exception as exc:  # mjml-python raises plain exceptions with the parser's text
            raise TemplateError(f"{where(None)}: MJML: {exc}") from None
        # MRML drops alt="" and image-blocking clients then show a broken-image box.
        html_source = _IMG_WITHOUT_ALT_RE.sub('<img alt=""', html_source)
        html_source = html_source.replace(_UNDETERMINED_LANG, _LANG_PLACEHOLDER)
        lost = _lost_tags(localized, html_source)
        if lost:
            line = localized[: localized.index(lost)].count("\n") + 1
            raise TemplateError(
                f"{where(line)}: MJML dropped the Jinja tag {lost!r}; wrap loops around "
                "columns in <mj-raw> and loops in mj-table in <!-- --> comments"
            )
        html_template = _compile(self._html_env, html_source, f"{tag}:html", lambda _l: where(None))

        if source.text_part is not None:
            plain = {k: StringValue(_plain(v.text), v.origin) for k, v in strings.items()}
            text_source, _ = substitute_strings(source.text_part, plain)
            part = source.text_part
            text_where: Callable[[int | None], str] = lambda line: str(part.origin(line))  # noqa: E731
        else:
            text_source = html_to_text(html_source)
            text_where = where
        text_template = _compile(self._text_env, text_source, f"{tag}:text", text_where)

        subject = strings.get("subject")
        if subject is None:
            raise TemplateError(f"{where(None)}: no string 'subject' for locale {used}")
        preheader = strings.get("preheader", StringValue("", subject.origin))
        subject_t = _compile(
            self._line_env, _plain(subject.text), f"{tag}:subject", lambda _l: str(subject.origin)
        )
        preheader_t = _compile(
            self._line_env,
            _plain(preheader.text),
            f"{tag}:preheader",
            lambda _l: str(preheader.origin),
        )

        def diagnose(ctx: Mapping[str, Any], exc: Exception) -> TemplateError:
            # Find the failing line by re-rendering the part that failed from its source.
            if isinstance(exc, TemplateError):
                return exc
            filename = _frame_filename(exc)
            if filename == f"{tag}:subject":
                return _diagnose_runtime(exc, filename, lambda _l: str(subject.origin))
            if filename == f"{tag}:preheader":
                return _diagnose_runtime(exc, filename, lambda _l: str(preheader.origin))
            if filename == f"{tag}:text" and source.text_part is not None:
                return _diagnose_runtime(exc, filename, text_where)
            try:
                diagnose_template.render(ctx)
            except Exception as again:
                return _diagnose_runtime(again, f"{tag}:mjml", where)
            return _diagnose_runtime(exc, "", where)

        return _Compiled(
            locale=used,
            html=html_template,
            text=text_template,
            subject=subject_t,
            preheader=preheader_t,
            html_source=html_source,
            diagnose=diagnose,
            strings=strings,
        )

    def _compiled_sms(self, source: _SmsSource, used: str) -> Template:
        key = (source.name, source.version, used)
        template = _SMS_COMPILED.get(key)
        if template is None:
            expanded = source.texts[used]
            template = _compile(
                self._line_env,
                expanded.text.strip("\n"),
                "sms",
                lambda line: str(expanded.origin(line)),
            )
            with _COMPILED_LOCK:
                _SMS_COMPILED[key] = template
        return template


def _fixed(origin: str) -> Callable[[int | None], str]:
    """A `where` for a one-line part (a subject): every line is the string's own origin."""
    return lambda _line: origin


def _first_bad_href(html: str) -> int:
    """Offset of the first href whose URL is not http(s), mailto, tel or #; -1 if none.

    str.find runs in C: a regex with a look-ahead over 13 KB cost ~80 µs per render.
    """
    for opener in ('href="', "href='"):
        pos = html.find(opener)
        while pos >= 0:
            start = pos + len(opener)
            head = html[start : start + 8].lstrip().lower()
            if not head.startswith(_OK_HREF_STARTS):
                return pos
            pos = html.find(opener, start)
    return -1


def _plain(text: str) -> str:
    """A string as plain text: tags removed, entities decoded (subjects, SMS, text parts)."""
    return htmllib.unescape(_TAG_RE.sub("", text)) if "<" in text or "&" in text else text


@functools.lru_cache(maxsize=256)
def _declared_category(raw: bytes) -> str | None:
    """The category a template.yaml declares; by its bytes, since every send asks (parsing the
    file each time was 3 ms of a send's CPU) and an edited file is other bytes."""
    loaded = yaml.safe_load(raw) or {}
    value = loaded.get("category") if isinstance(loaded, dict) else None
    return str(value) if value is not None else None


def _lost_tags(source: str, compiled: str) -> str | None:
    present = set(_JINJA_TAG_RE.findall(compiled))
    for tag in _JINJA_TAG_RE.findall(source):
        if tag not in present:
            return str(tag)
    return None


def _compile(
    env: ImmutableSandboxedEnvironment,
    source: str,
    filename: str,
    where: Callable[[int | None], str],
) -> Template:
    """Parse, refuse what marketers may not use, compile under a filename we can find later."""
    try:
        ast = env.parse(source, name=filename, filename=filename)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"{where(exc.lineno)}: {exc.message}") from None
    for node in ast.find_all(FORBIDDEN_NODES):
        kind = type(node).__name__.lower()
        raise TemplateError(f"{where(node.lineno)}: {{% {kind} %}} is not allowed in templates")
    for flt in ast.find_all(nodes.Filter):
        if flt.name not in env.filters:
            hint = " (values are escaped for you; markup belongs in the template)"
            extra = hint if flt.name == "safe" else ""
            raise TemplateError(f"{where(flt.lineno)}: filter '{flt.name}' is not allowed{extra}")
    try:
        code = env.compile(ast, name=filename, filename=filename)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"{where(exc.lineno)}: {exc.message}") from None
    return env.template_class.from_code(env, code, env.make_globals(None), None)


def _frame_filename(exc: BaseException) -> str | None:
    tb = exc.__traceback__
    found: str | None = None
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if ":" in name and "@" in name:
            found = name
        tb = tb.tb_next
    return found


def _template_line(exc: BaseException, filename: str) -> int | None:
    tb = exc.__traceback__
    line: int | None = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _diagnose_runtime(
    exc: BaseException, filename: str, where: Callable[[int | None], str]
) -> TemplateError:
    line = _template_line(exc, filename) if filename else None
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return TemplateError(f"{where(line)}: {message}")
