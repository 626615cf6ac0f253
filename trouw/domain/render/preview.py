"""`trouw preview` and `trouw templates check`: render with sample data, report problems."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trouw.domain.render.errors import TemplateError
from trouw.domain.render.samples import sample_context
from trouw.domain.render.sources import SHIPPED_LOCALES, normalize_locale
from trouw.domain.render.store import TemplateStore

# An SMS over two segments costs three times a short one; a journey should not do that quietly.
MAX_SMS_SEGMENTS = 2
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


@dataclass(frozen=True)
class PreviewResult:
    """What `trouw preview` shows for one channel of a template."""

    channel: str
    name: str
    locale: str  # the locale actually used after fallback
    subject: str | None
    preheader: str | None
    size_bytes: int  # HTML bytes for email, text bytes for SMS
    sms_segments: int | None
    sms_encoding: str | None
    files: list[Path] = field(default_factory=list)
    png: Path | None = None


def preview(
    store: TemplateStore,
    name: str,
    out_dir: Path,
    *,
    locale: str = "nl-BE",
    channel: str | None = None,
    context: Mapping[str, Any] | None = None,
    png: bool = False,
) -> list[PreviewResult]:
    """Render a template (every channel it has, or just `channel`) into `out_dir`.

    Writes <name>.<locale>.html and .txt for email and <name>.<locale>.sms.txt for SMS; with
    png=True and Chromium installed, also a screenshot of the email.
    """
    channels = [channel] if channel else sorted(store.channels(name))
    if not channels:
        raise TemplateError(f"unknown template {name!r} in {store.root}")
    ctx = dict(context) if context is not None else sample_context(name, locale)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{name}.{normalize_locale(locale)}"
    results: list[PreviewResult] = []
    for ch in channels:
        if ch == "email":
            email = store.render_email(name, locale, ctx)
            html_path = out_dir / f"{stem}.html"
            text_path = out_dir / f"{stem}.txt"
            html_path.write_text(email.html, encoding="utf-8")
            text_path.write_text(email.text, encoding="utf-8")
            shot = screenshot(html_path, out_dir / f"{stem}.png") if png else None
            results.append(
                PreviewResult(
                    channel="email",
                    name=name,
                    locale=email.locale,
                    subject=email.subject,
                    preheader=email.preheader,
                    size_bytes=len(email.html.encode("utf-8")),
                    sms_segments=None,
                    sms_encoding=None,
                    files=[html_path, text_path],
                    png=shot,
                )
            )
        elif ch == "sms":
            sms = store.render_sms(name, locale, ctx)
            sms_path = out_dir / f"{stem}.sms.txt"
            sms_path.write_text(sms.text + "\n", encoding="utf-8")
            results.append(
                PreviewResult(
                    channel="sms",
                    name=name,
                    locale=sms.locale,
                    subject=None,
                    preheader=None,
                    size_bytes=len(sms.text.encode("utf-8")),
                    sms_segments=sms.segments,
                    sms_encoding=sms.encoding,
                    files=[sms_path],
                )
            )
        else:
            raise TemplateError(f"unknown channel {ch!r} (email or sms)")
    return results


def chromium_path() -> str | None:
    """Headless Chromium if installed (Debian: apt-get install chromium), else None."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    return next((c for c in CHROMIUM_CANDIDATES if os.access(c, os.X_OK)), None)


def screenshot(html_path: Path, png_path: Path, *, timeout: float = 60.0) -> Path | None:
    """A 700 px wide screenshot of a rendered email; None when Chromium is not installed."""
    browser = chromium_path()
    if browser is None:
        return None
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--hide-scrollbars",
        f"--screenshot={png_path.resolve()}",
        "--window-size=700,1400",
        html_path.resolve().as_uri(),
    ]
    completed = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    if completed.returncode != 0 or not png_path.is_file():
        stderr = completed.stderr.decode(errors="replace").strip().splitlines()[-1:]
        raise TemplateError(f"chromium screenshot failed: {' '.join(stderr)}")
    return png_path


def check_templates(
    store: TemplateStore,
    locales: tuple[str, ...] = SHIPPED_LOCALES,
    *,
    attributes: Mapping[str, Any] | None = None,
) -> list[str]:
    """Every problem in the templates directory, one line each, naming file and line.

    `attributes`: the declared customer attributes as the checker types them (their shapes)."""
    problems: list[str] = []
    for name in store.names():
        for channel in sorted(store.channels(name)):
            try:
                store.version(channel, name)
            except TemplateError as exc:
                problems.append(str(exc))
                continue
            for locale in locales:
                problems.extend(_check_one(store, channel, name, locale, attributes or {}))
    # Several locales share a body: the same broken line must be reported once.
    return list(dict.fromkeys(problems))


def _check_one(
    store: TemplateStore, channel: str, name: str, locale: str, attributes: Mapping[str, Any]
) -> list[str]:
    from trouw.domain.checks.scope import Declarations, template_scope
    from trouw.domain.checks.typecheck import unknown_template_names

    where = f"{store.root.name}/{channel}/{name}"
    context = sample_context(name, locale, attributes=attributes)
    try:
        # Every branch, not only the ones the sample data takes: names the context lacks.
        scope = template_scope(Declarations(attributes=dict(attributes)))
        problems = unknown_template_names(store, channel, name, locale, scope)
    except TemplateError as exc:
        return [str(exc)]
    if problems:
        return problems  # rendering would stop at the first of them, less precisely
    try:
        if channel == "email":
            email = store.render_email(name, locale, context)
            used = email.locale
            links = context["links"]
            category = store.meta(name).get("category", "service")
            required = ["view_in_browser", "preferences"]
            if category != "transactional":
                required.append("unsubscribe")
            for key in required:
                if str(links[key]) not in email.html:
                    problems.append(f"{where}/body.mjml: no link to {{{{ links.{key} }}}}")
            if not email.subject:
                problems.append(f"{where}: empty subject for {locale}")
        else:
            sms = store.render_sms(name, locale, context)
            used = sms.locale
            if sms.segments > MAX_SMS_SEGMENTS:
                problems.append(
                    f"{where}: {locale} SMS is {sms.segments} segments ({sms.encoding}); "
                    f"keep it to {MAX_SMS_SEGMENTS}"
                )
    except TemplateError as exc:
        return [str(exc)]
    if used.split("-")[0] != locale.split("-")[0]:
        problems.append(f"{where}: no {locale} text; it falls back to {used}")
    return problems
